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
        self.T = T
        self.B = lengths.shape[0]
        self.order, self.inverse, self.nact = _kernels.sort_lengths(lengths, T)
        # the time loop runs only to the longest sequence: T_run steps
        self.T_run = self.nact.shape[0]

    def xrow(self):
        """(T_run*B,) intp: row t*B + order[b] of the caller's (T*B, I) input for sorted row
        (t, b)."""
        return (np.arange(self.T_run, dtype=np.intp)[:, None] * self.B + self.order).ravel()

    def sort(self, a, axis):
        """a with its batch axis in sorted order (a copy)."""
        return np.ascontiguousarray(np.take(a, self.order, axis=axis))

    def to_caller(self, rows, caller_states, states):
        """The end of a sorted pass: each of `states` ((L*D, B, size), sorted) copied into its
        twin in `caller_states` in the caller's batch order; returns `rows` (T_run*B, F,
        sorted) as caller_steps does."""
        for c, s in zip(caller_states, states):
            c[...] = np.take(s, self.inverse, axis=1)
        return self.caller_steps(rows)

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
