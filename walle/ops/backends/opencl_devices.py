"""Which OpenCL device the opencl backend opens: one whose compiler builds kernels here.

An OpenCL platform can list a device and still fail every build on it: PoCL 3.0 (the CPU
platform of ``pyopencl[pocl]``) asks its LLVM 14 for the host CPU's name, gets "generic" on
CPUs newer than LLVM 14 (AMD Zen 5, family 26) and then refuses that name in every
``clBuildProgram``. So each candidate device, GPUs first, builds walle's program, and the
first that builds it is opened (a program that only some devices build is caught there
too, not at a model's first search); when none does, the error names every device and what
its compiler said.

The ``opencl`` extra also installs Intel's CPU runtime for OpenCL on x86-64 Linux (its own
compiler knows every x86-64 CPU). pip puts it in the environment's ``lib`` folder, where no
ICD loader looks, so :func:`register_installed_runtimes` lists it for the loader, beside
the system's registered platforms, before the first platform query.
"""

from __future__ import annotations

import os
import sysconfig
import threading
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path

from walle.errors import BackendError
from walle.logging import get_logger
from walle.ops.diskcache import cache_dir

try:
    import pyopencl as cl
except ImportError as exc:  # pragma: no cover - depends on the install
    raise BackendError(f"pyopencl is not installed ({exc})") from exc

DEVICE_ENV = "WALLE_OPENCL_DEVICE"
_VENDORS_ENV = "OCL_ICD_VENDORS"  # ocl-icd's (and the Khronos loader's) list of platforms
_SYSTEM_VENDORS = Path("/etc/OpenCL/vendors")
# Runtimes pip installs into the environment's lib, by the platform name each reports: they
# are the fallback, tried after the platforms that the system and pyopencl[pocl] provide.
_INSTALLED_RUNTIMES = {"libintelocl.so": "Intel(R) OpenCL"}  # intel-opencl-rt
_log = get_logger("walle.ops.opencl")


def register_installed_runtimes(
    lib_dir: Path | None = None, system_vendors: Path = _SYSTEM_VENDORS
) -> Path | None:
    """List OpenCL runtimes installed in this environment's ``lib`` for the ICD loader.

    Writes a vendors folder holding the system's ``.icd`` entries and one per runtime found,
    and points ``OCL_ICD_VENDORS`` at it; returns that folder, or None where there is
    nothing to add or the variable was set by the user (their list is kept as it is). The
    loader reads the variable at the process's first platform query.
    """
    if os.environ.get(_VENDORS_ENV):
        return None
    lib = lib_dir or Path(sysconfig.get_paths()["data"]) / "lib"
    found = [lib / name for name in _INSTALLED_RUNTIMES if (lib / name).is_file()]
    if not found:
        return None
    entries = {p.name: p.read_text() for p in sorted(system_vendors.glob("*.icd"))}
    entries.update({f"walle-{p.stem}.icd": f"{p.resolve()}\n" for p in found})
    folder = cache_dir() / "opencl-vendors"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in entries.items():
        target = folder / name
        if target.is_file() and target.read_text() == text:
            continue
        temp = folder / f".{name}.{uuid.uuid4().hex}.tmp"  # unique per writer, then renamed
        temp.write_text(text)
        temp.replace(target)
    for stale in set(p.name for p in folder.glob("*.icd")) - set(entries):
        (folder / stale).unlink(missing_ok=True)
    os.environ[_VENDORS_ENV] = str(folder)
    return folder


# pyopencl warns (CompilerWarning) after every build whose compiler said anything, and
# Intel's compiler lists its stages on every build: _build ignores that warning and logs the
# build log at debug level instead. catch_warnings swaps the process's warning filters, so
# builds hold this lock: two threads building at once would each restore the filters the
# other had set aside. Nothing else is caught (other threads' warnings pass as they would).
_BUILD_LOCK = threading.Lock()


def _build(context: cl.Context, source: str) -> cl.Program:
    """``source`` built for ``context``'s devices; the compiler's log of a build that
    succeeded is logged at debug level, not warned about."""
    with _BUILD_LOCK, warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=cl.CompilerWarning)
        program: cl.Program = cl.Program(context, source).build()
    for device in context.devices:
        log = program.get_build_info(device, cl.program_build_info.LOG)  # type: ignore[no-untyped-call]
        if log and log.strip():
            _log.debug("opencl build log", device=device.name, log=log.strip())
    return program


def open_device(
    source_for: Callable[[cl.Device], str],
) -> tuple[cl.Context, cl.Device, cl.Program]:
    """A context on the first device that builds ``source_for(device)``, and that program:
    ``WALLE_OPENCL_DEVICE``'s matches only when it is set; GPUs first, the installed
    fallback runtimes last."""
    register_installed_runtimes()
    try:
        platforms = cl.get_platforms()
    except cl.Error as exc:
        raise BackendError(f"no OpenCL platform found ({exc})") from exc
    devices = [d for p in platforms for d in p.get_devices()]
    if not devices:
        raise BackendError("OpenCL platforms found but they have no devices")
    wanted = os.environ.get(DEVICE_ENV, "").lower()
    if wanted:
        devices = [d for d in devices if wanted in _label(d).lower()]
        if not devices:
            raise BackendError(f"no OpenCL device matches {DEVICE_ENV}={wanted!r}")
    fallbacks = set(_INSTALLED_RUNTIMES.values())
    devices.sort(key=lambda d: (not d.type & cl.device_type.GPU, d.platform.name in fallbacks))
    refused = []
    for device in devices:
        context = cl.Context([device])
        try:
            program = _build(context, source_for(device))
        except cl.Error as exc:
            error = _build_message(str(exc))
            _log.warning("opencl device cannot build kernels", device=_label(device), error=error)
            refused.append(f"{_label(device)}: {error}")
            continue
        _log.debug("opencl device", platform=device.platform.name, device=device.name)
        return context, device, program
    raise BackendError(
        "no OpenCL device here builds walle's kernels (" + "; ".join(refused) + "); on x86-64 "
        "Linux `pip install walle[opencl]` also installs Intel's CPU runtime, whose compiler "
        "knows every x86-64 CPU"
    )


def _label(device: cl.Device) -> str:
    return f"{device.platform.name} {device.name}"


def _build_message(text: str) -> str:
    """The compiler's first error line from pyopencl's message (which repeats itself and
    carries the whole build log), else its first line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() and "clBuildProgram" not in line]
    return (errors or lines or ["(no message)"])[0]
