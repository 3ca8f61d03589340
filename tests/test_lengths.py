"""Variable-length batches: ``model(x, lengths=...)``, ``forward_train(..., lengths=...)``.

References: PyTorch's ``pack_padded_sequence(x, lengths, enforce_sorted=False)`` -> model ->
``pad_packed_sequence(total_length=T)`` (forward and autograd gradients), the independent NumPy
reference (tests/reference.py runs each sequence alone over its own steps; GRU
``reset_after=False`` too), and, for gradients of the form PyTorch lacks, each sequence run alone
as a full-length batch of one (the plain path, itself checked against PyTorch elsewhere).
"""
import numpy as np
import pytest

import reference
from conftest import (assert_close, import_fusedrnn, import_torch, make_state, to_numpy,
                      torch_model)

fusedrnn = import_fusedrnn()

I, H, T, B = 5, 8, 9, 6
PATTERNS = {
    "unsorted": [4, 9, 1, 7, 9, 3],
    "ascending": [1, 2, 4, 6, 8, 9],
    "all-equal": [5] * B,        # shorter than T: the run stops after 5 steps
    "all-full": [T] * B,         # the plain run
    "all-one": [1] * B,
}
CONFIGS = [  # (kind, kwargs)
    ("lstm", dict()),
    ("lstm", dict(bidirectional=True)),
    ("lstm", dict(num_layers=2, bidirectional=True, proj_size=3)),
    ("lstm", dict(num_layers=3)),
    ("gru", dict()),
    ("gru", dict(bidirectional=True, batch_first=True)),
    ("gru", dict(num_layers=3, bidirectional=True)),
    ("gru", dict(num_layers=2, bias=False)),
]


def cfg_id(c):
    kind, kw = c
    return kind + "-" + "-".join(f"{k}{v}" for k, v in kw.items())


def pair(kind, dtype, **kw):
    tm = torch_model(kind, dtype, seed=1, input_size=I, hidden_size=H, **kw)
    return tm, fusedrnn.from_torch(tm)


def data(kind, m, dtype, batch_first, hx, seed=0):
    rng = np.random.default_rng(seed)
    shape = (B, T, I) if batch_first else (T, B, I)
    x = rng.standard_normal(shape).astype(dtype)
    h = make_state(rng, kind, m.num_layers, m.num_directions, B, H, m._P,
                   dtype=dtype) if hx else None
    return x, h


def torch_packed(tm, x, hx, lengths, grad_seeds=None):
    """PyTorch's packed path: (out, h_n) padded back to T, and with grad_seeds (d_out, d_h_n)
    the gradients (dx, dhx, {name: grad})."""
    torch = import_torch()
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    xt = torch.from_numpy(x).requires_grad_(grad_seeds is not None)
    hxt = None
    if hx is not None:
        hxt = tuple(torch.from_numpy(h).requires_grad_(grad_seeds is not None)
                    for h in (hx if isinstance(hx, tuple) else (hx,)))
    packed = pack_padded_sequence(xt, torch.tensor(lengths), batch_first=tm.batch_first,
                                  enforce_sorted=False)
    tm.zero_grad()
    with torch.set_grad_enabled(grad_seeds is not None):
        out, hn = tm(packed, hxt if hxt is None or len(hxt) == 2 else hxt[0])
    out, _ = pad_packed_sequence(out, batch_first=tm.batch_first, total_length=T)
    if grad_seeds is None:
        return to_numpy(out), to_numpy(hn)
    d_out, d_hn = grad_seeds
    loss = (out * torch.from_numpy(d_out)).sum()
    for a, g in zip(hn if isinstance(hn, tuple) else (hn,),
                    d_hn if isinstance(d_hn, tuple) else (d_hn,)):
        loss = loss + (a * torch.from_numpy(g)).sum()
    loss.backward()
    dhx = None if hxt is None else tuple(h.grad.numpy() for h in hxt)
    return xt.grad.numpy(), dhx, {k: p.grad.numpy() for k, p in tm.named_parameters()}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pattern", sorted(PATTERNS))
@pytest.mark.parametrize("config", CONFIGS, ids=cfg_id)
def test_forward_equals_torch_packed(config, pattern, dtype):
    kind, kw = config
    tm, m = pair(kind, dtype, **kw)
    lengths = PATTERNS[pattern]
    x, hx = data(kind, m, dtype, kw.get("batch_first", False), hx=pattern != "all-one")
    out, hn = m(x, hx, lengths=lengths)
    t_out, t_hn = torch_packed(tm, x, hx, lengths)
    assert out.shape == t_out.shape and out.dtype == dtype
    assert_close(out, t_out, dtype, "out")
    for a, b in zip(hn if kind == "lstm" else (hn,), t_hn if kind == "lstm" else (t_hn,)):
        assert_close(a, b, dtype, "h_n")
    # out is exactly zero past each sequence's length
    steps = np.arange(T)[:, None] >= np.asarray(lengths)[None, :]
    o = out.transpose(1, 0, 2) if kw.get("batch_first") else out
    assert not o[steps].any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("config", CONFIGS, ids=cfg_id)
def test_gradients_in_blocks_of_steps_equal_torch_packed(monkeypatch, config, dtype):
    """Backward's weight gradients summed over blocks of a few steps (a small block budget),
    the padding rows of x and h_{t-1} inside the blocks."""
    monkeypatch.setattr(fusedrnn._kernels, "GRAD_BLOCK_BYTES", 4096)
    test_gradients_equal_torch_packed(config, "unsorted", dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pattern", ["unsorted", "ascending", "all-one"])
@pytest.mark.parametrize("config", CONFIGS, ids=cfg_id)
def test_gradients_equal_torch_packed(config, pattern, dtype):
    kind, kw = config
    tm, m = pair(kind, dtype, **kw)
    tm.train()              # dropout is 0: train mode only enables autograd's RNN backward
    lengths = PATTERNS[pattern]
    x, hx = data(kind, m, dtype, kw.get("batch_first", False), hx=True)
    out, hn, tape = m.forward_train(x, hx, lengths=lengths)
    rng = np.random.default_rng(5)
    d_out = rng.standard_normal(out.shape).astype(dtype)
    d_hn = tuple(rng.standard_normal(a.shape).astype(dtype)
                 for a in (hn if kind == "lstm" else (hn,)))
    d_hn = d_hn if kind == "lstm" else d_hn[0]
    dx, dhx, grads = m.backward(tape, d_out, d_hn)
    t_dx, t_dhx, t_grads = torch_packed(tm, x, hx, lengths, (d_out, d_hn))
    assert_close(dx, t_dx, dtype, "dx")
    for a, b in zip(dhx if kind == "lstm" else (dhx,), t_dhx):
        assert_close(a, b, dtype, "dhx")
    assert grads.keys() == t_grads.keys()
    for k in grads:
        assert_close(grads[k], t_grads[k], dtype, k)
    # no gradient reaches the padded steps of x
    steps = np.arange(T)[:, None] >= np.asarray(lengths)[None, :]
    d = dx.transpose(1, 0, 2) if kw.get("batch_first") else dx
    assert not d[steps].any()


REF_CONFIGS = [
    ("lstm", dict(num_layers=2, bidirectional=True, proj_size=3), True),
    ("gru", dict(num_layers=2, bidirectional=True), True),
    ("gru", dict(num_layers=2, bidirectional=True), False),
    ("gru", dict(), False),
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kind, kw, reset_after", REF_CONFIGS)
def test_numpy_reference_every_isa(isa_path, kind, kw, reset_after, threads):
    """Every SIMD path and thread split (2 threads: both directions at once) against the NumPy
    reference, on a batch large enough to split a step between threads."""
    Bw, Hw, Tw = 12, 64, 7
    cls = fusedrnn.LSTM if kind == "lstm" else fusedrnn.GRU
    extra = {} if kind == "lstm" else dict(reset_after=reset_after)
    m = cls(I, Hw, dtype=np.float64, seed=3, **kw, **extra)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((Tw, Bw, I))
    lengths = rng.integers(1, Tw + 1, Bw)
    hx = make_state(rng, kind, m.num_layers, m.num_directions, Bw, Hw, m._P)
    before = fusedrnn.get_num_threads()
    fusedrnn.set_num_threads(threads)
    try:
        out, hn = m(x, hx, lengths=lengths)
    finally:
        fusedrnn.set_num_threads(before)
    r_out, r_hn = reference.rnn(kind, m.state_dict(), x, hx, num_layers=m.num_layers,
                                bidirectional=m.bidirectional, reset_after=reset_after,
                                lengths=lengths)
    assert_close(out, r_out, np.float64, "out")
    for a, b in zip(hn if kind == "lstm" else (hn,), r_hn if kind == "lstm" else (r_hn,)):
        assert_close(a, b, np.float64, "h_n")


@pytest.mark.parametrize("kind, reset_after", [("lstm", True), ("gru", True), ("gru", False)])
def test_gradients_equal_sequences_run_alone(kind, reset_after):
    """The gradients of a padded run are the sums of those of each sequence run alone over its
    own steps (the plain, full-length path); covers GRU reset_after=False, which PyTorch lacks."""
    cls = fusedrnn.LSTM if kind == "lstm" else fusedrnn.GRU
    extra = {} if kind == "lstm" else dict(reset_after=reset_after)
    m = cls(I, H, num_layers=2, bidirectional=True, dtype=np.float64, seed=4, **extra)
    rng = np.random.default_rng(3)
    lengths = PATTERNS["unsorted"]
    x = rng.standard_normal((T, B, I))
    hx = make_state(rng, kind, 2, 2, B, H)
    hs = hx if kind == "lstm" else (hx,)
    out, hn, tape = m.forward_train(x, hx, lengths=lengths)
    d_out = rng.standard_normal(out.shape)
    d_hn = tuple(rng.standard_normal(a.shape) for a in (hn if kind == "lstm" else (hn,)))
    dx, dhx, grads = m.backward(tape, d_out, d_hn if kind == "lstm" else d_hn[0])
    dhx = dhx if kind == "lstm" else (dhx,)
    total = {k: np.zeros_like(v) for k, v in grads.items()}
    for b, n in enumerate(lengths):
        hb = tuple(h[:, b:b + 1] for h in hs)
        o, hnb, tb = m.forward_train(x[:n, b:b + 1], hb if kind == "lstm" else hb[0])
        np.testing.assert_allclose(out[:n, b:b + 1], o, rtol=1e-12, atol=1e-13)
        dxb, dhb, gb = m.backward(tb, d_out[:n, b:b + 1],
                                  tuple(d[:, b:b + 1] for d in d_hn) if kind == "lstm"
                                  else d_hn[0][:, b:b + 1])
        np.testing.assert_allclose(dx[:n, b:b + 1], dxb, rtol=1e-10, atol=1e-12)
        assert not dx[n:, b].any()
        for a, e in zip(dhx, dhb if kind == "lstm" else (dhb,)):
            np.testing.assert_allclose(a[:, b:b + 1], e, rtol=1e-10, atol=1e-12)
        for k in total:
            total[k] += gb[k]
    for k in grads:
        np.testing.assert_allclose(grads[k], total[k], rtol=1e-10, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_padding_is_never_read(kind):
    """NaN and Inf in the padded steps of x change nothing (they are never multiplied)."""
    cls = fusedrnn.LSTM if kind == "lstm" else fusedrnn.GRU
    m = cls(I, H, num_layers=2, bidirectional=True, seed=0)
    rng = np.random.default_rng(0)
    lengths = PATTERNS["unsorted"]
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    pad = np.arange(T)[:, None] >= np.asarray(lengths)[None, :]
    x_bad = x.copy()
    x_bad[pad] = np.nan
    x_bad[pad & (np.arange(B)[None, :] % 2 == 0)] = np.inf
    for call in (lambda a: m(a, lengths=lengths), lambda a: m.forward_train(a, lengths=lengths)):
        good, bad = call(x), call(x_bad)
        for a, b in zip(good[:2], bad[:2]):
            for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
                assert np.array_equal(u, v)
    tape_good, tape_bad = m.forward_train(x, lengths=lengths)[2], \
        m.forward_train(x_bad, lengths=lengths)[2]
    d_out = np.ones((T, B, 2 * H), np.float32)
    g1, g2 = m.backward(tape_good, d_out), m.backward(tape_bad, d_out)
    assert np.array_equal(g1[0], g2[0])
    for k in g1[2]:
        assert np.isfinite(g2[2][k]).all() and np.array_equal(g1[2][k], g2[2][k]), k


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_full_lengths_are_the_plain_run(kind):
    """lengths all equal to T is the plain run, bit for bit; and a length-sorted batch gives
    bitwise the rows of the unsorted one (the sort is only a reordering)."""
    cls = fusedrnn.LSTM if kind == "lstm" else fusedrnn.GRU
    m = cls(I, H, bidirectional=True, seed=0)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    a, b = m(x), m(x, lengths=[T] * B)
    assert np.array_equal(a[0], b[0])
    lengths = np.array(PATTERNS["unsorted"])
    order = np.argsort(-lengths, kind="stable")
    u = m(x, lengths=lengths)
    s = m(x[:, order], lengths=lengths[order])
    assert np.array_equal(u[0][:, order], s[0])


def test_lengths_kinds_of_value():
    """A list, NumPy integers of any width, a torch tensor; unbatched input takes one integer."""
    torch = import_torch()
    m = fusedrnn.GRU(I, H, seed=0)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    lengths = PATTERNS["unsorted"]
    ref = m(x, lengths=lengths)[0]
    for v in (np.array(lengths, np.int32), np.array(lengths, np.uint8), torch.tensor(lengths),
              tuple(lengths)):
        assert np.array_equal(m(x, lengths=v)[0], ref)
    xu = x[:, 0]
    o1, h1 = m(xu, lengths=4)
    o2, h2 = m(xu[:4])
    assert o1.shape == (T, H) and h1.shape == (1, H)
    assert np.array_equal(o1[:4], o2) and not o1[4:].any() and np.array_equal(h1, h2)
    assert np.array_equal(m(xu, lengths=[4])[0], o1)
    # a batch of 0 sequences
    out, hn = m(np.zeros((T, 0, I)), lengths=[])
    assert out.shape == (T, 0, H) and hn.shape == (1, 0, H)


def test_tape_and_model_unchanged_by_lengths():
    """forward_train(lengths=) keeps its lengths for backward; the caller's arrays are not
    modified; the d_out of backward has the padded shape."""
    m = fusedrnn.LSTM(I, H, num_layers=2, seed=0, dtype=np.float64)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I))
    x0 = x.copy()
    lengths = np.array(PATTERNS["unsorted"])
    l0 = lengths.copy()
    out, (h, c), tape = m.forward_train(x, lengths=lengths)
    x[:] = 0                        # the tape holds its own copy
    lengths[:] = 1
    dx, _, grads = m.backward(tape, np.ones_like(out))
    assert np.array_equal(lengths, np.ones_like(l0))
    out2, _, tape2 = m.forward_train(x0, lengths=l0)
    dx2, _, grads2 = m.backward(tape2, np.ones_like(out))
    assert np.array_equal(dx, dx2)
    with pytest.raises(ValueError, match="d_out"):
        m.backward(m.forward_train(x0, lengths=l0)[2], np.ones((T - 1, B, H)))


def test_kernel_checks_step_counts():
    """The kernel entry refuses step counts that do not describe a length-sorted batch."""
    from fusedrnn import _kernels
    m = fusedrnn.GRU(I, H, seed=0)
    k = m._engine.kernel(0, 0)
    b = k.buffers(3, 2, 1)
    x = np.zeros((6, I), np.float32)
    out = np.zeros((6, H), np.float32)
    st = (np.zeros((2, H), np.float32),)
    fin = (np.zeros((2, H), np.float32),)
    for nact, msg in ((np.array([2, 1, 2], np.intp), "non-increasing"),
                      (np.array([1, 1, 1], np.intp), "non-increasing"),
                      (np.array([2, 1, 0], np.intp), "non-increasing"),
                      (np.array([2, 1], np.intp), "nact"),
                      (np.array([2, 1, 1], np.int32), "nact")):
        with pytest.raises(ValueError, match=msg):
            k.forward(b, x, out, 0, st, fin, False, 1, nact=nact)
    with pytest.raises(ValueError, match="xrow"):
        k.forward(b, x, out, 0, st, fin, False, 1, nact=np.array([2, 1, 1], np.intp),
                  xrow=np.array([0, 1, 2, 3, 4, 6], np.intp))
    with pytest.raises(ValueError, match="src and dst"):
        _kernels.permute_steps(np.zeros((6, 2)), np.zeros((6, 3)), np.array([2, 1, 1], np.intp),
                               np.array([0, 1], np.intp), True)


def test_merge_mode_with_lengths():
    """merge_mode="mul" on a padded batch: out is the product of the halves of the concat
    model's out, and its gradients those of the concat model given d * (the other half)."""
    rng = np.random.default_rng(0)
    sd = fusedrnn.LSTM(I, H, bidirectional=True, dtype=np.float64, seed=0).state_dict()
    cat = fusedrnn.LSTM(I, H, bidirectional=True, dtype=np.float64)
    mul = fusedrnn.LSTM(I, H, bidirectional=True, dtype=np.float64, merge_mode="mul")
    cat.load_state_dict(sd)
    mul.load_state_dict(sd)
    x = rng.standard_normal((T, B, I))
    lengths = PATTERNS["unsorted"]
    oc, _, tc = cat.forward_train(x, lengths=lengths)
    om, _, tm_ = mul.forward_train(x, lengths=lengths)
    np.testing.assert_array_equal(om, oc[..., :H] * oc[..., H:])
    d = rng.standard_normal(om.shape)
    gc = cat.backward(tc, np.concatenate([d * oc[..., H:], d * oc[..., :H]], axis=-1))
    gm = mul.backward(tm_, d)
    np.testing.assert_allclose(gm[0], gc[0], rtol=1e-12, atol=1e-14)
    for k in gc[2]:
        np.testing.assert_allclose(gm[2][k], gc[2][k], rtol=1e-12, atol=1e-14, err_msg=k)


def test_sort_lengths_is_a_stable_descending_sort():
    """_kernels.sort_lengths (the counting sort behind Run.nact) against numpy's argsort."""
    from fusedrnn import _kernels
    rng = np.random.default_rng(0)
    for _ in range(100):
        T, Bn = int(rng.integers(1, 20)), int(rng.integers(0, 30))
        lengths = rng.integers(1, T + 1, Bn).astype(np.intp)
        order, inverse, nact = _kernels.sort_lengths(lengths, T)
        np.testing.assert_array_equal(order, np.argsort(-lengths, kind="stable"))
        np.testing.assert_array_equal(order[inverse], np.arange(Bn))
        np.testing.assert_array_equal(
            nact, [(lengths > t).sum() for t in range(lengths.max() if Bn else 0)])
    for bad in ([0, 2], [3, 5]):
        with pytest.raises(ValueError, match="lengths"):
            _kernels.sort_lengths(np.array(bad, np.intp), 4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_wide_input_column_blocks(isa_path, kind, dtype):
    """An input wide enough that the projection of the short steps goes column block by
    column block (rnn_common.pgemm_steps: 600 features -> blocks of 96 / 32 columns), with
    pieces both long (>= 48 rows) and short, on one and two threads."""
    Iw, Hw, Tw, Bw = 600, 40, 6, 20
    cls = fusedrnn.LSTM if kind == "lstm" else fusedrnn.GRU
    m = cls(Iw, Hw, dtype=dtype, seed=5)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((Tw, Bw, Iw))
    lengths = np.r_[np.full(10, Tw), rng.integers(1, Tw + 1, Bw - 10)]
    rng.shuffle(lengths)
    expected = reference.rnn(kind, m.state_dict(), x.astype(dtype), lengths=lengths)
    before = fusedrnn.get_num_threads()
    try:
        for threads in (1, 2):
            fusedrnn.set_num_threads(threads)
            got = m(x, lengths=lengths)
            assert_close(got[0], expected[0], dtype, "out")
    finally:
        fusedrnn.set_num_threads(before)


def test_kernel_both_directions_at_once_with_lengths():
    """The layers run a padded batch's two directions one after the other (see Engine._plan);
    the kernel can also run them at once on a shared team: same results."""
    from fusedrnn._lengths import Lengths
    Bk, Hk, Tk = 12, 64, 7
    m = fusedrnn.LSTM(I, Hk, bidirectional=True, seed=1)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((Tk, Bk, I)).astype(np.float32)
    lengths = Lengths(rng.integers(1, Tk + 1, Bk).astype(np.intp), Tk)
    ks = [m._engine.kernel(0, d) for d in range(2)]
    st = (np.zeros((Bk, Hk), np.float32), np.zeros((Bk, Hk), np.float32))
    outs = []
    for together in (False, True):
        out = np.zeros((lengths.T_run * Bk, 2 * Hk), np.float32)
        fins = [tuple(np.zeros((Bk, Hk), np.float32) for _ in range(2)) for _ in range(2)]
        bufs = [k.buffers(lengths.T_run, Bk, 2) for k in ks]
        kw = dict(nact=lengths.nact, xrow=lengths.xrow())
        if together:
            ks[0].forward(bufs[0], x.reshape(Tk * Bk, I), out, 0, st, fins[0], False, 2,
                          ks[1], bufs[1], Hk, st, fins[1], **kw)
        else:
            for d in range(2):
                ks[d].forward(bufs[d], x.reshape(Tk * Bk, I), out, d * Hk, st, fins[d],
                              d == 1, 2, **kw)
        outs.append((lengths.caller_steps(out), fins))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    for a, b in zip(outs[0][1], outs[1][1]):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)


NONFINITE_CONFIGS = [("lstm", dict(proj_size=3)), ("lstm", dict()), ("gru", dict())]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("config", NONFINITE_CONFIGS, ids=cfg_id)
def test_gradients_after_a_nan_batch(config):
    """Backward's buffers (Engine._buffers "bwd": dhtot, r_all, rh_all, Run.state's hn, ...) are
    kept between calls with the same T, B.  Their padding rows of a variable-length pass are zeroed
    by the step backward (lstm_step_back, gru_step_back) so that the weight gradients' sums over
    every row see zeros there; in finite arithmetic a stale row times a zero row of the other
    operand is zero, so nothing in the suite notices a missing zeroing.  A batch whose gradients
    or inputs were non-finite (an overflowed loss, a NaN in x or d_out) leaves NaN in those buffers; the next
    variable-length batch must still get PyTorch's (finite) gradients."""
    kind, kw = config
    dtype = np.float64
    tm, m = pair(kind, dtype, **kw)
    tm.train()
    x, hx = data(kind, m, dtype, False, hx=True)
    unpack = (lambda a: a) if kind == "lstm" else (lambda a: a[0])
    # a full-length batch of NaN inputs and gradients (NaN in every row of every buffer)
    out, hn, tape = m.forward_train(np.full_like(x, np.nan), hx)
    d_nan = np.full(out.shape, np.nan, dtype)
    m.backward(tape, d_nan, unpack(tuple(np.full(a.shape, np.nan, dtype)
                                         for a in (hn if kind == "lstm" else (hn,)))))
    # then a variable-length batch of the same T, B
    lengths = PATTERNS["unsorted"]
    out, hn, tape = m.forward_train(x, hx, lengths=lengths)
    rng = np.random.default_rng(5)
    d_out = rng.standard_normal(out.shape).astype(dtype)
    d_hn = tuple(rng.standard_normal(a.shape).astype(dtype)
                 for a in (hn if kind == "lstm" else (hn,)))
    dx, dhx, grads = m.backward(tape, d_out, unpack(d_hn))
    t_dx, t_dhx, t_grads = torch_packed(tm, x, hx, lengths, (d_out, unpack(d_hn)))
    assert_close(dx, t_dx, dtype, "dx")
    for k in grads:
        assert np.isfinite(grads[k]).all(), k
        assert_close(grads[k], t_grads[k], dtype, k)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_gru_reset_before_gradients_after_a_nan_batch():
    """GRU reset_after=False (no PyTorch twin): its W_hn gradient sums dG_n^T (r h_{t-1}) over
    every row (gru_tail, rh_all); after a NaN batch, central differences of the NumPy
    reference's loss (tests/reference.py, variable lengths) on W_hh's n rows."""
    dtype, T, B, I, H = np.float64, 5, 4, 3, 4
    m = fusedrnn.GRU(I, H, reset_after=False, dtype=dtype, seed=2)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((T, B, I))
    h0 = 0.5 * rng.standard_normal((1, B, H))
    out, hn, tape = m.forward_train(np.full_like(x, np.nan), h0)
    m.backward(tape, np.full(out.shape, np.nan), np.full(hn.shape, np.nan))
    lengths = [5, 2, 4, 1]
    out, hn, tape = m.forward_train(x, h0, lengths=lengths)
    d_out, d_hn = rng.standard_normal(out.shape), rng.standard_normal(hn.shape)
    _, _, grads = m.backward(tape, d_out, d_hn)
    assert all(np.isfinite(g).all() for g in grads.values())
    params = {k: np.array(v, dtype=np.float64) for k, v in m.state_dict().items()}

    def loss():
        o, h = reference.rnn("gru", params, x, h0, reset_after=False, lengths=lengths)
        return float(np.sum(o * d_out) + np.sum(h * d_hn))

    W = params["weight_hh_l0"]
    for idx in [(2 * H, 0), (2 * H + 1, 3), (3 * H - 1, 1), (0, 2), (H + 2, 1)]:
        orig = W[idx]
        W[idx] = orig + 1e-6
        up = loss()
        W[idx] = orig - 1e-6
        down = loss()
        W[idx] = orig
        np.testing.assert_allclose(grads["weight_hh_l0"][idx], (up - down) / 2e-6,
                                   rtol=1e-6, atol=1e-8, err_msg=str(idx))
