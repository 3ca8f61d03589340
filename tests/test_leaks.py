"""Memory stays flat over many calls of every entry point.

Sizes are small for speed but large enough that every array a call makes (input copy, output,
states, tape, gradients) is >= 1 KB, so leaking any of them, or a reference to one, each call
adds >= 10 MB over 10,000 calls; the bound is 8 MB (measured growth: < 0.3 MB). A warm-up fills
the workspace caches and allocator pools before the first measurement.
"""
import gc
import os

import numpy as np
import pytest

from conftest import import_fusedrnn

fusedrnn = import_fusedrnn()

CALLS = 10_000
WARMUP = 200
BOUND = 8 * 2**20           # bytes of RSS growth allowed over CALLS calls
# every array of a call >= 1 KB in float32: layers (T*B, I) input copy, (L*D, B, H) states;
# cells (B, I) input, (B, H) states
T, B, I, H = 4, 4, 16, 32
CELL_I = CELL_H = 64


def rss():
    """Resident set size in bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def layer_forward(cls):
    model = getattr(fusedrnn, cls)(I, H, num_layers=2, bidirectional=True, seed=0)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    return lambda: model(x)


def layer_train(cls):
    model = getattr(fusedrnn, cls)(I, H, num_layers=2, bidirectional=True, dropout=0.5, seed=0)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    d_out = np.ones((T, B, 2 * H), dtype=np.float32)

    def step():
        out, h_n, tape = model.forward_train(x)
        model.backward(tape, d_out, h_n)
    return step


def cell_forward(cls):
    model = getattr(fusedrnn, cls)(CELL_I, CELL_H, seed=0)
    x = np.random.default_rng(0).standard_normal((B, CELL_I)).astype(np.float32)
    return lambda: model(x)


def stream_step(cls):
    """One step of a stream (the state carried between calls)."""
    stream = getattr(fusedrnn, cls)(I, H, num_layers=2, seed=0).stream(batch=B)
    x = np.random.default_rng(0).standard_normal((1, B, I)).astype(np.float32)
    return lambda: stream(x)


def cell_train(cls):
    model = getattr(fusedrnn, cls)(CELL_I, CELL_H, seed=0)
    x = np.random.default_rng(0).standard_normal((B, CELL_I)).astype(np.float32)

    def step():
        state, tape = model.forward_train(x)
        model.backward(tape, *(state if isinstance(state, tuple) else (state,)))
    return step


ENTRY_POINTS = {
    "LSTM-forward": lambda: layer_forward("LSTM"),
    "GRU-forward": lambda: layer_forward("GRU"),
    "LSTM-train": lambda: layer_train("LSTM"),
    "GRU-train": lambda: layer_train("GRU"),
    "LSTMCell-call": lambda: cell_forward("LSTMCell"),
    "GRUCell-call": lambda: cell_forward("GRUCell"),
    "LSTMCell-train": lambda: cell_train("LSTMCell"),
    "GRUCell-train": lambda: cell_train("GRUCell"),
    "LSTM-stream": lambda: stream_step("LSTM"),
    "GRU-stream": lambda: stream_step("GRU"),
}


@pytest.fixture
def one_thread():
    """Steps this small gain nothing from threads, and OpenMP workers spinning on 2 busy cores
    made the file take minutes instead of seconds."""
    fusedrnn.set_num_threads(1)
    yield
    fusedrnn.set_num_threads(None)


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="RSS read from /proc")
@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_rss_flat(one_thread, entry):
    step = ENTRY_POINTS[entry]()
    for _ in range(WARMUP):
        step()
    gc.collect()
    before = rss()
    for _ in range(CALLS):
        step()
    gc.collect()
    grown = rss() - before
    assert grown < BOUND, f"{entry}: RSS grew by {grown / 2**20:.1f} MB over {CALLS} calls"
