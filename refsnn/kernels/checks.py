"""Argument checks shared by the kernels.

Every kernel validates its arguments here, at the boundary, so that a bad call
fails with a message naming the argument, the value it got and what is allowed,
instead of a shape error from deep inside numba or BLAS.
"""

from __future__ import annotations

import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
IMPLS = ("numba", "numpy")
#: largest bit width of a spike or weight quantizer: 2^B - 1 must be an exact float32 integer.
MAX_BITS = 24


def check_impl(impl) -> str:
    """Return ``impl`` if it names a known implementation, else raise ValueError."""
    if not isinstance(impl, str) or impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    return impl


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def pair(value, name: str, *, minimum: int) -> tuple[int, int]:
    """Normalise an int or a 2-tuple of ints to ``(a, b)``, each ``>= minimum``.

    ``name`` is used in the error message (``stride``, ``padding``, ``kernel_size``).
    """
    if _is_int(value):
        items = (value, value)
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_int(v) for v in value):
        items = tuple(value)
    else:
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(items) < minimum:
        raise ValueError(f"{name} must be >= {minimum} in each dimension, got {value!r}")
    return int(items[0]), int(items[1])


def float_array(a, name: str, ndim: int | None = 4, *, nonempty: bool = False) -> np.ndarray:
    """Check that ``a`` is a float32/float64 ndarray with ``ndim`` dimensions (any number if ``None``),
    and with at least one element if ``nonempty``."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {a.dtype}")
    if nonempty and a.size == 0:
        raise ValueError(f"{name} must have at least one element, got shape {a.shape}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got a {a.ndim}-D array of shape {a.shape}")
    return a


def same_dtype(a: np.ndarray, name_a: str, b: np.ndarray, name_b: str) -> None:
    """Mixing float32 and float64 is refused: the caller must cast explicitly."""
    if a.dtype != b.dtype:
        raise TypeError(
            f"{name_a} has dtype {a.dtype} but {name_b} has dtype {b.dtype}; "
            "they must be the same (float32 or float64)"
        )


def shape4(shape, name: str) -> tuple[int, int, int, int]:
    """Check a shape argument: a sequence of 4 positive ints."""
    if (
        not isinstance(shape, (tuple, list))
        or len(shape) != 4
        or not all(_is_int(s) for s in shape)
    ):
        raise TypeError(f"{name} must be a tuple of 4 ints, got {shape!r}")
    if min(shape) < 1:
        raise ValueError(f"{name} must have positive entries, got {tuple(shape)}")
    return tuple(int(s) for s in shape)


def out_size(size: int, k: int, s: int, p: int, axis: str) -> int:
    """``(size + 2p - k) // s + 1``, refusing a kernel larger than the padded input."""
    if size + 2 * p < k:
        raise ValueError(
            f"kernel size {k} along {axis} is larger than the padded input "
            f"{size} + 2*{p} = {size + 2 * p}"
        )
    return (size + 2 * p - k) // s + 1


def expect_shape(a: np.ndarray, name: str, shape: tuple, why: str) -> None:
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)} ({why}), got {a.shape}")


def check_finite(a: np.ndarray, name: str) -> None:
    """Raise ValueError naming the first non-finite element of ``a``."""
    bad = ~np.isfinite(a)
    if bad.any():
        idx = np.unravel_index(int(np.argmax(bad)), a.shape)
        where = f"{name}[{', '.join(map(str, idx))}]" if a.ndim else name
        raise ValueError(
            f"{name} must be finite; {where} = {a[idx]} "
            f"({int(bad.sum())} non-finite element(s)); allowed range: finite floats"
        )
