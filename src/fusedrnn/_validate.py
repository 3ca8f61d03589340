"""Argument checks shared by the layers and cells: every error names the argument."""
import numbers

import numpy as np

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_size(name, value, minimum=1):
    """A positive (or >= minimum) Python/NumPy integer, not a bool."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r} ({type(value).__name__})")
    return bool(value)


def check_dropout(value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"dropout must be a number in [0, 1), got {value!r}")
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {value}")
    return value


def check_dtype(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be numpy.float32 or numpy.float64, got {dtype!r}") from None
    if dt not in _DTYPES:
        raise TypeError(f"dtype must be numpy.float32 or numpy.float64, got {dt}")
    return dt


def as_real_array(name, value, dtype):
    """Convert to a C-contiguous array of `dtype` (dtype None: np.asarray, no copy, no cast);
    refuse what is not real numbers (None, strings, objects, complex, bool)."""
    if type(value) is np.ndarray:       # the common cases, without a conversion
        if dtype is None and value.dtype.kind in "fiu":
            return value
        if value.dtype == dtype and value.flags.c_contiguous and value.flags.aligned:
            return value
    if value is None:
        raise TypeError(f"{name} must be an array of real numbers, got None")
    arr = _as_numpy(name, value, "an array of real numbers")
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers (float or int), got dtype {arr.dtype}")
    if dtype is None:
        return arr
    return kernel_array(arr, dtype)


def kernel_array(a, dtype):
    """a as a C-contiguous, aligned array of dtype (a copy only if needed): what the kernels
    take.  Arrays made from byte buffers at odd offsets (e.g. received by Dask's protocol) can
    be misaligned."""
    a = np.ascontiguousarray(a, dtype=dtype)
    return a if a.flags.aligned else a.copy()


def _as_numpy(name, value, what):
    """np.asarray(value) (a torch tensor: detached, on the CPU; bfloat16, which numpy has
    not, as float32, exactly); TypeError naming `name` (which must be `what`) for what numpy
    cannot make an array of."""
    try:
        if type(value).__module__.startswith("torch"):
            value = value.detach().cpu()
            if str(value.dtype) == "torch.bfloat16":
                value = value.float()
            value = value.numpy()
        return np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be {what}: {exc}") from None


def check_shape(name, arr, expected, what=None):
    """Raise ValueError unless arr.shape == expected; `what` names the axes."""
    if arr.shape != tuple(expected):
        desc = f" {what}" if what else ""
        raise ValueError(f"{name} must have shape {tuple(expected)}{desc}, got {arr.shape}")
    return arr


def check_lengths(value, T, B, batched):
    """``lengths=`` of a call on input of T steps and B sequences: one integer in [1, T] per
    sequence (a list, numpy array or torch tensor; unbatched input: one integer) -> (B,) intp."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"lengths must be integers, got {value!r}")
    arr = _as_numpy("lengths", value, "integers")
    if arr.dtype.kind not in "iu" and not (arr.size == 0 and arr.dtype.kind == "f"):  # []
        raise TypeError(f"lengths must be integers (one per sequence), got dtype {arr.dtype}")
    if batched:
        check_shape("lengths", arr, (B,), "(batch,): one length per sequence")
    elif arr.shape not in ((), (1,)):
        raise ValueError(f"lengths must be one integer for unbatched input, got shape "
                         f"{arr.shape}")
    arr = arr.reshape(-1)
    if arr.size and (arr.min() < 1 or arr.max() > T):
        raise ValueError(f"lengths must be in [1, {T}] (the sequence length), got values "
                         f"from {arr.min()} to {arr.max()}")
    return arr.astype(np.intp)


MERGE_MODES = ("concat", "sum", "mul", "ave")


def check_merge_mode(value, bidirectional):
    """merge_mode: how the last layer's two directions make `out` (only concat with one)."""
    if not isinstance(value, str) or value not in MERGE_MODES:
        raise ValueError(f"merge_mode must be one of {', '.join(map(repr, MERGE_MODES))}, "
                         f"got {value!r}")
    if value != "concat" and not bidirectional:
        raise ValueError(f"merge_mode={value!r} combines the two directions of a bidirectional "
                         "model: with bidirectional=False only merge_mode='concat' (the "
                         "default) is accepted")
    return value
