"""The packed-weight cache can never be stale: every way of changing a weight either reaches the
kernels (assignment, load_state_dict) or raises (in-place edits of the read-only parameters).

References: a fresh model built from the same state_dict (it packs from scratch) and the
independent NumPy reference."""
import pickle

import numpy as np
import pytest

import reference
from conftest import assert_tree_close, import_fusedrnn

fusedrnn = import_fusedrnn()

MODELS = {
    "lstm": lambda: fusedrnn.LSTM(5, 8, num_layers=2, bidirectional=True, seed=0),
    "lstm-proj": lambda: fusedrnn.LSTM(5, 8, proj_size=3, seed=1),
    "gru": lambda: fusedrnn.GRU(5, 8, num_layers=2, seed=2),
    "gru-orig": lambda: fusedrnn.GRU(5, 8, bidirectional=True, reset_after=False, seed=3),
    "lstmcell": lambda: fusedrnn.LSTMCell(5, 8, seed=4),
    "grucell": lambda: fusedrnn.GRUCell(5, 8, seed=5),
}


class _Input:
    """x, plus a non-zero state for a cell (from zeros a single step never reads W_hh)."""

    def __init__(self, model):
        rng = np.random.default_rng(9)
        self.cell = "Cell" in type(model).__name__
        self.x = rng.standard_normal((4, 5) if self.cell else (6, 4, 5)).astype(np.float32)
        self.hx = None
        if self.cell:
            h = rng.standard_normal((4, 8)).astype(np.float32)
            self.hx = (h, h * 0.5) if isinstance(model, fusedrnn.LSTMCell) else h


def _x(model):
    return _Input(model)


def _call(model, inp):
    return model(inp.x, inp.hx)


def _fresh(model):
    """A new model of the same configuration with model's current weights."""
    other = pickle.loads(pickle.dumps(model))
    other.load_state_dict(model.state_dict())
    return other


@pytest.fixture(params=list(MODELS))
def model(request):
    m = MODELS[request.param]()
    _call(m, _x(m))               # the kernels are packed now
    return m


def test_assignment_reaches_the_kernels(model):
    x = _x(model)
    before = _call(model, x)
    name = next(n for n in model.state_dict() if n.startswith("weight_hh"))
    setattr(model, name, getattr(model, name) * 1.5 + 0.01)
    after = _call(model, x)
    assert not np.allclose(np.asarray(after[0]), np.asarray(before[0]))
    assert_tree_close(after, _call(_fresh(model), x), np.float32)


def test_load_state_dict_reaches_the_kernels(model):
    x = _x(model)
    sd = {k: v * 0.5 for k, v in model.state_dict().items()}
    model.load_state_dict(sd)
    assert_tree_close(_call(model, x), _call(_fresh(model), x), np.float32)


def test_partial_load_reaches_the_kernels(model):
    x = _x(model)
    name = next(n for n in model.state_dict() if n.startswith("bias_ih") or
                n.startswith("weight_ih"))
    before = _call(model, x)
    model.load_state_dict({name: np.zeros_like(getattr(model, name))}, strict=False)
    assert np.count_nonzero(getattr(model, name)) == 0
    after = _call(model, x)
    assert not np.allclose(np.asarray(after[0]), np.asarray(before[0]))
    assert_tree_close(after, _call(_fresh(model), x), np.float32)


@pytest.mark.parametrize("edit", ["iadd", "setitem", "flag", "out"])
def test_in_place_edits_are_refused(model, edit):
    x = _x(model)
    before = _call(model, x)
    snapshot = model.state_dict()
    for name in snapshot:
        p = getattr(model, name)
        with pytest.raises(ValueError, match="read-only|WRITEABLE"):
            if edit == "iadd":
                p += 1
            elif edit == "setitem":
                p[...] = 0
            elif edit == "flag":
                p.flags.writeable = True
            else:
                np.multiply(p, 2, out=p)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, snapshot[k])
    assert_tree_close(_call(model, x), before, np.float32)


def test_writes_past_the_read_only_flag_do_not_reach_the_model(model):
    """What ignores numpy's read-only flag: setting ``.shape`` (numpy allows it; it changed the
    model's own array, and the next repack crashed), a torch tensor sharing a parameter's
    memory updated in place (torch warns and writes), an f2py BLAS routine writing into its
    argument.  Attribute access gives a copy, so none reaches the model: its weights, shapes
    and results are unchanged, and repacking works."""
    import warnings

    from scipy.linalg import blas
    torch = pytest.importorskip("torch")
    x = _x(model)
    before = _call(model, x)
    snapshot = model.state_dict()
    for name in snapshot:
        p = getattr(model, name)
        p.shape = (-1,)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)     # "not writable"
            torch.as_tensor(getattr(model, name)).mul_(0.5)
        q = getattr(model, name).reshape(-1)
        (blas.saxpy if q.dtype == np.float32 else blas.daxpy)(np.ones_like(q), q, a=1.0)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, snapshot[name], err_msg=name)
        assert getattr(model, name).shape == value.shape, name
        assert name in dir(model)
    assert_tree_close(_call(model, x), before, np.float32)
    model.load_state_dict(snapshot)                          # a repack
    assert_tree_close(_call(model, x), before, np.float32)


def test_state_dict_copies_are_writable(model):
    for v in model.state_dict().values():
        v += 1                    # the user's copy, not the model's


def test_bad_assignment_leaves_model_and_kernels_unchanged(model):
    x = _x(model)
    before = _call(model, x)
    name = next(iter(model.state_dict()))
    with pytest.raises(ValueError, match=name):
        setattr(model, name, np.zeros((2, 2)))
    with pytest.raises(TypeError, match=name):
        setattr(model, name, "weights")
    assert_tree_close(_call(model, x), before, np.float32)


def test_training_update_by_assignment(model):
    """An SGD step written as assignment: the next forward uses the new weights, and backward
    uses the weights its tape was recorded with."""
    x = _x(model)
    out, *rest = model.forward_train(x.x, x.hx)
    tape = rest[-1]
    lr = 0.1
    old = _fresh(model)
    if "Cell" in type(model).__name__:     # forward_train returns (state, tape)
        state = out if isinstance(out, tuple) else (out,)
        _, _, grads = model.backward(tape, *[np.ones_like(s) for s in state])
    else:
        _, _, grads = model.backward(tape, np.ones_like(out))
    for name, g in grads.items():
        setattr(model, name, getattr(model, name) - lr * g)
    assert_tree_close(_call(model, x), _call(_fresh(model), x), np.float32)
    assert not np.allclose(np.asarray(_call(model, x)[0]), np.asarray(_call(old, x)[0]))


def test_backward_uses_the_recorded_weights():
    """Weights changed between forward_train and backward: the gradients are those of the
    recorded forward (equal to a model that never changed)."""
    a = fusedrnn.LSTM(5, 8, num_layers=2, seed=0, dtype=np.float64)
    b = _fresh(a)
    x = np.random.default_rng(1).standard_normal((6, 3, 5))
    d = np.random.default_rng(2).standard_normal((6, 3, 8))
    out_a, _, tape_a = a.forward_train(x)
    out_b, _, tape_b = b.forward_train(x)
    a.load_state_dict({k: v * 2 for k, v in a.state_dict().items()})
    ga = a.backward(tape_a, d)
    gb = b.backward(tape_b, d)
    np.testing.assert_array_equal(ga[0], gb[0])
    for k in ga[2]:
        np.testing.assert_array_equal(ga[2][k], gb[2][k], err_msg=k)


def test_pickle_keeps_parameters_read_only(model):
    other = pickle.loads(pickle.dumps(model))
    for name in other.state_dict():
        assert not getattr(other, name).flags.writeable, name
    x = _x(model)
    assert_tree_close(_call(other, x), _call(model, x), np.float32)


def test_repacked_weights_match_the_numpy_reference():
    """After an assignment the packed kernels equal the independent reference."""
    m = fusedrnn.GRU(4, 6, seed=0, dtype=np.float64)
    x = np.random.default_rng(3).standard_normal((5, 2, 4))
    m(x)
    m.weight_hh_l0 = np.random.default_rng(4).standard_normal((18, 6)) * 0.3
    sd = m.state_dict()
    out, h_n = m(x)
    assert_tree_close((out, h_n), reference.rnn("gru", sd, x), np.float64)
