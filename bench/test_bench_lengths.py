"""Variable-lengths benchmarks: ``model(x, lengths=...)`` on a padded batch of 64 sequences with
lengths uniform in [T/4, T], against PyTorch's packed path (pack + module + pad, all timed),
ONNX Runtime fed ``sequence_lens``, the NumPy reference, and fusedrnn's own padded run
(``padded``: ``model(x)`` on the same x, checked against the full-length reference).
``cfg``, ``threads`` and ``impl`` are parametrised by conftest.py from CONFIGS and IMPLS.
"""

import pytest

pytest.importorskip("pytest_benchmark")

from fusedrnn import bench as fb  # noqa: E402

CONFIGS = [c for c in fb.FULL_CONFIGS if c.kind == "lengths"]
IMPLS = list(fb.LENGTHS_BUILDERS)


def test_lengths(rnn_bench, cfg, threads, impl):
    rnn_bench(cfg, impl, threads)
