"""Time steps shared between threads give the same results as one thread and as the reference.

The thread split is forced on small models (the size threshold is lowered) with odd sizes, so
that column chunks end inside packing panels and hidden-unit chunks are uneven; and with hidden
sizes that split into whole panels per thread (64 on 2 threads, 96 on 3), where each thread
computes the gate columns of its own hidden units (kernels/rnn_common.pxd, pgemm_gates), or
claims chunks of them (kernels/_kernels.pyx, "claims").
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import (assert_tree_close, flatten, import_fusedrnn, layer_cfg, layer_data,
                      ref_layer)

fusedrnn = import_fusedrnn()
from fusedrnn import _threads  # noqa: E402

CASES = [("lstm", 0, True), ("lstm", 7, True), ("gru", 0, True), ("gru", 0, False)]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind, proj_size, reset_after", CASES)
@pytest.mark.parametrize("B", [1, 5])
@pytest.mark.parametrize("H", [45, 64, 96])
def test_threads_match_reference(forced_threads, rng, threads, dtype, kind, proj_size,
                                 reset_after, B, H):
    fusedrnn.set_num_threads(threads)
    assert fusedrnn.get_num_threads() == threads
    cfg = layer_cfg(9, H, num_layers=2, bidirectional=True, proj_size=proj_size)
    cls = fusedrnn.LSTM if kind == "lstm" else fusedrnn.GRU
    extra = {} if kind == "lstm" else {"reset_after": reset_after}
    model = cls(dtype=dtype, seed=3, **cfg, **extra)
    x, hx = layer_data(rng, kind, cfg, 6, B, hx=True, dtype=dtype)
    got = model(x, hx)
    expected = ref_layer(kind, model.state_dict(), x, hx, cfg, reset_after=reset_after)
    assert_tree_close(got, expected, dtype)
    fusedrnn.set_num_threads(1)
    assert_tree_close(got, model(x, hx), dtype)


def test_thread_count_api(forced_threads):
    if hasattr(os, "sched_getaffinity"):
        # OpenMP's default in a fresh process (torch, imported here, changes OpenMP's count)
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
        code = "import fusedrnn; print(fusedrnn.get_num_threads())"
        got = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True).stdout
        assert int(got) == len(os.sched_getaffinity(0))
    # bad counts: rows threads-* of docs/errors.md (test_bad_input_table.py)


def test_threadpoolctl_limits_the_time_loop():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    fusedrnn.set_num_threads(None)
    with threadpoolctl.threadpool_limits(1):
        assert fusedrnn.get_num_threads() == 1


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind, proj_size, reset_after", CASES)
@pytest.mark.parametrize("H", [45, 96])
def test_backward_threads_match_one_thread(forced_threads, rng, threads, dtype, kind, proj_size,
                                           reset_after, H):
    """Gradients with steps shared between threads equal the one-thread gradients, which
    test_training.py checks against torch autograd."""
    cfg = layer_cfg(9, H, num_layers=2, bidirectional=True, proj_size=proj_size)
    cls = fusedrnn.LSTM if kind == "lstm" else fusedrnn.GRU
    extra = {} if kind == "lstm" else {"reset_after": reset_after}
    model = cls(dtype=dtype, seed=3, **cfg, **extra)
    x, hx = layer_data(rng, kind, cfg, 6, 5, hx=True, dtype=dtype)
    out, h_n, _ = model.forward_train(x, hx)
    d_out = rng.standard_normal(out.shape)
    d_h_n = tuple(rng.standard_normal(a.shape) for a in h_n) if kind == "lstm" else \
        rng.standard_normal(h_n.shape)
    results = []
    for n in (1, threads):
        fusedrnn.set_num_threads(n)
        _, _, tape = model.forward_train(x, hx)
        results.append(model.backward(tape, d_out, d_h_n))
    (dx1, dhx1, g1), (dxn, dhxn, gn) = results
    assert_tree_close(dxn, dx1, dtype)
    assert_tree_close(dhxn, dhx1, dtype)
    for name in g1:
        assert_tree_close(gn[name], g1[name], dtype, what=name)


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind, proj_size, reset_after", CASES)
def test_backward_threads_in_blocks_of_steps(forced_threads, monkeypatch, rng, threads, dtype,
                                             kind, proj_size, reset_after):
    """The weight gradients summed over blocks of steps (a small block budget: 2-4 steps
    here, T = 7), each block's packing and products shared between threads, equal the
    one-thread one-block gradients."""
    cfg = layer_cfg(9, 45, num_layers=2, bidirectional=True, proj_size=proj_size)
    cls = fusedrnn.LSTM if kind == "lstm" else fusedrnn.GRU
    extra = {} if kind == "lstm" else {"reset_after": reset_after}
    x, hx = layer_data(rng, kind, cfg, 7, 5, hx=True, dtype=dtype)
    results = []
    for n, budget in ((1, None), (threads, 3 * 5 * 128 * 8)):
        if budget:
            monkeypatch.setattr(fusedrnn._kernels, "GRAD_BLOCK_BYTES", budget)
        fusedrnn.set_num_threads(n)
        model = cls(dtype=dtype, seed=3, **cfg, **extra)
        out, h_n, tape = model.forward_train(x, hx)
        d_out = np.linspace(-1, 1, out.size).reshape(out.shape)
        results.append(model.backward(tape, d_out))
    (dx1, dhx1, g1), (dxn, dhxn, gn) = results
    assert_tree_close(dxn, dx1, dtype)
    assert_tree_close(dhxn, dhx1, dtype)
    for name in g1:
        assert_tree_close(gn[name], g1[name], dtype, what=name)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("kind, proj_size, reset_after", CASES)
def test_directions_together_or_in_turn(forced_threads, monkeypatch, rng, threads, kind,
                                        proj_size, reset_after):
    """The two directions of a layer run at the same time (each on its share of the threads)
    or one after the other: the same numbers as the reference either way, forward and
    backward."""
    from fusedrnn import _engine
    fusedrnn.set_num_threads(threads)
    cfg = layer_cfg(7, 33, num_layers=2, bidirectional=True, proj_size=proj_size)
    cls = fusedrnn.LSTM if kind == "lstm" else fusedrnn.GRU
    extra = {} if kind == "lstm" else {"reset_after": reset_after}
    model = cls(dtype=np.float64, seed=5, **cfg, **extra)
    x, hx = layer_data(rng, kind, cfg, 5, 3, hx=True, dtype=np.float64)
    expected = ref_layer(kind, model.state_dict(), x, hx, cfg, reset_after=reset_after)
    grads = []
    for min_work in (0, 1 << 62):
        monkeypatch.setattr(_engine, "TOGETHER_MIN_WORK", min_work)
        assert model._engine._plan(3)[1] == (min_work == 0 and threads >= 2)
        assert_tree_close(model(x, hx), expected, np.float64)
        out, h_n, tape = model.forward_train(x, hx)
        grads.append(model.backward(tape, np.ones_like(out))[2])
    for name in grads[0]:
        assert_tree_close(grads[1][name], grads[0][name], np.float64, what=name)


MIB = 1 << 20


@pytest.mark.parametrize("make, B, together", [
    # LSTM W_hh packs to (4H, H): H 1024 f32 is 16 MiB per direction, 2 x 16 > 0.6 x 32 MiB
    (lambda: fusedrnn.LSTM(8, 1024, bidirectional=True), 1, False),
    (lambda: fusedrnn.LSTM(8, 1024, bidirectional=True), 15, False),
    (lambda: fusedrnn.LSTM(8, 1024, bidirectional=True), 16, True),     # bound by FLOPs
    (lambda: fusedrnn.LSTM(8, 768, bidirectional=True), 1, True),       # 2 x 9 MiB
    (lambda: fusedrnn.GRU(8, 1024, bidirectional=True), 1, False),      # 2 x 12 MiB
    (lambda: fusedrnn.LSTM(8, 768, bidirectional=True, dtype=np.float64), 1, False),  # 2 x 18
    # with a projection: W_hh (4096, 256) 4 MiB + W_hr (256, 1024) 1 MiB per direction
    (lambda: fusedrnn.LSTM(8, 1024, bidirectional=True, proj_size=256), 1, True),
])
def test_directions_in_turn_when_their_weights_exceed_the_cache(monkeypatch, make, B, together):
    """A small batch of a bidirectional layer whose two directions' packed recurrent weights
    exceed TOGETHER_CACHE_SHARE (0.6) of the last-level cache runs the directions one after the
    other on the whole team (each step then reads one direction's weights from the cache, not
    both from memory); from TOGETHER_CACHE_ROWS (16) rows on, or when they fit, together."""
    from fusedrnn import _engine
    monkeypatch.setattr(_engine, "last_level_cache", lambda: 32 * MIB)
    fusedrnn.set_num_threads(2)
    try:
        model = make()
        assert model._engine._plan(B)[:2] == (2, together)
        monkeypatch.setattr(_engine, "last_level_cache", lambda: 1024 * MIB)
        assert model._engine._plan(B)[:2] == (2, True)
        assert model._engine._plan(B, lengths=np.array([1]))[1] is False
    finally:
        fusedrnn.set_num_threads(None)


PART_CASES = [  # I, H, T, B, layers, bidirectional (directions in turn), threads
    (9, 45, 6, 8, 2, False, 2),         # 4 rows a part, hidden units not in whole panels
    (9, 64, 6, 13, 1, True, 3),         # uneven parts (4, 4, 5), reverse direction
    (9, 32, 20, 17, 2, False, 4),       # blocks of 16 steps of the input projection, then 4
    (300, 40, 3, 9, 1, False, 2),       # I >= 256: the blocks are whole sequences
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["lstm", "lstm_proj", "gru", "gru_orig"])
@pytest.mark.parametrize("I, H, T, B, num_layers, bidirectional, threads", PART_CASES, ids=str)
def test_batch_parts(forced_threads, monkeypatch, rng, dtype, kind, I, H, T, B, num_layers,
                     bidirectional, threads):
    """Inference split in parts of the batch, one thread each running every step of its rows
    (fusedrnn._engine.PART_MIN_ROWS): the reference's results and one thread's, with initial
    states and final states, stacked layers, both directions (one after the other)."""
    from fusedrnn import _engine
    monkeypatch.setattr(_engine, "TOGETHER_MIN_WORK", 1 << 62)
    cfg = layer_cfg(I, H, num_layers=num_layers, bidirectional=bidirectional,
                    proj_size=5 if kind == "lstm_proj" else 0)
    base, model = _claims_model(kind, cfg, dtype, 6)
    x, hx = layer_data(rng, base, cfg, T, B, hx=True, dtype=dtype)
    fusedrnn.set_num_threads(threads)
    assert model._engine._plan(B) == (threads, False, threads)
    got = model(x, hx)
    expected = ref_layer(base, model.state_dict(), x, hx, cfg, reset_after=kind != "gru_orig")
    assert_tree_close(got, expected, dtype)
    fusedrnn.set_num_threads(1)
    assert_tree_close(got, model(x, hx), dtype)


@pytest.mark.parametrize("path, threads, B, H, llc, parts", [
    ("avx512", 2, 8, 128, 32 * MIB, 2),     # 4 rows a part
    ("avx512", 2, 7, 128, 32 * MIB, 1),     # 3 rows a part: the threads share each step
    ("avx512", 3, 12, 128, 32 * MIB, 3),
    ("avx512", 3, 11, 128, 32 * MIB, 1),
    ("avx512", 2, 8, 256, 32 * MIB, 2),     # 1 MiB, more than half of L2: 4 rows still
    ("avx512", 2, 64, 704, 32 * MIB, 2),    # LSTM W_hh packs to (4 x 704, 704) f32: 7.6 MiB
    ("avx512", 2, 64, 736, 32 * MIB, 1),    # 8.3 MiB > 0.25 x 32 MiB: read by every thread
    ("avx512", 2, 64, 1024, 32 * MIB, 1),   # 16 MiB
    ("avx512", 2, 64, 1024, 128 * MIB, 2),
    ("avx512", 1, 64, 128, 32 * MIB, 1),
    ("avx2", 2, 8, 128, 32 * MIB, 2),       # 256 KiB: in half of L2, 4 rows a part
    ("avx2", 2, 31, 256, 32 * MIB, 1),      # 1 MiB: 16 rows a part
    ("avx2", 2, 32, 256, 32 * MIB, 2),
    ("avx2", 2, 64, 736, 32 * MIB, 1),
    ("scalar", 2, 16, 256, 32 * MIB, 1),
    ("scalar", 2, 16, 128, 32 * MIB, 2),
])
def test_batch_parts_plan(forced_threads, monkeypatch, path, threads, B, H, llc, parts):
    """A direction's inference pass runs in one part of its batch per thread when each part
    gets at least PART_MIN_ROWS (4) rows (on the AVX2 and scalar paths PART_MIN_ROWS_L3, 16,
    when its weights exceed half of L2) and its packed recurrent weights take at most
    PART_CACHE_SHARE (0.25) of the last-level cache; not with variable lengths, nor for the
    directions of a layer that run together (each on its own threads, no barrier either)."""
    from fusedrnn import _engine
    monkeypatch.setattr(_engine, "last_level_cache", lambda: llc)
    monkeypatch.setattr(_engine, "l2_cache", lambda: 1 * MIB)
    monkeypatch.setattr(_engine, "isa", lambda: path)
    fusedrnn.set_num_threads(threads)
    model = fusedrnn.LSTM(8, H)
    assert model._engine._plan(B) == (threads, False, parts)
    assert model._engine._plan(B, lengths=np.ones(B))[2] == 1
    if threads >= 2:
        bi = fusedrnn.LSTM(8, H, bidirectional=True)
        assert bi._engine._plan(B)[1:] == (True, 1)


def test_recurrent_bytes_of_a_direction():
    """The bytes the cache rule counts: packed W_hh, columns padded to panels of 32 (and W_hr)."""
    lstm = fusedrnn.LSTM(8, 33, bidirectional=True)
    assert lstm._engine._recurrent_bytes() == 160 * 33 * 4           # 132 gate rows -> 160
    gru = fusedrnn.GRU(8, 33, dtype=np.float64)
    assert gru._engine._recurrent_bytes() == 128 * 33 * 8            # 99 -> 128
    proj = fusedrnn.LSTM(8, 40, proj_size=7)
    assert proj._engine._recurrent_bytes() == (160 * 7 + 32 * 40) * 4  # W_hh (160, 7), W_hr (7->32, 40)


def test_cache_sizes_from_sysfs(tmp_path, monkeypatch):
    """The cache sizes come from sysfs' cpu0/cache/index*/size (K, M suffixes; unreadable
    entries skipped) with their level (0 when unreadable); no sysfs: none, and
    last_level_cache and l2_cache fall back to LLC_DEFAULT and L2_DEFAULT."""
    from fusedrnn import _engine
    for name, size, level in [("index0", "32K", "1"), ("index1", "32K", "1"),
                              ("index2", "1024K", "2\n"), ("index3", "32768K\n", "3"),
                              ("index4", "garbage", "3"), ("index5", "2M", None)]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "size").write_text(size)
        if level is not None:
            (tmp_path / name / "level").write_text(level)
    (tmp_path / "index6").mkdir()                     # no size file
    (tmp_path / "uevent").write_text("")
    assert _engine.cache_sizes(str(tmp_path)) == [(1, 32 << 10), (1, 32 << 10), (2, 1 << 20),
                                                  (3, 32 * MIB), (0, 2 * MIB)]
    assert _engine.cache_sizes(str(tmp_path / "missing")) == []
    assert _engine.last_level_cache() >= 1 << 20
    monkeypatch.setattr(_engine, "cache_sizes", lambda: [(2, 1 << 20), (3, 32 * MIB),
                                                          (0, 2 * MIB), (2, 512 << 10)])
    assert _engine.last_level_cache.__wrapped__() == 32 * MIB       # the largest
    assert _engine.l2_cache.__wrapped__() == 1 << 20
    monkeypatch.setattr(_engine, "cache_sizes", lambda: [])
    assert _engine.last_level_cache.__wrapped__() == _engine.LLC_DEFAULT == 32 * MIB
    assert _engine.l2_cache.__wrapped__() == _engine.L2_DEFAULT == 512 << 10


@pytest.mark.skipif(not hasattr(os, "register_at_fork"), reason="no fork on this platform")
@pytest.mark.parametrize("bidirectional", [False, True])
def test_forked_child_after_a_multithreaded_call(bidirectional):
    """A process forked (multiprocessing's "fork") after a call on 2 threads runs its calls on
    one thread (GNU OpenMP's team does not survive fork: a parallel region there waited
    forever) with the parent's results; a child forked before any such call keeps 2."""
    code = """if True:
        import multiprocessing as mp, numpy as np, fusedrnn
        m = fusedrnn.GRU(8, 64, bidirectional=BIDI, seed=0)
        x = np.random.default_rng(0).standard_normal((5, 8, 8)).astype(np.float32)
        fusedrnn.set_num_threads(2)
        def child(_):
            return fusedrnn.get_num_threads(), m(x)[0]
        ctx = mp.get_context("fork")
        with ctx.Pool(1) as pool:                       # forked before any call: 2 threads
            assert pool.apply_async(child, (0,)).get(60)[0] == 2
        ref = m(x)[0]                                   # the parent's call on 2 threads
        with ctx.Pool(1) as pool:
            threads, out = pool.apply_async(child, (0,)).get(60)   # timeout: hung
        assert threads == 1, threads
        np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
        print("ok")
    """.replace("BIDI", str(bidirectional))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=180)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]


def test_team_smaller_than_asked():
    """OpenMP may give a parallel region fewer threads than asked (OMP_THREAD_LIMIT, a call
    from inside another OpenMP region): a bidirectional layer meant to run its two directions
    at the same time on 2 threads then runs them in turn on one, and a batch meant to run in
    2 parts its parts in turn, with the same results."""
    code = """if True:
        import numpy as np, fusedrnn
        from fusedrnn import _threads
        _threads.MIN_WORK_PER_THREAD = 1
        m = fusedrnn.LSTM(8, 64, bidirectional=True, seed=0)
        x = np.random.default_rng(0).standard_normal((5, 3, 8)).astype(np.float32)
        fusedrnn.set_num_threads(1)
        ref = m(x)
        fusedrnn.set_num_threads(2)
        assert m._engine._plan(3)[1], "the directions should run together"
        got = m(x)
        for a, b in zip((ref[0],) + ref[1], (got[0],) + got[1]):
            np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)
        m = fusedrnn.GRU(8, 64, seed=0)
        x = np.random.default_rng(0).standard_normal((5, 9, 8)).astype(np.float32)
        fusedrnn.set_num_threads(1)
        ref = m(x)
        fusedrnn.set_num_threads(2)
        assert m._engine._plan(9)[2] == 2, "the batch should run in 2 parts"
        got = m(x)
        for a, b in zip(ref, got):
            np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)
        print("ok")
    """
    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("H", [45, 64, 96])
@pytest.mark.parametrize("kind", ["lstm", "gru", "gru_orig"])
@pytest.mark.parametrize("T", [1, 3])
def test_short_calls_on_threads(forced_threads, rng, threads, H, kind, T):
    """Calls of T * B <= 4 rows (a cell step, a short stream chunk) split their input
    projection like their steps (by hidden units when H splits into whole panels per thread):
    the same as one thread and as the reference."""
    cfg = layer_cfg(7, H)
    cls = fusedrnn.LSTM if kind == "lstm" else fusedrnn.GRU
    extra = {"reset_after": kind != "gru_orig"} if kind != "lstm" else {}
    model = cls(seed=5, **cfg, **extra)
    x, hx = layer_data(rng, "lstm" if kind == "lstm" else "gru", cfg, T, 1, hx=True,
                       dtype=np.float32)
    fusedrnn.set_num_threads(threads)
    got = model(x, hx)
    expected = ref_layer("lstm" if kind == "lstm" else "gru", model.state_dict(), x, hx, cfg,
                         reset_after=kind != "gru_orig")
    assert_tree_close(got, expected, np.float32)
    fusedrnn.set_num_threads(1)
    assert_tree_close(got, model(x, hx), np.float32)


@pytest.fixture
def claims(monkeypatch):
    """Steps of any size split in claimed chunks (kernels/_kernels.pyx, claim_settings), not
    in parts of the batch; the defaults again after."""
    from fusedrnn import _engine, _kernels
    monkeypatch.setattr(_engine, "PART_MIN_ROWS", 1 << 30)
    old = _kernels.claim_settings(min_work=0)
    yield _kernels
    _kernels.claim_settings(*old)


def _claims_model(kind, cfg, dtype, seed):
    """An LSTM (kind "lstm", "lstm_proj") or GRU (reset_after: "gru"; "gru_orig": False)."""
    base = "gru" if kind.startswith("gru") else "lstm"
    cls = fusedrnn.LSTM if base == "lstm" else fusedrnn.GRU
    extra = {"reset_after": kind == "gru"} if base == "gru" else {}
    return base, cls(dtype=dtype, seed=seed, **cfg, **extra)


def _inference_bufs(model, T, B):
    """The inference buffers of every layer and direction for T steps of B rows."""
    return [b for _, bufs in model._engine._inference(T, B, None)[-1] for b in bufs]


def _all_claimed(model, T, B):
    """Whether every layer and direction's last inference call used its claim counters."""
    return all(b.claims is not None and b.claims.any() for b in _inference_bufs(model, T, B))


CLAIM_CASES = [  # I, H, T, B, layers, bidirectional, variable lengths, threads
    (9, 64, 6, 64, 1, False, False, 2),     # projection by blocks of 4 steps, in the chunks
    (9, 96, 6, 64, 1, False, False, 3),
    (7, 64, 3, 1, 1, False, False, 2),      # 3 rows: a short call's projection in the chunks
    (7, 96, 1, 1, 1, False, False, 3),
    (16, 64, 5, 5, 2, True, True, 2),       # stacked, both directions, variable lengths
    (16, 64, 5, 5, 2, True, False, 4),      # directions together, 2 threads each
    # several chunks per owner (16 rows: the step products of the time loop's benchmarks), the
    # input projection in them at the blocks' first steps (s = 0 and 16)
    (9, 128, 20, 16, 1, False, False, 2),
    (9, 128, 20, 16, 1, True, False, 4),    # reverse: a block's first step is its last time
    (9, 192, 20, 16, 1, False, False, 3),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["lstm", "lstm_proj", "gru", "gru_orig"])
@pytest.mark.parametrize("I, H, T, B, num_layers, bidirectional, lengths, threads", CLAIM_CASES,
                         ids=str)
def test_claimed_chunks(forced_threads, claims, isa_path, rng, dtype, kind, I, H, T, B,
                        num_layers, bidirectional, lengths, threads):
    """Threads that claim chunks of a step's hidden units (their own first, then the others'),
    in inference and in training's forward: the same results, to the bit, as one thread,
    whichever thread computes a chunk (claim_skew: each thread first claims another's chunks),
    on every SIMD path; and the reference's, and one thread's gradients."""
    cfg = layer_cfg(I, H, num_layers=num_layers, bidirectional=bidirectional,
                    proj_size=5 if kind == "lstm_proj" else 0)
    base, model = _claims_model(kind, cfg, dtype, 4)
    x, hx = layer_data(rng, base, cfg, T, B, hx=True, dtype=dtype)
    lens = None
    if lengths:
        lens = rng.integers(1, T + 1, B)
        lens[0] = T
    fusedrnn.set_num_threads(1)
    want = model(x, hx, lengths=lens)
    out1, hn1, tape = model.forward_train(x, hx, lengths=lens)
    d_out = np.linspace(-1, 1, out1.size).reshape(out1.shape).astype(dtype)
    grads1 = model.backward(tape, d_out)
    assert_tree_close(want, ref_layer(base, model.state_dict(), x, hx, cfg,
                                      reset_after=kind != "gru_orig", lengths=lens), dtype)
    fusedrnn.set_num_threads(threads)
    for skew in range(threads):
        claims.claim_settings(skew=skew)
        got = model(x, hx, lengths=lens)
        if lens is None:        # the counters of the inference buffers were used
            assert _all_claimed(model, T, B)
        out, hn, tape = model.forward_train(x, hx, lengths=lens)
        for a, b in zip(flatten(want) + flatten((out1, hn1)), flatten(got) + flatten((out, hn))):
            np.testing.assert_array_equal(b, a)
        grads = model.backward(tape, d_out)
        assert_tree_close(grads[:2], grads1[:2], dtype)
        for name in grads1[2]:
            assert_tree_close(grads[2][name], grads1[2][name], dtype, what=name)


def test_claims_need_room():
    """Buffers whose space for pre-packed operands is too small for a pass are refused."""
    from fusedrnn import _kernels
    model = fusedrnn.LSTM(8, 64, seed=0)
    k = model._engine.kernel(0, 0)
    b = k.buffers(6, 64, 2)
    assert b.pk is not None and b.claims.shape == (2 * 2 * 8,)
    b.pkx = 16
    x = np.zeros((6 * 64, 8), np.float32)
    out = np.zeros((6 * 64, 64), np.float32)
    h = np.zeros((64, 64), np.float32)
    with pytest.raises(ValueError, match="pk of"):
        k.forward(b, x, out, 0, (h, h), (h.copy(), h.copy()), False, 2)
    assert _kernels.claim_settings()[0] == 1 << 21


# backward keeps BLAS on one thread while its kernels run and gives BLAS its thread count back
# when the call ends (fusedrnn._threads.blas_single_thread); nothing in tests/ checks either.
def _blas_counts():
    import threadpoolctl
    return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]


@pytest.fixture
def two_blas_threads():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        if not _blas_counts() or min(_blas_counts()) < 2:
            pytest.skip("no BLAS library whose thread count can be set to 2")
        yield _blas_counts()


def test_backward_gives_blas_its_threads_back(two_blas_threads):
    model = fusedrnn.LSTM(16, 32, num_layers=2, seed=0)
    x = np.random.default_rng(0).standard_normal((20, 8, 16)).astype(np.float32)
    out, _, tape = model.forward_train(x)
    model.backward(tape, np.ones_like(out))
    assert _blas_counts() == two_blas_threads


def test_blas_is_single_threaded_only_inside(two_blas_threads):
    with _threads.blas_single_thread(_threads.BLAS_SERIAL_SIZE + 1):
        assert set(_blas_counts()) == {1}
        with _threads.blas_single_thread(_threads.BLAS_SERIAL_SIZE + 1):   # nested: still 1
            assert set(_blas_counts()) == {1}
        assert set(_blas_counts()) == {1}        # the outer call still runs
    assert _blas_counts() == two_blas_threads
    with _threads.blas_single_thread(_threads.BLAS_SERIAL_SIZE):         # small: left alone
        assert _blas_counts() == two_blas_threads


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["lstm", "gru", "gru_orig"])
@pytest.mark.parametrize("B", [4, 6, 7])
def test_claimed_chunks_of_one_row_block(forced_threads, claims, isa_path, dtype, kind, B):
    """Claimed chunks pack a step's left operand once per thread (fr_pack_left) unless the
    block kernel reads it in place: on the AVX2 path a step of up to 6 rows (its most) is one
    row block read in place, 7 rows are two. Every SIMD path, against the reference."""
    cfg = layer_cfg(5, 64, num_layers=1, bidirectional=False, proj_size=0)
    base, model = _claims_model(kind, cfg, dtype, 5)
    x, hx = layer_data(np.random.default_rng(B), base, cfg, 4, B, hx=True, dtype=dtype)
    fusedrnn.set_num_threads(2)
    got = model(x, hx)
    assert _all_claimed(model, 4, B)
    assert_tree_close(got, ref_layer(base, model.state_dict(), x, hx, cfg,
                                     reset_after=kind != "gru_orig"), dtype)


@pytest.mark.parametrize("kind", ["lstm", "gru", "gru_orig"])
def test_claimed_chunks_last_chunk_shorter(forced_threads, claims, kind):
    """H = 832 = 26 panels on 2 threads: chunks of 3 panels (96 units) and a last one of 64,
    which claim_next clips to H (every CLAIM_CASES chunk is one whole panel)."""
    cfg = layer_cfg(4, 832, num_layers=1, bidirectional=False, proj_size=0)
    base, model = _claims_model(kind, cfg, np.float32, 6)
    x, hx = layer_data(np.random.default_rng(7), base, cfg, 3, 3, hx=True, dtype=np.float32)
    fusedrnn.set_num_threads(2)
    expected = ref_layer(base, model.state_dict(), x, hx, cfg, reset_after=kind != "gru_orig")
    for skew in (0, 1):
        claims.claim_settings(skew=skew)
        got = model(x, hx)
        assert _all_claimed(model, 3, 3)
        assert_tree_close(got, expected, np.float32)


@pytest.mark.parametrize("kind", ["lstm", "gru", "gru_orig"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_claimed_projection_of_a_large_x_block(forced_threads, claims, kind, dtype):
    """I = 1024, B = 16, T = 66: the x block a claimed chunk projects (packed once per thread
    into Run.pk) is packed in several chunks of rows (packed_gemm.h, M K over 1 MiB)."""
    I, H, T, B = 1024, 64, 66, 16
    cfg = layer_cfg(I, H, num_layers=1, bidirectional=False, proj_size=0)
    base, model = _claims_model(kind, cfg, dtype, 11)
    x, hx = layer_data(np.random.default_rng(12), base, cfg, T, B, hx=True, dtype=dtype)
    fusedrnn.set_num_threads(2)
    got = model(x, hx)
    assert _all_claimed(model, T, B)
    assert all(b.gblk < T and b.pksz - b.pkx >= b.gblk * B * I      # x blocks in the chunks
               for b in _inference_bufs(model, T, B))
    expected = ref_layer(base, model.state_dict(), x, hx, cfg, reset_after=kind != "gru_orig")
    if dtype == np.float64:
        assert_tree_close(got, expected, dtype)
    else:   # sums of 1024 terms: a looser bound than conftest's float32 tolerance
        for a, e in zip(flatten(got), flatten(expected)):
            np.testing.assert_allclose(a, e, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["lstm", "gru", "gru_orig"])
@pytest.mark.parametrize("H, threads", [(2, 1), (18, 2)])
def test_two_unit_range_odd_batch(forced_threads, isa_path, dtype, kind, H, threads):
    """The gate passes run rows in pairs (rnn_math.h fr_pair_at / fr_npairs): an odd last row
    as its two halves of units, an odd last unit as a pair of itself.  A range of exactly 2
    units (H = 2, or a thread's last chunk of 2 units: H = 18 on 2 threads) is the one width
    whose halves are single units with no odd unit left; B = 3."""
    cfg = layer_cfg(3, H, num_layers=1, bidirectional=True, proj_size=0)
    base, model = _claims_model(kind, cfg, dtype, 8)
    x, hx = layer_data(np.random.default_rng(H + 3), base, cfg, 4, 3, hx=True, dtype=dtype)
    fusedrnn.set_num_threads(threads)
    got = model(x, hx)
    expected = ref_layer(base, model.state_dict(), x, hx, cfg, reset_after=kind != "gru_orig")
    assert_tree_close(got, expected, dtype)
