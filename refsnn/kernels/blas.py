"""Stacked matrix products that do not pay one thread barrier per matrix: ``stacked_matmul``.

``np.matmul`` on a stack (B, m, k) @ (B, k, n) calls BLAS once per matrix, and a multi-threaded
OpenBLAS starts and joins its threads in every call. On the shared 2-core machine refsnn is
benchmarked on, Winograd's 16 products per pass then ran 3-4x slower with 2 BLAS threads than
with 1 (``refsnn bench train``: ResNet-20's step 15 s -> 3.7 s). ``stacked_matmul`` computes the same
products with single-threaded BLAS calls, the stack split over ``numba.get_num_threads()`` Python
threads (BLAS releases the GIL): one join per stack instead of one per matrix.

Numbers: each product is the one a single-threaded BLAS computes, so the result does not depend on the
number of threads (in float32 OpenBLAS gives the same bits with 2 threads, in float64 it picks another
kernel for some small products, a few ulps apart). ``tests/test_kernels_blas.py`` checks it bit for bit
against ``np.matmul`` under one BLAS thread. Where NumPy's BLAS is not an OpenBLAS whose thread count
can be set (``blas_threads_settable()`` is False), ``stacked_matmul`` is ``np.matmul``.
"""
from __future__ import annotations

import ctypes
import glob
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["stacked_matmul", "blas_threads_settable"]

#: (setter, getter) names of OpenBLAS's thread count, as NumPy's wheels (scipy-openblas, ILP64) and
#: plain OpenBLAS builds export them
_SYMBOLS = (("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
            ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
            ("openblas_set_num_threads", "openblas_get_num_threads"))
_LOCK = threading.Lock()
_STATE = {}


def _openblas():
    """(set_num_threads, get_num_threads) of the OpenBLAS NumPy loaded, or None."""
    if "funcs" not in _STATE:
        _STATE["funcs"] = None
        libs = glob.glob(os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs", "*openblas*"))
        libs += glob.glob(os.path.join(os.path.dirname(np.__file__), ".dylibs", "*openblas*"))
        for path in libs:
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for set_name, get_name in _SYMBOLS:
                if hasattr(lib, set_name) and hasattr(lib, get_name):
                    setter, getter = getattr(lib, set_name), getattr(lib, get_name)
                    setter.argtypes, setter.restype, getter.restype = [ctypes.c_int], None, ctypes.c_int
                    _STATE["funcs"] = (setter, getter)
                    break
            if _STATE["funcs"]:
                break
    return _STATE["funcs"]


def blas_threads_settable() -> bool:
    """Whether NumPy's BLAS is an OpenBLAS whose thread count ``stacked_matmul`` can set."""
    return _openblas() is not None


def _pool(workers: int) -> ThreadPoolExecutor:
    """The worker threads; a new pool after a fork (a child process does not inherit its parent's threads)."""
    if _STATE.get("owner") != (os.getpid(), workers):
        if "pool" in _STATE and _STATE["owner"][0] == os.getpid():
            _STATE["pool"].shutdown()
        _STATE["pool"] = ThreadPoolExecutor(workers, thread_name_prefix="refsnn-blas")
        _STATE["owner"] = (os.getpid(), workers)
    return _STATE["pool"]


def stacked_matmul(a, b):
    """``np.matmul(a, b)`` for 3-D stacks a (B, m, k), b (B, k, n) -> (B, m, n), C-contiguous, same numbers.

    Each of the B products is one single-threaded BLAS call; the stack is shared among
    ``numba.get_num_threads()`` threads (interleaved: thread h takes matrices h, h + workers, ...),
    so the numbers do not depend on that count.
    """
    if a.ndim != 3 or b.ndim != 3 or a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
        raise ValueError(f"stacked_matmul: expected stacks (B, m, k) and (B, k, n), got {a.shape} and {b.shape}")
    import numba
    funcs = _openblas()
    workers = min(numba.get_num_threads(), a.shape[0])
    if funcs is None:
        return np.ascontiguousarray(np.matmul(a, b))
    out = np.empty((a.shape[0], a.shape[1], b.shape[2]), dtype=np.result_type(a, b))
    setter, getter = funcs
    with _LOCK:  # the thread count is global to the process
        before = getter()
        setter(1)
        try:
            if workers < 2:
                np.matmul(a, b, out=out)
            else:
                jobs = [_pool(workers).submit(np.matmul, a[h::workers], b[h::workers], out=out[h::workers])
                        for h in range(workers)]
                for job in jobs:
                    job.result()
        finally:
            setter(before)
    return out
