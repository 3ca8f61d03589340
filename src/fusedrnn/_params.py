"""Parameters with PyTorch's names: initialisation, state_dict, load_state_dict.

Parameters are read-only numpy arrays whose memory cannot be made writable again: a model keeps
packed copies of its weights for the kernels, and the only way to change a weight is to assign
the attribute (``model.weight_hh_l0 = new``) or ``load_state_dict``, both of which check the new
value and drop the packed copies.  An in-place edit (``model.weight_hh_l0 += d``,
``model.weight_hh_l0[0] = 1``) raises numpy's ``ValueError: ... read-only``, so a stale packed
copy can never be used.
"""
from collections import OrderedDict, namedtuple

import numpy as np

from ._validate import as_real_array

LoadResult = namedtuple("LoadResult", ["missing_keys", "unexpected_keys"])


def make_rng(seed, name="seed"):
    """None, an int or a numpy Generator -> a numpy Generator; `name` names the argument."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool)):
        return np.random.default_rng(seed)
    raise TypeError(f"{name} must be None, an int or a numpy.random.Generator, got {seed!r}")


def frozen(arr):
    """A read-only copy of arr whose WRITEABLE flag cannot be set again (its memory is an
    immutable bytes object)."""
    return np.frombuffer(arr.tobytes(), dtype=arr.dtype).reshape(arr.shape)


class Parametrized:
    """Mixin: subclasses set ``self.dtype``, call ``_init_params(shapes, hidden_size, seed)``
    with an ordered {name: shape} dict in PyTorch's order, and have ``_invalidate()`` (a
    parameter changed)."""

    def __setattr__(self, name, value):
        shapes = self.__dict__.get("_shapes")
        if shapes is not None and name in shapes:
            arr = as_real_array(name, value, self.dtype)
            if arr.shape != shapes[name]:
                raise ValueError(f"{name} must have shape {shapes[name]}, got {arr.shape}")
            object.__setattr__(self, name, frozen(arr))
            self._invalidate()
            return
        object.__setattr__(self, name, value)

    def __setstate__(self, state):
        """Unpickling: the parameters become read-only again."""
        shapes = state.get("_shapes", {})
        self.__dict__.update({k: v for k, v in state.items() if k not in shapes})
        for name in shapes:
            setattr(self, name, state[name])

    def _init_params(self, shapes, hidden_size, seed):
        rng = make_rng(seed)
        self._shapes = OrderedDict(shapes)
        k = 1.0 / np.sqrt(hidden_size)
        for name, shape in self._shapes.items():
            setattr(self, name, rng.uniform(-k, k, size=shape).astype(self.dtype))

    def parameter_names(self):
        return list(self._shapes)

    def _param(self, name):
        """The parameter: a read-only C-contiguous array of the model dtype and shape."""
        return self.__dict__[name]

    def state_dict(self):
        """An ordered dict name -> numpy array (copies), with PyTorch's keys and order."""
        return OrderedDict((name, np.array(self._param(name), copy=True)) for name in self._shapes)

    def load_state_dict(self, state_dict, strict=True):
        """Load parameters from numpy arrays or torch tensors (cast to the model dtype).

        All entries are checked before any is assigned: with ``strict`` a missing or unexpected
        key raises ValueError; a mis-shaped or non-numeric entry always raises.  On error the
        model is unchanged.  Returns ``(missing_keys, unexpected_keys)`` like PyTorch.
        """
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError(f"state_dict must be a mapping name -> array, "
                            f"got {type(state_dict).__name__}")
        keys = list(state_dict.keys())
        missing = [k for k in self._shapes if k not in state_dict]
        unexpected = [k for k in keys if k not in self._shapes]
        if strict and (missing or unexpected):
            raise ValueError(f"load_state_dict: missing keys {missing}, unexpected keys "
                             f"{unexpected} (expected exactly {list(self._shapes)})")
        new = {}
        for name in self._shapes:
            if name not in state_dict:
                continue
            arr = as_real_array(f"state_dict[{name!r}]", state_dict[name], self.dtype)
            if arr.shape != self._shapes[name]:
                raise ValueError(f"state_dict[{name!r}] must have shape {self._shapes[name]}, "
                                 f"got {arr.shape}")
            new[name] = arr
        for name, arr in new.items():
            setattr(self, name, arr)
        return LoadResult(missing, unexpected)
