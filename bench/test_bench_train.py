"""Training step benchmarks (forward + backward): fusedrnn against PyTorch autograd.

fusedrnn is timed through its training API, ``model.forward_train(x, hx) -> (out, h_n, tape)``
and ``model.backward(tape, d_out) -> (dx, dhx, grads)``. Outputs, h_n (c_n), dx, dh0 (dc0) and
every weight gradient are checked against PyTorch autograd in float64 before timing (so PyTorch
is needed for these rows).
``cfg``, ``threads`` and ``impl`` are parametrised by conftest.py from CONFIGS and IMPLS.
"""

import pytest

pytest.importorskip("pytest_benchmark")

from fusedrnn import bench as fb  # noqa: E402

CONFIGS = [c for c in fb.FULL_CONFIGS if c.train]
IMPLS = list(fb.TRAIN_BUILDERS)


def test_train(rnn_bench, cfg, threads, impl):
    rnn_bench(cfg, impl, threads)
