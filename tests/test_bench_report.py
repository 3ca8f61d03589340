"""The benchmark report (``python -m fusedrnn.bench``) runs end to end, and stays out of the way.

- ``--tiny`` in a fresh interpreter, with whichever peers are installed: results.json has the
  latency rows (cell steps, the fixed cost of a call), the "% stream" of batch-1 rows, the read
  bandwidth and the SIMD path, and the variable-lengths rows (their lengths, fusedrnn's padded
  run, "padded / lengths" next to "1 / valid fraction"); without a chart asked for, matplotlib
  is never imported.
- The variable-lengths peers (PyTorch's packed path, ONNX Runtime's ``sequence_lens``, the NumPy
  reference) agree with fusedrnn's ``lengths=`` and with each other, padding zeroed.
- ``import fusedrnn`` loads neither the bench subpackage nor any heavy peer.
No timing is asserted (speed is a benchmark, not a test).
"""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import import_fusedrnn  # noqa: E402

import_fusedrnn()

HEAVY = ("torch", "onnx", "onnxruntime", "matplotlib")


def _run_python(code, timeout=120):
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


def test_import_fusedrnn_loads_no_bench_code():
    out = _run_python(
        "import sys, fusedrnn\n"
        f"print(sorted(m for m in sys.modules if m.startswith('fusedrnn.bench') "
        f"or m.split('.')[0] in {HEAVY!r}))\n")
    assert out.strip() == "[]", f"import fusedrnn loaded {out.strip()}"


def test_tiny_report_has_latency_rows_and_stream_column(tmp_path):
    out = _run_python(
        "import sys\n"
        "from fusedrnn.bench.__main__ import main\n"
        f"rc = main(['--tiny', '--threads', '1', '--out', {str(tmp_path)!r}, '--no-chart', "
        "'--quiet'])\n"
        "assert rc == 0, rc\n"
        "assert 'matplotlib' not in sys.modules, 'the report imported matplotlib'\n")
    assert "fusedrnn SIMD path: " in out
    assert "% stream" in out and "% floor" in out and "Latency" in out
    assert "Variable lengths" in out and "padded / lengths" in out and "1 / valid fraction" in out
    with open(tmp_path / "results.json") as f:
        res = json.load(f)
    assert res["machine"]["isa"] in ("avx512", "avx2", "scalar", "unknown")
    bandwidths = res["stream_read_gbs"]["1"]
    assert bandwidths and all(g > 0 for g in bandwidths.values())

    rows = res["rows"]
    kinds = {(r["kind"], r["params"]["cell"]) for r in rows}
    assert {("cell", "lstm"), ("cell", "gru"), ("stream", "lstm"), ("call", "lstm"),
            ("forward", "lstm"), ("train", "lstm"), ("lengths", "lstm"),
            ("lengths", "gru")} <= kinds
    for r in rows:
        if r.get("skipped"):        # a training row without PyTorch has no reference
            assert r["kind"] == "train", r
            continue
        fr = r["results"]["fusedrnn"]
        assert fr["status"] == "ok", (r["config"], fr)
        assert "numpy" not in r["results"] or r["kind"] in ("forward", "lengths")
        for impl, peer in r["results"].items():
            assert peer["status"] in ("ok", "skipped"), (r["config"], impl, peer)
        stream_row = r["params"]["batch"] == 1 and r["kind"] != "train"
        assert ("pct_stream" in r) == stream_row, r["config"]
        assert ("pct_floor" in r) == stream_row, r["config"]
        if stream_row:
            assert r["stream_bound_ms"] > 0 and r["pct_stream"] > 0
            assert r["floor_ms"] > 0 and r["pct_floor"] > 0
    cell = next(r for r in rows if r["kind"] == "cell")
    assert cell["params"]["seq"] == 1 and cell["params"]["layers"] == 1

    for r in (r for r in rows if r["kind"] == "lengths"):
        T, B = r["params"]["seq"], r["params"]["batch"]
        lengths = np.array(r["lengths"])
        assert lengths.shape == (B,) and lengths.min() >= T // 4 and lengths.max() <= T
        assert r["ideal_speedup"] == pytest.approx(T * B / lengths.sum())
        res = r["results"]
        assert list(res)[:2] == ["fusedrnn", "padded"], list(res)
        assert res["padded"]["status"] == "ok", res["padded"]
        assert r["speedup"]["padded"] == pytest.approx(
            res["padded"]["median_ms"] / res["fusedrnn"]["median_ms"])
        for impl, module in (("numpy", "numpy"), ("torch", "torch"), ("ort", "onnxruntime")):
            if importlib.util.find_spec(module) is not None:
                assert res[impl]["status"] == "ok", (r["config"], impl, res[impl])


LENGTHS_CASES = [  # Config kwargs of small lengths rows: uni / bi, stacked, input != hidden
    dict(cell="lstm", batch=6, hidden=16, seq=8, bidirectional=True),
    dict(cell="gru", batch=5, hidden=12, seq=10, layers=2, bidirectional=True),
    dict(cell="lstm", batch=7, hidden=12, input_size=5, seq=9, layers=2),
    dict(cell="gru", batch=4, hidden=16, seq=7),
]


def _lengths_case(kw, dtype="float32"):
    from fusedrnn.bench import Config, make_case
    return make_case(Config(kind="lengths", dtype=dtype, **kw), seed=3)


def _run(builder, case):
    r = builder(case, 1)
    return r.canonical(r())


@pytest.mark.parametrize("kw", LENGTHS_CASES, ids=lambda kw: "-".join(map(str, kw.values())))
def test_lengths_peers_agree_with_fusedrnn(kw):
    """PyTorch's packed path and ONNX Runtime's sequence_lens give fusedrnn's lengths= results
    (fp32 tolerance), with exact zeros past each length; fusedrnn's padded run differs."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from fusedrnn.bench import peers
    case = _lengths_case(kw)
    lengths = case.lengths
    T = case.cfg.seq
    assert lengths.min() < lengths.max()                              # really variable
    padding = np.arange(T)[:, None] >= lengths[None, :]               # (T, B)
    ours = _run(peers.build_fusedrnn, case)
    for builder in (peers.build_torch, peers.build_ort, peers.build_numpy):
        got = _run(builder, case)
        assert sorted(got) == sorted(ours), builder.__name__
        for key in ours:
            np.testing.assert_allclose(got[key], ours[key], rtol=1e-5, atol=2e-6,
                                       err_msg=f"{builder.__name__}: {key}")
        assert np.all(got["out"][padding] == 0), f"{builder.__name__}: padding not zeroed"
    assert np.all(ours["out"][padding] == 0)
    padded = _run(peers.build_fusedrnn_padded, case)
    assert np.max(np.abs(padded["h_n"] - ours["h_n"])) > 1e-3     # it runs the padding
    full = _run(peers.build_torch, case.full_length())              # PyTorch without packing
    for key in ours:
        np.testing.assert_allclose(padded[key], full[key], rtol=1e-5, atol=2e-6, err_msg=key)


@pytest.mark.parametrize("kw", LENGTHS_CASES + [
    dict(cell="lstm", batch=5, hidden=12, proj_size=4, seq=9, layers=2, bidirectional=True)],
    ids=lambda kw: "-".join(map(str, kw.values())))
def test_numpy_reference_with_lengths_is_pytorch_packed_path_float64(kw):
    """The float64 ground truth of a lengths row (the NumPy reference) against PyTorch's packed
    path in float64."""
    pytest.importorskip("torch")
    from fusedrnn.bench import compare, peers, reference
    case = _lengths_case(kw, "float64")
    ok, err, msg = compare(reference(case), _run(peers.build_torch, case), case.cfg)
    assert ok and err < 1e-12, msg or err


def test_lengths_are_drawn_from_the_seed_and_the_batch_shape():
    from fusedrnn.bench import LENGTHS_CONFIGS, Config, draw_lengths, make_case
    a = make_case(LENGTHS_CONFIGS[0]).lengths
    assert a.shape == (64,) and a.min() >= 25 and a.max() <= 100 and len(set(a)) > 20
    for cfg in LENGTHS_CONFIGS[1:]:      # every lengths row of a seed runs the same batch
        np.testing.assert_array_equal(make_case(cfg).lengths, a)
    assert not np.array_equal(draw_lengths(LENGTHS_CONFIGS[0], seed=1), a)
    assert draw_lengths(Config("gru", 3, 8, seq=1, kind="lengths")).tolist() == [1, 1, 1]


@pytest.mark.parametrize("cfg, expected", [
    # ceil(4*100/32)*32 = 416 rows of W_hh (400, 100), float32
    (dict(cell="lstm", hidden=100), 416 * 100 * 4),
    # W_hh (400, 7) -> 416 x 7, W_hr (7, 100) -> 32 x 100
    (dict(cell="lstm", hidden=100, proj_size=7), (416 * 7 + 32 * 100) * 4),
    # W_hh (300, 100) -> 320 x 100, float64
    (dict(cell="gru", hidden=100, dtype="float64"), 320 * 100 * 8),
])
def test_recurrent_bytes_is_the_packed_size(cfg, expected):
    from fusedrnn.bench.configs import Config, recurrent_bytes
    assert recurrent_bytes(Config(batch=1, **cfg)) == expected


def test_floor_is_the_roofline_of_the_row():
    """% floor's time, by hand: LSTM H100 I50, float32, 1 GB/s at every size, 1 GFLOP/s.
    W_hh packs to 416 x 100 (S = 166400 bytes), W_ih to 416 x 50 (X = 83200 bytes)."""
    from fusedrnn.bench.configs import Config, floor_sizes
    from fusedrnn.bench.measure import _floor_ms
    S, X = 416 * 100 * 4, 416 * 50 * 4
    seen = []

    def bw(n):
        seen.append(n)
        return 1.0
    one = Config("lstm", 1, 100, input_size=50, seq=1)
    assert _floor_ms(one, bw, 1.0) == pytest.approx((S + X) / 1e9 * 1e3)
    assert seen == [S + X] == floor_sizes(one)
    # T = 10: 10 steps of S, then the projection: 2*10*1*400*50 = 400000 FLOPs = 0.4 ms at
    # 1 GFLOP/s, longer than reading X (0.0832 ms); with a 100x faster peak the read counts
    ten = Config("lstm", 1, 100, input_size=50, seq=10)
    assert _floor_ms(ten, bw, 1.0) == pytest.approx((10 * S / 1e9 + 4e-4) * 1e3)
    assert _floor_ms(ten, bw, 100.0) == pytest.approx((10 * S + X) / 1e9 * 1e3)
    assert floor_sizes(ten) == [S, X]
    # bidirectional, 2 layers: layer 1's W_ih is (400, 200) -> 416 x 200
    deep = Config("lstm", 1, 100, input_size=50, seq=10, layers=2, bidirectional=True)
    X1 = 416 * 200 * 4
    assert _floor_ms(deep, bw, 100.0) == pytest.approx(
        2 * ((10 * S + X) + (10 * S + max(X1, 2 * 10 * 400 * 200 / 100))) / 1e9 * 1e3)


def test_best_of_runs_takes_each_implementations_lowest_median(tmp_path, capsys):
    """tools/best_of_runs.py: per row and implementation the lowest of the runs' medians (the
    same rule for every implementation), ratios from those; failed results are left out."""
    spec = importlib.util.spec_from_file_location(
        "best_of_runs", os.path.join(os.path.dirname(__file__), "..", "tools", "best_of_runs.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    def run(fr, torch, ort_status="ok", stream=4.0, floor=8.0):
        return {"rows": [{"config": "lstm T100 B1 H8", "kind": "forward", "threads": 1,
                          "stream_bound_ms": stream, "floor_ms": floor,
                          "results": {"fusedrnn": {"status": "ok", "median_ms": fr},
                                      "torch": {"status": "ok", "median_ms": torch},
                                      "ort": {"status": ort_status, "median_ms": 1.0}}}]}

    paths = []
    for i, r in enumerate([run(10.0, 20.0), run(12.0, 15.0, "mismatch", 3.0, 9.0)]):
        paths.append(str(tmp_path / f"r{i}.json"))
        with open(paths[-1], "w") as f:
            json.dump(r, f)
    rows = mod.combine(paths)
    entry = rows[("lstm T100 B1 H8", 1)]
    assert entry["best"] == {"fusedrnn": 10.0, "torch": 15.0, "ort": 1.0}
    assert mod.ratios(entry) == {"torch": 1.5, "ort": 0.1}
    # each run's own ratios (both ok in that run), their median: torch 2.0 and 1.25, ort 0.1
    assert entry["run_ratios"] == {"torch": [2.0, 1.25], "ort": [0.1]}
    assert mod.run_ratios(entry) == {"torch": 1.625, "ort": 0.1}
    mod.main(paths)
    out = capsys.readouterr().out
    assert "forward rows       vs torch: geomean 1.50x" in out
    best, median = out.split("median of the runs' own ratios:")
    assert "forward rows       vs torch: geomean 1.62x" in median
    assert "below 1.0x: lstm T100 B1 H8, 1 thread(s), vs ort: median 0.10x of 0.10x" in median
    assert "below 1.0x" not in best and "vs torch: median" not in median
    # % stream and % floor: the runs' lowest bounds (3.0, 8.0 ms) over the lowest median
    assert "| vs ort | % stream | % floor |" in out
    assert "| lstm T100 B1 H8 | 10 | 15 | 1 | 1.50x | 0.10x | 30% | 80% |" in out


def test_timing_rounds_interleave_the_implementations(monkeypatch):
    """Each implementation is timed in `rounds` blocks, one per round, the order rotating, so a
    slow spell of the host falls on all of a row's implementations alike."""
    import time
    from fusedrnn.bench import measure
    calls = []

    def runner(name):
        def call():
            calls.append(name)
            time.sleep(2e-3)            # longer than MIN_SAMPLE: one call per sample
        return call

    impls = ["a", "b", "c"]
    times, failed = measure._time_rounds({i: runner(i) for i in impls}, impls, budget=0.0,
                                         min_reps=3, max_reps=3, pause=0.0, rounds=3)
    assert failed == {}
    # per block: one untimed call, then one timed
    assert calls == [i for i in "abcbcacab" for _ in range(2)]
    assert {i: len(t) for i, t in times.items()} == {"a": 3, "b": 3, "c": 3}
    assert all(t >= 2e-3 for ts in times.values() for t in ts)
    assert measure._time_rounds({}, [], 1.0, 3, 3, 0.0, 3) == ({}, {})
    assert all(m["rounds"] == 3 for m in measure.MODES.values())
    assert measure.MODES["default"]["pause"] == 0.2
    # more rounds than min_reps: still at least one timed call per block (5 rounds, 5 samples)
    calls.clear()
    times, _ = measure._time_rounds({i: runner(i) for i in impls[:2]}, impls[:2], budget=0.0,
                                    min_reps=3, max_reps=3, pause=0.0, rounds=5)
    assert calls == [i for i in "abbaabbaab" for _ in range(2)]
    assert {i: len(t) for i, t in times.items()} == {"a": 5, "b": 5}


def test_a_call_failing_while_timed_ends_only_its_row(monkeypatch):
    """An implementation whose call raises after it was verified is that row's error; the
    other implementations and rows are timed (the exception ended the whole run)."""
    from fusedrnn.bench import measure, peers
    from fusedrnn.bench.configs import Config
    real = peers.build_numpy
    count = {"n": 0}

    def flaky(case, threads=None):
        r = real(case, threads)
        fn = r.fn

        def call():
            count["n"] += 1
            if count["n"] > 1:                  # verified, then fails
                raise MemoryError("out of memory")
            return fn()
        r.fn = call
        return r
    monkeypatch.setitem(peers.FORWARD_BUILDERS, "numpy", flaky)
    res = measure.run([Config("gru", 2, 8, seq=3), Config("lstm", 2, 8, seq=3)],
                      ["fusedrnn", "numpy"], [1], "tiny", quiet=True, info={})
    first, second = res["rows"]
    assert first["results"]["numpy"]["status"] == "error"
    assert "MemoryError" in first["results"]["numpy"]["note"]
    assert first["results"]["fusedrnn"]["status"] == "ok"
    assert second["results"]["fusedrnn"]["status"] == "ok"


def test_a_stream_that_does_not_carry_its_state_is_a_mismatch(monkeypatch):
    """A stream row's runner is checked on its second call too (against the reference started
    from the first call's final state): a stream rebuilt at every call passed the first check."""
    from fusedrnn.bench import measure, peers
    from fusedrnn.bench.configs import Config
    real = peers.build_fusedrnn

    def forgetful(case, threads=None):
        r = real(case, threads)
        if case.cfg.kind == "stream":
            r.fn = lambda: real(case, threads).fn()    # a new stream every call
        return r
    cfg = Config("lstm", 1, 16, seq=1, kind="stream")
    ok = measure.run([cfg], ["fusedrnn"], [1], "tiny", quiet=True, info={})
    assert ok["rows"][0]["results"]["fusedrnn"]["status"] == "ok"
    monkeypatch.setitem(peers.LATENCY_BUILDERS, "fusedrnn", forgetful)
    bad = measure.run([cfg], ["fusedrnn"], [1], "tiny", quiet=True, info={})
    r = bad["rows"][0]["results"]["fusedrnn"]
    assert r["status"] == "mismatch" and "second call" in r["note"], r


def test_pinned_threads_restores_what_was_asked():
    """pinned_threads(n) puts fusedrnn back to what was asked of it (None: OpenMP's default,
    which threadpoolctl limits), not to the count in effect (torch's set_num_threads, run
    first, had set the shared OpenMP count: fusedrnn stayed pinned at n)."""
    import threadpoolctl
    import fusedrnn
    from fusedrnn import _threads
    from fusedrnn.bench.timing import pinned_threads
    torch = pytest.importorskip("torch")
    before_torch = torch.get_num_threads()
    fusedrnn.set_num_threads(None)
    with pinned_threads(1):
        assert fusedrnn.get_num_threads() == 1
    assert _threads._requested is None and torch.get_num_threads() == before_torch
    with threadpoolctl.threadpool_limits(1):
        assert fusedrnn.get_num_threads() == 1
    fusedrnn.set_num_threads(2)
    with pinned_threads(1):
        pass
    assert _threads._requested == 2
    fusedrnn.set_num_threads(None)


@pytest.mark.parametrize("option, bad", [
    ("--filter", "lstm(B16"), ("--filter", "*"), ("--budget", "0"), ("--budget", "-1"),
    ("--budget", "nan"), ("--budget", "inf"), ("--budget", "x"), ("--wait-quiet", "-5"),
    ("--wait-quiet", "nan"),
])
def test_bad_option_values_are_usage_errors(capsys, option, bad):
    """A bad --filter regex, --budget or --wait-quiet is argparse's usage error (exit 2) naming
    the option and the value, before anything runs (not a traceback, not a run)."""
    from fusedrnn.bench.__main__ import main
    with pytest.raises(SystemExit) as info:
        main([option, bad, "--list"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert option in err and repr(bad) in err, err


def test_good_option_values(capsys):
    from fusedrnn.bench.__main__ import build_parser, main
    args = build_parser().parse_args(["--filter", "lstm.*B16", "--budget", "0.5",
                                      "--wait-quiet", "0"])
    assert args.filter.search("lstm T100 B16 H256") and args.budget == 0.5
    assert args.wait_quiet == 0
    assert main(["--filter", "^gru T100 B16 H256", "--list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("gru T100 B16 H256") and "lstm" not in out, out


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("n", [1, 2, 63, 64, 65, 1000, 4099])
def test_read_passes_reads_every_word(isa_path, threads, n):
    """The bench's streaming read (a compiled loop in one OpenMP region, each thread its share,
    as the 2-thread bandwidth needs: NumPy's reductions from Python threads ran one after the
    other): it reads every word of every share, whatever the thread count and the length."""
    from fusedrnn import _kernels
    for k in range(n):
        buf = np.zeros(n, dtype=np.uint32)
        buf[k] = 1 << (k % 32)
        assert _kernels.read_passes(buf, 3, threads) == 1 << (k % 32), (k, n, threads)
        if k > 70:
            break
    buf = np.arange(n, dtype=np.uint32)
    assert _kernels.read_passes(buf, 2, threads) == int(np.bitwise_or.reduce(buf))


def test_time_format_keeps_three_digits():
    from fusedrnn.bench.report import _fmt_time
    got = [_fmt_time(t) for t in (123.4, 12.34, 9.999, 1.234, 0.999, 0.123, 0.0049, 1.234e-5, 0)]
    assert got == ["123", "12.3", "10.0", "1.23", "0.999", "0.123", "0.00490", "1.23e-05",
                   "0.00"]


def test_best_of_runs_skips_null_and_zero_medians(tmp_path):
    """tools/best_of_runs.py on runs where a median is null (NaN in results.json) or 0: those
    entries are left out (it raised TypeError / ZeroDivisionError)."""
    from fusedrnn.bench.measure import run
    from fusedrnn.bench.configs import Config
    res = run([Config("gru", 2, 8, seq=3)], ["fusedrnn", "numpy"], [1], "tiny", quiet=True,
              info={})
    paths = []
    for k, bad in enumerate((None, 0.0, "keep")):
        r = json.loads(json.dumps(res, default=float))
        if bad != "keep":
            r["rows"][0]["results"]["numpy"]["median_ms"] = bad
        paths.append(tmp_path / f"r{k}.json")
        paths[-1].write_text(json.dumps(r))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, os.path.join(root, "tools", "best_of_runs.py"),
                           *map(str, paths)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_rounds_option(capsys):
    """--rounds N: every implementation of a row timed in N blocks (at least N samples), the
    count in results.json and in the report's footnote; a bad N is refused, naming --rounds."""
    from fusedrnn.bench.__main__ import build_parser
    from fusedrnn.bench.measure import run
    from fusedrnn.bench.configs import Config
    from fusedrnn.bench.report import format_tables
    res = run([Config("gru", 2, 8, seq=3)], ["fusedrnn", "numpy"], [1], "tiny", quiet=True,
              info={}, rounds=4)
    assert res["timing"]["rounds"] == 4
    for impl in ("fusedrnn", "numpy"):
        r = res["rows"][0]["results"][impl]
        assert r["status"] == "ok" and len(r["times_ms"]) >= 4, (impl, r)
    assert "timed in 4 interleaved rounds" in format_tables(res)
    assert build_parser().parse_args(["--rounds", "7"]).rounds == 7
    assert build_parser().parse_args([]).rounds is None
    for bad in ("0", "-2", "2.5", "x"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--rounds", bad])
        err = capsys.readouterr().err
        assert "--rounds" in err and f"got {bad!r}" in err, err
    with pytest.raises(ValueError, match="rounds"):
        run([Config("gru", 2, 8, seq=3)], ["fusedrnn"], [1], "tiny", quiet=True, info={},
            rounds=0)
