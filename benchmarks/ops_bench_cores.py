"""ops_bench's tables at every instruction-set level in a few minutes on a many-core machine:
each row in a process of its own, pinned to a physical core of its own, one row per core at
a time.

Run: ``.venv/bin/python benchmarks/ops_bench_cores.py`` (prints the tables and writes
benchmarks/results/ops_bench_cores.md). ``ops_bench.py --isa-compare`` runs the same rows one
after another on one core: about 20 minutes with the real CNNs at two levels, more than a
lent machine's session allows. Here the rows of the CPU's best level and of each lower one
(the real CNNs at AVX-512 and AVX2, the small rows down to SSE) run side by side, each as
``ops_bench.py --isa-table --only ROW`` with ``WALLE_OPS_ISA`` (and numpy's BLAS and SIMD
loops) lowered for its level; ``--ort-avx2`` adds the AVX2 rows against onnxruntime's own
AVX2 code (benchmarks/ort_avx2.py). Each row still times its peers in interleaved slices on
its one core, so its ratios compare like with like; its absolute times carry the load of
the rows beside it (a shared last-level cache and memory), and the same row run alone may
read a few percent faster for every peer. Core 0 is left to the system.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import ops_bench

from walle.ops.backends import cython_isa, numpy_isa

RESULTS = Path(__file__).parent / "results" / "ops_bench_cores.md"
BENCH = Path(__file__).parent / "ops_bench.py"
# a row's rough cost, so that the longest start first (the rest fill the cores around them)
_COST = {"VGG": 9, "ResNet-50, batch 8": 9, "DenseNet": 5, "ZFNet": 4, "Inception": 4}


@dataclass(frozen=True)
class _Job:
    """One process: a section's row (or all its small rows) at a level."""

    section: str
    level: str
    flags: tuple[str, ...]
    cost: int
    ort: Path | None = None


@dataclass
class _Section:
    """A table of the output: its header and its rows in ops_bench's order."""

    header: list[str] = field(default_factory=list)
    rows: dict[int, list[str]] = field(default_factory=dict)


def physical_cores() -> list[int]:
    """One logical CPU of each physical core this process may run on, lowest first (the
    kernel's topology files; else /proc/cpuinfo's core ids; else every CPU)."""
    by_core: dict[tuple[str, str], int] = {}
    ids = _cpuinfo_core_ids()
    for cpu in sorted(os.sched_getaffinity(0)):
        base = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            key = ((base / "physical_package_id").read_text(), (base / "core_id").read_text())
        except OSError:
            key = ids.get(cpu, ("?", str(cpu)))
        by_core.setdefault(key, cpu)
    return sorted(by_core.values())


def _cpuinfo_core_ids() -> dict[int, tuple[str, str]]:
    """(physical id, core id) per processor in /proc/cpuinfo (empty where it has none)."""
    ids: dict[int, tuple[str, str]] = {}
    try:
        blocks = Path("/proc/cpuinfo").read_text().split("\n\n")
    except OSError:
        return ids
    for block in blocks:
        fields = dict(
            (k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in block.splitlines())
        )
        if "processor" in fields and "core id" in fields:
            ids[int(fields["processor"])] = (fields.get("physical id", "?"), fields["core id"])
    return ids


def _jobs(levels: list[str], ort: Path | None) -> list[_Job]:
    """Every process to run, costliest first."""
    model_rows = [
        f"{label}, batch {batch}"
        for label, name in ops_bench.LIGHT_MODELS
        for batch in (1, 8)
        if batch == 1 or name in ops_bench.BATCH8
    ]
    jobs = []
    for level in levels:
        jobs.append(_Job(f"{level} build, small rows", level, ("--no-models",), 6))
        if level == "sse":
            continue  # the real CNNs at the baseline level: a table nobody reads, 10 minutes
        for row in model_rows:
            cost = max([c for k, c in _COST.items() if k in row] or [2])
            jobs.append(
                _Job(f"{level} build, real CNNs", level, ("--models", f"--only={row}"), cost)
            )
    if ort is not None:
        against = "avx2 build against onnxruntime's AVX2 code"
        jobs.append(_Job(f"{against}, small rows", "avx2", ("--no-models",), 6, ort))
        for row in model_rows:
            cost = max([c for k, c in _COST.items() if k in row] or [2])
            flags = ("--models", f"--only={row}")
            jobs.append(_Job(f"{against}, real CNNs", "avx2", flags, cost, ort))
    return sorted(jobs, key=lambda job: -job.cost)


def _environ(job: _Job, cache: Path) -> dict[str, str]:
    """The job's process environment: its level forced where below the CPU's best."""
    env = {**os.environ, "WALLE_CACHE_DIR": str(cache)}
    if job.level != cython_isa.best_level():
        env.update({cython_isa.ENV: job.level, **numpy_isa.environ(job.level)})
    if job.ort is not None:
        import ort_avx2

        env = ort_avx2.environ(job.ort, env)
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--levels",
        nargs="*",
        choices=sorted(cython_isa.LEVELS),
        help="levels to run (default: this CPU's best and every lower one)",
    )
    parser.add_argument("--ort-avx2", action="store_true", help="also AVX2 against ort's AVX2")
    parser.add_argument("--jobs", type=int, default=0, help="processes at once (default: cores)")
    parser.add_argument(
        "--deadline", type=float, default=0, help="seconds; rows not started by then are left out"
    )
    args = parser.parse_args()
    best = cython_isa.LEVELS[cython_isa.best_level()]
    levels = args.levels or [lv for lv, n in cython_isa.LEVELS.items() if n <= best]
    levels.sort(key=lambda lv: -cython_isa.LEVELS[lv])
    ort = None
    if args.ort_avx2:
        ort = ops_bench._ort_avx2_copy()
    cores = [c for c in physical_cores() if c != 0] or physical_cores()
    cores = cores[: args.jobs or len(cores)]
    jobs = _jobs(levels, ort)
    cpu, _ = ops_bench._cpu()
    print(f"CPU: {cpu}\n{len(jobs)} processes on cores {cores}", flush=True)
    deadline = time.monotonic() + args.deadline if args.deadline else float("inf")
    free, lock = list(cores), threading.Lock()
    outputs: dict[_Job, str] = {}

    def run(job: _Job) -> None:
        if time.monotonic() > deadline:
            print(f"left out (deadline): {job.section} {job.flags}", flush=True)
            return
        with lock:
            core = free.pop()
        try:
            with tempfile.TemporaryDirectory(prefix="walle-cores-") as cache:
                command = ["taskset", "-c", str(core), sys.executable, str(BENCH)]
                done = subprocess.run(
                    [*command, "--isa-table", *job.flags],
                    env=_environ(job, Path(cache)),
                    capture_output=True,
                    text=True,
                )
            outputs[job] = done.stdout
            rows = [ln for ln in done.stdout.splitlines() if ln.startswith("| ") and " | " in ln]
            print(f"{job.section}: " + " ".join(job.flags), *rows[2:], sep="\n", flush=True)
            if done.returncode:
                print(done.stderr[-2000:], file=sys.stderr, flush=True)
        finally:
            with lock:
                free.append(core)

    with concurrent.futures.ThreadPoolExecutor(len(cores)) as pool:
        list(pool.map(run, jobs))
    _write(cpu, levels, jobs, outputs, len(cores), ort is not None)


def _write(
    cpu: str, levels: list[str], jobs: list[_Job], outputs: dict[_Job, str], n: int, ort: bool
) -> None:
    """The tables, one per section, rows in ops_bench's order, to RESULTS."""
    sections: dict[str, _Section] = {}
    order = {label: i for i, (label, _) in enumerate(ops_bench.LIGHT_MODELS)}
    for job in jobs:
        section = sections.setdefault(job.section, _Section())
        lines = [ln for ln in outputs.get(job, "").splitlines() if ln.startswith("|")]
        section.header = section.header or lines[:2]
        body = lines[2:]
        if job.flags[0] == "--models" and body:
            label = job.flags[1].removeprefix("--only=").rsplit(", batch ", 1)
            section.rows[order[label[0]] + (100 if label[1] != "1" else 0)] = body
        else:
            section.rows[-1] = body
    flags = " --levels " + " ".join(levels) + (" --ort-avx2" if ort else "")
    text = [
        "# walle.ops benchmark, a row per core",
        "",
        f"Command: `.venv/bin/python benchmarks/ops_bench_cores.py{flags}` ({n} rows at a time, "
        "each on a core of its own; ratios = peer / walle within a row's process).",
        "",
        f"CPU: {cpu}.",
    ]
    # by level, widest first; at a level the small rows, the CNNs, then against ort's AVX2
    for title in sorted(
        sections, key=lambda t: (levels.index(t.split()[0]), "against" in t, "CNNs" in t)
    ):
        section = sections[title]
        text += ["", f"## {title}", "", *section.header]
        for key in sorted(section.rows):
            text += section.rows[key]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(text) + "\n")
    print("\n".join(text), flush=True)


if __name__ == "__main__":
    main()
