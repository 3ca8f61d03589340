"""Streams: one sequence (or a batch of them) run in pieces, the state carried between pieces.

``stream = model.stream(batch=1)`` then ``out = stream(x_chunk)`` for chunks of any length
(1 step included); ``stream.state`` is the state after the last chunk (shaped like ``h_n``, or
``(h_n, c_n)`` for an LSTM), ``stream.reset(hx=None)`` starts a new sequence.  A chunk is laid out
like the model's input (``(t, batch, I)``, ``(batch, t, I)`` with ``batch_first``, or ``(t, I)``
for a stream made with ``batch=None``).  Every chunk runs the same kernels as a whole-sequence
call, on the model's packed weights: no repacking, buffers reused between chunks of the same
length.  Bidirectional models are refused: their reverse direction needs the whole sequence.
A stream is one sequence, fed from one thread at a time: a chunk given while another thread's
chunk of the same stream runs raises RuntimeError (both would start from the same state and
one of them would be lost; a lock would cost a sixth of a small step and still run the chunks
in no particular order).
"""
import numpy as np

from ._engine import hx_form
from ._validate import check_size


class Stream:
    """See the module docstring; made by ``LSTM.stream`` / ``GRU.stream``."""

    def __init__(self, model, batch=1, hx=None):
        if model.bidirectional:
            raise ValueError("stream: a bidirectional model needs the whole sequence (its reverse "
                             "direction starts at the last step); call the model instead")
        from ._cells import _CellMixin

        self.model = model
        self.batch = None if batch is None else check_size("batch", batch)
        # the short-call path takes a sequence model's (t, batch, I) chunks; a cell's chunk is
        # one step (batch, I) and goes through the cell's own checks
        self._short = not isinstance(model, _CellMixin)
        self._busy = False
        self.reset(hx)

    def reset(self, hx=None):
        """Start a new sequence from hx (None: zeros), checked like the model's hx."""
        batched = self.batch is not None
        init = self.model._check_hx(hx, self.batch if batched else 1, batched)
        self._state = tuple(np.array(s, copy=True) for s in init)

    @property
    def state(self):
        """The state after the last chunk: like the model's h_n (``(h_n, c_n)`` for an LSTM)."""
        batched = self.batch is not None
        fmt = self.model._format_state
        return hx_form(tuple([fmt(s, batched).copy() for s in self._state]))

    def __call__(self, x):
        """Run the next chunk; returns its outputs, shaped like the model's ``out``."""
        if self._busy:
            raise RuntimeError("stream: a chunk is running in another thread; a stream is one "
                               "sequence, fed from one thread at a time")
        self._busy = True       # (the check and this store are not separated by a GIL switch)
        try:
            return self._chunk(x)
        finally:
            self._busy = False

    def _chunk(self, x):
        m = self.model
        if self._short and self.batch is not None and type(x) is np.ndarray and x.ndim == 3:
            fast = m._short_call(x, hx_form(self._state), cell=False)
            if fast is not None:
                out, self._state = fast
                return out
        xa, batched = m._check_input(x)
        if batched != (self.batch is not None) or (batched and xa.shape[1] != self.batch):
            want = (f"{self.batch} sequences" if self.batch is not None
                    else "unbatched input (the stream was made with batch=None)")
            raise ValueError(f"x must be a chunk of {want} like the model's input, got shape "
                             f"{np.shape(x)}")
        out, finals, _ = m._run_checked(xa, batched, self._state)
        self._state = finals
        return out

    def __repr__(self):
        return f"Stream({self.model!r}, batch={self.batch})"
