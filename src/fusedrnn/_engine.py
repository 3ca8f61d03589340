"""What runs a model: its packed kernels, its work buffers, the stacking loops.

Notation: see fusedrnn._notation.  An ``Engine`` belongs to one model.  It owns

- one ``_kernels.Kernel`` per layer and direction: the weights packed for the recurrent product
  (and, on the first backward, their transposes), made on first use and dropped whenever a
  parameter is assigned (``Parametrized.__setattr__`` calls ``invalidate``; parameters are
  read-only arrays, so no other way of changing them exists);
- the work buffers of inference and backward, kept between calls per Python thread (fresh
  buffers of tens of MB cost page faults: measured ~10% of an LSTM forward);
- the stacking loops: layers bottom to top (forward) and top to bottom (backward), dropout
  between layers, the two directions of a bidirectional layer (at the same time, each on its
  share of the threads, when there are at least 2 and both directions' recurrent weights fit
  in the cache), a batch split in parts of its rows, one per thread (see ``_plan``).

The model keeps the arguments, checks and output layout; ``model._make_kernel(layer, d)`` is its
only hook (which weights and biases a cell's kernel takes).
"""
import functools
import os
import threading

import numpy as np

from ._kernels import PARTS_MAX, ShortCall, aligned_array, isa, packed_size
from ._threads import blas_single_thread, get_num_threads, step_threads, team

# Below this many multiply-adds per step and direction, the two directions of a layer run one
# after the other on one team (a barrier per phase costs more than the halved step saves).
TOGETHER_MIN_WORK = 1 << 12
# Below TOGETHER_CACHE_ROWS rows a step's product is bound by reading W_hh, not by its FLOPs, and
# two directions at the same time read both directions' packed recurrent weights at every step:
# when those exceed TOGETHER_CACHE_SHARE of the last-level cache, the directions run one after
# the other, each on the whole team, so that a step reads one direction's weights from the
# cache instead of both from memory.  Measured (Zen 4, 32 MiB L3, 2 threads, T100, in-process
# A/B, 7 rounds; in turn / together): LSTM B1 H512 (2 x 4 MiB) 0.98x, H768 (2 x 9 MiB) 0.95x,
# H896 (2 x 12.25 MiB) 1.27x, H1024 (2 x 16 MiB) 1.53x; GRU B1 H1024 (2 x 12 MiB) 1.25x; LSTM
# H1024 B4 1.65x, B8 1.08x, B16 1.00x.
TOGETHER_CACHE_ROWS = 16
TOGETHER_CACHE_SHARE = 0.6
LLC_DEFAULT = 32 << 20          # when the system does not say (no Linux sysfs)
L2_DEFAULT = 512 << 10
# A pass on 2+ threads splits its batch into one part per thread, each running every step of its
# rows alone (no barrier per step; ONNX Runtime does the same), instead of all threads sharing
# each step's hidden units with a barrier at the end of every step, when each part gets at
# least PART_MIN_ROWS rows and one direction's packed recurrent weights take at most
# PART_CACHE_SHARE of the last-level cache (every thread reads all of them at every step).
# Measured (Zen 4, 2 threads, T100, float32, in-process A/B, 7-9 rounds; parts / shared units):
# LSTM B16 H64 1.19x, H128 1.21x, H256 1.04x, H512 1.06x, H640 1.04x; B8 H128 1.21x, H256 1.17x,
# H512 1.07x; B64 H128 1.09x, H256 1.03x; B256 H128 1.09x, H256 1.20x; 2 layers B256 H128
# 1.26x; GRU B16 H128 1.76x, H256 1.15x, H512 1.08x; B64 H256 1.17x.  Not taken: B4 (2 rows a
# part) H128 0.93x, H512 0.71x, B2 H128 0.78x; LSTM H1024 (16 MiB) B16 0.98x, B64 0.98x.
# On the AVX2 and scalar paths, parts need PART_MIN_ROWS_L3 rows each when the weights exceed
# half of the L2 cache (quiet machine, 15 rounds): LSTM B8 H256 0.92-0.94x, B16 H256 0.94-0.97x,
# B16 H512 0.95-0.96x, B8 H384 0.96-0.99x, GRU B16 H512 0.93x; with 16 rows a part B32 H256
# 1.07-1.15x, B32 H512 1.05-1.11x; B8 H128 1.11x, B16 H64 1.83x.  (C harness, 1 thread: the
# AVX2 kernel runs 8 rows, two blocks of 4, at 85% of its FMA peak with W of 1 MiB and 92% with
# 256 KiB, against 94-97% for 6 or 12 rows; the AVX-512 kernel runs 8 rows at 96%.)
PART_MIN_ROWS = 4
PART_MIN_ROWS_L3 = 16
PART_CACHE_SHARE = 0.25
# A layer's output (a new array per call) is put on a cache-line boundary from this size on.
OUT_ALIGN_MIN_BYTES = 1 << 16


def _size_bytes(text):
    """'32768K', '1M', '512' (sysfs cache sizes) -> bytes; None if unreadable."""
    text = text.strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    digits = text[:-1] if text[-1:] in "KMG" else text
    return int(digits) * scale if digits.isdigit() else None


def cache_sizes(base="/sys/devices/system/cpu/cpu0/cache"):
    """(level, bytes) of the caches the first CPU reports in Linux's sysfs (level 0 when
    unreadable); [] elsewhere."""
    try:
        names = sorted(n for n in os.listdir(base) if n.startswith("index"))
    except OSError:
        return []
    sizes = []
    for n in names:
        try:
            with open(os.path.join(base, n, "size")) as f:
                b = _size_bytes(f.read())
        except (OSError, ValueError):
            continue
        try:
            with open(os.path.join(base, n, "level")) as f:
                level = int(f.read())
        except (OSError, ValueError):
            level = 0
        if b:
            sizes.append((level, b))
    return sizes


@functools.lru_cache(maxsize=1)
def last_level_cache():
    """Bytes of the largest cache of the first CPU (sysfs), else LLC_DEFAULT.  Not glibc's
    sysconf(_SC_LEVEL3_CACHE_SIZE): on our AMD EPYC guest it gives 320 MiB for a 32 MiB L3."""
    return max((b for _, b in cache_sizes()), default=LLC_DEFAULT)


@functools.lru_cache(maxsize=1)
def l2_cache():
    """Bytes of the first CPU's level-2 cache (sysfs), else L2_DEFAULT."""
    return max((b for level, b in cache_sizes() if level == 2), default=L2_DEFAULT)


def hx_form(states):
    """A tuple of states as torch.nn passes hx and returns h_n: ``(h, c)`` for an LSTM, the
    array ``h`` alone for a GRU."""
    return states if len(states) == 2 else states[0]


class Engine:
    """The kernels, buffers and loops of one model (see the module docstring)."""

    def __init__(self, model):
        self.model = model
        self.kernels = {}
        self.buffers = {}
        self.plans = {}
        # the short calls' path of a one-layer, one-direction model (model._short_call)
        self.short = ShortCall(self._inference, model.dtype, model.input_size, model._P,
                               model._state_sizes(), OUT_ALIGN_MIN_BYTES)

    def invalidate(self):
        """A parameter changed: the packed kernels (and the plans holding them) are stale."""
        self.kernels = {}
        self.plans = {}

    def kernel(self, layer, d):
        kernels = self.kernels      # a concurrent invalidate() replaces the dict, not its items
        k = kernels.get((layer, d))
        if k is None:
            k = kernels[(layer, d)] = self.model._make_kernel(layer, d)
        return k

    def _buffers(self, kernel, role, T, B, threads, backward=False):
        """This thread's buffers for `role` (reused while T, B and threads stay the same),
        sized for every layer's input."""
        key = (threading.get_ident(), role)
        b = self.buffers.get(key)
        if b is None or (b.T, b.B, b.threads) != (T, B, threads):
            if len(self.buffers) > 32:          # entries of finished threads
                self.buffers.clear()
            m = self.model
            b = self.buffers[key] = kernel.buffers(T, B, threads, backward=backward,
                                                   I=max(m.input_size, m.num_directions * m._P))
        return b

    def _scratch(self, shape):
        """This thread's scratch array of `shape` (kept between calls: fresh memory of this
        size costs page faults)."""
        key = (threading.get_ident(), "scratch")
        a = self.buffers.get(key)
        if a is None or a.shape != shape:
            if len(self.buffers) > 32:          # entries of finished threads
                self.buffers.clear()
            a = self.buffers[key] = aligned_array(shape, self.model.dtype)
        return a

    def _step_work(self, B):
        """Multiply-adds of one step's recurrent product (B rows), which sizes the team."""
        m = self.model
        return B * m._gates * m.hidden_size * m._P

    def _recurrent_bytes(self):
        """Bytes of one direction's packed recurrent weights (W_hh, and W_hr with a
        projection): what a step reads."""
        m = self.model
        dbl = m.dtype == np.float64
        n = packed_size(m._gates * m.hidden_size, m._P, dbl)
        if m._P != m.hidden_size:
            n += packed_size(m._P, m.hidden_size, dbl)
        return n * m.dtype.itemsize

    def _plan(self, B, lengths=None):
        """(threads, together, parts): the team size; whether both directions share it (not
        with variable lengths, where one direction's running rows shrink step by step while the
        other's grow and a shared team waits for the larger every step: measured 58 vs 51 ms
        apart, bidirectional LSTM B64 H256 T100 lengths in [25, 100], 2 threads; nor for small
        batches whose two directions' weights do not fit in the cache together,
        TOGETHER_CACHE_ROWS); and in how many parts, one per thread, each direction's
        inference pass splits its batch (PART_MIN_ROWS; 1: the threads share each step's
        hidden units; not with variable lengths, whose rows run sorted by length)."""
        m = self.model
        work = self._step_work(B)
        threads = step_threads(work)
        nbytes = self._recurrent_bytes()
        if (m.num_directions == 2 and work >= TOGETHER_MIN_WORK and get_num_threads() >= 2
                and lengths is None
                and (B >= TOGETHER_CACHE_ROWS
                     or 2 * nbytes <= TOGETHER_CACHE_SHARE * last_level_cache())):
            return team(min(get_num_threads(), 2 * threads)), True, 1
        parts = 1
        rows = PART_MIN_ROWS
        if nbytes > l2_cache() // 2 and isa() != "avx512":
            rows = PART_MIN_ROWS_L3
        if (2 <= threads <= PARTS_MAX and lengths is None and B >= rows * threads
                and nbytes <= PART_CACHE_SHARE * last_level_cache()):
            parts = threads
        return threads, False, parts

    def _inference(self, T, B, lengths):
        """This thread's inference plan for T steps of B rows: (threads, together, parts, per
        layer (kernels, buffers) of its directions), kept until the shape, the thread count or a
        weight changes (the Python work of a short call is most of its time)."""
        key = (T, B, get_num_threads(), lengths is None)
        plans = self.plans          # a concurrent invalidate() replaces the dict
        ident = threading.get_ident()
        p = plans.get(ident)
        if p is not None and p[0] == key:
            return p[1]
        if len(plans) > 32:         # entries of finished threads
            plans.clear()
        threads, together, parts = self._plan(B, lengths)
        layers = []
        for layer in range(self.model.num_layers):
            ks = [self.kernel(layer, d) for d in range(self.model.num_directions)]
            layers.append((ks, [self._buffers(k, f"fwd{d}", T, B, threads)
                                for d, k in enumerate(ks)]))
        plan = (threads, together, parts, layers)
        plans[ident] = (key, plan)
        return plan

    def forward(self, x, init, finals, tape, rng, lengths=None):
        """All layers and directions over x (T, B, I); writes finals; returns the last
        layer's output (T*B, D*P).  With a tape (training) every pass keeps its buffers and
        dropout is applied between layers.  lengths (a _lengths.Lengths): the passes run the
        batch sorted by length (inference reads x through a gather, training keeps a sorted
        copy on the tape) and the results come back in the caller's order."""
        m = self.model
        T, B, _ = x.shape
        D, P = m.num_directions, m._P
        inp = x.reshape(T * B, -1)
        nact = xrow = None
        if lengths is not None:
            nact, T = lengths.nact, lengths.T_run
            init = tuple(lengths.sort(s, 1) for s in init)
            caller_finals, finals = finals, tuple(np.empty_like(f) for f in finals)
            if tape is None:
                xrow = lengths.xrow()
            else:
                inp = lengths.sorted_steps(inp)
                tape.init, tape.lengths = init, lengths
        if tape is None:
            threads, together, parts, plan = self._inference(T, B, lengths)
        else:
            threads, together, _ = self._plan(B, lengths)
            parts = 1               # (a tape keeps the whole batch's rows of every step)
        for layer in range(m.num_layers):
            mask = None
            if tape is not None and layer > 0 and m.dropout > 0:
                keep = 1.0 - m.dropout
                mask = (rng.random(inp.shape) < keep).astype(m.dtype) / m.dtype.type(keep)
                inp = inp * mask
            if lengths is not None and tape is None and layer == m.num_layers - 1:
                out = self._scratch((T * B, D * P))     # copied to the caller's order below
            else:
                out = aligned_array((T * B, D * P), m.dtype, OUT_ALIGN_MIN_BYTES)
            if tape is None:
                ks, bufs = plan[layer]
            else:
                ks = [self.kernel(layer, d) for d in range(D)]
                bufs = [k.buffers(T, B, threads, keep=True) for k in ks]
            st = [tuple([s[layer * D + d] for s in init]) for d in range(D)]
            fin = [tuple([f[layer * D + d] for f in finals]) for d in range(D)]
            if together:
                ks[0].forward(bufs[0], inp, out, 0, st[0], fin[0], False, threads,
                              ks[1], bufs[1], P, st[1], fin[1], nact=nact, xrow=xrow)
            else:
                for d in range(D):
                    ks[d].forward(bufs[d], inp, out, d * P, st[d], fin[d], d == 1, threads,
                                  nact=nact, xrow=xrow, parts=parts)
            xrow = None
            if tape is not None:
                for b in bufs:
                    b.aux = b.work = None        # scratch, not part of the tape
                tape.layers.append(_LayerTape(inp, out, mask, list(zip(ks, bufs))))
            inp = out
        if lengths is None:
            return inp
        return lengths.to_caller(inp, caller_finals, finals)

    def backward(self, tape, dout, dfinal, dinit, grads):
        """BPTT through a tape, layers top to bottom; dout (T*B, D*P); writes dinit and grads;
        returns dL/dx (T*B, I)."""
        m = self.model
        T, B = tape.T, tape.B
        D, P = m.num_directions, m._P
        threads = step_threads(self._step_work(B))
        lengths = tape.lengths
        nact = None
        if lengths is not None:
            nact, T = lengths.nact, lengths.T_run
            dout = lengths.sorted_steps(dout)
            dfinal = tuple(lengths.sort(f, 1) for f in dfinal)
            caller_dinit, dinit = dinit, tuple(np.zeros_like(s) for s in dinit)
        scratch = np.empty(m._gates * m.hidden_size, dtype=m.dtype)   # db without a bias
        dinp = None
        with blas_single_thread(T * B * m._gates * m.hidden_size * max(m.input_size, D * P)):
            for layer in reversed(range(m.num_layers)):
                lt = tape.layers[layer]
                dinp = np.empty_like(lt.inp)
                for d, (k, tb) in enumerate(lt.records):
                    s = m._suffix(layer, d)
                    kd = layer * D + d
                    bb = self._buffers(k, "bwd", T, B, threads, backward=True)
                    g = (grads["weight_ih" + s], grads["weight_hh" + s],
                         grads.get("weight_hr" + s), grads.get("bias_ih" + s, scratch),
                         grads.get("bias_hh" + s, scratch))
                    k.backward(tb, bb, lt.inp, lt.out, d * P, tuple(s0[kd] for s0 in tape.init),
                               dout, tuple(f[kd] for f in dfinal), dinp, d > 0,
                               tuple(s0[kd] for s0 in dinit), g, d == 1, threads, nact=nact)
                if lt.mask is not None:
                    dinp *= lt.mask
                dout = dinp
        if lengths is None:
            return dinp
        return lengths.to_caller(dinp, caller_dinit, dinit)


class _LayerTape:
    """One layer of a forward_train tape: its input (after dropout), output, dropout mask, and
    per direction the (Kernel, Buffers) of its pass (the kernel holds the weights it ran with)."""

    __slots__ = ("inp", "out", "mask", "records")

    def __init__(self, inp, out, mask, records):
        self.inp, self.out, self.mask, self.records = inp, out, mask, records


class Tape:
    """What ``backward`` needs from ``forward_train`` (opaque to users)."""

    def __init__(self, model, T, B, batched, init, batch_first, merge_mode):
        self.model, self.T, self.B, self.batched = model, T, B, batched
        self.init = init
        self.batch_first, self.merge_mode = batch_first, merge_mode     # of the recorded run
        self.lengths = None     # a _lengths.Lengths (init then in its sorted order)
        self.out = None         # the last layer's output (T*B, D*P) in the caller's order
        self.layers = []
        self.used = False

    @property
    def nbytes(self):
        """Bytes held by the tape, each array once: the initial states, per layer its input
        (a copy of x for layer 0; for k > 0 the previous output, or with dropout the dropped-out
        copy and its mask), its output, and per direction the activated gates and the kept
        states (c_t for LSTM, W_hn h_{t-1} + b_hn for GRU reset_after, nothing otherwise)."""
        arrays = {}
        for a in self.init + ((self.out,) if self.out is not None else ()):
            arrays[id(a)] = a
        for lt in self.layers:
            for a in (lt.inp, lt.out, lt.mask):
                if a is not None:
                    arrays[id(a)] = a
            for _, b in lt.records:
                for a in (b.gates, b.state):
                    arrays[id(a)] = a
        return sum(a.nbytes for a in arrays.values())
