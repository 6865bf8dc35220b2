"""Finite-difference check of the tape's gradients."""
from __future__ import annotations

import numpy as np

from .tensor import Tensor, no_grad


class GradcheckError(AssertionError):
    """The tape's gradient and the central difference disagree."""


def gradcheck(fn, inputs, eps: float = 1e-6, atol: float = 1e-6, rtol: float = 1e-4, seed: int = 0) -> bool:
    """Compare the tape's gradient of ``fn(*inputs)`` with central differences.

    ``fn`` returns a Tensor of any shape; it is reduced to the scalar
    ``sum(fn(*inputs) * r)`` with a fixed random ``r`` (from ``seed``) so that
    every output element is checked.  Every input with ``requires_grad=True``
    must be float64.  For each of its elements ``x_k``::

        numeric  = (L(x_k + eps) - L(x_k - eps)) / (2 eps)
        analytic = tape gradient
        |analytic - numeric| <= atol + rtol * |numeric|

    Returns True, or raises ``GradcheckError`` naming the op, the input, the
    worst element and both values.
    """
    inputs = list(inputs)
    wrt = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not wrt:
        raise ValueError("gradcheck: no input has requires_grad=True")
    for i in wrt:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} is {inputs[i].dtype}; finite differences need float64")

    out = fn(*inputs)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn returned {type(out).__name__}, expected a Tensor")
    op = out._node.primitive.name if out._node is not None else getattr(fn, "__name__", "fn")
    r = np.random.default_rng(seed).standard_normal(out.shape)

    for i in wrt:
        inputs[i].grad = None
    out.backward(r.astype(out.dtype))
    analytic = {i: (inputs[i].grad if inputs[i].grad is not None else np.zeros(inputs[i].shape)) for i in wrt}

    def loss() -> float:
        with no_grad():
            return float(np.sum(fn(*inputs).data * r))

    for i in wrt:
        x = inputs[i].data
        numeric = np.zeros(x.shape)
        flat = x.reshape(-1)  # a view: editing it edits the input in place
        for k in range(flat.size):
            orig = flat[k]
            flat[k] = orig + eps
            lp = loss()
            flat[k] = orig - eps
            lm = loss()
            flat[k] = orig
            numeric.reshape(-1)[k] = (lp - lm) / (2 * eps)
        err = np.abs(analytic[i] - numeric)
        bad = err > atol + rtol * np.abs(numeric)
        if bad.any():
            worst = np.unravel_index(np.argmax(err - rtol * np.abs(numeric)), x.shape)
            raise GradcheckError(
                f"gradcheck failed for op '{op}', input {i} (shape {x.shape}): at index {tuple(int(j) for j in worst)} "
                f"the tape gives {analytic[i][worst]:.10g}, finite differences give {numeric[worst]:.10g} "
                f"(|diff| = {err[worst]:.3g}, allowed {atol + rtol * abs(numeric[worst]):.3g}; "
                f"{int(bad.sum())} of {x.size} elements fail)")
    return True
