"""Reverse-mode automatic differentiation on a tape.

The whole engine is this file.  Read it top to bottom:

1. ``Tensor`` wraps a NumPy array (``.data``) and, once ``backward`` has run, the
   gradient of the loss with respect to it (``.grad``, same shape and dtype).
2. A *primitive* is a forward function on ndarrays plus a named VJP
   (vector-Jacobian product).  Calling a primitive on tensors runs the forward
   and, when a gradient is wanted, records one ``Node`` on the output: the
   primitive, its input tensors and a ``Context`` holding whatever the VJP needs.
   The chain of nodes from the loss back to the leaves is the tape.
3. ``Tensor.backward`` orders the tape topologically (every node after all the
   nodes that consume its output) and walks it from the loss to the leaves,
   calling each node's VJP once with the summed upstream gradient.

Primitives are declared in the style of HIPS autograd, one visible VJP each::

    @primitive
    def mul(ctx, a, b):          # positional args: differentiable inputs (ndarrays here)
        return a * b

    @mul.defvjp
    def mul_vjp(ctx, g):         # one gradient (or None) per positional input
        a, b = ctx.inputs
        return unbroadcast(g * b, a.shape), unbroadcast(g * a, b.shape)

Keyword-only arguments of a primitive are settings (stride, axis, ...), never
differentiated.  Precision: every tensor is float64 (the default) or float32;
an op that receives both raises ``TypeError`` instead of silently upcasting.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Callable

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))
DEFAULT_DTYPE = np.dtype(np.float64)


# ---------------------------------------------------------------------------
# Gradient mode
# ---------------------------------------------------------------------------
class _GradMode(threading.local):
    enabled = True


_grad_mode = _GradMode()


@contextlib.contextmanager
def no_grad():
    """Context in which ops record nothing on the tape (evaluation, optimizer steps)."""
    previous = _grad_mode.enabled
    _grad_mode.enabled = False
    try:
        yield
    finally:
        _grad_mode.enabled = previous


def is_grad_enabled() -> bool:
    return _grad_mode.enabled


# ---------------------------------------------------------------------------
# dtype handling
# ---------------------------------------------------------------------------
def check_float_dtype(dtype, what: str = "dtype") -> np.dtype:
    """Return ``dtype`` as a NumPy dtype if it is float32 or float64, else raise."""
    dt = np.dtype(dtype)
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{what}: got {dt}; refsnn computes in float64 (default) or float32 only")
    return dt


def as_array(data, dtype) -> np.ndarray:
    if dtype is not None:
        dt = check_float_dtype(dtype)
        return np.array(data, dtype=dt)  # copy: a tensor owns its data
    arr = np.array(data)
    if arr.dtype in FLOAT_DTYPES:
        return arr
    if arr.dtype.kind in "biuf":  # bools, ints, float16 -> the default precision
        return arr.astype(DEFAULT_DTYPE)
    raise TypeError(f"tensor(): cannot make a float tensor from data of dtype {arr.dtype}")


# ---------------------------------------------------------------------------
# Tensor
# ---------------------------------------------------------------------------
class Tensor:
    """An ndarray that remembers how it was computed.

    ``data``: the values (float32 or float64 ndarray).  ``grad``: accumulated
    gradient of every ``backward`` call so far (``None`` before the first), only
    kept on leaves (tensors made by the user with ``requires_grad=True``).
    """

    __array_priority__ = 1000  # so that ndarray (op) Tensor defers to Tensor's operators

    def __init__(self, data: np.ndarray, requires_grad: bool = False, _node: "Node | None" = None):
        self.data = data
        self.requires_grad = bool(requires_grad)
        self.grad: np.ndarray | None = None
        self._node = _node

    # -- array-like attributes ----------------------------------------------
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    def numpy(self) -> np.ndarray:
        return self.data

    def item(self) -> float:
        return self.data.item()

    def __len__(self) -> int:
        return len(self.data)

    # -- Python scalars and NumPy (values only; no gradient flows through these) ------
    def _scalar(self, kind: str):
        if self.data.size != 1:
            raise TypeError(f"{kind}(): only a tensor with one element converts to a Python scalar; this one has "
                            f"shape {self.shape} ({self.data.size} elements)")
        return self.data.item()

    def __float__(self) -> float:
        return float(self._scalar("float"))

    def __int__(self) -> int:
        return int(self._scalar("int"))

    def __bool__(self) -> bool:
        return bool(self._scalar("bool"))

    def __array__(self, dtype=None, copy=None):
        """``np.asarray(t)``: the values (as ``t.numpy()``), cut from the tape."""
        if copy is False and dtype is not None and np.dtype(dtype) != self.data.dtype:
            raise ValueError(f"np.asarray(tensor, dtype={dtype}, copy=False): the tensor is {self.dtype}")
        out = self.data if dtype is None else self.data.astype(dtype, copy=False)
        return out.copy() if copy else out

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        """``ndarray (op) Tensor`` runs Tensor's operator; any other NumPy ufunc on a Tensor is a TypeError."""
        op = _OPERATOR_UFUNCS.get(ufunc.__name__)
        if op is not None and method == "__call__" and not kwargs and len(inputs) == len(op):
            if inputs[0] is self:
                return getattr(self, op[0])(*inputs[1:])
            if len(op) == 2 and inputs[1] is self:
                return getattr(self, op[1])(inputs[0])
        raise TypeError(_numpy_message(f"np.{ufunc.__name__}" + ("" if method == "__call__" else f".{method}")))

    def __array_function__(self, func, types, args, kwargs):
        """NumPy functions (``np.mean``, ``np.concatenate``, ...) on a Tensor are a TypeError (they drop the tape)."""
        if func in (np.shape, np.ndim, np.size):
            return func(self.data, *args[1:], **kwargs)
        raise TypeError(_numpy_message(f"np.{func.__name__}"))

    def __repr__(self) -> str:
        op = f", op={self._node.primitive.name}" if self._node is not None else ""
        rg = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({np.array2string(self.data, precision=4, threshold=8)}, dtype={self.dtype}{rg}{op})"

    def detach(self) -> "Tensor":
        """The same values, cut from the tape (shares the data array)."""
        return Tensor(self.data, requires_grad=False)

    def zero_grad(self) -> None:
        self.grad = None

    # -- the reverse pass -----------------------------------------------------
    def backward(self, grad=None) -> None:
        """Accumulate d(self)/d(leaf) . grad into every leaf's ``.grad``.

        ``grad`` is the upstream gradient, same shape as ``self``; it may be left
        out only for a scalar (size-1) tensor, the loss, and then is 1.
        """
        if not self.requires_grad:
            raise ValueError("backward(): this tensor does not require a gradient "
                             "(no input of the computation had requires_grad=True)")
        if grad is None:
            if self.data.size != 1:
                raise ValueError(f"backward(): the tensor has shape {self.shape}; without an explicit "
                                 "`grad` only a scalar loss (size 1) can be differentiated. Pass "
                                 "grad=<array of that shape> or reduce the tensor to a scalar first")
            if not np.isfinite(self.data).all():
                raise ValueError(f"backward(): the loss is {self.data.item()!r}, not a finite number; "
                                 "check the learning rate and the inputs (NaN/inf in a loss)")
            grad = np.ones_like(self.data)
        else:
            grad = grad.data if isinstance(grad, Tensor) else np.asarray(grad)
            if grad.shape != self.shape:
                raise ValueError(f"backward(): grad has shape {grad.shape}, the tensor has shape {self.shape}")
            if grad.dtype != self.dtype:
                raise TypeError(f"backward(): grad has dtype {grad.dtype}, the tensor has dtype {self.dtype}")

        order = _topological_order(self)
        grads = {id(self): grad}
        for t in reversed(order):
            g = grads.pop(id(t), None)
            if g is None:
                continue
            if t._node is None:  # a leaf: accumulate
                t.grad = g.copy() if t.grad is None else t.grad + g
                continue
            node = t._node
            in_grads = node.primitive.vjp(node.ctx, g)
            if not isinstance(in_grads, tuple):
                in_grads = (in_grads,)
            if len(in_grads) != len(node.inputs):
                raise RuntimeError(f"VJP of '{node.primitive.name}' returned {len(in_grads)} gradients "
                                   f"for {len(node.inputs)} inputs")
            for x, gx in zip(node.inputs, in_grads):
                if gx is None or not x.requires_grad:
                    continue
                gx = np.asarray(gx, dtype=x.dtype)
                if gx.shape != x.shape:
                    raise RuntimeError(f"VJP of '{node.primitive.name}' returned a gradient of shape "
                                       f"{gx.shape} for an input of shape {x.shape}")
                key = id(x)
                grads[key] = gx if key not in grads else grads[key] + gx


#: NumPy ufunc name -> (Tensor method when the Tensor is first, when it is second) of Python's operators
_OPERATOR_UFUNCS = {"add": ("__add__", "__radd__"), "subtract": ("__sub__", "__rsub__"),
                    "multiply": ("__mul__", "__rmul__"), "true_divide": ("__truediv__", "__rtruediv__"),
                    "matmul": ("__matmul__", "__rmatmul__"), "negative": ("__neg__",)}


def _numpy_message(what: str) -> str:
    return (f"{what}() got a refsnn Tensor: NumPy functions do not record gradients. Use refsnn.functional "
            "(import refsnn.functional as F; F.exp(t), F.sum(t), ...) for a differentiable op, or t.numpy() / "
            "t.data for the values as an ndarray")


def _topological_order(root: Tensor) -> list:
    """Tensors reachable from ``root`` through the tape, each after all its inputs."""
    order, seen = [], set()
    stack = [(root, False)]
    while stack:  # iterative depth-first search: deep nets do not hit the recursion limit
        t, expanded = stack.pop()
        if expanded:
            order.append(t)
            continue
        if id(t) in seen:
            continue
        seen.add(id(t))
        stack.append((t, True))
        if t._node is not None:
            for x in t._node.inputs:
                if x.requires_grad and id(x) not in seen:
                    stack.append((x, False))
    return order


def tensor(data, requires_grad: bool = False, dtype=None) -> Tensor:
    """Make a leaf tensor (a copy of ``data``). ``dtype``: float64 (default) or float32.

    Integer, boolean and Python-number data become float64; a float32 or
    float64 array keeps its precision unless ``dtype`` says otherwise.
    """
    if isinstance(data, Tensor):
        data = data.data
    return Tensor(as_array(data, dtype), requires_grad=requires_grad)


# ---------------------------------------------------------------------------
# Primitives
# ---------------------------------------------------------------------------
class Context:
    """What a VJP may read: ``inputs`` (ndarrays), ``out``, ``kwargs``,
    ``needs_grad`` (one bool per input) and whatever the forward stored on it."""

    def __init__(self, inputs, kwargs):
        self.inputs = inputs
        self.kwargs = kwargs
        self.out = None
        self.needs_grad = ()


class Node:
    """One entry of the tape: which primitive made a tensor, from which inputs."""

    __slots__ = ("primitive", "inputs", "ctx")

    def __init__(self, primitive, inputs, ctx):
        self.primitive = primitive
        self.inputs = inputs
        self.ctx = ctx


class Primitive:
    """A differentiable op: a forward on ndarrays and its named VJP."""

    def __init__(self, forward: Callable, name: str | None = None):
        self.forward = forward
        self.name = name or forward.__name__
        self.vjp: Callable | None = None
        self.__doc__ = forward.__doc__
        self.__name__ = self.name

    def defvjp(self, vjp: Callable) -> Callable:
        self.vjp = vjp
        return vjp

    def __call__(self, *args, **kwargs) -> Tensor:
        tensors = _as_input_tensors(self.name, args)
        ctx = Context(tuple(t.data for t in tensors), kwargs)
        out = self.forward(ctx, *ctx.inputs, **kwargs)
        needs = is_grad_enabled() and any(t.requires_grad for t in tensors)
        if not needs:
            return Tensor(out)
        if self.vjp is None:  # pragma: no cover - a programming error in refsnn
            raise RuntimeError(f"primitive '{self.name}' has no VJP")
        ctx.out = out
        ctx.needs_grad = tuple(t.requires_grad for t in tensors)
        return Tensor(out, requires_grad=True, _node=Node(self, tensors, ctx))

    def __repr__(self) -> str:
        return f"<primitive {self.name}>"


def primitive(forward: Callable) -> Primitive:
    """Decorator: turn ``forward(ctx, *arrays, **settings)`` into a tape primitive."""
    return Primitive(forward)


def _as_input_tensors(op: str, args) -> list:
    """Wrap every positional input as a Tensor of one common float dtype.

    Python numbers and integer arrays take the dtype of the tensor inputs;
    float32 and float64 inputs together are an error (no silent upcast).
    """
    float_dtypes = set()
    for a in args:
        if isinstance(a, Tensor):
            float_dtypes.add(a.dtype)
        elif isinstance(a, np.ndarray) and a.dtype.kind == "f":
            if a.dtype not in FLOAT_DTYPES:
                raise TypeError(f"{op}: got an array of dtype {a.dtype}; use float64 or float32")
            float_dtypes.add(a.dtype)
        elif not isinstance(a, (int, float, np.ndarray, np.number, bool, np.bool_, list, tuple)):
            raise TypeError(f"{op}: cannot use an input of type {type(a).__name__}; "
                            "expected a Tensor, an ndarray or a number")
    if len(float_dtypes) > 1:
        raise TypeError(f"{op}: inputs mix {' and '.join(sorted(str(d) for d in float_dtypes))}; "
                        "convert them to one precision first (refsnn never upcasts silently)")
    dtype = float_dtypes.pop() if float_dtypes else DEFAULT_DTYPE
    out = []
    for a in args:
        if isinstance(a, Tensor):
            out.append(a)
        else:
            out.append(Tensor(np.asarray(a, dtype=dtype)))
    return out


def unbroadcast(g: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum ``g`` down to ``shape``: the VJP of NumPy broadcasting."""
    if g.shape == tuple(shape):
        return g
    extra = g.ndim - len(shape)
    if extra > 0:
        g = g.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)
