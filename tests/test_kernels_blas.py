"""refsnn.kernels.blas.stacked_matmul: np.matmul's numbers bit for bit, on any stack, the BLAS thread count restored."""
import numpy as np
import pytest

from refsnn.kernels.blas import _openblas, blas_threads_settable, stacked_matmul


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("B,m,k,n", [(16, 7, 5, 9), (16, 64, 48, 300), (3, 130, 257, 66), (1, 4, 4, 4), (16, 1, 9, 1)])
def test_equals_np_matmul_bit_for_bit(B, m, k, n, dtype):
    rng = np.random.default_rng(B * m + k)
    a = rng.standard_normal((B, m, k)).astype(dtype)
    b = rng.standard_normal((B, n, k)).astype(dtype).transpose(0, 2, 1)  # a transposed view, as Winograd passes
    out = stacked_matmul(a, b)
    assert out.dtype == dtype and out.shape == (B, m, n) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, _one_blas_thread(np.matmul, a, b))
    if dtype == np.float32:  # float32: OpenBLAS's numbers do not depend on its thread count either
        np.testing.assert_array_equal(out, np.matmul(a, b))
    else:
        np.testing.assert_allclose(out, np.matmul(a, b), rtol=1e-13, atol=1e-13)


def _one_blas_thread(f, *args):
    if not blas_threads_settable():
        return f(*args)
    setter, getter = _openblas()
    before = getter()
    setter(1)
    try:
        return f(*args)
    finally:
        setter(before)


def test_thread_count_is_restored_and_the_numbers_do_not_depend_on_it():
    import numba
    if not blas_threads_settable():
        pytest.skip("NumPy's BLAS is not an OpenBLAS with a settable thread count")
    setter, getter = _openblas()
    before = getter()
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((8, 64, 48)), rng.standard_normal((8, 48, 300))
    ref = stacked_matmul(a, b)
    assert getter() == before
    old = numba.get_num_threads()
    numba.set_num_threads(1)   # one worker: the stack in one call, still one BLAS thread
    try:
        np.testing.assert_array_equal(stacked_matmul(a, b), ref)
    finally:
        numba.set_num_threads(old)


@pytest.mark.parametrize("a,b", [(np.ones((2, 3)), np.ones((3, 2))), (np.ones((2, 3, 4)), np.ones((3, 4, 2))),
                                 (np.ones((2, 3, 4)), np.ones((2, 5, 2)))])
def test_bad_shapes_are_named(a, b):
    with pytest.raises(ValueError, match=r"stacked_matmul: expected stacks \(B, m, k\) and \(B, k, n\), got"):
        stacked_matmul(a, b)


def test_a_forked_child_gets_its_own_worker_threads():
    import multiprocessing as mp
    import numba
    if numba.get_num_threads() < 2 or "fork" not in mp.get_all_start_methods():
        pytest.skip("needs 2 numba threads and fork")
    a, b = np.ones((4, 8, 8)), np.ones((4, 8, 8))
    stacked_matmul(a, b)  # the parent's pool exists now
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        out = pool.apply_async(_child_product).get(timeout=120)
    np.testing.assert_array_equal(out, np.full((4, 8, 8), 8.0))


def _child_product():
    return stacked_matmul(np.ones((4, 8, 8)), np.ones((4, 8, 8)))
