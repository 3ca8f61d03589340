"""The benchmark report's numbers against hand computations from their definitions (the
report's method text, configs.py and measure.py docstrings): the tests elsewhere check that the
columns exist and are positive, which a wrong formula passes (a mutation review found 22 such
formulas unchecked).

- configs.flops and packed_elements: GEMM FLOPs 2*rows*N*K per product, x3 for training,
  lengths count sum(lengths) rows; an (N, K) weight packs to ceil(N/32)*32*K elements.
- measure.run's GFLOP/s, % peak, % stream, % floor, the median, thread keys and the "not stable"
  warning, with the machine's ceilings and the timings replaced by fixed values: GEMM peak
  (GFLOP/s) float32 10 * threads, float64 4 * threads at the start of the run; read bandwidth
  (GB/s) of an n-byte buffer threads * (1 + n / 4096); every implementation's timed calls 1, 1
  and 4 ms (median 1 ms).
- tools/best_of_runs.py: geometric mean, min, count >= 1.0 over several rows; the median of the
  runs' own ratios over an odd number of runs; a 0 median left out.
"""
import importlib.util
import json
import os
import sys
import types

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import import_fusedrnn  # noqa: E402

import_fusedrnn()
from fusedrnn.bench import measure, report, timing  # noqa: E402
from fusedrnn.bench.configs import Config, flops, packed_elements  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def test_forward_flops_projection_stacked_bidirectional():
    # LSTM H=100, I=50, P=7, T=10, B=2, 2 layers, bidirectional (G=4, D=2)
    cfg = Config("lstm", 2, 100, input_size=50, seq=10, layers=2, bidirectional=True,
                 proj_size=7)
    rows = 10 * 2
    # layer 0 per direction: x @ W_ih^T (400 x 50) + h @ W_hh^T (400 x 7) + projection (7 x 100)
    l0 = 2 * rows * 400 * 50 + 2 * rows * 400 * 7 + 2 * rows * 7 * 100
    # layer 1: input is D*P = 14 features
    l1 = 2 * rows * 400 * 14 + 2 * rows * 400 * 7 + 2 * rows * 7 * 100
    assert flops(cfg) == 2 * (l0 + l1) == 2_608_000


def test_train_flops_are_three_forwards():
    # GRU H=8, I=8, T=3, B=2: forward 2*6*24*8 (W_ih) + 2*6*24*8 (W_hh) = 4608
    assert flops(Config("gru", 2, 8, seq=3)) == 4608
    assert flops(Config("gru", 2, 8, seq=3, kind="train")) == 3 * 4608


def test_lengths_flops_count_valid_steps_only():
    cfg = Config("gru", 4, 8, seq=10, kind="lengths")
    # per valid (step, sequence) row: 2*24*8 + 2*24*8 = 768
    lengths = np.array([10, 5, 3, 2])            # 20 valid rows of 40
    assert flops(cfg, lengths) == 768 * 20


@pytest.mark.parametrize("N, K, expected", [
    (32, 1, 32), (64, 5, 320), (96, 16, 1536),      # exact multiples: no padding
    (1, 3, 96), (33, 2, 128), (400, 100, 41600)])
def test_packed_elements_rounds_rows_up_to_32(N, K, expected):
    assert packed_elements(N, K) == expected


def _fake_run(monkeypatch, configs, threads, end_scale=1.0):
    calls = {"gemm": 0}
    n_dt = len({c.dtype for c in configs} | {"float32"})

    def gemm(dtype, n_threads, n, reps):
        calls["gemm"] += 1
        scale = 1.0 if calls["gemm"] <= n_dt * len(threads) else end_scale
        return (10.0 if str(dtype) == "float32" else 4.0) * n_threads * scale

    monkeypatch.setattr(measure, "measure_gemm_peak", gemm)
    monkeypatch.setattr(measure, "measure_read_bandwidth", lambda b, n: n * (1 + b / 4096))
    monkeypatch.setattr(measure, "cpu_busy", lambda *a, **k: 0.0)
    monkeypatch.setattr(measure, "other_load", lambda *a: 0.0)     # CI shares the CPUs
    monkeypatch.setattr(measure, "_time_rounds",
                        lambda runners, impls, *a: ({i: [1e-3, 1e-3, 4e-3] for i in impls}, {}))
    return measure.run(configs, ["fusedrnn"], threads, "tiny", quiet=True, info={})


def test_stream_floor_gflops_by_hand(monkeypatch):
    deep = Config("lstm", 1, 16, seq=4, layers=2, bidirectional=True)
    cell = Config("lstm", 1, 32, seq=1, kind="cell")
    f64 = Config("gru", 2, 8, seq=3, dtype="float64")
    res = _fake_run(monkeypatch, [deep, cell, f64], [1, 2])
    rows = {(r["config"], r["threads"]): r for r in res["rows"]}
    assert not res["warnings"]
    for th in (1, 2):
        bw = lambda nbytes: th * (1 + nbytes / 4096)      # GB/s
        # deep: W_hh (64, 16) packs to 64 x 16 floats: S = 4096 bytes; stream bound = T*L*D*S
        r = rows[(deep.name, th)]
        assert r["results"]["fusedrnn"]["median_ms"] == pytest.approx(1.0)
        stream_s = 4 * 2 * 2 * 4096 / (bw(4096) * 1e9)
        assert r["stream_bound_ms"] == pytest.approx(stream_s * 1e3)
        assert r["pct_stream"] == pytest.approx(100 * stream_s * 1e3 / 1.0)
        # floor: per layer-direction T steps of S + max(W_ih read, W_ih FLOPs at SGEMM peak);
        # W_ih: layer 0 (64, 16) -> 4096 bytes, layer 1 (64, 32) -> 8192 bytes
        peak = 10.0 * th * 1e9
        l0 = 4 * 4096 / (bw(4096) * 1e9) + max(4096 / (bw(4096) * 1e9), 2 * 4 * 64 * 16 / peak)
        l1 = 4 * 4096 / (bw(4096) * 1e9) + max(8192 / (bw(8192) * 1e9), 2 * 4 * 64 * 32 / peak)
        assert r["floor_ms"] == pytest.approx(2 * (l0 + l1) * 1e3)
        assert r["pct_floor"] == pytest.approx(100 * 2 * (l0 + l1) * 1e3 / 1.0)
        # deep FLOPs: 2*T*B*G*H*(I_k + H) per layer-direction, I_1 = 2H
        fl = 2 * (2 * 4 * 64 * (16 + 16) + 2 * 4 * 64 * (32 + 16))
        assert r["gflops"] == pytest.approx(fl / 1e-3 / 1e9)
        assert r["pct_peak"] == pytest.approx(100 * fl / 1e-3 / peak)
        # one step: S = X = 128 x 32 floats = 16384 bytes; the floor reads both at bw(S + X)
        r = rows[(cell.name, th)]
        assert r["stream_bound_ms"] == pytest.approx(16384 / (bw(16384) * 1e9) * 1e3)
        assert r["floor_ms"] == pytest.approx(32768 / (bw(32768) * 1e9) * 1e3)
        # float64 row: against the DGEMM peak (4 * threads GFLOP/s); 2*3*2*24*(8+8) FLOPs
        r = rows[(f64.name, th)]
        assert "pct_stream" not in r
        assert r["gflops"] == pytest.approx(4608 / 1e-3 / 1e9)
        assert r["pct_peak"] == pytest.approx(100 * 4608e3 / (4.0 * th * 1e9))
    # the printed table shows the same numbers, each in its own column
    text = report.format_tables(res)
    r = rows[(deep.name, 1)]
    line = next(l for l in text.splitlines() if l.startswith("| " + deep.name + " "))
    hdr = next(l for l in text.splitlines() if l.startswith("| config") and "% floor" in l)
    cols = dict(zip([c.strip() for c in hdr.strip("|").split("|")],
                    [c.strip() for c in line.strip("|").split("|")]))
    assert cols["% stream"] == f"{r['pct_stream']:.0f}%"
    assert cols["% floor"] == f"{r['pct_floor']:.0f}%"
    assert cols["% peak"] == f"{r['pct_peak']:.0f}%"


@pytest.mark.parametrize("end_scale, warned", [(0.7, True), (0.9, False), (1.25, True)])
def test_unstable_machine_warning_at_15_percent(monkeypatch, end_scale, warned):
    res = _fake_run(monkeypatch, [Config("gru", 2, 8, seq=3)], [1], end_scale)
    assert any("not stable" in w for w in res["warnings"]) == warned, res["warnings"]


def test_gemm_peak_and_read_bandwidth_formulas(monkeypatch):
    clock = iter(range(10 ** 6))
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(
        perf_counter=lambda: 0.5 * next(clock)))            # every interval: 0.5 s
    # n x n x n matmul: 2 n^3 FLOPs in 0.5 s
    assert timing.measure_gemm_peak("float32", 1, n=64, reps=2) == pytest.approx(
        2 * 64 ** 3 / 0.5 / 1e9)
    # 4096-byte buffer read k = 2**20 / 4096 = 256 times per repeat: 2**20 bytes in 0.5 s
    assert timing.measure_read_bandwidth(4096, 1, reps=3, bytes_per_rep=1 << 20) == \
        pytest.approx((1 << 20) / 0.5 / 1e9)


def test_read_bandwidth_warms_up_first(monkeypatch):
    """The timed repeats of the read come after at least `warmup` seconds of the same reads
    (other threads spinning after the GEMM peak's BLAS call cut the bandwidth 20x)."""
    import fusedrnn._kernels as kernels
    clock = iter(range(10 ** 6))
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(
        perf_counter=lambda: 0.1 * next(clock)))            # every call: 0.1 s later
    calls = []
    monkeypatch.setattr(kernels, "read_passes", lambda buf, k, n: calls.append(k))
    timing.measure_read_bandwidth(4096, 1, reps=3, bytes_per_rep=1 << 20, warmup=1.0)
    # t_end = 1.0 from the clock's 0.0; the loop reads until the clock passes it (0.1 .. 1.0:
    # 10 checks, 9 of them before t_end), then 3 timed repeats
    assert len(calls) == 1 + 9 + 3
    calls.clear()
    timing.measure_read_bandwidth(4096, 1, reps=3, bytes_per_rep=1 << 20, warmup=0.0)
    assert len(calls) == 1 + 3


def _mod():
    spec = importlib.util.spec_from_file_location(
        "best_of_runs", os.path.join(ROOT, "tools", "best_of_runs.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _row(config, fr, torch):
    return {"config": config, "kind": "forward", "threads": 1,
            "results": {"fusedrnn": {"status": "ok", "median_ms": fr},
                        "torch": {"status": "ok", "median_ms": torch}}}


def _write(tmp_path, runs):
    paths = []
    for i, rows in enumerate(runs):
        paths.append(str(tmp_path / f"r{i}.json"))
        with open(paths[-1], "w") as f:
            json.dump({"rows": rows}, f)
    return paths


def test_geomean_min_and_count_over_rows(tmp_path, capsys):
    # one run, ratios torch / fusedrnn: 1.0 and 4.0 -> geomean 2.00 (mean would be 2.50),
    # min 1.00, both >= 1.0
    paths = _write(tmp_path, [[_row("a", 2.0, 2.0), _row("b", 1.0, 4.0)]])
    _mod().main(paths)
    out = capsys.readouterr().out
    assert "forward rows       vs torch: geomean 2.00x, min 1.00x, >= 1.0 in 2/2" in out


def test_median_of_the_runs_own_ratios_odd_count(tmp_path, capsys):
    # three runs of one row, own ratios 1.0, 2.0, 6.0: median 2.00 (mean 3.00)
    paths = _write(tmp_path, [[_row("a", 1.0, 1.0)], [_row("a", 1.0, 2.0)],
                              [_row("a", 1.0, 6.0)]])
    mod = _mod()
    assert mod.run_ratios(mod.combine(paths)[("a", 1)]) == {"torch": 2.0}
    mod.main(paths)
    median = capsys.readouterr().out.split("median of the runs' own ratios:")[1]
    assert "vs torch: geomean 2.00x" in median


def test_zero_median_is_left_out(tmp_path):
    # a 0 ms torch median (a broken timing) is not the best of the runs
    paths = _write(tmp_path, [[_row("a", 1.0, 0.0)], [_row("a", 1.0, 3.0)]])
    entry = _mod().combine(paths)[("a", 1)]
    assert entry["best"] == {"fusedrnn": 1.0, "torch": 3.0}
    assert entry["run_ratios"] == {"torch": [3.0]}
