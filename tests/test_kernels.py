"""The compiled kernels directly: the BLAS wrapper and the packed GEMM against NumPy (every
block and chunk path, every SIMD path), and the Kernel entry's buffer checks (a wrong buffer
raises, it never reaches the time loop)."""
import subprocess

import numpy as np
import pytest

from conftest import import_fusedrnn

import_fusedrnn()
from fusedrnn import _kernels  # noqa: E402

DTYPES = (np.float32, np.float64)
RTOL = {np.float32: 2e-5, np.float64: 1e-12}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("m,n,k", [(1, 7, 5), (3, 1, 4), (6, 9, 11), (1, 1, 1)])
def test_gemm_memview(dtype, ta, tb, m, n, k):
    rng = np.random.default_rng(m * 100 + n * 10 + k)
    A = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    B = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    C = rng.standard_normal((m, n)).astype(dtype)
    expected = 0.5 * (A.T if ta else A) @ (B.T if tb else B) + 2.0 * C
    _kernels.gemm_memview(ta, tb, 0.5, A, B, 2.0, C)
    np.testing.assert_allclose(C, expected, rtol=RTOL[dtype], atol=RTOL[dtype])


def test_gemm_memview_beta0_ignores_nan_in_c():
    A = np.ones((1, 3), np.float32)
    B = np.ones((3, 4), np.float32)
    C = np.full((1, 4), np.nan, np.float32)
    _kernels.gemm_memview(False, False, 1.0, A, B, 0.0, C)
    np.testing.assert_array_equal(C, 3.0)


# M x K x itemsize > 1 MiB takes the multi-chunk branch of packed_gemm.h (FRP_A_BYTES); K > 1024
# several k-blocks for float32 too (FRP_KC_F32), through the chunk (20 rows) and, on the AVX2
# path, the stack (5 rows) branch
PACKED_SHAPES = [(1, 1, 1), (1, 256, 1024), (2, 33, 31), (5, 300, 100), (13, 64, 97),
                 (40, 7, 64), (600, 600, 40), (1200, 300, 33), (20, 1100, 40), (5, 1100, 40)]


@pytest.mark.usefixtures("isa_path")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M,K,N", PACKED_SHAPES)
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_packed_gemm(dtype, M, K, N, beta):
    rng = np.random.default_rng(M + K + N)
    A = rng.standard_normal((M, K)).astype(dtype)
    W = rng.standard_normal((N, K)).astype(dtype)
    C = rng.standard_normal((M, N)).astype(dtype)
    expected = A.astype(np.float64) @ W.T.astype(np.float64) + beta * C
    _kernels.packed_gemm_memview(A, W, beta, C)
    tol = RTOL[dtype] * np.sqrt(K)
    np.testing.assert_allclose(C, expected, rtol=tol, atol=tol)


@pytest.mark.usefixtures("isa_path")
@pytest.mark.parametrize("n0,n1", [(0, 32), (32, 100), (64, 65), (5, 70), (96, 100)])
def test_packed_gemm_column_range(n0, n1):
    """Threads each compute a column range of C; the rest of C is untouched."""
    rng = np.random.default_rng(n0 * 1000 + n1)
    A = rng.standard_normal((7, 50)).astype(np.float32)
    W = rng.standard_normal((100, 50)).astype(np.float32)
    C = rng.standard_normal((7, 100)).astype(np.float32)
    expected = C.copy()
    expected[:, n0:n1] = A @ W[n0:n1].T
    _kernels.packed_gemm_memview(A, W, 0.0, C, n0, n1)
    np.testing.assert_allclose(C, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.usefixtures("isa_path")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M", [1, 3, 8, 13])
@pytest.mark.parametrize("H,lo,hi", [(64, 32, 64), (45, 32, 45), (45, 0, 32), (100, 5, 70)])
def test_packed_gemm_gate_blocks(dtype, M, H, lo, hi):
    """A thread's recurrent product in a forward step: the columns q H + [lo, hi) of each of
    the 4 gate blocks (fr_gemm_packed_blocks, A packed once); the rest of C is untouched."""
    rng = np.random.default_rng(M * 1000 + H * 10 + lo)
    A = rng.standard_normal((M, 37)).astype(dtype)
    W = rng.standard_normal((4 * H, 37)).astype(dtype)
    C = rng.standard_normal((M, 4 * H)).astype(dtype)
    expected = C.copy()
    for q in range(4):
        cols = slice(q * H + lo, q * H + hi)
        expected[:, cols] = A.astype(np.float64) @ W[cols].T.astype(np.float64) + C[:, cols]
    _kernels.packed_gemm_memview(A, W, 1.0, C, lo, hi, 4, H)
    np.testing.assert_allclose(C, expected, rtol=RTOL[dtype] * 7, atol=RTOL[dtype] * 7)


@pytest.mark.usefixtures("isa_path")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M", [1, 2, 3, 13])
@pytest.mark.parametrize("H,lo,hi,nblk,K", [(100, 0, 400, 1, 37), (64, 0, 64, 4, 300),
                                            (100, 5, 70, 4, 37), (45, 32, 45, 3, 8)])
def test_packed_gemm_reverse_walk(dtype, M, H, lo, hi, nblk, K):
    """The odd steps of a time loop may walk W last panel first (rev; taken for 1-2 rows):
    the same C, to the bit, as the forward walk, and right against NumPy; the columns outside
    the blocks are untouched."""
    rng = np.random.default_rng(M * 1000 + H * 10 + lo + K)
    A = rng.standard_normal((M, K)).astype(dtype)
    W = rng.standard_normal((max(nblk * H, hi), K)).astype(dtype)
    C0 = rng.standard_normal((M, W.shape[0])).astype(dtype)
    expected = C0.astype(np.float64)
    for q in range(nblk):
        cols = slice(q * H + lo, q * H + hi)
        expected[:, cols] += A.astype(np.float64) @ W[cols].T.astype(np.float64)
    fwd, rev = C0.copy(), C0.copy()
    _kernels.packed_gemm_memview(A, W, 1.0, fwd, lo, hi, nblk, H)
    _kernels.packed_gemm_memview(A, W, 1.0, rev, lo, hi, nblk, H, True)
    np.testing.assert_array_equal(rev, fwd)
    tol = RTOL[dtype] * np.sqrt(K) * 4
    np.testing.assert_allclose(rev, expected, rtol=tol, atol=tol)


def test_reverse_walk_size():
    """The reverse walk's limit is twice the L2 size the system reports (2 MiB if none)."""
    try:    # (Python's os.sysconf does not know _SC_LEVEL2_CACHE_SIZE)
        out = subprocess.run(["getconf", "LEVEL2_CACHE_SIZE"], capture_output=True, text=True)
        l2 = int(out.stdout.strip() or 0) if out.returncode == 0 else 0
    except (OSError, ValueError):
        l2 = 0
    assert _kernels.rev_bytes() == (2 * l2 if l2 > 0 else 2 * 1024 * 1024)


# backward's weight gradients: dW = dG^T X through the packed GEMM with dG read transposed
# (R x M x itemsize > 1 MiB: several chunks; M <= 6: the AVX2 path's stack branch)
GRAD_SHAPES = [(1, 1, 1), (1, 5, 3), (16, 6, 40), (7, 13, 33), (100, 64, 64), (1600, 200, 50),
               (300, 1030, 7)]


def _grad_expected(dG, X):
    return dG.T.astype(np.float64) @ X.astype(np.float64)


@pytest.mark.usefixtures("isa_path")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("R,M,N", GRAD_SHAPES)
@pytest.mark.parametrize("pieces", [1, 3])
@pytest.mark.parametrize("add", [False, True])
def test_grad_packed(dtype, R, M, N, pieces, add):
    """dW (=|+=) dG^T X, dW2 (=|+=) dG^T X2 (dG packed once for both) and db = the row sum of
    dG, split in `pieces` shares as threads split them."""
    rng = np.random.default_rng(R * 7 + M * 3 + N)
    dG = rng.standard_normal((R, M)).astype(dtype)
    X = rng.standard_normal((R, N)).astype(dtype)
    X2 = rng.standard_normal((R, N + 9)).astype(dtype)
    if add:
        dW = rng.standard_normal((M, N)).astype(dtype)
        dW2 = rng.standard_normal((M, N + 9)).astype(dtype)
    else:                                      # written, not added to
        dW = np.full((M, N), np.nan, dtype)
        dW2 = np.full((M, N + 9), np.nan, dtype)
    expected = _grad_expected(dG, X) + (dW if add else 0)
    expected2 = _grad_expected(dG, X2) + (dW2 if add else 0)
    db = np.full(M, np.nan, dtype)
    _kernels.grad_packed_memview(dG, X, dW, X2, dW2, db, add=add, pieces=pieces)
    tol = RTOL[dtype] * np.sqrt(R)
    np.testing.assert_allclose(dW, expected, rtol=tol, atol=tol)
    np.testing.assert_allclose(dW2, expected2, rtol=tol, atol=tol)
    np.testing.assert_allclose(db, dG.astype(np.float64).sum(0), rtol=tol, atol=tol)


@pytest.mark.usefixtures("isa_path")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("R,M,N", [(16, 6, 40), (1600, 200, 50)])
def test_grad_packed_without_workspace(dtype, R, M, N):
    """No workspace: the packed GEMM packs dG^T block by block on the stack."""
    rng = np.random.default_rng(R + M + N)
    dG = rng.standard_normal((R, M)).astype(dtype)
    X = rng.standard_normal((R, N)).astype(dtype)
    dW = np.full((M, N), np.nan, dtype)
    _kernels.grad_packed_memview(dG, X, dW, work=False)
    tol = RTOL[dtype] * np.sqrt(R)
    np.testing.assert_allclose(dW, _grad_expected(dG, X), rtol=tol, atol=tol)


def test_grad_packed_sums_no_rows_to_zero():
    dW = np.full((4, 3), np.nan, np.float32)
    db = np.full(4, np.nan, np.float32)
    _kernels.grad_packed_memview(np.zeros((0, 4), np.float32), np.zeros((0, 3), np.float32),
                                 dW, db=db)
    np.testing.assert_array_equal(dW, 0)
    np.testing.assert_array_equal(db, 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("T,B,N,t0,t1", [(1, 1, 1, 0, 1), (1, 3, 40, 0, 1), (5, 2, 33, 0, 5),
                                         (40, 16, 64, 0, 40), (7, 3, 35, 0, 3),
                                         (7, 3, 35, 3, 6), (7, 3, 35, 6, 7), (7, 3, 35, 2, 7)])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("pieces", [1, 2, 5])
def test_pack_hprev(dtype, T, B, N, t0, t1, reverse, pieces):
    """Backward's h_{t-1} rows of the steps t0 .. t1 (a block of the weight gradients): h0 at
    the direction's first step, else out at t - 1 (forward) or t + 1 (reverse), packed as
    fr_pack packs Hp^T."""
    rng = np.random.default_rng(T * 100 + B * 10 + N)
    h0 = rng.standard_normal((B, N)).astype(dtype)
    out = rng.standard_normal((T * B, N + 3)).astype(dtype)   # a wider row: another column's
    steps = out[:, :N].reshape(T, B, N)
    if reverse:
        hp = np.concatenate([steps[1:], h0[None]])
    else:
        hp = np.concatenate([h0[None], steps[:-1]])
    hp = hp[t0:t1].reshape((t1 - t0) * B, N)
    expected = _kernels.pack_memview(np.ascontiguousarray(hp.T), False)
    got = _kernels.pack_hprev_memview(T, B, t0, t1, h0, out, reverse, pieces)
    np.testing.assert_array_equal(got, expected)


# ------------------------------------------------------------------ Kernel entry checks
T, B, I, H = 3, 2, 5, 4


def _lstm_kernel(dtype=np.float32):
    rng = np.random.default_rng(0)
    k = _kernels.Kernel("lstm", rng.standard_normal((4 * H, I)).astype(dtype),
                        rng.standard_normal((4 * H, H)).astype(dtype), None,
                        rng.standard_normal(4 * H).astype(dtype), None)
    x = rng.standard_normal((T * B, I)).astype(dtype)
    out = np.zeros((T * B, H), dtype)
    init = (np.zeros((B, H), dtype), np.zeros((B, H), dtype))
    final = (np.zeros((B, H), dtype), np.zeros((B, H), dtype))
    return k, k.buffers(T, B, 1), x, out, init, final


def test_kernel_runs_with_good_buffers():
    k, b, x, out, init, final = _lstm_kernel()
    k.forward(b, x, out, 0, init, final, False, 1)
    assert np.abs(out).max() > 0 and np.array_equal(final[0], out[-B:])


def test_kernel_takes_rows_as_several_axes():
    """x (T, B, I), out (T, B, H), states (1, B, H): the same memory as the 2-D arrays, the
    same results to the bit (the short calls pass the caller's arrays as they are); leading
    axes whose product is not the row count are refused."""
    k, b, x, out, init, final = _lstm_kernel()
    k.forward(b, x, out, 0, init, final, False, 1)
    out3 = np.zeros((T, B, H), np.float32)
    final3 = tuple(np.zeros((1, B, H), np.float32) for _ in final)
    k.forward(b, x.reshape(T, B, I), out3, 0, tuple(s.reshape(1, B, H) for s in init), final3,
              False, 1)
    np.testing.assert_array_equal(out3.reshape(T * B, H), out)
    for f3, f in zip(final3, final):
        np.testing.assert_array_equal(f3[0], f)
    for bad_x in (np.zeros((T, B + 1, I), np.float32), np.zeros((T * B, 1, I + 1), np.float32),
                  np.zeros(I, np.float32)):
        with pytest.raises(ValueError, match="x must have shape"):
            k.forward(b, bad_x, out3, 0, init, final3, False, 1)


def misaligned(a):
    """A C-contiguous copy of a whose data is not aligned to its itemsize (like arrays made
    from byte buffers at odd offsets, e.g. received over Dask's protocol)."""
    raw = np.zeros(a.nbytes + 1, np.uint8)
    m = np.frombuffer(raw.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    m[...] = a
    assert not m.flags.aligned and m.flags.c_contiguous
    return m


@pytest.mark.parametrize("bad", ["x_shape", "x_dtype", "out_readonly", "out_strided", "h0",
                                 "c_n", "gates", "state", "aux", "work", "col", "threads",
                                 "x_misaligned", "gblk"])
def test_kernel_refuses_a_wrong_buffer(bad):
    k, b, x, out, init, final = _lstm_kernel()
    threads = 1
    col = 0
    if bad == "x_shape":
        x = x[:-1].copy()
    elif bad == "x_dtype":
        x = x.astype(np.float64)
    elif bad == "x_misaligned":
        x = misaligned(x)
    elif bad == "out_readonly":
        out.flags.writeable = False
    elif bad == "out_strided":
        out = np.zeros((T * B, 2 * H), np.float32)[:, ::2]
    elif bad == "h0":
        init = (np.zeros((B + 1, H), np.float32), init[1])
    elif bad == "c_n":
        final = (final[0], np.zeros((B, H - 1), np.float32))
    elif bad in ("gates", "state", "aux"):
        arr = getattr(b, bad)
        setattr(b, bad, np.zeros((arr.shape[0] + 1, arr.shape[1]), arr.dtype))
    elif bad == "work":
        b.work = b.work[:1].copy()
    elif bad == "gblk":
        b.gblk = T + 1                      # more steps than the pass
    elif bad == "col":
        col = 1
    else:
        threads = 2                         # buffers were made for one thread
    snapshot = out.copy()
    with pytest.raises(ValueError):
        k.forward(b, x, out, col, init, final, False, threads)
    np.testing.assert_array_equal(out, snapshot)


@pytest.mark.parametrize("parts, threads", [(2, 2), (3, 2), (2, 1), (4, 4)])
def test_kernel_batch_parts(parts, threads):
    """A pass split in parts of the batch (each a solo pass over its rows, parts may exceed the
    team: a thread then runs several in turn) gives the whole pass's results (up to rounding:
    the products of fewer rows may take other row blocks); uneven parts
    (B = 7), blocks of the input projection (37 steps, then 3), initial states."""
    rng = np.random.default_rng(3)
    T, B, I, H = 40, 7, 6, 32
    w = 1 / np.sqrt(H)          # (the scale of PyTorch's init: rounding differences stay small)
    k = _kernels.Kernel("lstm", (w * rng.standard_normal((4 * H, I))).astype(np.float32),
                        (w * rng.standard_normal((4 * H, H))).astype(np.float32), None,
                        (w * rng.standard_normal(4 * H)).astype(np.float32), None)
    x = rng.standard_normal((T * B, I)).astype(np.float32)
    init = tuple(rng.standard_normal((B, H)).astype(np.float32) for _ in range(2))
    results = []
    for n in (1, parts):
        b = k.buffers(T, B, max(parts, threads))
        assert b.gblk == 37
        out = np.full((T * B, H), np.nan, np.float32)
        final = tuple(np.full((B, H), np.nan, np.float32) for _ in range(2))
        k.forward(b, x, out, 0, init, final, False, 1 if n == 1 else threads, parts=n)
        results.append((out,) + final)
    for got, want in zip(results[1], results[0]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad", ["zero", "more_than_B", "more_than_threads", "other", "nact",
                                 "keep"])
def test_kernel_refuses_bad_parts(bad):
    k, b, x, out, init, final = _lstm_kernel()
    parts, threads, kw = 2, 2, {}
    b = k.buffers(T, B, 2, keep=bad == "keep")
    if bad == "zero":
        parts = 0
    elif bad == "more_than_B":
        b, parts = k.buffers(T, B, 3), 3
    elif bad == "more_than_threads":
        b, threads = k.buffers(T, B, 1), 1
    elif bad == "other":
        kw = dict(other=k, other_b=k.buffers(T, B, 2), other_init=init,
                  other_final=tuple(f.copy() for f in final))
    elif bad == "nact":
        kw = dict(nact=np.full(T, B, np.intp))
    snapshot = out.copy()
    with pytest.raises(ValueError, match="parts must be"):
        k.forward(b, x, out, 0, init, final, False, threads, parts=parts, **kw)
    np.testing.assert_array_equal(out, snapshot)


def test_kernel_refuses_backward_without_a_tape():
    k, b, x, out, init, final = _lstm_kernel()
    k.forward(b, x, out, 0, init, final, False, 1)
    bb = k.buffers(T, B, 1, backward=True)
    grads = (np.zeros((4 * H, I), np.float32), np.zeros((4 * H, H), np.float32), None,
             np.zeros(4 * H, np.float32), np.zeros(4 * H, np.float32))
    dinit = (np.zeros((B, H), np.float32), np.zeros((B, H), np.float32))
    with pytest.raises(ValueError, match="keep=True"):
        k.backward(b, bb, x, out, 0, init, out, final, np.zeros_like(x), False, dinit, grads,
                   False, 1)
    with pytest.raises(ValueError, match="backward buffers"):
        tb = k.buffers(T, B, 1, keep=True)
        k.backward(tb, k.buffers(T, B, 1), x, out, 0, init, out, final, np.zeros_like(x), False,
                   dinit, grads, False, 1)


def test_kernel_refuses_bad_weights():
    W = np.zeros((12, 4), np.float32)
    with pytest.raises(ValueError, match="kind"):
        _kernels.Kernel("rnn", W, W, None, np.zeros(12, np.float32), None)
    with pytest.raises(ValueError, match="W_hh"):
        _kernels.Kernel("gru", W, np.zeros((12, 3), np.float32), None,
                        np.zeros(12, np.float32), np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="bias"):
        _kernels.Kernel("gru", W, W, None, np.zeros(11, np.float32), np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="b_hn"):
        _kernels.Kernel("gru", W, W, None, np.zeros(12, np.float32), np.zeros(3, np.float32))


def test_kernel_refuses_buffers_of_a_smaller_cell():
    """Buffers made for a cell with fewer input features are too small for a few-row pass's
    packed input projection: refused, never overrun."""
    rng = np.random.default_rng(1)
    small = _kernels.Kernel("gru", rng.standard_normal((12, 2)).astype(np.float32),
                            np.zeros((12, 4), np.float32), None, np.zeros(12, np.float32),
                            np.zeros(4, np.float32))
    big = _kernels.Kernel("gru", rng.standard_normal((12, 300)).astype(np.float32),
                          np.zeros((12, 4), np.float32), None, np.zeros(12, np.float32),
                          np.zeros(4, np.float32))
    b = small.buffers(1, 1, 1)
    x = np.ones((1, 300), np.float32)
    out = np.zeros((1, 4), np.float32)
    with pytest.raises(ValueError, match="smaller cell"):
        big.forward(b, x, out, 0, (np.zeros((1, 4), np.float32),),
                    (np.zeros((1, 4), np.float32),), False, 1)
    big.forward(small.buffers(1, 1, 1, I=300), x, out, 0, (np.zeros((1, 4), np.float32),),
                (np.zeros((1, 4), np.float32),), False, 1)


def test_misaligned_arrays_are_accepted_by_the_layers():
    """Misaligned (but otherwise good) input, states, gradients and weights: the layers copy
    what the kernels cannot take; results equal those of aligned arrays."""
    fusedrnn = import_fusedrnn()
    m = fusedrnn.LSTM(I, H, num_layers=2, bidirectional=True, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    hx = tuple(rng.standard_normal((4, B, H)).astype(np.float32) for _ in range(2))
    ref = m(x, hx)
    got = m(misaligned(x), tuple(misaligned(h) for h in hx))
    np.testing.assert_array_equal(got[0], ref[0])
    out, _, tape = m.forward_train(misaligned(x), hx)
    d = rng.standard_normal(out.shape).astype(np.float32)
    g1 = m.backward(tape, misaligned(d))
    g2 = m.backward(m.forward_train(x, hx)[2], d)
    np.testing.assert_array_equal(g1[0], g2[0])
    m2 = fusedrnn.LSTM(I, H, num_layers=2, bidirectional=True)
    m2.load_state_dict({k: misaligned(v) for k, v in m.state_dict().items()})
    np.testing.assert_array_equal(m2(x, hx)[0], ref[0])
    cell = fusedrnn.GRUCell(I, H, seed=0)
    np.testing.assert_array_equal(cell(misaligned(x[0])), cell(x[0]))


GUARD_RTOL = {np.float32: 2e-5, np.float64: 1e-12}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("M,K,N", [(1, 9, 40), (3, 9, 64), (5, 20, 33), (7, 16, 32),
                                   (11, 40, 70), (13, 33, 32), (601, 600, 40)])
@pytest.mark.parametrize("beta", [0.0, 1.0])
@pytest.mark.parametrize("cols", ["all", "part"])
def test_rows_after_m_untouched(isa_path, dtype, M, K, N, beta, cols):
    """The packed GEMM writes only C[0:M, n0:n1] (packed_gemm.h: threads share C, and a step's rows are followed by other steps' rows in the time loop's buffers). The suite checks the columns outside [n0, n1) but never the rows after M: here C is the first M rows of a larger array whose other rows must stay as they were. Every SIMD path, both dtypes, beta 0 and 1, row counts that leave a remainder in every kernel's row blocks (scalar: 4 rows at a time), M = 1 (A read in place) and several chunks (M K > 1 MiB) with M not a multiple of the chunks."""
    rng = np.random.default_rng(M * 7 + K)
    A = rng.standard_normal((M, K)).astype(dtype)
    W = rng.standard_normal((N, K)).astype(dtype)
    big = rng.standard_normal((M + 8, N)).astype(dtype)
    guard = big[M:].copy()
    C = big[:M]
    n0, n1 = (0, N) if cols == "all" else (N // 3, N - 1)
    expected = C.astype(np.float64)
    expected[:, n0:n1] = A.astype(np.float64) @ W[n0:n1].T.astype(np.float64) \
        + beta * C[:, n0:n1]
    _kernels.packed_gemm_memview(A, W, beta, C, n0, n1)
    np.testing.assert_array_equal(big[M:], guard)
    tol = GUARD_RTOL[dtype] * np.sqrt(K)
    np.testing.assert_allclose(C, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("R,M,N", [(1600, 200, 50), (1601, 203, 33), (30, 13, 40)])
@pytest.mark.parametrize("add", [False, True])
def test_weight_gradient_rows_after_m_untouched(isa_path, dtype, R, M, N, add):
    """fr_gemm_packed_at (dW = dG^T X, A read transposed while it is packed, in chunks of
    rows of dW when M R is over 1 MiB): nothing after dW's M rows is written."""
    rng = np.random.default_rng(R + M)
    dG = rng.standard_normal((R, M)).astype(dtype)
    X = rng.standard_normal((R, N)).astype(dtype)
    big = rng.standard_normal((M + 8, N)).astype(dtype)
    guard = big[M:].copy()
    dW = big[:M]
    expected = dG.T.astype(np.float64) @ X.astype(np.float64) + (dW if add else 0)
    _kernels.grad_packed_memview(dG, X, dW, add=add)
    np.testing.assert_array_equal(big[M:], guard)
    tol = GUARD_RTOL[dtype] * np.sqrt(R)
    np.testing.assert_allclose(dW, expected, rtol=tol, atol=tol)
