"""Scoring on Dask: ``fusedrnn.dask.predict(model, x)`` for a Dask array of sequences.

dask is imported only inside ``predict`` (``import fusedrnn`` and ``import fusedrnn.dask`` do
not import it); install it with the extra ``fusedrnn[dask]``.

Layout: ``x`` is always batch-first, (N, T, F) = (sequences, time, features), chunked along N
only, whatever ``model.batch_first`` says (a Dask array of many sequences is naturally split
into groups of whole sequences); outputs are batch-first too.  Each chunk of sequences is one
task, a plain call of the model on that batch.

Shipping: the model is one node of the graph (``dask.delayed(model)``), which every chunk's
task depends on, so a distributed scheduler sends it once to each worker that runs a chunk, not
once per chunk.  A model pickles to its configuration and weights only; the packed kernels and
work buffers are rebuilt on the worker on first use (see ``_RNNBase.__getstate__``).

Threads: a task runs the model on one OpenMP thread, so that a worker's threads (Dask's
parallelism) do not each start a team of their own on the same cores.  The limit is OpenMP's
per-thread one (``omp_set_num_threads`` through threadpoolctl, which sets the calling thread's
count only and is given back when the task ends), not ``fusedrnn.set_num_threads``: that count is
one per process, and in a threaded worker a task restoring it while another task runs would
hand the other task all the cores (a race no lock can fix without serialising the tasks).
Inference makes no BLAS calls (the kernels use their own packed GEMM), so BLAS's process-wide
count is left alone.  A process where the user called ``fusedrnn.set_num_threads(n)`` uses n
threads per task: that explicit choice wins.
"""
import inspect
import math

import numpy as np

from ._cells import _CellMixin
from ._engine import hx_form
from ._rnn import GRU, LSTM

_controller = None


def one_thread():
    """A context manager: OpenMP on one thread in the calling thread only, restored after."""
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController
        _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="openmp")


def predict(model, x, hx=None, lengths=None):
    """Run `model` (a fusedrnn LSTM or GRU) over the sequences of the Dask array `x`.

    x: a ``dask.array.Array`` of shape (N, T, input_size), batch-first whatever
    ``model.batch_first``, chunked along N only (``x.rechunk({1: -1, 2: -1})`` otherwise).
    hx: None (zeros) or the initial states as for the model's call, numpy or Dask arrays of
    shape (num_layers * D, N, size) (``(h0, c0)`` for an LSTM); they are split like x.
    lengths: None or N integers (numpy or Dask), passed to the model as ``lengths=``.

    Returns Dask arrays shaped like the model's batch-first outputs: ``out, h_n`` for a GRU,
    ``out, (h_n, c_n)`` for an LSTM; ``out`` (N, T, D * H_out, or H_out when ``merge_mode``
    combines the directions) chunked as x along N, the final
    states (num_layers * D, N, size) chunked along axis 1.  Nothing runs until you compute them.
    """
    import dask
    import dask.array as da

    if not isinstance(model, (LSTM, GRU)) or isinstance(model, _CellMixin):
        raise TypeError(f"model must be a fusedrnn.LSTM or GRU, got {type(model).__name__}")
    I = model.input_size
    if not isinstance(x, da.Array):
        raise TypeError(f"x must be a dask.array.Array of shape (N, T, {I}) (sequences, time, "
                        f"features), got {type(x).__name__}; for a numpy array call the model")
    if x.ndim != 3:
        raise ValueError(f"x must have 3 dims (N, T, {I}) (sequences, time, features; "
                         f"batch-first), got shape {x.shape}")
    if x.shape[2] != I:
        raise ValueError(f"x must have {I} features (input_size) on its last axis, "
                         f"got shape {x.shape}")
    if x.dtype.kind not in "fiu":
        raise TypeError(f"x must hold real numbers (float or int), got dtype {x.dtype}")
    if any(math.isnan(c) for c in x.chunks[0]):
        raise ValueError("x has unknown chunk sizes along N: call x.compute_chunk_sizes() first")
    if len(x.chunks[1]) > 1 or len(x.chunks[2]) > 1:
        raise ValueError(f"x must be chunked along axis 0 (sequences) only, got chunks "
                         f"{x.chunks[1]} along time and {x.chunks[2]} along features: use "
                         "x.rechunk({1: -1, 2: -1})")
    if x.shape[1] == 0:
        raise ValueError(f"x must have a sequence length > 0, got shape {x.shape}")
    split = x.chunks[0]
    states = _split_states(model, hx, split, da)
    lens = _split_lengths(model, lengths, split, x.shape[0], da)

    shipped = dask.delayed(model)              # one node: sent once per worker
    T = x.shape[1]
    sizes = model._state_sizes()
    LD = model.num_layers * model.num_directions
    run = dask.delayed(_predict_block, pure=True, nout=1 + len(sizes))
    outs, finals = [], [[] for _ in sizes]
    for k, (block, n) in enumerate(zip(x.to_delayed().ravel(), split)):
        parts = run(shipped, block, None if states is None else tuple(s[k] for s in states),
                    None if lens is None else lens[k])
        outs.append(da.from_delayed(parts[0], (n, T, model._out_size),
                                    dtype=model.dtype))
        for f, size, part in zip(finals, sizes, list(parts)[1:]):
            f.append(da.from_delayed(part, (LD, n, size), dtype=model.dtype))
    out = da.concatenate(outs, axis=0)
    finals = tuple(da.concatenate(f, axis=1) for f in finals)
    return out, hx_form(finals)


def _predict_block(model, x, states, lengths):
    """One chunk: x (n, T, F) batch-first -> (out (n, T, features), *final states)."""
    kw = {} if lengths is None else {"lengths": lengths}
    hx = None if states is None else (states if len(states) == 2 else states[0])
    with one_thread():
        out, h = model.forward(x if model.batch_first else x.transpose(1, 0, 2), hx, **kw)
    if not model.batch_first:
        out = out.transpose(1, 0, 2)
    return (out,) + (h if isinstance(h, tuple) else (h,))


def _split_states(model, hx, split, da):
    """hx -> None or one list of per-chunk Delayed blocks per state (h0[, c0])."""
    if hx is None:
        return None
    lstm = isinstance(model, LSTM)
    if lstm and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
        raise TypeError(f"hx for an LSTM must be a tuple (h0, c0), got {type(hx).__name__}")
    if not lstm and isinstance(hx, (tuple, list)):
        raise TypeError(f"hx for a GRU must be a single array h0, got a {type(hx).__name__}")
    names = ("h0", "c0") if lstm else ("hx",)
    parts = tuple(hx) if lstm else (hx,)
    LD = model.num_layers * model.num_directions
    blocks = []
    for name, value, size in zip(names, parts, model._state_sizes()):
        arr = value if isinstance(value, da.Array) else np.asarray(value)
        want = (LD, sum(split), size)
        if arr.shape != want:
            raise ValueError(f"{name} must have shape {want} (num_layers * num_directions, N, "
                             f"{'hidden_size' if size == model.hidden_size else 'proj_size'}), "
                             f"got {arr.shape}")
        arr = _as_dask(arr, ((LD,), split, (size,)), da)
        blocks.append(list(arr.to_delayed().ravel()))
    return blocks


def _split_lengths(model, lengths, split, N, da):
    """lengths -> None or a list of per-chunk Delayed blocks."""
    if lengths is None:
        return None
    arr = lengths if isinstance(lengths, da.Array) else np.asarray(lengths)
    if arr.shape != (N,):
        raise ValueError(f"lengths must have shape ({N},) (one length per sequence of x), "
                         f"got {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"lengths must hold integers, got dtype {arr.dtype}")
    if "lengths" not in inspect.signature(model.forward).parameters:
        raise TypeError("lengths is not supported by this fusedrnn version's models")
    return list(_as_dask(arr, (split,), da).to_delayed().ravel())


def _as_dask(arr, chunks, da):
    """A Dask array with exactly these chunks (numpy arrays are wrapped, Dask ones rechunked)."""
    return arr.rechunk(chunks) if isinstance(arr, da.Array) else da.from_array(arr, chunks)
