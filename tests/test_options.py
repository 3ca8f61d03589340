"""Options and wrappers after construction: which options may be assigned (checked as by the
constructor, with the same effect as passing them to it), which are fixed, and what the
wrappers (Reversed, GoBackwards) pass to their model."""
import numpy as np
import pytest

from conftest import flatten, import_fusedrnn

fusedrnn = import_fusedrnn()

FIXED = {"input_size": 5, "hidden_size": 9, "num_layers": 3, "bias": False,
         "bidirectional": False, "proj_size": 2, "dtype": np.float64}


def _x(batch_first=False):
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    return x.transpose(1, 0, 2).copy() if batch_first else x


@pytest.mark.parametrize("cls", [fusedrnn.LSTM, fusedrnn.GRU, fusedrnn.LSTMCell])
@pytest.mark.parametrize("name", list(FIXED) + ["reset_after"])
def test_fixed_options_cannot_be_assigned(cls, name):
    """Options the weights and packed kernels are made for: assigning one raises
    AttributeError naming it (it was taken, and calls ran the old configuration on the fast
    path or failed with internal errors on the other), and the model is unchanged."""
    kw = {"bidirectional": True} if cls is not fusedrnn.LSTMCell else {}
    m = cls(3, 4, seed=0, **kw)
    if name == "reset_after" and not hasattr(m, "reset_after"):
        return                                   # LSTM: not an option of it
    x = _x()[0] if cls is fusedrnn.LSTMCell else _x()
    before = m(x)
    with pytest.raises(AttributeError, match=f"{name} is fixed"):
        setattr(m, name, FIXED.get(name, False))
    for a, b in zip(flatten(m(x)), flatten(before)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name, value", [("batch_first", True), ("dropout", 0.5),
                                         ("merge_mode", "sum"), ("merge_mode", "mul")])
def test_run_options_assigned_act_as_given_to_the_constructor(name, value):
    a = fusedrnn.LSTM(3, 4, num_layers=2, bidirectional=True, seed=0)
    b = fusedrnn.LSTM(3, 4, num_layers=2, bidirectional=True, seed=0, **{name: value})
    a(_x())                                      # kernels and plans made before the change
    setattr(a, name, value)
    x = _x(batch_first=getattr(a, "batch_first"))
    for got, want in zip(flatten(a(x)), flatten(b(x))):
        np.testing.assert_array_equal(got, want)
    ga = a.forward_train(x, rng=1)
    gb = b.forward_train(x, rng=1)
    for got, want in zip(flatten(ga[:2]), flatten(gb[:2])):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name, value, exc, match", [
    ("merge_mode", "max", ValueError, "merge_mode must be one of"),
    ("merge_mode", 2, ValueError, "merge_mode"),
    ("dropout", 1.5, ValueError, "dropout"),
    ("dropout", "0.1", TypeError, "dropout"),
    ("batch_first", 1, TypeError, "batch_first"),
])
def test_bad_run_options_are_refused(name, value, exc, match):
    m = fusedrnn.GRU(3, 4, bidirectional=True, seed=0)
    with pytest.raises(exc, match=match):
        setattr(m, name, value)
    assert (m.merge_mode, m.dropout, m.batch_first) == ("concat", 0.0, False)


def test_merge_mode_of_one_direction_is_refused():
    m = fusedrnn.GRU(3, 4, seed=0)
    with pytest.raises(ValueError, match="merge_mode='sum' combines the two directions"):
        m.merge_mode = "sum"
    assert m.merge_mode == "concat" and m(_x())[0].shape == (5, 2, 4)


@pytest.mark.parametrize("wrapper", [fusedrnn.Reversed, fusedrnn.GoBackwards])
def test_wrappers_pass_parameters_to_their_model(wrapper):
    """A parameter read or assigned through a wrapper is its model's: the assignment is
    checked by the model and reaches its kernels (GoBackwards stored it on itself: calls kept
    the old weights while the attribute read back the new one); options read through, and
    nothing else can be assigned."""
    w = wrapper(fusedrnn.GRU(3, 4, seed=0))
    x = _x()
    before = w(x)
    assert w.hidden_size == 4 and w.weight_hh_l0.shape == (12, 4)
    w.weight_hh_l0 = np.zeros((12, 4))
    np.testing.assert_array_equal(w.model.weight_hh_l0, 0)
    np.testing.assert_array_equal(w.state_dict()["weight_hh_l0"], 0)
    fresh = wrapper(fusedrnn.GRU(3, 4, seed=0))
    fresh.load_state_dict(w.state_dict())
    for a, b in zip(flatten(w(x)), flatten(fresh(x))):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(w(x)[0], before[0])
    with pytest.raises(ValueError, match="weight_hh_l0"):
        w.weight_hh_l0 = np.zeros((4, 4))
    for name, value in (("batch_first", True), ("hidden_size", 5), ("anything", 1)):
        with pytest.raises(AttributeError, match=f"cannot set {name!r}"):
            setattr(w, name, value)
    assert not w.model.batch_first and "anything" not in vars(w)


def test_reversed_empty_sequence_with_lengths_is_the_models_error():
    m = fusedrnn.GRU(3, 4, seed=0)
    x = np.zeros((0, 2, 3), np.float32)
    for model in (m, fusedrnn.Reversed(m)):
        with pytest.raises(ValueError, match="sequence length > 0"):
            model(x, lengths=[1, 1])
