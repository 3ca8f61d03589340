"""fusedrnn.dask.predict: a Dask array of sequences scored chunk by chunk, on a LocalCluster of
two worker processes and on the threaded scheduler.

References: the same model called in this process, once per chunk (the workers' computation:
bitwise equal) and once on the whole batch (equal within the dtype's tolerance: the kernels'
row blocking depends on the batch size, so a row's rounding can differ by an ulp between a
chunk and the whole batch).  Bad input is in docs/errors.md (tests/test_bad_input_table.py).
"""
import inspect
import os
import pickle
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from conftest import assert_close, flatten, import_fusedrnn

fusedrnn = import_fusedrnn()
dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
import fusedrnn.dask as fdask  # noqa: E402

I = 5
CHUNKS = (7, 13, 4, 16, 1)          # uneven, N = 41
MODELS = {
    "lstm-bi-L2": lambda dt: fusedrnn.LSTM(I, 6, num_layers=2, bidirectional=True, dtype=dt,
                                           seed=0),
    "lstm-proj-bf": lambda dt: fusedrnn.LSTM(I, 6, proj_size=3, batch_first=True, dtype=dt,
                                             seed=1),
    "gru-bi": lambda dt: fusedrnn.GRU(I, 6, bidirectional=True, dtype=dt, seed=2),
    "lstm-bi-sum": lambda dt: fusedrnn.LSTM(I, 6, bidirectional=True, merge_mode="sum",
                                            dtype=dt, seed=4),
    "gru-orig-L2-bf": lambda dt: fusedrnn.GRU(I, 6, num_layers=2, reset_after=False,
                                              batch_first=True, dtype=dt, seed=3),
}


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=40) as cluster, \
            distributed.Client(cluster) as c:
        yield c


def data(dtype, N=sum(CHUNKS), T=9, seed=0):
    return np.random.default_rng(seed).standard_normal((N, T, I)).astype(dtype)


def call(model, x, hx=None):
    """The model on batch-first x (N, T, I) in this process: (out (N, T, ·), *final states)."""
    out, h = model(x if model.batch_first else x.transpose(1, 0, 2), hx)
    out = out if model.batch_first else out.transpose(1, 0, 2)
    return (out,) + (h if isinstance(h, tuple) else (h,))


def per_chunk(model, x, chunks, hx=None):
    """call() on each chunk of sequences, concatenated."""
    edges = np.cumsum((0,) + tuple(chunks))
    parts = []
    for a, b in zip(edges[:-1], edges[1:]):
        h = None if hx is None else \
            (tuple(s[:, a:b] for s in hx) if isinstance(hx, tuple) else hx[:, a:b])
        parts.append(call(model, x[a:b], h))
    return tuple(np.concatenate(p, axis=0 if k == 0 else 1) for k, p in enumerate(zip(*parts)))


def flat(result):
    """(out, h_n) or (out, (h_n, c_n)) -> (out, h_n[, c_n])."""
    return tuple(flatten(result))


def check(model, x, got, chunks, hx=None):
    """Computed results `got` against per-chunk calls (bitwise) and one call (tolerance)."""
    want_chunks = per_chunk(model, x, chunks, hx)
    want_whole = call(model, x, hx)
    assert len(got) == len(want_whole)
    for g, c, w in zip(got, want_chunks, want_whole):
        assert g.dtype == model.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g, c)
        assert_close(g, w, model.dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", list(MODELS))
def test_local_cluster_equals_in_process(client, case, dtype):
    model = MODELS[case](dtype)
    x = data(dtype)
    lazy = flat(fdask.predict(model, da.from_array(x, chunks=(CHUNKS, -1, -1))))
    assert lazy[0].chunks[0] == CHUNKS
    assert all(s.chunks[1] == CHUNKS for s in lazy[1:])
    got = client.compute(list(lazy), sync=True)
    check(model, x, got, CHUNKS)


def test_local_cluster_with_initial_states(client):
    """hx as numpy h0 and Dask c0 (chunked differently from x: predict rechunks it)."""
    model = MODELS["lstm-bi-L2"](np.float64)
    x = data(np.float64)
    rng = np.random.default_rng(5)
    h0 = rng.standard_normal((4, x.shape[0], 6))
    c0 = rng.standard_normal((4, x.shape[0], 6))
    lazy = flat(fdask.predict(model, da.from_array(x, chunks=(CHUNKS, -1, -1)),
                              (h0, da.from_array(c0, chunks=(2, 10, 3)))))
    got = client.compute(list(lazy), sync=True)
    check(model, x, got, CHUNKS, (h0, c0))
    assert not np.array_equal(got[0], call(model, x)[0])     # the states were used


@pytest.fixture
def default_threads():
    """No process-wide count (fusedrnn.set_num_threads(n) would win over predict's limit)."""
    fusedrnn.set_num_threads(None)
    yield
    fusedrnn.set_num_threads(None)


def test_threaded_scheduler_one_thread_per_task_restored(default_threads):
    """On Dask's threaded scheduler every task runs the model on one OpenMP thread, and the
    pool's threads and the caller have their own counts back afterwards."""
    seen = []

    class Spy(fusedrnn.GRU):
        def forward(self, *args, **kwargs):
            seen.append(fusedrnn.get_num_threads())
            return super().forward(*args, **kwargs)

    model = Spy(I, 6, bidirectional=True, dtype=np.float64, seed=2)
    x = data(np.float64)
    with ThreadPoolExecutor(2) as pool:
        before = sorted(pool.submit(fusedrnn.get_num_threads).result() for _ in range(4))
        mine = fusedrnn.get_num_threads()
        lazy = flat(fdask.predict(model, da.from_array(x, chunks=(CHUNKS, -1, -1))))
        got = dask.compute(*lazy, scheduler="threads", pool=pool)
        after = sorted(pool.submit(fusedrnn.get_num_threads).result() for _ in range(4))
    assert seen == [1] * len(CHUNKS)
    assert after == before and fusedrnn.get_num_threads() == mine
    check(model, x, got, CHUNKS)


def test_model_is_in_the_graph_once():
    """The graph holds the model once, not once per chunk: its pickled size is about the
    weights' size with 8 chunks."""
    cloudpickle = pytest.importorskip("cloudpickle")
    model = fusedrnn.LSTM(16, 64, num_layers=2, seed=0)
    weights = sum(v.nbytes for v in model.state_dict().values())
    x = da.zeros((80, 3, 16), chunks=(10, -1, -1), dtype=np.float32)
    graph = {}
    for a in flat(fdask.predict(model, x)):
        graph.update(dict(a.__dask_graph__()))
    assert weights < len(cloudpickle.dumps(graph)) < 1.2 * weights + 64 * 1024


def test_float32_input_cast_and_zero_sequences():
    model = MODELS["gru-bi"](np.float64)
    x = data(np.float32)
    got = dask.compute(*flat(fdask.predict(model, da.from_array(x, chunks=(CHUNKS, -1, -1)))),
                       scheduler="sync")
    check(model, x, got, CHUNKS)
    out, h = fdask.predict(model, da.zeros((0, 4, I), chunks=(1, -1, -1)))
    assert out.compute().shape == (0, 4, 12) and h.compute().shape == (2, 0, 6)


@pytest.mark.skipif("lengths" not in inspect.signature(fusedrnn.LSTM.forward).parameters,
                    reason="LSTM.forward has no lengths argument yet (variable-length batches "
                           "are being added concurrently)")
def test_lengths_passed_to_the_model():
    model = MODELS["lstm-bi-L2"](np.float64)
    x = data(np.float64)
    lengths = np.random.default_rng(1).integers(1, x.shape[1] + 1, size=x.shape[0])
    for given in (lengths, da.from_array(lengths, chunks=5)):
        got = dask.compute(*flat(fdask.predict(model, da.from_array(x, chunks=(CHUNKS, -1, -1)),
                                               lengths=given)), scheduler="sync")
        edges = np.cumsum((0,) + CHUNKS)
        for a, b in zip(edges[:-1], edges[1:]):
            out, (h, c) = model(x[a:b].transpose(1, 0, 2), lengths=lengths[a:b])
            np.testing.assert_array_equal(got[0][a:b], out.transpose(1, 0, 2))
            np.testing.assert_array_equal(got[1][:, a:b], h)
            np.testing.assert_array_equal(got[2][:, a:b], c)


def test_importing_fusedrnn_dask_does_not_import_dask():
    code = ("import sys, fusedrnn, fusedrnn.dask\n"
            "assert 'dask' not in sys.modules and 'distributed' not in sys.modules\n"
            "assert callable(fusedrnn.dask.predict)\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ----------------------------------------------------------------------------- pickling


@pytest.mark.parametrize("protocol", [4, 5])
@pytest.mark.parametrize("make", [
    lambda: fusedrnn.LSTM(48, 96, num_layers=2, bidirectional=True, proj_size=32, seed=0),
    lambda: fusedrnn.GRU(48, 96, num_layers=2, dtype=np.float64, seed=1),
    lambda: fusedrnn.GRUCell(48, 96, seed=2),
], ids=["lstm", "gru-f64", "grucell"])
def test_pickle_is_config_and_weights_only(make, protocol):
    """A model used for inference (packed kernels and buffers made) pickles to about its
    weights' size, and the copy gives bitwise the same outputs (it repacks on first use)."""
    model = make()
    cell = "Cell" in type(model).__name__
    x = np.random.default_rng(0).standard_normal((8, 48) if cell else (10, 8, 48))
    want = model(x)
    assert model.__dict__.get("_engine_") is not None
    weights = sum(v.nbytes for v in model.state_dict().values())
    blob = pickle.dumps(model, protocol=protocol)
    assert len(blob) < 1.1 * weights + 4096, (len(blob), weights)
    copy = pickle.loads(blob)
    assert "_engine_" not in copy.__dict__
    for g, w in zip(flatten(copy(x)), flatten(want)):
        assert g.dtype == w.dtype and g.tobytes() == w.tobytes()


def test_example_script_runs():
    """examples/score_on_dask.py (docs/scale-out.md), shrunk: one LocalCluster of one worker."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "examples",
                          "score_on_dask.py")
    proc = subprocess.run([sys.executable, script, "--workers", "1", "--n", "64", "--chunk",
                           "16", "--t", "3", "--features", "4", "--hidden", "8", "--repeat", "1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "| 1 | first |" in proc.stdout and "sequences/s" in proc.stdout


# fusedrnn.dask.predict checks hx and lengths when called (not later, inside a task): a wrong
# num_layers * num_directions axis of h0/c0 and float lengths are refused with the argument named.
# test_bad_input_table only tries a wrong N axis and a wrong lengths shape.
@pytest.mark.parametrize("layers_axis", [1, 3])          # the model needs 2 (num_layers=2)
def test_hx_with_wrong_layer_axis_is_refused(layers_axis):
    model = fusedrnn.LSTM(2, 5, num_layers=2, seed=0)
    x = da.zeros((4, 3, 2), chunks=(2, -1, -1), dtype=np.float32)
    good = np.zeros((2, 4, 5), np.float32)
    bad = np.zeros((layers_axis, 4, 5), np.float32)
    with pytest.raises(ValueError, match=r"h0 must have shape \(2, 4, 5\)"):
        fdask.predict(model, x, hx=(bad, good))
    with pytest.raises(ValueError, match=r"c0 must have shape \(2, 4, 5\)"):
        fdask.predict(model, x, hx=(good, bad))


def test_float_lengths_are_refused():
    model = fusedrnn.GRU(2, 5, seed=0)
    x = da.zeros((4, 3, 2), chunks=(2, -1, -1), dtype=np.float32)
    with pytest.raises(TypeError, match="lengths"):
        fdask.predict(model, x, lengths=np.full(4, 3.0))
