"""Parameters with PyTorch's names: initialisation, state_dict, load_state_dict.

A model keeps packed copies of its weights for the kernels, and the only way to change a weight
is to assign the attribute (``model.weight_hh_l0 = new``) or ``load_state_dict``, both of which
check the new value and drop the packed copies.  The model's own arrays are never handed out:
reading the attribute gives a read-only copy (_Param; ``state_dict()`` gives writable copies),
so an in-place edit (``model.weight_hh_l0 += d``, ``model.weight_hh_l0[0] = 1``) raises
numpy's ``ValueError: ... read-only``, and nothing that ignores that flag (setting ``.shape``,
a torch tensor sharing the memory, an f2py routine writing into its argument) can change the
model or leave a stale packed copy: it changes that copy only.
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


class _Param:
    """The class attribute of a parameter name: reading it on a model gives a read-only copy of
    that model's parameter.  (Not ``__getattr__`` on the model: a class with one is left out of
    the interpreter's specialised attribute lookups, and every call paid for it.)"""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __get__(self, obj, cls=None):
        if obj is None:
            return self
        try:
            return frozen(obj.__dict__["_params"][self.name])
        except KeyError:
            raise AttributeError(f"{type(obj).__name__!r} object has no attribute "
                                 f"{self.name!r}") from None


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
            self.__dict__["_params"][name] = frozen(arr)
            self._invalidate()
            return
        object.__setattr__(self, name, value)

    def __dir__(self):
        """Without the parameter names of other models (class attributes, see _Param)."""
        params = self.__dict__.get("_params", {})
        return sorted(n for n in super().__dir__()
                      if n in params or not isinstance(getattr(type(self), n, None), _Param))

    def __setstate__(self, state):
        """Unpickling: the parameters become read-only again (from `_params`, or, pickled by
        an earlier version, from attributes of their own names)."""
        state = dict(state)
        shapes = state.get("_shapes", {})
        params = state.pop("_params", None) or {k: state.pop(k) for k in shapes if k in state}
        self.__dict__.update({k: v for k, v in state.items() if k not in shapes})
        self.__dict__["_params"] = {}
        _declare(shapes)
        for name in shapes:
            setattr(self, name, params[name])

    def _init_params(self, shapes, hidden_size, seed):
        rng = make_rng(seed)
        self.__dict__["_params"] = {}
        self._shapes = OrderedDict(shapes)
        _declare(self._shapes)
        k = 1.0 / np.sqrt(hidden_size)
        for name, shape in self._shapes.items():
            setattr(self, name, rng.uniform(-k, k, size=shape).astype(self.dtype))

    def parameter_names(self):
        return list(self._shapes)

    def _param(self, name):
        """The parameter: a read-only C-contiguous array of the model dtype and shape."""
        return self.__dict__["_params"][name]

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


def _declare(names):
    """A _Param class attribute of Parametrized for each parameter name not declared yet."""
    for name in names:
        if not isinstance(Parametrized.__dict__.get(name), _Param):
            setattr(Parametrized, name, _Param(name))
