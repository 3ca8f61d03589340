"""Python threads may share a model: the kernels release the GIL and keep their scratch memory
per thread, so concurrent calls give bitwise the results of serial ones, for every thread count
set with fusedrnn.set_num_threads, and a count changed while calls run breaks nothing.

H = 64, B >= 4: large enough that the time steps are split between OpenMP threads (more than
2**14 multiply-adds per thread), so Python threads and OpenMP teams run at once.
"""
import threading

import numpy as np
import pytest

from conftest import assert_tree_close, flatten, import_fusedrnn

fusedrnn = import_fusedrnn()

N_THREADS = 8
ROUNDS = 4
I, H = 12, 64


@pytest.fixture(autouse=True)
def default_threads():
    yield
    fusedrnn.set_num_threads(None)


def make(kind, seed=0):
    return getattr(fusedrnn, kind)(I, H, num_layers=2, bidirectional=True, seed=seed)


def inputs(n):
    """Different (T, B) per Python thread, so their cached workspaces differ in shape."""
    rng = np.random.default_rng(0)
    return [rng.standard_normal((2 + k % 3, 4 + k % 4, I)).astype(np.float32) for k in range(n)]


def work(model, x):
    """Everything one call sequence gives: forward, forward_train, backward (as a flat list)."""
    out, h_n = model(x)
    out_t, h_t, tape = model.forward_train(x)
    dx, dhx, grads = model.backward(tape, np.ones_like(out_t), h_t)
    return flatten((out, h_n, out_t, h_t, dx, dhx)) + list(grads.values())


def run_threads(target, n):
    """Run target(k) in n Python threads started together; re-raise the first error."""
    errors = []
    barrier = threading.Barrier(n)

    def wrapped(k):
        try:
            barrier.wait()
            target(k)
        except Exception as exc:  # collected: exceptions in threads don't fail the test
            errors.append(exc)

    threads = [threading.Thread(target=wrapped, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def assert_bitwise(got, want, what):
    assert len(got) == len(want)
    for k, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_array_equal(a, b, err_msg=f"{what}: value {k}")


@pytest.mark.parametrize("num_threads", [1, 2, 3])
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_threads_sharing_a_model(kind, num_threads):
    fusedrnn.set_num_threads(num_threads)
    assert fusedrnn.get_num_threads() == num_threads
    model = make(kind)
    xs = inputs(N_THREADS)
    # no dropout here: forward_train would draw masks from the model's shared stream
    expected = [work(model, x) for x in xs]

    def target(k):
        assert fusedrnn.get_num_threads() == num_threads
        for r in range(ROUNDS):
            assert_bitwise(work(model, xs[k]), expected[k], f"thread {k} round {r}")

    run_threads(target, N_THREADS)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_first_use_from_many_threads(kind):
    """Threads released together on a model that has packed nothing yet (its kernels, packed
    W_ih and backward transposes are made on first use, concurrently): serial results, bitwise;
    and again after a weight change (repacked concurrently)."""
    fusedrnn.set_num_threads(2)
    xs = inputs(N_THREADS)
    for change in (False, True):
        model = make(kind)
        if change:
            work(model, xs[0])
            model.load_state_dict({k: v * 0.5 for k, v in model.state_dict().items()})
        twin = make(kind)
        twin.load_state_dict(model.state_dict())
        expected = [work(twin, x) for x in xs]
        run_threads(lambda k: assert_bitwise(work(model, xs[k]), expected[k], f"thread {k}"),
                    N_THREADS)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_one_model_per_thread(kind):
    fusedrnn.set_num_threads(2)
    models = [make(kind, seed=k) for k in range(N_THREADS)]
    xs = inputs(N_THREADS)
    expected = [work(m, x) for m, x in zip(models, xs)]

    def target(k):
        for r in range(ROUNDS):
            assert_bitwise(work(models[k], xs[k]), expected[k], f"model {k} round {r}")

    run_threads(target, N_THREADS)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_set_num_threads_while_running(kind):
    """One thread changes the count while the others run: no crash, results as serial ones
    within the tolerance (the split of a step may change between calls)."""
    model = make(kind)
    xs = inputs(N_THREADS - 1)
    expected = [work(model, x) for x in xs]
    stop = threading.Event()

    def target(k):
        if k == N_THREADS - 1:
            counts = [1, 2, 3, None]
            i = 0
            while not stop.is_set():
                fusedrnn.set_num_threads(counts[i % len(counts)])
                i += 1
            return
        try:
            for _ in range(ROUNDS + 1):
                got = work(model, xs[k])
                assert len(got) == len(expected[k])
                for a, b in zip(got, expected[k]):
                    assert_tree_close(a, b, np.float32)
        finally:
            if k == 0:
                stop.set()

    run_threads(target, N_THREADS)


def test_default_count_follows_openmp_in_each_thread():
    """With set_num_threads(None) the count is OpenMP's for the calling thread (its
    omp_set_num_threads / threadpoolctl limits are per thread, as in scikit-learn); with
    set_num_threads(n) every thread uses n."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)          # omp_set_num_threads(1) in this (the main) thread
    try:
        fusedrnn.set_num_threads(None)
        assert fusedrnn.get_num_threads() == 1
        seen = []
        run_threads(lambda k: seen.append((fusedrnn.get_num_threads(),
                                           fusedrnn._kernels.max_threads())), 2)
        assert all(got == openmp for got, openmp in seen)
        fusedrnn.set_num_threads(2)
        seen = []
        run_threads(lambda k: seen.append(fusedrnn.get_num_threads()), 2)
        assert seen == [2, 2] and fusedrnn.get_num_threads() == 2
    finally:
        fusedrnn.set_num_threads(None)
        torch.set_num_threads(before)


def _blas_counts():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    return [(i["filepath"], i["num_threads"]) for i in threadpoolctl.threadpool_info()
            if i["user_api"] == "blas"]


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_blas_thread_counts_restored_after_concurrent_calls(kind):
    """Backward holds BLAS to one thread while any call runs (a process-wide count shared by
    the Python threads) and gives the counts back when the last call ends."""
    before = _blas_counts()
    assert before, "no BLAS library found by threadpoolctl"
    fusedrnn.set_num_threads(2)
    model = make(kind)
    xs = inputs(N_THREADS)
    run_threads(lambda k: work(model, xs[k]), N_THREADS)
    assert _blas_counts() == before
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        run_threads(lambda k: work(model, xs[k]), N_THREADS)
        assert all(n == 1 for _, n in _blas_counts())
    assert _blas_counts() == before
