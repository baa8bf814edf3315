"""Which OpenCL device the backend opens: one whose compiler really builds kernels, the
installed fallback runtime listed for the ICD loader, a clear error when no compiler builds."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests._backends import backend_or_skip
from walle.errors import BackendError

cl = pytest.importorskip("pyopencl")
devices_module = pytest.importorskip("walle.ops.backends.opencl_devices")


def _builds(device, source: str) -> bool:
    try:
        cl.Program(cl.Context([device]), source).build()
    except cl.Error:
        return False
    return True


def test_ops_opencl_opens_a_device_that_builds_its_program_and_prefers_the_non_fallback() -> None:
    backend = backend_or_skip("opencl")
    chosen = backend.cl_device
    assert backend.program().get_info(cl.program_info.KERNEL_NAMES)
    fallbacks = set(devices_module._INSTALLED_RUNTIMES.values())
    if chosen.platform.name in fallbacks:  # only when no other device of its kind builds it
        source = backend.program().get_info(cl.program_info.SOURCE)
        others = [
            d
            for p in cl.get_platforms()
            for d in p.get_devices()
            if p.name not in fallbacks and d.type == chosen.type
        ]
        assert not any(_builds(d, source) for d in others)


def test_ops_opencl_no_device_that_builds_names_every_device_and_its_compiler_error() -> None:
    backend_or_skip("opencl")
    broken = "__kernel void k(__global float *x) { x[0] = walle_undeclared_name; }"
    with pytest.raises(BackendError) as caught:
        devices_module.open_device(lambda device: broken)
    message = str(caught.value)
    assert "no OpenCL device here builds walle's kernels" in message
    assert "walle_undeclared_name" in message
    for found in cl.get_platforms():
        for device in found.get_devices():
            assert f"{found.name} {device.name}" in message
    assert "pip install walle[opencl]" in message


def test_ops_opencl_builds_from_eight_threads_warn_nothing_and_leave_the_filters() -> None:
    """Eight threads building walle's program at once (a compiler that logs every build):
    each gets a program, no CompilerWarning reaches the caller, and the process's warning
    filters are as they were (the builds' catch_warnings blocks do not interleave)."""
    import threading
    import warnings

    backend = backend_or_skip("opencl")
    source = backend.program().get_info(cl.program_info.SOURCE)
    before = list(warnings.filters)
    start = threading.Barrier(8)
    built: list[object] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        inner = list(warnings.filters)

        def build() -> None:
            start.wait()
            built.append(devices_module._build(backend.context, source))

        threads = [threading.Thread(target=build) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert warnings.filters == inner
    assert len(built) == 8
    assert not [w for w in caught if issubclass(w.category, cl.CompilerWarning)]
    assert warnings.filters == before


def test_ops_opencl_installed_runtime_is_listed_beside_the_systems(tmp_path, monkeypatch) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    runtime = lib / "libintelocl.so"
    runtime.write_bytes(b"")  # only its path is written: the loader opens it, not this test
    system = tmp_path / "vendors"
    system.mkdir()
    (system / "gpu.icd").write_text("libgpu-vendor.so\n")
    monkeypatch.setenv("WALLE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("OCL_ICD_VENDORS", raising=False)
    stale = tmp_path / "cache" / "opencl-vendors" / "gone.icd"
    stale.parent.mkdir(parents=True)
    stale.write_text("libgone.so\n")

    folder = devices_module.register_installed_runtimes(lib, system)

    assert folder is not None
    assert sorted(p.name for p in folder.glob("*.icd")) == ["gpu.icd", "walle-libintelocl.icd"]
    assert (folder / "gpu.icd").read_text() == "libgpu-vendor.so\n"
    assert (folder / "walle-libintelocl.icd").read_text() == f"{runtime.resolve()}\n"
    assert not list(folder.glob("*.tmp"))
    assert os.environ["OCL_ICD_VENDORS"] == str(folder)
    # The user's own list is kept; an environment without the runtime adds nothing.
    monkeypatch.setenv("OCL_ICD_VENDORS", "/their/vendors")
    assert devices_module.register_installed_runtimes(lib, system) is None
    assert os.environ["OCL_ICD_VENDORS"] == "/their/vendors"
    monkeypatch.delenv("OCL_ICD_VENDORS")
    assert devices_module.register_installed_runtimes(tmp_path / "empty", system) is None
    assert "OCL_ICD_VENDORS" not in os.environ


_PLATFORMS = """
import pyopencl as cl
from walle.ops.backends.opencl_devices import register_installed_runtimes
register_installed_runtimes()
print(sorted(p.name for p in cl.get_platforms()))
"""


def test_ops_opencl_installed_runtime_reaches_the_loader(tmp_path) -> None:
    """The environment's Intel CPU runtime (the opencl extra, x86-64 Linux) becomes a
    platform in a fresh process, beside the others."""
    backend_or_skip("opencl")
    if not (sys.platform == "linux" and platform.machine() == "x86_64"):
        pytest.skip("the opencl extra installs Intel's CPU runtime on x86-64 Linux only")
    runtime = Path(sysconfig.get_paths()["data"]) / "lib" / "libintelocl.so"
    assert runtime.is_file(), "intel-opencl-rt is missing: the opencl extra installs it here"
    env = {k: v for k, v in os.environ.items() if k != "OCL_ICD_VENDORS"}
    env["WALLE_CACHE_DIR"] = str(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", _PLATFORMS], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "Intel(R) OpenCL" in out.stdout
