"""Streams (model.stream): a sequence run in chunks gives the whole-sequence outputs and state.

References: the independent NumPy reference over the whole sequence (within the parity
tolerance), and the model's own one-step calls (bitwise: a stream of 1-step chunks runs the
same code path)."""
import numpy as np
import pytest

from conftest import (DTYPES, assert_tree_close, flatten, import_fusedrnn, layer_cfg,
                      layer_data, ref_layer)

fusedrnn = import_fusedrnn()

# id: (kind, proj_size, reset_after)
CELLS = {"lstm": ("lstm", 0, True), "lstm-proj": ("lstm", 3, True), "gru": ("gru", 0, True),
         "gru-orig": ("gru", 0, False)}
T = 9


def build(kind, proj, reset_after, dtype, num_layers, layout="seq_first"):
    cfg = layer_cfg(5, 7, num_layers=num_layers, layout=layout, proj_size=proj)
    extra = {} if kind == "lstm" else {"reset_after": reset_after}
    cls = fusedrnn.LSTM if kind == "lstm" else fusedrnn.GRU
    return cls(dtype=dtype, seed=num_layers, **cfg, **extra), cfg


def chunks(rng, T):
    """Random chunk lengths summing to T, 1-step chunks among them."""
    sizes, left = [], T
    while left:
        n = min(left, int(rng.integers(1, 4)))
        sizes.append(n)
        left -= n
    return sizes


def split(x, sizes, time_axis):
    bounds = np.cumsum([0] + sizes)
    return [np.take(x, np.arange(a, b), axis=time_axis) for a, b in zip(bounds, bounds[1:])]


@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("layout", ["seq_first", "batch_first", "unbatched"])
@pytest.mark.parametrize("case", list(CELLS))
@pytest.mark.parametrize("hx", [False, True], ids=("nohx", "hx"))
def test_chunks_equal_the_whole_sequence(rng, dtype, num_layers, layout, case, hx):
    kind, proj, reset_after = CELLS[case]
    model, cfg = build(kind, proj, reset_after, dtype, num_layers, layout)
    B = 3
    x, h0 = layer_data(rng, kind, cfg, T, B, layout=layout, hx=hx, dtype=dtype)
    stream = model.stream(batch=None if layout == "unbatched" else B, hx=h0)
    time_axis = 1 if layout == "batch_first" else 0
    outs = [stream(c) for c in split(x, chunks(rng, T), time_axis)]
    got = (np.concatenate(outs, axis=time_axis), stream.state)
    assert_tree_close(got, model(x, h0), dtype, "stream vs whole call")
    assert_tree_close(got, ref_layer(kind, model.state_dict(), x, h0, cfg, reset_after), dtype,
                      "stream vs reference")


@pytest.mark.parametrize("case", list(CELLS))
def test_one_step_chunks_are_bitwise_the_one_step_calls(rng, case):
    kind, proj, reset_after = CELLS[case]
    model, cfg = build(kind, proj, reset_after, np.float32, 2)
    x, _ = layer_data(rng, kind, cfg, T, 2, dtype=np.float32)
    stream = model.stream(batch=2)
    h = None
    for t in range(T):
        want, h = model(x[t:t + 1], h)
        np.testing.assert_array_equal(stream(x[t:t + 1]), want)
    for a, b in zip(np.atleast_1d(stream.state) if kind == "gru" else stream.state,
                    np.atleast_1d(h) if kind == "gru" else h):
        np.testing.assert_array_equal(a, b)


def test_reset_and_state_copies(rng):
    model, cfg = build("lstm", 0, True, np.float64, 2)
    x, h0 = layer_data(rng, "lstm", cfg, T, 2, hx=True)
    stream = model.stream(batch=2, hx=h0)
    first = stream(x)
    state = stream.state
    state[0][...] = 99                      # a copy: the stream's state is unchanged
    second = stream(x)                      # continues from the end of the first pass
    assert not np.allclose(first, second)
    stream.reset(h0)
    np.testing.assert_array_equal(stream(x), first)
    stream.reset()
    assert_tree_close(stream(x), model(x)[0], np.float64)
    assert all(np.count_nonzero(s) > 0 for s in stream.state)


def test_weight_change_between_chunks(rng):
    """The packed weights of the next chunk are the new ones."""
    model, cfg = build("gru", 0, True, np.float64, 1)
    x, _ = layer_data(rng, "gru", cfg, T, 2)
    stream = model.stream(batch=2)
    stream(x[:4])
    h = stream.state
    model.weight_hh_l0 = model.weight_hh_l0 * 2
    assert_tree_close(stream(x[4:]), model(x[4:], h[None] if h.ndim == 2 else h)[0], np.float64)


def test_cell_stream_carries_the_state(rng):
    cell = fusedrnn.GRUCell(5, 7, seed=0)
    xs = rng.standard_normal((4, 2, 5)).astype(np.float32)
    stream = cell.stream(batch=2)
    h = None
    for x in xs:
        h = cell(x, h)
        np.testing.assert_array_equal(stream(x), h)
    np.testing.assert_array_equal(stream.state, h)


def test_a_stream_fed_by_two_threads_at_once_raises():
    """A stream is one sequence, fed from one thread at a time: a chunk given while another
    thread's runs raises RuntimeError; no chunk is lost silently (they ran at once from the same
    state and all but one were lost).  The LSTM counts steps: c_t = c_{t-1} + 0.01 (f = 1,
    i = 1, g = 0.01), so c_n says how many ran."""
    import threading
    m = fusedrnn.LSTM(1, 1, dtype=np.float64)
    m.load_state_dict({"weight_ih_l0": np.zeros((4, 1)), "weight_hh_l0": np.zeros((4, 1)),
                       "bias_ih_l0": np.array([50.0, 50.0, np.arctanh(0.01), 0.0]),
                       "bias_hh_l0": np.zeros(4)})
    stream = m.stream(batch=1)
    x = np.zeros((400, 1, 1))                   # long enough chunks to overlap
    ran, refused = [], []

    def feed():
        for _ in range(20):
            try:
                stream(x)
                ran.append(1)
            except RuntimeError as e:
                assert "one thread at a time" in str(e)
                refused.append(1)
    threads = [threading.Thread(target=feed) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ran) + len(refused) == 80 and ran
    np.testing.assert_allclose(stream.state[1], 4.0 * len(ran), rtol=1e-9)
    stream(x)                                   # usable afterwards
    np.testing.assert_allclose(stream.state[1], 4.0 * (len(ran) + 1), rtol=1e-9)


def test_stream_pickles(rng):
    """A stream pickles (its model, batch and state; a new lock): the copy goes on from there."""
    import pickle
    m = fusedrnn.GRU(3, 4, seed=0)
    x = rng.standard_normal((2, 1, 3)).astype(np.float32)
    stream = m.stream()
    stream(x)
    twin = pickle.loads(pickle.dumps(stream))
    np.testing.assert_array_equal(twin(x), stream(x))


def test_bidirectional_is_refused():
    model = fusedrnn.LSTM(5, 7, bidirectional=True)
    with pytest.raises(ValueError, match="bidirectional"):
        model.stream()


@pytest.mark.parametrize("bad, exc, name", [
    (np.zeros((2, 3, 5), np.float32), ValueError, "x"),          # batch 3, stream of 2
    (np.zeros((2, 5), np.float32), ValueError, "x"),             # unbatched chunk
    (np.zeros((2, 2, 4), np.float32), ValueError, "input"),      # features
    (np.zeros((0, 2, 5), np.float32), ValueError, "input"),      # no step
    ("abc", TypeError, "input"),
])
def test_bad_chunks_are_refused_and_change_nothing(rng, bad, exc, name):
    model, cfg = build("lstm", 0, True, np.float32, 1)
    x, _ = layer_data(rng, "lstm", cfg, 3, 2, dtype=np.float32)
    stream = model.stream(batch=2)
    stream(x)
    before = stream.state
    with pytest.raises(exc, match=name):
        stream(bad)
    for a, b in zip(stream.state, before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("batch, exc", [(0, ValueError), (1.5, TypeError), ("2", TypeError)])
def test_bad_batch(batch, exc):
    with pytest.raises(exc, match="batch"):
        fusedrnn.GRU(5, 7).stream(batch=batch)


def test_bad_initial_state():
    with pytest.raises(ValueError, match="hx"):
        fusedrnn.GRU(5, 7).stream(batch=2, hx=np.zeros((1, 3, 7)))


# Stream state is the stream's own: hx given to stream()/reset() is copied when given, and
# stream.state is a copy; editing either in place must not change the chunks that follow (their
# outputs must equal the model's call from the true state).
def _copied(hx):
    """A copy of a state: an array, or a tuple of them (LSTM)."""
    return tuple(s.copy() for s in hx) if isinstance(hx, tuple) else hx.copy()


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("how", ["stream", "reset"])
def test_hx_is_copied_when_given(kind, how):
    model, cfg = build(kind, 0, True, np.float64, 1)
    x, hx = layer_data(np.random.default_rng(0), kind, cfg, 5, 2, hx=True)
    given = _copied(hx)
    if how == "stream":
        stream = model.stream(batch=2, hx=given)
    else:
        stream = model.stream(batch=2)
        stream.reset(given)
    for s in flatten(given):
        s[...] = 5.0                        # edited after being given: the stream keeps its copy
    assert_tree_close(stream(x), model(x, hx)[0], np.float64)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_state_is_a_copy(kind):
    model, cfg = build(kind, 0, True, np.float64, 1)
    rng = np.random.default_rng(1)
    (x1, _), (x2, _) = layer_data(rng, kind, cfg, 5, 2), layer_data(rng, kind, cfg, 5, 2)
    stream = model.stream(batch=2)
    stream(x1)
    state = stream.state
    true = _copied(state)
    for s in flatten(state):
        s[...] = 99.0
    assert_tree_close(stream(x2), model(x2, true)[0], np.float64)
