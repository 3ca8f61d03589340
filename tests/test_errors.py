"""Bad input from docs/api.md: exception type, a message naming the argument (and, for shape
errors, the shape given), and a model left unchanged and usable."""
import numpy as np
import pytest

from _bad_input import B, H, I, L, P, T, expect_error, good_input, models
from conftest import flatten, import_fusedrnn

fusedrnn = import_fusedrnn()

INPUT = "input"
HX = r"hx|h0|h_0"
C0 = r"hx|c0|c_0"
CELL_H = r"hx|\bh\b|h0|h_0"
CELL_C = r"hx|\bc\b|c0|c_0|cx"


# ---------------------------------------------------------------------------------------------
# input


LAYER_BAD_INPUT = [  # (model, shape of bad input)
    ("lstm", (T, B)), ("lstm", (I,)), ("lstm", (T, B, I, 1)), ("lstm", (1, T, B, I)),
    ("gru", (T, B, I + 1)), ("gru", (T, I + 2)), ("gru", (T, B, 1)), ("gru", (2, 3, 4, 5)),
    ("gru_bf", (B, T, I - 1)), ("gru_bf", (B,)), ("lstm", (T, B, I - 1)), ("lstm", (T, 1)),
    ("lstmcell", (B, I + 1)), ("lstmcell", (I - 1,)), ("lstmcell", (1, B, I)),
    ("grucell", (B, 1)), ("grucell", (2, B, I)), ("grucell", (I + 3,)),
]


@pytest.mark.parametrize("name, shape", LAYER_BAD_INPUT, ids=str)
def test_bad_input_shape(name, shape):
    model = models()[name]
    expect_error(model, name, ValueError, INPUT, np.zeros(shape), shape=shape)


@pytest.mark.parametrize("name", ("lstm", "gru", "lstmcell", "grucell"))
def test_scalar_input(name):
    model = models()[name]
    expect_error(model, name, ValueError, INPUT, np.float64(1.0))


@pytest.mark.parametrize("name", ("lstm", "gru", "gru_bf"))
@pytest.mark.parametrize("layout", ("batched", "unbatched"))
def test_zero_length_sequence(name, layout):
    model = models()[name]
    if layout == "unbatched":
        shape = (0, I)
    else:
        shape = (B, 0, I) if name == "gru_bf" else (0, B, I)
    # the message shows the shape given (it showed (seq, batch, I) after batch_first /
    # unbatched input had been made so)
    expect_error(model, name, ValueError, r"input|seq|length", np.zeros(shape), shape=shape)


def complex_input(name):
    return good_input(name).astype(np.complex128)


def object_input(name):
    return good_input(name).astype(object)


BAD_TYPES = {
    "string": lambda name: "not an array",
    "string_array": lambda name: np.full(good_input(name).shape, "a"),
    "bytes": lambda name: b"\x00" * 8,
    "object_array": object_input,
    "object": lambda name: object(),
    "complex": complex_input,
    "complex64": lambda name: good_input(name).astype(np.complex64),
    "none": lambda name: None,
    "dict": lambda name: {"x": 1},
}


@pytest.mark.parametrize("name", ("lstm", "gru", "lstmcell", "grucell"))
@pytest.mark.parametrize("bad", sorted(BAD_TYPES))
def test_bad_input_type(name, bad):
    model = models()[name]
    expect_error(model, name, TypeError, INPUT, BAD_TYPES[bad](name))


# ---------------------------------------------------------------------------------------------
# states of layers


def lstm_state(h_shape=(L * 2, B, P), c_shape=(L * 2, B, H)):
    return (np.zeros(h_shape), np.zeros(c_shape))


BAD_LSTM_STATES = [  # (which bad: "h" or "c", h shape, c shape, unbatched input)
    ("h", (L * 2 - 1, B, P), (L * 2, B, H), False),  # layers*directions
    ("h", (L * 2, B + 1, P), (L * 2, B, H), False),  # batch
    ("h", (L * 2, B, H), (L * 2, B, H), False),  # H instead of proj_size
    ("h", (L * 2, P), (L * 2, B, H), False),  # 2-D state for batched input
    ("h", (1, L * 2, B, P), (L * 2, B, H), False),  # 4-D
    ("c", (L * 2, B, P), (L * 2, B, P), False),  # proj_size instead of H
    ("c", (L * 2, B, P), (L, B, H), False),
    ("c", (L * 2, B, P), (L * 2, 1, H), False),
    ("h", (L * 2, 1, P), (L * 2, H), True),  # batched state for unbatched input
    ("c", (L * 2, P), (L * 2, 1, H), True),
    ("h", (L * 2 + 1, P), (L * 2, H), True),
    ("c", (L * 2, P), (L * 2, H + 1), True),
]


@pytest.mark.parametrize("which, h_shape, c_shape, unbatched", BAD_LSTM_STATES, ids=str)
def test_bad_lstm_state_shape(which, h_shape, c_shape, unbatched):
    model = models()["lstm"]
    x = good_input("lstm")[:, 0] if unbatched else good_input("lstm")
    bad_shape = h_shape if which == "h" else c_shape
    expect_error(model, "lstm", ValueError, HX if which == "h" else C0, x,
                 lstm_state(h_shape, c_shape), shape=bad_shape)


BAD_GRU_STATES = [  # (h shape, unbatched input)
    ((L * 2 - 1, B, H), False), ((L * 2, B - 1, H), False), ((L * 2, B, H + 1), False),
    ((L * 2, H), False), ((B, L * 2, H), False), ((L * 2, 1, H), True), ((L * 2, H - 1), True),
    ((L, H), True),
]


@pytest.mark.parametrize("h_shape, unbatched", BAD_GRU_STATES, ids=str)
@pytest.mark.parametrize("name", ("gru", "gru_bf"))
def test_bad_gru_state_shape(name, h_shape, unbatched):
    model = models()[name]
    x = good_input(name)
    if unbatched:
        x = x[0] if name == "gru_bf" else x[:, 0]
    expect_error(model, name, ValueError, HX, x, np.zeros(h_shape), shape=h_shape)


@pytest.mark.parametrize("state", ("tuple1", "tuple2"))
@pytest.mark.parametrize("name", ("gru", "grucell"))
def test_tuple_state_to_gru(name, state):
    model = models()[name]
    shape = (B, H) if name == "grucell" else (L * 2, B, H)
    h = np.zeros(shape)
    hx = {"tuple1": (h,), "tuple2": (h, h)}[state]
    expect_error(model, name, TypeError, HX + "|tuple", good_input(name), hx)


@pytest.mark.parametrize("name", ("lstm", "lstmcell"))
def test_non_tuple_state_to_lstm(name):
    model = models()[name]
    h = np.zeros((B, H) if name == "lstmcell" else (L * 2, B, P))
    expect_error(model, name, TypeError, HX + "|tuple", good_input(name), h)
    expect_error(model, name, TypeError, HX + "|tuple", good_input(name), np.stack([h, h]))


@pytest.mark.parametrize("name", ("lstm", "lstmcell"))
@pytest.mark.parametrize("length", (1, 3))
def test_lstm_state_tuple_of_wrong_length(name, length):
    model = models()[name]
    h = np.zeros((B, H) if name == "lstmcell" else (L * 2, B, P))
    expect_error(model, name, (TypeError, ValueError), HX + "|tuple", good_input(name),
                 (h,) * length)


@pytest.mark.parametrize("name", ("lstm", "gru", "lstmcell", "grucell"))
@pytest.mark.parametrize("bad", ("complex", "string", "object"))
def test_bad_state_type(name, bad):
    model = models()[name]
    shape = {"lstm": (L * 2, B, P), "gru": (L * 2, B, H)}.get(name, (B, H))
    h = {"complex": np.zeros(shape, np.complex128), "string": "zeros",
         "object": np.zeros(shape).astype(object)}[bad]
    if name.startswith("lstm"):
        c = np.zeros((L * 2, B, H) if name == "lstm" else (B, H))
        expect_error(model, name, TypeError, CELL_H, good_input(name), (h, c))
        c_bad = {"complex": c.astype(np.complex128), "string": "zeros",
                 "object": c.astype(object)}[bad]
        good_h = np.zeros(shape)
        expect_error(model, name, TypeError, CELL_C, good_input(name),
                     (good_h, c_bad))
    else:
        expect_error(model, name, TypeError, CELL_H, good_input(name), h)


BAD_CELL_STATES = [  # (name, which, h shape, c shape, unbatched)
    ("lstmcell", "h", (B, H + 1), (B, H), False),
    ("lstmcell", "h", (B + 1, H), (B, H), False),
    ("lstmcell", "c", (B, H), (B - 1, H), False),
    ("lstmcell", "c", (B, H), (1, B, H), False),
    ("lstmcell", "h", (1, H), (H,), True),
    ("lstmcell", "c", (H,), (H + 1,), True),
    ("grucell", "h", (B, H - 1), None, False),
    ("grucell", "h", (1, B, H), None, False),
    ("grucell", "h", (H,), None, False),
    ("grucell", "h", (1, H), None, True),
]


@pytest.mark.parametrize("name, which, h_shape, c_shape, unbatched", BAD_CELL_STATES, ids=str)
def test_bad_cell_state_shape(name, which, h_shape, c_shape, unbatched):
    model = models()[name]
    x = good_input(name)[0] if unbatched else good_input(name)
    hx = np.zeros(h_shape) if c_shape is None else (np.zeros(h_shape), np.zeros(c_shape))
    match = CELL_H if which == "h" else CELL_C
    expect_error(model, name, ValueError, match, x, hx,
                 shape=h_shape if which == "h" else c_shape)


# ---------------------------------------------------------------------------------------------
# constructors

CLASSES = ("LSTM", "GRU", "LSTMCell", "GRUCell")


def construct(cls, **override):
    kw = dict(input_size=3, hidden_size=4)
    if not cls.endswith("Cell"):
        kw["num_layers"] = 2
    kw.update(override)
    return getattr(fusedrnn, cls)(**kw)


def size_args(cls):
    return ("input_size", "hidden_size") + (() if cls.endswith("Cell") else ("num_layers",))


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("value", (0, -1, -7))
def test_nonpositive_sizes(cls, value):
    for arg in size_args(cls):
        with pytest.raises(ValueError, match=arg):
            construct(cls, **{arg: value})


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("value", (2.5, True, False, "3", None, 1j), ids=repr)
def test_non_int_sizes(cls, value):
    for arg in size_args(cls):
        with pytest.raises((TypeError, ValueError), match=arg):
            construct(cls, **{arg: value})


@pytest.mark.parametrize("cls", ("LSTM", "GRU"))
@pytest.mark.parametrize("value", (-0.1, 1.0, 1.5, -1e-12, float("nan"), float("inf")),
                         ids=repr)
def test_bad_dropout_value(cls, value):
    with pytest.raises(ValueError, match="dropout"):
        construct(cls, dropout=value)


@pytest.mark.parametrize("cls", ("LSTM", "GRU"))
@pytest.mark.parametrize("value", (0.0, 0.5, 0.999))
def test_valid_dropout_accepted(cls, value, rng):
    """Kept as given, and never applied by the inference call."""
    model = construct(cls, dropout=value, seed=0)
    assert model.dropout == value
    x = rng.standard_normal((T, B, 3))
    plain = construct(cls, seed=0)
    for a, b in zip(flatten(model(x)), flatten(plain(x))):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("value", (4, 5, 100, -1, -4))
def test_bad_proj_size(value):
    with pytest.raises(ValueError, match="proj_size"):
        construct("LSTM", proj_size=value)


@pytest.mark.parametrize("value", (2.5, "2", True))
def test_non_int_proj_size(value):
    with pytest.raises((TypeError, ValueError), match="proj_size"):
        construct("LSTM", proj_size=value)


@pytest.mark.parametrize("value", (1, 3))
def test_valid_proj_size_accepted(value):
    m = construct("LSTM", proj_size=value)
    assert m.weight_hr_l0.shape == (value, 4)


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("dtype", (np.int32, np.int64, np.float16, np.complex64, np.bool_,
                                   object, "int8"), ids=str)
def test_bad_dtype(cls, dtype):
    with pytest.raises(TypeError, match="dtype"):
        construct(cls, dtype=dtype)


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("dtype", (np.float32, np.float64))
def test_good_dtype(cls, dtype):
    m = construct(cls, dtype=dtype)
    assert all(v.dtype == np.dtype(dtype) for v in m.state_dict().values())


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("seed", ("abc", 1.5, object()), ids=("str", "float", "object"))
def test_bad_seed(cls, seed):
    """The contract allows None, int or Generator; the error type for others is not fixed."""
    with pytest.raises((TypeError, ValueError), match="(?i)seed"):
        construct(cls, seed=seed)


# Arguments of the wrong kind that nothing in tests/ tries: a bool as seed / rng (as check_size
# and check_bool refuse bools for sizes), a cell given to Reversed (GoBackwards' test refuses
# cells, Reversed's does not), a subclass of a torch module given to from_torch (it may compute
# something else: only the torch.nn classes themselves are converted).
@pytest.mark.parametrize("value", [True, False, np.bool_(True)])
def test_bool_seed_is_refused(value):
    with pytest.raises(TypeError, match="seed"):
        fusedrnn.LSTM(3, 4, seed=value)
    with pytest.raises(TypeError, match="seed"):
        fusedrnn.GRUCell(3, 4, seed=value)


def test_bool_rng_is_refused():
    model = fusedrnn.GRU(3, 4, num_layers=2, dropout=0.5, seed=0)
    with pytest.raises(TypeError, match="rng"):
        model.forward_train(np.zeros((2, 1, 3), np.float32), rng=True)


@pytest.mark.parametrize("cell", ["LSTMCell", "GRUCell"])
def test_reversed_refuses_cells(cell):
    with pytest.raises(TypeError, match="model"):
        fusedrnn.Reversed(getattr(fusedrnn, cell)(3, 4))


@pytest.mark.parametrize("name", ["LSTM", "GRU", "LSTMCell", "GRUCell"])
def test_from_torch_refuses_subclasses(name):
    torch = pytest.importorskip("torch")
    sub = type("Custom" + name, (getattr(torch.nn, name),), {})
    with pytest.raises(TypeError, match="module must be a torch.nn.LSTM"):
        fusedrnn.from_torch(sub(3, 4))
