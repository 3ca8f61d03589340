"""Running the benchmark: verify, then time, every implementation on every configuration and
thread count, and set fusedrnn's times against the machine's ceilings measured in the same run.

- Outputs verified before timing: every implementation is run once and compared with a float64
  ground truth (``peers.reference``) on every thread count. One that disagrees is reported as
  MISMATCH and not timed.
- Timed in rounds: the budget of each implementation is cut into ``rounds`` blocks (the mode's,
  3; ``--rounds``), and each round times every implementation in its own block, the order
  rotating from round to round; a block times at least one call.  A row's median is over all
  its timed calls.  So a slow spell of the host (another guest, a slowed core: seconds, on the
  2-core VMs measured here) falls on every implementation of the row alike instead of on the
  one whose single block it hit, and the ratios of one run hold.  A row of long calls (100 ms
  and more) gets one call per round: its median is over ``rounds`` calls, and on a noisy host
  more rounds steady it (session 14, LSTM B64 H512 on 2 threads against PyTorch: 0.64x and
  1.04x in two runs of 3 rounds, 1.06x and 1.14x in two of 11).
- Before each block: a pause (the mode's ``pause``, 0.2 s by default), then one untimed call.
  Worker threads left spinning by the library that ran before take the cores from the next
  one: measured on 2 cores (LSTM B16 H256, 2 threads), fusedrnn and ONNX Runtime ran 1.9-2.4x
  slower right after NumPy's OpenBLAS (for 50-100 ms), fusedrnn 2x slower within 20 ms of
  ONNX Runtime, ONNX Runtime 1.1-1.8x slower after PyTorch or fusedrnn (its first call, up to
  100 ms); with 0.2 s none was more than 1.11x.
- GFLOP/s and % peak: FLOPs are counted from the GEMMs only (``configs.flops``; a ``lengths``
  row counts its valid steps only) and set against the SGEMM (DGEMM for float64 rows) peak of
  NumPy's BLAS, same threads.
- Variable lengths: the row stores its lengths, their valid fraction sum(lengths) / (T*B) and
  ``ideal_speedup`` = 1 / that fraction, the speed-up of the lengths run over fusedrnn's own
  padded run if padding cost nothing (``speedup["padded"]`` is the one measured).
- % stream (batch-1 inference rows): at batch 1 a step is a matrix-vector product, so its
  floor is reading the packed recurrent weights once per step. Stream-bound time =
  T * sum over layers and directions of packed bytes (``configs.recurrent_bytes``) / the read
  bandwidth of a streaming loop over a buffer of that size at the same thread count
  (``timing.measure_read_bandwidth``); % stream = stream-bound time / fusedrnn's time * 100.
- % floor (the same rows): the least time the row can take on this machine (a roofline), so
  100% is the best possible: per layer and direction, the input projection (reading the packed
  W_ih once at the bandwidth of its size, or its FLOPs 2*T*B*G*H*I at the GEMM peak, whichever
  is longer) plus T steps of reading the packed recurrent weights (the stream bound); a
  one-step row (a cell, a stream step, T = 1) reads W_ih and W_hh together, at the bandwidth
  of their sum.  % floor = floor time / fusedrnn's time * 100.
- Both ceilings are measured at the start and at the end of the run; the better of the two
  counts (the machine's real capability), and a peak that moved is reported as a warning.
"""

from __future__ import annotations

import dataclasses
import time
from collections import OrderedDict
from typing import List, Optional, Sequence

import numpy as np

from .cases import compare, make_case
from .configs import (MODES, Config, floor_sizes, flops, has_stream_bound, input_bytes,
                      layer_input, recurrent_bytes)
from .machine import machine_info
from .peers import PeerUnavailable, builders_for, chosen, reference
from .timing import (cpu_busy, cpu_sample, log, measure_gemm_peak, measure_read_bandwidth,
                     other_load, pinned_threads, time_calls, wait_quiet)

BUSY_THRESHOLD = 0.15   # a row timed while other processes used more of the CPUs is flagged
MIN_SAMPLE = 1e-3       # calls shorter than this (seconds) are timed in groups


def contended(row: dict) -> bool:
    return (row.get("other_load") or 0.0) > BUSY_THRESHOLD


def run_case(cfg: Config, impls: Sequence[str], threads: Sequence[int], budget: float,
             min_reps: int = 3, max_reps: int = 50, seed: int = 0,
             quiet: bool = False, pause: float = MODES["default"]["pause"],
             rounds: int = MODES["default"]["rounds"]) -> List[dict]:
    """Verify and time ``impls`` on ``cfg`` at each thread count. One row dict per count."""
    builders = builders_for(cfg)
    impls = chosen(builders, impls)
    case = make_case(cfg, seed)
    rows = [dict(config=cfg.name, params=cfg.as_dict(), kind=cfg.kind, threads=n,
                 flops=flops(cfg, case.lengths), results=OrderedDict()) for n in threads]
    if case.lengths is not None:
        valid = float(np.sum(case.lengths)) / (cfg.seq * cfg.batch)
        for row in rows:
            row.update(lengths=case.lengths.tolist(), valid_fraction=valid,
                       ideal_speedup=1.0 / valid)
    try:
        refs = {False: reference(case)}
        if cfg.kind == "stream":
            # a stream's second call (Runner.carries) continues from the first's state: its
            # reference starts from the reference's own final state (a stream that does not
            # carry its state passes the first call's check and fails this one; the peers of a
            # stream row are cells, called from the case's state every time)
            ref1 = refs[False]
            refs["next"] = reference(dataclasses.replace(
                case, h0=ref1["h_n"].astype(case.h0.dtype),
                c0=None if case.c0 is None else ref1["c_n"].astype(case.c0.dtype)))
    except PeerUnavailable as e:
        for row in rows:
            row["skipped"] = f"no float64 reference for this row: {e}"
        return rows
    for row, n in zip(rows, threads):
        res = row["results"]
        runners = OrderedDict()
        for impl in impls:
            try:
                runners[impl] = builders[impl](case, n)
            except PeerUnavailable as e:
                res[impl] = dict(status="skipped", note=str(e))
            except Exception as e:
                res[impl] = dict(status="error", note=f"building: {type(e).__name__}: {e}")
        s0 = cpu_sample()
        with pinned_threads(n):
            errs = OrderedDict()
            for impl, runner in runners.items():
                try:
                    got = runner.canonical(runner())
                except Exception as e:
                    res[impl] = dict(status="error", note=f"{type(e).__name__}: {e}")
                    continue
                if runner.full_length not in refs:
                    refs[True] = reference(case.full_length())
                ok, err, msg = compare(refs[runner.full_length], got, cfg)
                del got
                if ok and runner.carries:
                    try:
                        ok, err2, msg = compare(refs["next"], runner.canonical(runner()), cfg)
                    except Exception as e:
                        res[impl] = dict(status="error", note=f"{type(e).__name__}: {e}")
                        continue
                    err, msg = max(err, err2), msg and f"second call: {msg}"
                if not ok:
                    res[impl] = dict(status="mismatch", max_err=err, note=msg)
                    log(f"    {impl}: MISMATCH {msg}", quiet)
                    continue
                errs[impl] = err
            times, failed = _time_rounds(runners, list(errs), budget, min_reps, max_reps,
                                         pause, rounds)
            for impl, err in errs.items():
                if impl in failed:
                    res[impl] = dict(status="error", note=f"while timed: {failed[impl]}")
                    log(f"    {impl}: ERROR while timed: {failed[impl]}", quiet)
                    continue
                res[impl] = dict(status="ok", median_ms=1e3 * float(np.median(times[impl])),
                                 times_ms=[1e3 * t for t in times[impl]], max_err=err)
        for impl in impls:              # the implementations' order, whatever their status
            if impl in res:
                res.move_to_end(impl)
        row["other_load"] = other_load(s0, cpu_sample())
        del runners
        _summarise(row)
        log(f"    threads={n}: " + ", ".join(
            f"{i} {r['median_ms']:.3f} ms" if r.get("status") == "ok" else f"{i} {r['status']}"
            for i, r in res.items())
            + (f"  [other processes: {100 * row['other_load']:.0f}% of the CPUs]"
               if contended(row) else ""), quiet)
    return rows


def _time_rounds(runners, impls: List[str], budget: float, min_reps: int, max_reps: int,
                 pause: float, rounds: int) -> dict:
    """(seconds per call of each of ``impls`` (keys of ``runners``), {impl: why} of those whose
    call raised, which are timed no further): ``rounds`` rounds, each with a block of every
    implementation (1 / rounds of its budget and sample counts, at least one sample; before it,
    ``pause`` seconds and one untimed call), the order rotating by one per round."""
    times = {impl: [] for impl in impls}
    failed = {}
    per_min, per_max = -(-min_reps // rounds), max(1, -(-max_reps // rounds))
    for r in range(rounds if impls else 0):
        k = r % len(impls)
        for impl in impls[k:] + impls[:k]:
            if impl in failed:
                continue
            time.sleep(pause)
            try:
                runners[impl]()
                times[impl] += time_calls(runners[impl], budget / rounds, per_min, per_max,
                                          MIN_SAMPLE)
            except Exception as e:      # one implementation's failure ends only its row
                failed[impl] = f"{type(e).__name__}: {e}"
    return times, failed


def _summarise(row: dict):
    res = row["results"]
    fr = res.get("fusedrnn", {})
    row["speedup"] = OrderedDict()
    if fr.get("status") == "ok":
        for impl, r in res.items():
            if impl != "fusedrnn" and r.get("status") == "ok":
                row["speedup"][impl] = r["median_ms"] / fr["median_ms"]
        row["gflops"] = row["flops"] / (fr["median_ms"] * 1e-3) / 1e9


def _ceilings(threads, dtypes, stream_sizes, m, quiet):
    """GEMM peak (GFLOP/s) by thread count and dtype, read bandwidth (GB/s) by thread count and
    buffer size (bytes); keys are strings (they go to JSON as they are)."""
    gemm, stream = OrderedDict(), OrderedDict()
    for n in threads:
        gemm[str(n)] = OrderedDict(
            (dt, measure_gemm_peak(np.dtype(dt), n, m["gemm_n"], m["gemm_reps"]))
            for dt in dtypes)
        stream[str(n)] = OrderedDict(
            (str(b), measure_read_bandwidth(b, n)) for b in stream_sizes)
        log(f"at {n} thread(s): " + ", ".join(
            f"{'SGEMM' if dt == 'float32' else 'DGEMM'} {g:.1f} GFLOP/s"
            for dt, g in gemm[str(n)].items())
            + "".join(f", read {int(b) >> 10} KiB {g:.1f} GB/s"
                      for b, g in stream[str(n)].items()), quiet)
    return gemm, stream


def _best(a: dict, b: dict) -> dict:
    """Per-key maximum of two {threads: {key: value}} ceilings."""
    return OrderedDict((n, OrderedDict((k, max(v, b[n][k])) for k, v in a[n].items()))
                       for n in a)


def _stream_bound_ms(cfg: Config, bandwidth_gbs: float) -> float:
    """Time (ms) to read every layer-direction's packed recurrent weights once per step."""
    nbytes = cfg.seq * cfg.layers * cfg.directions * recurrent_bytes(cfg)
    return nbytes / (bandwidth_gbs * 1e9) * 1e3


def _floor_ms(cfg: Config, bandwidth, peak_gflops: float) -> float:
    """The row's floor (ms; see the module docstring); bandwidth(nbytes) -> GB/s measured at
    that buffer size."""
    S, T, B = recurrent_bytes(cfg), cfg.seq, cfg.batch
    total = 0.0
    for k in range(cfg.layers):
        X = input_bytes(cfg, k)
        if T == 1:
            t = (S + X) / (bandwidth(S + X) * 1e9)
        else:
            proj = 2.0 * T * B * cfg.gates * cfg.hidden * layer_input(cfg, k) / (peak_gflops * 1e9)
            t = T * S / (bandwidth(S) * 1e9) + max(X / (bandwidth(X) * 1e9), proj)
        total += cfg.directions * t
    return total * 1e3


def run(configs: Sequence[Config], impls: Sequence[str], threads: Sequence[int], mode: str,
        seed: int = 0, budget: Optional[float] = None, quiet: bool = False,
        info: Optional[dict] = None, wait: float = 0.0, attempts: int = 3,
        rounds: Optional[int] = None) -> dict:
    """Run everything; returns the results dict written to results.json.

    ``budget``, ``rounds``: instead of the mode's (seconds per implementation and
    configuration; timing rounds, see the module docstring).

    ``wait`` > 0: before each config wait up to ``wait`` seconds for a quiet machine, and run a
    config again (up to ``attempts`` times in all) when other processes used more than
    BUSY_THRESHOLD of the CPUs while it was timed. Rows still contended are flagged either way.
    """
    t_start = time.perf_counter()
    m = dict(MODES[mode])
    if budget is not None:
        m["budget"] = budget
    if rounds is not None:
        if not (isinstance(rounds, int) and rounds >= 1):
            raise ValueError(f"rounds must be an integer >= 1, got {rounds!r}")
        m["rounds"] = rounds
    info = info if info is not None else machine_info()
    dtypes = sorted({c.dtype for c in configs} | {"float32"})
    sizes = sorted({n for c in configs if has_stream_bound(c)
                    for n in [recurrent_bytes(c)] + floor_sizes(c)})
    peaks, stream = _ceilings(threads, dtypes, sizes, m, quiet)
    busy_start = cpu_busy()
    rows, row_cfgs = [], []
    for i, cfg in enumerate(configs):
        log(f"[{i + 1}/{len(configs)}] {cfg.name}  ({flops(cfg) / 1e9:.2g} GFLOP)", quiet)
        for attempt in range(1, (attempts if wait > 0 else 1) + 1):
            if wait > 0:
                wait_quiet(wait, quiet=quiet)
            case_rows = run_case(cfg, impls, threads, m["budget"], m["min_reps"],
                                 m["max_reps"], seed, quiet, m["pause"], m["rounds"])
            for r in case_rows:
                r["attempt"] = attempt
            if not any(contended(r) for r in case_rows):
                break
            if wait > 0 and attempt < attempts:
                log("    other processes were busy: running this config again", quiet)
        rows.extend(case_rows)
        row_cfgs.extend([cfg] * len(case_rows))
    # Was the machine quiet? Other processes' CPU use around the run, and the ceilings again.
    busy_end = cpu_busy()
    peaks_end, stream_end = _ceilings(threads, dtypes, sizes, m, quiet=True)
    best, best_stream = _best(peaks, peaks_end), _best(stream, stream_end)
    for cfg, row in zip(row_cfgs, rows):
        n = str(row["threads"])
        peak = best[n].get(cfg.dtype)
        if row.get("gflops") and peak:
            row["pct_peak"] = 100.0 * row["gflops"] / peak
        fr = row["results"].get("fusedrnn", {})
        if has_stream_bound(cfg) and fr.get("status") == "ok":
            bandwidth = best_stream[n][str(recurrent_bytes(cfg))]
            row["stream_bound_ms"] = _stream_bound_ms(cfg, bandwidth)
            row["pct_stream"] = 100.0 * row["stream_bound_ms"] / fr["median_ms"]
            row["floor_ms"] = _floor_ms(cfg, lambda b: best_stream[n][str(b)], peak)
            row["pct_floor"] = 100.0 * row["floor_ms"] / fr["median_ms"]
    warnings_ = []
    for label, b in (("start", busy_start), ("end", busy_end)):
        if b is not None and b > 0.1:
            warnings_.append(f"other processes used {100 * b:.0f}% of the CPUs at the {label} "
                             f"of the run: timings (above all multi-threaded) are unreliable")
    flagged = [r for r in rows if contended(r)]
    if flagged:
        warnings_.append(f"{len(flagged)} of {len(rows)} rows were timed while other processes "
                         f"used more than {100 * BUSY_THRESHOLD:.0f}% of the CPUs (marked (!))")
    for n in threads:
        a, b = peaks[str(n)]["float32"], peaks_end[str(n)]["float32"]
        if abs(b - a) > 0.15 * max(a, b):
            warnings_.append(f"SGEMM peak at {n} thread(s) moved from {a:.0f} to {b:.0f} "
                             f"GFLOP/s during the run: the machine's speed was not stable")
    for w in warnings_:
        log("WARNING: " + w, quiet)
    return OrderedDict(
        version=2, mode=mode, impls=list(impls), threads=list(threads), seed=seed,
        timing=dict(m, min_sample_s=MIN_SAMPLE), machine=info,
        gemm_peak_gflops=best, gemm_peak_gflops_start=peaks, gemm_peak_gflops_end=peaks_end,
        stream_read_gbs=best_stream, stream_read_gbs_start=stream,
        stream_read_gbs_end=stream_end,
        cpu_busy_other=dict(start=busy_start, end=busy_end), warnings=warnings_, rows=rows,
        elapsed_s=time.perf_counter() - t_start)
