"""The kernels' own sigmoid/tanh against float64 NumPy on a dense grid and at the extremes.

Both dtypes use branch-free polynomial exp/tanh (kernels/rnn_math.h); these bounds are their measured
accuracy (about 1-2 ulp) and are referred to in that header.  Every test runs on each SIMD path
of this CPU (the `isa_path` fixture of conftest.py).
"""

import numpy as np
import pytest

from conftest import import_fusedrnn

import_fusedrnn()   # a missing package fails under CI instead of skipping
from fusedrnn._kernels import activations_memview  # noqa: E402

# the activations of every SIMD path the CPU has (conftest.isa_path)
pytestmark = pytest.mark.usefixtures("isa_path")

BOUNDS = {np.float32: 2.5e-7, np.float64: 5e-16}   # max relative error on [-30, 30]


def _activations(x):
    sig, th = np.empty_like(x), np.empty_like(x)
    activations_memview(x, sig, th)
    return sig, th


def _exact(x):
    x = x.astype(np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)), np.tanh(x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_accuracy_on_dense_grid(dtype):
    x = np.concatenate([np.linspace(-30, 30, 600_001), np.linspace(-1e-3, 1e-3, 20_001),
                        [0.0, 1e-30, -1e-30, 0.625, -0.625]]).astype(dtype)
    sig, th = _activations(x)
    sref, tref = _exact(x)
    tiny = np.finfo(dtype).tiny
    assert (np.abs(sig - sref) / np.maximum(sref, tiny)).max() < BOUNDS[dtype]
    assert (np.abs(th - tref) / np.maximum(np.abs(tref), tiny)).max() < BOUNDS[dtype]
    # odd symmetry of tanh and sigmoid(x) + sigmoid(-x) == 1, as the float math allows
    assert np.array_equal(_activations(-x)[1], -th)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extremes_saturate_without_overflow(dtype):
    big = np.array([-1e30, -1e4, -100, -88.5, -87, 87, 88.5, 100, 1e4, 1e30,
                    -np.inf, np.inf], dtype=dtype)
    with np.errstate(all="raise"):
        sig, th = _activations(big)
    assert np.all(np.isfinite(sig)) and np.all(np.isfinite(th))
    assert np.all((sig >= 0) & (sig <= 1))
    neg = big < 0
    assert np.all(sig[neg] < 1e-37) and np.all(sig[~neg] == 1)
    assert np.all(th[neg] == -1) and np.all(th[~neg] == 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_propagates(dtype):
    x = np.full(37, np.nan, dtype=dtype)   # 37: vector body and remainder
    sig, th = _activations(x)
    assert np.isnan(sig).all() and np.isnan(th).all()


def _sat_activations(x):
    sig, th = np.empty_like(x), np.empty_like(x)
    activations_memview(x, sig, th)
    return sig, th


def test_float32_tanh_rounds_to_one_where_float32_does(isa_path):
    """|x| >= 9.1: tanh(x) rounds to +-1 in float32; the header's 1.7e-7 bound holds on
    [8, 30], where a clamp below 9 (the argument of the exp, fr_tanhf_lim) shows."""
    x = np.linspace(8, 30, 22_001).astype(np.float32)
    x = np.concatenate([x, -x])
    _, th = _sat_activations(x)
    ref = np.tanh(x.astype(np.float64))
    assert np.array_equal(th[np.abs(x) >= 9.1], np.sign(x[np.abs(x) >= 9.1]))
    assert (np.abs(th - ref) / np.abs(ref)).max() < 1.7e-7


def test_float64_sigmoid_is_zero_below_the_clamp(isa_path):
    """sigmoid(x) = 0 exactly for x < -708 (the header; NumPy: exp(-x) overflows, 1/inf), not
    exp(-708); at -700 it is exp(-700) (a normal number) to 1e-15 relative."""
    x = np.array([-708.5, -709.0, -720.0, -745.0, -800.0, -1e4, -1e300, -np.inf, -700.0])
    sig, _ = _sat_activations(x)
    assert np.array_equal(sig[:-1], np.zeros(len(x) - 1))
    assert abs(sig[-1] - np.exp(-700.0)) <= 1e-15 * np.exp(-700.0)
