"""The benchmark report (``python -m fusedrnn.bench``) runs end to end, and stays out of the way.

- ``--tiny`` in a fresh interpreter, with whichever peers are installed: results.json has the
  latency rows (cell steps, the fixed cost of a call), the "% stream" of batch-1 rows, the read
  bandwidth and the SIMD path; without a chart asked for, matplotlib is never imported.
- ``import fusedrnn`` loads neither the bench subpackage nor any heavy peer.
No timing is asserted (speed is a benchmark, not a test).
"""
import json
import os
import subprocess
import sys

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
    assert "% stream" in out and "Latency" in out
    with open(tmp_path / "results.json") as f:
        res = json.load(f)
    assert res["machine"]["isa"] in ("avx512", "avx2", "scalar", "unknown")
    bandwidths = res["stream_read_gbs"]["1"]
    assert bandwidths and all(g > 0 for g in bandwidths.values())

    rows = res["rows"]
    kinds = {(r["kind"], r["params"]["cell"]) for r in rows}
    assert {("cell", "lstm"), ("cell", "gru"), ("stream", "lstm"), ("call", "lstm"),
            ("forward", "lstm"), ("train", "lstm")} <= kinds
    for r in rows:
        if r.get("skipped"):        # a training row without PyTorch has no reference
            assert r["kind"] == "train", r
            continue
        fr = r["results"]["fusedrnn"]
        assert fr["status"] == "ok", (r["config"], fr)
        assert "numpy" not in r["results"] or r["kind"] == "forward"
        for impl, peer in r["results"].items():
            assert peer["status"] in ("ok", "skipped"), (r["config"], impl, peer)
        stream_row = r["params"]["batch"] == 1 and r["kind"] != "train"
        assert ("pct_stream" in r) == stream_row, r["config"]
        if stream_row:
            assert r["stream_bound_ms"] > 0 and r["pct_stream"] > 0
    cell = next(r for r in rows if r["kind"] == "cell")
    assert cell["params"]["seq"] == 1 and cell["params"]["layers"] == 1


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
