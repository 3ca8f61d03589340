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

from . import _kernels
from ._validate import check_size

_requested = None
MIN_WORK_PER_THREAD = 1 << 14   # measured: 2 threads already gain at GRU B=1 H=128 (49K)


def set_num_threads(n):
    """Use n threads in the time loops (None: back to OpenMP's default)."""
    global _requested
    _requested = None if n is None else check_size("n", n)


def get_num_threads():
    """Threads the time loops may use."""
    return _requested if _requested is not None else max(1, _kernels.max_threads())


def step_threads(work):
    """Threads for a time step of `work` multiply-adds."""
    return max(1, min(get_num_threads(), int(work // MIN_WORK_PER_THREAD)))


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
