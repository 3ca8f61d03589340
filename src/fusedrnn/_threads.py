"""How many threads the kernels' time loops use.

Each time step is shared between OpenMP threads (columns of the recurrent GEMM, hidden units of
the gate pass).  By default that is OpenMP's own count (``OMP_NUM_THREADS``, or all cores), which
``threadpoolctl.threadpool_limits(n)`` also limits; ``set_num_threads(n)`` overrides it.
The weight-gradient and dx GEMMs of backward are BLAS calls made from those same threads (each
on a share of the output rows), so BLAS is kept to one thread while a backward kernel runs
(``blas_single_thread``; forward uses no BLAS): a second pool of spinning BLAS workers would fight the OpenMP threads
for the cores (measured: 5x slower on 2 cores).  Steps too small to share (less than 2**14
multiply-adds) run on one thread.

fork: GNU OpenMP's thread team does not survive ``fork()`` (a parallel region in the child
waits forever for threads that are not there), so in a process forked after a kernel call ran
on 2 or more threads (multiprocessing's "fork" start method) every call runs on one thread,
whatever set_num_threads says; the "spawn" and "forkserver" methods start clean processes.
"""
import contextlib
import os
import threading

from . import _kernels
from ._validate import check_size

_requested = None
MIN_WORK_PER_THREAD = 1 << 14   # measured: 2 threads already gain at GRU B=1 H=128 (49K)
_team_started = False           # a kernel call ran on 2+ threads: OpenMP's team exists
_forked = False                 # this process was forked after that: one thread only


def _after_fork_in_child():
    global _forked
    _forked = _forked or _team_started


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def set_num_threads(n):
    """Use n threads in the time loops (None: back to OpenMP's default)."""
    global _requested
    _requested = None if n is None else check_size("n", n)


def get_num_threads():
    """Threads the time loops may use: set_num_threads' count, else OpenMP's for the calling
    thread (omp_set_num_threads and threadpoolctl limits are per thread in OpenMP, so a new
    Python thread starts from the process default, as in scikit-learn); 1 in a process forked
    after a multi-threaded call (see the module docstring)."""
    if _forked:
        return 1
    return _requested if _requested is not None else max(1, _kernels.max_threads())


def step_threads(work):
    """Threads for a time step of `work` multiply-adds."""
    return team(max(1, min(get_num_threads(), int(work // MIN_WORK_PER_THREAD))))


def team(n):
    """n, the size of the team a kernel call is about to run on (noted for fork)."""
    global _team_started
    if n > 1:
        _team_started = True
    return n


_blas_fns = None


def _blas_controls():
    """(get, set) thread-count functions of each BLAS library loaded in the process: OpenBLAS's
    own C functions (a ctypes call, ~0.2 us) where threadpoolctl finds them, else threadpoolctl's
    controller methods."""
    global _blas_fns
    if _blas_fns is None:
        fns = []
        try:
            from threadpoolctl import ThreadpoolController
            for c in ThreadpoolController().lib_controllers:
                if c.user_api != "blas":
                    continue
                get = set_ = None
                if c.internal_api == "openblas" and hasattr(c, "_get_symbol"):
                    get = c._get_symbol("openblas_get_num_threads")
                    set_ = c._get_symbol("openblas_set_num_threads")
                if get is None or set_ is None:
                    get, set_ = c.get_num_threads, c.set_num_threads
                fns.append((get, set_))
        except Exception:  # threadpoolctl cannot inspect this platform: leave BLAS alone
            fns = []
        _blas_fns = fns
    return _blas_fns


# OpenBLAS runs a GEMV with m * n < 2304 * GEMM_MULTITHREAD_THRESHOLD (4) and a GEMM with
# m * n * k <= 65536 * 4 on one thread anyway (interface/gemv.c, gemm.c): below the smaller bound
# a kernel call skips blas_single_thread.
BLAS_SERIAL_SIZE = 2304 * 4

_lock = threading.Lock()
_depth = 0          # kernel calls running now (in any Python thread)
_restore = []       # (set, count) to restore when the last one ends


def blas_single_thread(size=None):
    """BLAS libraries on one thread while any kernel call runs (restored when the last running
    call ends, whichever Python thread it is in); a no-op when the largest BLAS product of the
    call has at most BLAS_SERIAL_SIZE multiply-adds (`size`)."""
    if size is not None and size <= BLAS_SERIAL_SIZE:
        return contextlib.nullcontext()
    return _blas_single_thread()


@contextlib.contextmanager
def _blas_single_thread():
    global _depth, _restore
    with _lock:
        if _depth == 0:
            _restore = []
            for get, set_ in _blas_controls():
                n = get()
                if n is not None and n != 1:
                    set_(1)
                    _restore.append((set_, n))
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for set_, n in _restore:
                    set_(n)
