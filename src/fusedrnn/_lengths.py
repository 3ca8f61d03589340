"""Variable-length batches: ``model(x, lengths=...)``.

Notation: see fusedrnn._notation.  The kernels run a batch sorted by length, longest first, so
that the sequences still running at time index t are the first ``nact[t]`` rows and padding
costs no arithmetic (kernels/rnn_types.pxd, ``Run.nact``).  ``Lengths`` holds that order and
moves arrays between the caller's batch order and the sorted one.  The input of an inference
call is not copied: the first layer's input projection reads its rows through ``xrow`` (a
gather); the outputs come back in the caller's order with zeros at padded steps.
"""
import numpy as np

from . import _kernels


class Lengths:
    """One length per sequence of a batch of T steps (checked: 1 <= length <= T)."""

    def __init__(self, lengths, T):
        self.lengths = lengths
        self.T = T
        self.B = B = lengths.shape[0]
        self.order = np.argsort(-lengths, kind="stable").astype(np.intp)
        self.inverse = np.empty_like(self.order)
        self.inverse[self.order] = np.arange(B, dtype=np.intp)
        # the time loop runs only to the longest sequence: T_run steps
        self.T_run = T_run = int(lengths.max())
        by_len = lengths[self.order]
        # nact[t]: sequences longer than t
        self.nact = np.ascontiguousarray(B - np.searchsorted(by_len[::-1], np.arange(T_run),
                                                             side="right"), dtype=np.intp)

    def xrow(self):
        """(T_run*B,) intp: row t*B + order[b] of the caller's (T*B, I) input for sorted row
        (t, b)."""
        return (np.arange(self.T_run, dtype=np.intp)[:, None] * self.B + self.order).ravel()

    def sort(self, a, axis):
        """a with its batch axis in sorted order (a copy)."""
        return np.ascontiguousarray(np.take(a, self.order, axis=axis))

    def unsort(self, a, axis):
        """a with its batch axis back in the caller's order (a copy)."""
        return np.ascontiguousarray(np.take(a, self.inverse, axis=axis))

    def sorted_steps(self, a):
        """(T*B, F) in the caller's order -> (T_run*B, F) sorted, zeros at padded steps."""
        res = np.empty((self.T_run * self.B, a.shape[-1]), dtype=a.dtype)
        _kernels.permute_steps(np.ascontiguousarray(a.reshape(-1, a.shape[-1])), res,
                               self.nact, self.order, False)
        return res

    def caller_steps(self, a):
        """(T_run*B, F) sorted -> (T*B, F) in the caller's order, zeros at padded steps."""
        res = np.empty((self.T * self.B, a.shape[-1]), dtype=a.dtype)
        _kernels.permute_steps(a, res, self.nact, self.order, True)
        return res
