"""How many threads the kernels' time loops use.

Each time step is shared between OpenMP threads (columns of the recurrent GEMM, hidden units of
the gate pass).  By default that is OpenMP's own count (``OMP_NUM_THREADS``, or all cores), which
``threadpoolctl.threadpool_limits(n)`` also limits; ``set_num_threads(n)`` overrides it.
The input projection and the weight-gradient GEMMs are BLAS calls made from those same threads
(each on a share of the output rows), so BLAS is kept to one thread while a kernel runs
(``blas_single_thread``): a second pool of spinning BLAS workers would fight the OpenMP threads
for the cores (measured: 5x slower on 2 cores).  Steps too small to share (less than 2**14
multiply-adds) run on one thread.
"""
import contextlib

import numpy as np

from . import _lstm
from ._validate import check_size

_requested = None
MIN_WORK_PER_THREAD = 1 << 14   # measured: 2 threads already gain at GRU B=1 H=128 (49K)


def set_num_threads(n):
    """Use n threads in the time loops (None: back to OpenMP's default)."""
    global _requested
    _requested = None if n is None else check_size("n", n)


def get_num_threads():
    """Threads the time loops may use."""
    return _requested if _requested is not None else max(1, _lstm.max_threads())


def step_threads(work):
    """Threads for a time step of `work` multiply-adds."""
    return max(1, min(get_num_threads(), int(work // MIN_WORK_PER_THREAD)))


def aligned_empty(n, dtype, align=64):
    """An uninitialised 1-D array of n elements whose data starts on an `align`-byte boundary."""
    dtype = np.dtype(dtype)
    buf = np.empty(n + align // dtype.itemsize, dtype=dtype)
    off = (-buf.ctypes.data % align) // dtype.itemsize
    return buf[off:off + n]


def packed_buffer(N, K, dtype):
    """Workspace for the packed copy of an (N, K) weight."""
    dtype = np.dtype(dtype)
    return aligned_empty(max(1, _lstm.packed_size(N, K, dtype == np.float64)), dtype)


def work_buffer(threads, M, Ks, dtype):
    """Per-thread workspaces of the packed GEMM for an (M, K) left operand, K in Ks: one array
    of `threads` equal, 64-byte aligned slices."""
    dtype = np.dtype(dtype)
    per = max(_lstm.packed_work_size(M, K, dtype == np.float64) for K in Ks)
    per = max(16, -(-per // 16) * 16)
    return aligned_empty(threads * per, dtype)


_blas_libs = None


def _blas_controllers():
    global _blas_libs
    if _blas_libs is None:
        try:
            from threadpoolctl import ThreadpoolController
            _blas_libs = [c for c in ThreadpoolController().lib_controllers
                          if c.user_api == "blas"]
        except Exception:  # threadpoolctl cannot inspect this platform: leave BLAS alone
            _blas_libs = []
    return _blas_libs


@contextlib.contextmanager
def blas_single_thread():
    """BLAS libraries on one thread for the duration (restored after)."""
    changed = []
    for lib in _blas_controllers():
        n = lib.get_num_threads()
        if n is not None and n != 1:
            lib.set_num_threads(1)
            changed.append((lib, n))
    try:
        yield
    finally:
        for lib, n in changed:
            lib.set_num_threads(n)
