"""The short calls' path: a one-layer, one-direction model (cells, streams, layer calls) given
arrays the kernels take as they are skips the general checks and conversions.

What must hold: the path is taken exactly for such arguments (checked by making the general
path fail), its results are those of the independent NumPy reference and bitwise those of the
general path (the same arguments as lists / another dtype / non-contiguous arrays), it never
returns or keeps views of the caller's arrays, it follows weight changes, and every argument it
does not take still gets the general path's errors."""
import numpy as np
import pytest

from conftest import DTYPES, assert_tree_close, import_fusedrnn, reference

fusedrnn = import_fusedrnn()

I, H = 6, 8

# id: (class name, kwargs)
MODELS = {
    "LSTM": ("LSTM", {}),
    "LSTM-proj": ("LSTM", {"proj_size": 3}),
    "GRU": ("GRU", {}),
    "GRU-orig": ("GRU", {"reset_after": False}),
    "LSTMCell": ("LSTMCell", {}),
    "GRUCell": ("GRUCell", {}),
    "GRUCell-orig": ("GRUCell", {"reset_after": False}),
}


def build(case, dtype, seed=0):
    name, kw = MODELS[case]
    return getattr(fusedrnn, name)(I, H, dtype=dtype, seed=seed, **kw)


def is_cell(model):
    return isinstance(model, (fusedrnn.LSTMCell, fusedrnn.GRUCell))


def args(rng, model, T, B, dtype):
    """(x, hx) as the kernels take them: x (T, B, I) (cell: (B, I)), hx with its layer axis
    (a cell: without); B None: unbatched (x (T, I) or (I,), no batch axis in hx either);
    values exact in float32 and float64."""
    def normal(shape):
        return rng.standard_normal(shape).astype(np.float32).astype(dtype)
    b = () if B is None else (B,)
    lead = (() if is_cell(model) else (1,)) + b
    x = normal((b if is_cell(model) else (T,) + b) + (I,))
    P = model.proj_size or H if isinstance(model, fusedrnn.LSTM) else H
    if isinstance(model, fusedrnn.LSTM):
        return x, (normal(lead + (P,)), normal(lead + (H,)))
    return x, normal(lead + (P,))


def reference_call(model, x, hx):
    p, cell = model.state_dict(), is_cell(model)
    kind = "lstm" if isinstance(model, fusedrnn.LSTM) else "gru"
    ra = getattr(model, "reset_after", True)
    if cell:
        return reference.cell(kind, p, x, hx, reset_after=ra)
    return reference.rnn(kind, p, x, hx, reset_after=ra)


def general_path_fails(monkeypatch, model):
    def boom(*a, **k):
        raise AssertionError("the general path ran")
    monkeypatch.setattr(model, "_run", boom)


@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize("case", list(MODELS))
@pytest.mark.parametrize("T,B", [(1, 1), (3, 2), (1, None), (3, None)],
                         ids=["T1-B1", "T3-B2", "T1-unbatched", "T3-unbatched"])
def test_taken_and_equal_to_reference_and_general_path(rng, monkeypatch, case, dtype, T, B):
    model = build(case, dtype)
    x, hx = args(rng, model, T, B, dtype)
    other = np.float64 if dtype == np.float32 else np.float32      # exact in both
    general = model(x.tolist(), tuple(a.astype(other) for a in hx) if isinstance(hx, tuple)
                    else hx.astype(other))
    general_path_fails(monkeypatch, model)
    got = model(x, hx)
    if is_cell(model) and not isinstance(model, fusedrnn.LSTM):
        assert isinstance(got, np.ndarray) and got.shape == (() if B is None else (B,)) + (H,)
    assert_tree_close(got, general, dtype, "short call vs general path", atol=0)
    np.testing.assert_equal(got, general)          # bitwise: the same kernels, the same rows
    assert_tree_close(got, reference_call(model, x, hx), dtype, "short call vs reference")
    got_zero = model(x)                             # hx None: zeros
    monkeypatch.undo()
    assert_tree_close(got_zero, model(x.astype(np.float64).tolist()), dtype, "hx None")


@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize("case", list(MODELS))
@pytest.mark.parametrize("T", [1, 3])
def test_batch_in_parts(rng, monkeypatch, forced_threads, case, dtype, T):
    """On 2 threads a batch of 9 rows runs in 2 parts (fusedrnn._engine.PART_MIN_ROWS), one per
    thread, on the short path too: the reference's results and one thread's."""
    model = build(case, dtype)
    x, hx = args(rng, model, T, 9, dtype)
    fusedrnn.set_num_threads(1)
    one = model(x, hx)
    fusedrnn.set_num_threads(2)
    assert model._engine._plan(9)[2] == 2
    general_path_fails(monkeypatch, model)
    got = model(x, hx)
    assert_tree_close(got, reference_call(model, x, hx), dtype, "parts vs reference")
    assert_tree_close(got, one, dtype, "parts vs one thread")


@pytest.mark.parametrize("case", ["LSTM", "GRU"])
def test_stream_steps_take_it(rng, monkeypatch, case):
    model = build(case, np.float32)
    x, hx = args(rng, model, 5, 2, np.float32)
    whole = model(x, hx)
    want, h = [], hx
    for t in range(5):                  # one-step calls through the general path (lists)
        out, h = model(x[t:t + 1].tolist(), h)
        want.append(out)
    stream = model.stream(batch=2, hx=hx)
    general_path_fails(monkeypatch, model)
    monkeypatch.setattr(model, "_run_checked", lambda *a, **k: (_ for _ in ()).throw(
        AssertionError("the general path ran")))
    outs = [stream(x[t:t + 1]) for t in range(5)]
    np.testing.assert_equal(outs, want)
    np.testing.assert_equal(stream.state, h)
    assert_tree_close((np.concatenate(outs), stream.state), whole, np.float32, "whole call")


@pytest.mark.parametrize("case", list(MODELS))
def test_other_arguments_take_the_general_path(rng, monkeypatch, case):
    """Lists, another dtype, non-contiguous or byte-swapped arrays, a list or another dtype as
    hx: the general path (the same values), never the short one."""
    model = build(case, np.float32)
    x, hx = args(rng, model, 3, 2, np.float32)
    want = model(x, hx)
    calls = []
    real = model._run

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)
    monkeypatch.setattr(model, "_run", counting)
    strided = np.repeat(x, 2, axis=-1)[..., ::2]
    assert not strided.flags.c_contiguous
    variants = [(x.astype(np.float64), hx), (strided, hx), (x.astype(x.dtype.newbyteorder()), hx),
                (x.tolist(), hx)]
    if isinstance(hx, tuple):
        variants.append((x, list(hx)))
        variants.append((x, (hx[0].astype(np.float64), hx[1])))
    else:
        variants.append((x, hx.astype(np.float64)))
    for k, (xv, hv) in enumerate(variants):
        assert_tree_close(model(xv, hv), want, np.float32, f"variant {k}")
        assert len(calls) == k + 1, f"variant {k} did not take the general path"


@pytest.mark.parametrize("kw", [{"batch_first": True}, {"bidirectional": True},
                                {"num_layers": 2}])
def test_models_it_does_not_serve(rng, monkeypatch, kw):
    model = fusedrnn.LSTM(I, H, seed=1, **kw)
    calls = []
    real = model._run
    monkeypatch.setattr(model, "_run", lambda *a, **k: calls.append(1) or real(*a, **k))
    model(rng.standard_normal((2, 2, I)).astype(np.float32))
    assert calls == [1]


@pytest.mark.parametrize("case", list(MODELS))
def test_no_views_of_the_callers_arrays(rng, case):
    model = build(case, np.float32)
    x, hx = args(rng, model, 2, 2, np.float32)
    keep = [a.copy() for a in (x,) + (hx if isinstance(hx, tuple) else (hx,))]
    first = model(x, hx)
    for a in [x] + list(hx if isinstance(hx, tuple) else (hx,)):
        for r in (first if isinstance(first, tuple) else (first,)):
            for arr in (r if isinstance(r, tuple) else (r,)):
                assert not np.shares_memory(arr, a)
    for a, k in zip((x,) + (hx if isinstance(hx, tuple) else (hx,)), keep):
        np.testing.assert_array_equal(a, k)                 # inputs untouched
    flat = [first] if isinstance(first, np.ndarray) else list(first)
    snapshot = [np.array(a, copy=True) for a in flat if isinstance(a, np.ndarray)]
    model(x, hx)                                            # a second call: new arrays
    for a, s in zip([a for a in flat if isinstance(a, np.ndarray)], snapshot):
        np.testing.assert_array_equal(a, s)


@pytest.mark.parametrize("case", list(MODELS))
def test_follows_weight_changes(rng, case):
    model = build(case, np.float32)
    x, hx = args(rng, model, 2, 1, np.float32)
    before = model(x, hx)
    other = build(case, np.float32, seed=5)
    model.load_state_dict(other.state_dict())
    assert_tree_close(model(x, hx), other(x, hx), np.float32, "after load_state_dict", atol=0)
    assert_tree_close(model(x, hx), reference_call(model, x, hx), np.float32, "reference")
    with pytest.raises(AssertionError):
        assert_tree_close(model(x, hx), before, np.float32, "stale")


@pytest.mark.parametrize("case", list(MODELS))
def test_bad_arguments_still_raise(rng, case):
    model = build(case, np.float32)
    x, hx = args(rng, model, 2, 2, np.float32)
    with pytest.raises(ValueError, match="input"):
        model(x[..., :-1], hx)                              # wrong feature count
    bad = (hx[0][..., :-1], hx[1]) if isinstance(hx, tuple) else hx[..., :-1]
    with pytest.raises(ValueError, match="h0|hx|shape"):
        model(x, bad)
    bad_batch = (hx[0][..., :1, :], hx[1]) if isinstance(hx, tuple) else hx[..., :1, :]
    with pytest.raises(ValueError, match="shape"):
        model(x, bad_batch)
    with pytest.raises(TypeError):
        model(x, (hx, hx) if not isinstance(hx, tuple) else hx[0])     # GRU tuple / LSTM array
    with pytest.raises(ValueError):
        model(x[..., :0, :], hx)                            # empty batch against hx of 2


@pytest.mark.parametrize("case", ["LSTM", "GRU"])
def test_long_outputs_on_a_cache_line(rng, monkeypatch, case):
    """A short-path call whose output has >= 64 KiB gets it on a 64-byte boundary (the threads
    of a step write neighbouring columns of it), with the general path's values."""
    model = getattr(fusedrnn, case)(I, 256, seed=2)
    x = rng.standard_normal((70, 1, I)).astype(np.float32)
    want = model(x.tolist())
    general_path_fails(monkeypatch, model)
    got = model(x)
    assert got[0].nbytes >= 1 << 16 and got[0].ctypes.data % 64 == 0
    np.testing.assert_equal(got, want)
    short = model(x[:2])                    # a small output: numpy's own allocation
    assert short[0].shape == (2, 1, 256)
