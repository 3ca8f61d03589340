"""Inference (forward) benchmarks: fusedrnn, NumPy, PyTorch and ONNX Runtime, same weights.

Default: the curated subset ``fusedrnn.bench.DEFAULT_CONFIGS``; ``-m full`` (or
FUSEDRNN_BENCH_FULL=1) runs every inference configuration of ``fusedrnn.bench.FULL_CONFIGS``,
the latency rows included (one LSTMCell / GRUCell step, the fixed cost of one layer call; NumPy
is not timed on those); the variable-lengths rows are in test_bench_lengths.py.
``cfg``, ``threads`` and ``impl`` are parametrised by conftest.py from CONFIGS and IMPLS.
"""

import pytest

pytest.importorskip("pytest_benchmark")

from fusedrnn import bench as fb  # noqa: E402

CONFIGS = [c for c in fb.FULL_CONFIGS if c.kind not in ("train", "lengths")]
IMPLS = list(fb.FORWARD_BUILDERS)


def test_forward(rnn_bench, cfg, threads, impl):
    rnn_bench(cfg, impl, threads)
