"""Clocks and machine bounds: thread pinning, median timing, the quiet-machine check, and the two
ceilings a row is set against (the GEMM peak and the streaming read bandwidth).

- Same threads: each thread count is pinned for every implementation at once:
  ``torch.set_num_threads``, ONNX Runtime ``intra_op_num_threads`` (``inter_op_num_threads=1``,
  fixed when its session is built), threadpoolctl for BLAS and OpenMP (NumPy, fusedrnn), and
  ``fusedrnn.set_num_threads``.
- Median of several calls; the number of calls follows from a time budget per implementation
  (at least 3). Calls shorter than a millisecond are timed in groups (``time_calls``).
- Other processes' CPU use is sampled from /proc/stat minus this process's own CPU time.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import sys
import time
from typing import Callable, List, Optional

import numpy as np


def log(msg: str, quiet: bool = False):
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def parse_threads(s: str) -> List[int]:
    """'1,2' / '1,all' -> thread counts (all = the cores this process may use), no repeats."""
    out = []
    for tok in s.split(","):
        tok = tok.strip().lower()
        if not tok:
            continue
        n = available_cores() if tok in ("all", "max") else int(tok)
        if n < 1:
            raise ValueError(f"thread counts must be >= 1, got {tok}")
        if n not in out:
            out.append(n)
    if not out:
        raise ValueError("--threads needs at least one count, e.g. 1,2")
    return out


@contextlib.contextmanager
def pinned_threads(n: int):
    """Pin PyTorch, BLAS/OpenMP (threadpoolctl) and fusedrnn to ``n`` threads.

    Only libraries already imported are affected: build the runners first, then enter.
    ONNX Runtime's count is fixed when its session is built (``build_ort(case, n)``).
    """
    from threadpoolctl import threadpool_limits
    torch = sys.modules.get("torch")
    if torch is not None and not hasattr(torch, "set_num_threads"):
        torch = None
    fr = sys.modules.get("fusedrnn")
    # both read before either is set (torch's count is the OpenMP runtime's, which fusedrnn's
    # default follows); fusedrnn's back to what was asked of it (None: OpenMP's default), not
    # to the count that was in effect, so that threadpoolctl limits it again afterwards
    prev_torch = torch.get_num_threads() if torch is not None else None
    prev_fr = fr._threads._requested if fr is not None else None
    if torch is not None:
        torch.set_num_threads(n)
    if fr is not None:
        fr.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(prev_torch)
        if fr is not None:
            fr.set_num_threads(prev_fr)


def time_calls(fn: Callable, budget: float, min_reps: int = 3, max_reps: int = 50,
               min_sample: float = 0.0) -> List[float]:
    """Wall times (seconds per call) of repeated ``fn()`` calls: about ``budget`` seconds in
    all, at least ``min_reps`` and at most ``max_reps`` samples. Call ``fn`` once before
    (warm-up).

    ``min_sample`` > 0: a call shorter than that is timed in groups of k calls (k calls last
    about ``min_sample``) and a sample is the group's time / k, so the clock's overhead and
    resolution stay small against what is measured (timeit's way).
    """
    gc_was = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        fn()
        first = time.perf_counter() - t0
        k = 1
        if first < min_sample:
            t0 = time.perf_counter()
            fn()
            k = max(1, math.ceil(min_sample / max(time.perf_counter() - t0, 1e-9)))
        n = max(min_reps, min(max_reps, int(budget / max(first * k, 1e-9))))
        times = [first] if k == 1 else []
        while len(times) < n:
            t0 = time.perf_counter()
            for _ in range(k):
                fn()
            times.append((time.perf_counter() - t0) / k)
    finally:
        if gc_was:
            gc.enable()
    return times


def measure_gemm_peak(dtype, threads: int, n: int = 2048, reps: int = 5) -> float:
    """Best GFLOP/s of an n x n x n NumPy matmul (SGEMM / DGEMM) at ``threads`` threads."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    c = np.empty((n, n), dtype=dtype)
    with pinned_threads(threads):
        np.matmul(a, b, out=c)
        best = math.inf
        for _ in range(reps):
            t0 = time.perf_counter()
            np.matmul(a, b, out=c)
            best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e9


def measure_read_bandwidth(nbytes: int, threads: int, reps: int = 7,
                           bytes_per_rep: int = 64 << 20, warmup: float = 0.25) -> float:
    """Read bandwidth (GB/s) of a plain streaming loop over a buffer of ``nbytes`` bytes with
    ``threads`` threads: the median over ``reps`` repeats.

    A repeat is one call of ``fusedrnn._kernels.read_passes``: a compiled loop (OR of 32-bit
    words, vectorised by the compiler) that reads the buffer ``k`` times over, in one OpenMP
    region where thread t always reads the t-th share, all at the same time and without the
    GIL; k is chosen so a repeat reads about ``bytes_per_rep`` bytes, and the data read stays
    ``nbytes``, so it is as cache-resident as a weight of that size.  (NumPy's reductions from
    Python threads, used before, hold the GIL: "2 threads" read one after the other.)
    The repeats follow at least ``warmup`` seconds of the same reads: the GEMM peak is measured
    just before, and OpenBLAS's threads go on spinning for a while after a call, on the cores
    the read needs (on our 2-core guest a 1 MiB read on 2 threads right after a 2048^2 matmul
    gave 8.4 GB/s in 2 tries of 3, and a "% stream" of 1172% in one report, against 185-224
    GB/s in every try after a 0.25 s warm-up).
    """
    from .. import _kernels
    n = max(threads, nbytes // 4)
    buf = np.ones(n, dtype=np.uint32)
    k = max(1, -(-bytes_per_rep // (4 * n)))
    t_end = time.perf_counter() + warmup
    _kernels.read_passes(buf, k, threads)          # warm-up: caches, the OpenMP threads
    while time.perf_counter() < t_end:             # ... and other threads' spinning
        _kernels.read_passes(buf, k, threads)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        _kernels.read_passes(buf, k, threads)
        times.append(time.perf_counter() - t0)
    return 4 * n * k / float(np.median(times)) / 1e9


# --------------------------------------------------------------------------------------------
# Is the machine quiet?
# --------------------------------------------------------------------------------------------

def cpu_sample():
    """(all CPUs' jiffies, idle jiffies, this process's CPU seconds), or None without /proc."""
    try:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
        own = os.times()
        return sum(vals[:8]), vals[3] + vals[4], own.user + own.system
    except (OSError, ValueError, IndexError):
        return None


def other_load(s0, s1) -> Optional[float]:
    """Fraction (0..1) of all CPUs' time used by *other* processes between two ``cpu_sample``s:
    /proc/stat busy time minus this process's own CPU time (all its threads)."""
    if s0 is None or s1 is None or s1[0] <= s0[0]:
        return None
    try:
        hz = os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError, AttributeError):
        return None
    busy = (s1[0] - s0[0]) - (s1[1] - s0[1]) - (s1[2] - s0[2]) * hz
    return min(1.0, max(0.0, busy / (s1[0] - s0[0])))


def cpu_busy(seconds: float = 0.5) -> Optional[float]:
    """Load of other processes over ``seconds`` while this process sleeps (see other_load)."""
    time.sleep(0.2)                     # let thread pools of the last timed library go idle
    s0 = cpu_sample()
    time.sleep(seconds)
    return other_load(s0, cpu_sample())


def wait_quiet(max_wait: float, threshold: float = 0.05, quiet: bool = False) -> Optional[float]:
    """Wait (at most ``max_wait`` seconds) until other processes use < ``threshold`` of the
    CPUs over one second. Returns the last load measured."""
    t_end = time.monotonic() + max_wait
    load = cpu_busy(1.0)
    told = False
    while load is not None and load >= threshold and time.monotonic() < t_end:
        if not told:
            log(f"    waiting for a quiet machine (other processes: {100 * load:.0f}% of the "
                f"CPUs; up to {max_wait:.0f} s)", quiet)
            told = True
        load = cpu_busy(1.0)
    return load
