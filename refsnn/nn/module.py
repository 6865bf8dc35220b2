"""Module and Parameter: containers of learnable tensors and state.

A ``Parameter`` is a leaf ``Tensor`` with ``requires_grad=True`` and a ``kind``
(``"weight"``, ``"bn"``, ``"bias"``, ``"threshold"``, ``"weight_step"``,
``"spike_width"``, ``"weight_width"``, ``"time"``) so that an optimizer can give
each kind its own learning rate (METHOD.md section 11).  A ``Module`` finds its
parameters, buffers and sub-modules by attribute, in definition order.

Forward hooks (as in torch): ``handle = m.register_forward_hook(hook)`` calls
``hook(module, args, output)`` after every ``m(*args)``; a hook that returns a value replaces
the output.  ``handle.remove()`` (or leaving ``with handle:``) takes the hook off again.
"""
from __future__ import annotations

import itertools
from collections import OrderedDict
from typing import Callable, Iterator

import numpy as np

from ..autograd.tensor import Tensor, as_array

PARAMETER_KINDS = ("weight", "bias", "bn", "threshold", "weight_step", "spike_width", "weight_width", "time")
_HOOK_IDS = itertools.count()


class RemovableHandle:
    """Returned by ``Module.register_forward_hook``: ``remove()`` takes the hook off (idempotent)."""

    def __init__(self, hooks: "OrderedDict", key: int):
        self._hooks, self.id = hooks, key

    def remove(self) -> None:
        self._hooks.pop(self.id, None)

    def __enter__(self) -> "RemovableHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


class Parameter(Tensor):
    """A learnable leaf tensor; ``kind`` groups it for the optimizer."""

    def __init__(self, data, kind: str = "weight", dtype=None):
        if kind not in PARAMETER_KINDS:
            raise ValueError(f"Parameter: kind must be one of {PARAMETER_KINDS}, got {kind!r}")
        super().__init__(as_array(data, dtype), requires_grad=True)
        self.kind = kind

    def __repr__(self) -> str:
        return f"Parameter(kind={self.kind!r}, shape={self.shape}, dtype={self.dtype})"


class Module:
    """Base class: override ``forward``; call the module to run it."""

    def __init__(self):
        object.__setattr__(self, "_params", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_params" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before setting attributes")
        for store in (self._params, self._modules):
            store.pop(name, None)
        if isinstance(value, Parameter):
            self._params[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, value: np.ndarray) -> None:
        """A non-learnable array that is part of the state (BN statistics, observer state)."""
        self._buffers[name] = True
        object.__setattr__(self, name, value)

    # -- traversal ---------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple]:
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return (m for _, m in self.named_modules())

    def named_parameters(self, prefix: str = "") -> Iterator[tuple]:
        for mname, m in self.named_modules(prefix):
            for pname, p in m._params.items():
                yield (f"{mname}.{pname}" if mname else pname), p

    def parameters(self, kind: str | None = None) -> list:
        """All parameters, or those of one ``kind``."""
        if kind is not None and kind not in PARAMETER_KINDS:
            raise ValueError(f"parameters: kind must be one of {PARAMETER_KINDS}, got {kind!r}")
        return [p for _, p in self.named_parameters() if kind is None or p.kind == kind]

    def parameter_groups(self) -> dict:
        """Parameters grouped by kind: {kind: [Parameter, ...]} (kinds without parameters are left out)."""
        groups: dict = {}
        for p in self.parameters():
            groups.setdefault(p.kind, []).append(p)
        return groups

    def named_buffers(self, prefix: str = "") -> Iterator[tuple]:
        for mname, m in self.named_modules(prefix):
            for bname in m._buffers:
                yield (f"{mname}.{bname}" if mname else bname), getattr(m, bname)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True) -> "Module":
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> "Module":
        return self.train(False)

    # -- state -------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Copies of every parameter and buffer, by dotted name."""
        out = OrderedDict()
        for name, p in self.named_parameters():
            out[name] = p.data.copy()
        for name, b in self.named_buffers():
            out[name] = np.array(b, copy=True)
        return out

    def load_state_dict(self, state: dict) -> None:
        """Load arrays saved by ``state_dict``; every key must match in name, shape and dtype."""
        own = dict(self.named_parameters())
        bufs = {}
        for mname, m in self.named_modules():
            for bname in m._buffers:
                bufs[f"{mname}.{bname}" if mname else bname] = (m, bname)
        expected = set(own) | set(bufs)
        missing, unexpected = expected - set(state), set(state) - expected
        if missing or unexpected:
            raise ValueError(f"load_state_dict: missing keys {sorted(missing)}, unexpected keys {sorted(unexpected)}")
        for name, value in state.items():
            value = np.asarray(value)
            if name in own:
                p = own[name]
                if value.shape != p.shape or value.dtype != p.dtype:
                    raise ValueError(f"load_state_dict: '{name}' has shape {value.shape} dtype {value.dtype}, "
                                     f"the model expects {p.shape} {p.dtype}")
                p.data[...] = value
            else:
                m, bname = bufs[name]
                old = getattr(m, bname)
                if np.shape(old) != value.shape or np.asarray(old).dtype != value.dtype:
                    raise ValueError(f"load_state_dict: buffer '{name}' has shape {value.shape} dtype {value.dtype}, "
                                     f"the model expects {np.shape(old)} {np.asarray(old).dtype}")
                if isinstance(old, np.ndarray) and old.shape:
                    old[...] = value
                else:
                    object.__setattr__(m, bname, value.copy())

    # -- running -----------------------------------------------------------
    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise TypeError(f"{type(self).__name__} does not define forward()")

    def register_forward_hook(self, hook: Callable) -> RemovableHandle:
        """Call ``hook(module, args, output)`` after each forward pass of this module, in registration order;
        a hook returning something other than None replaces the output.  Returns the handle that removes it."""
        if not callable(hook):
            raise TypeError(f"register_forward_hook: hook must be callable, got {type(hook).__name__}")
        key = next(_HOOK_IDS)
        self._forward_hooks[key] = hook
        return RemovableHandle(self._forward_hooks, key)

    def __call__(self, *args, **kwargs):
        out = self.forward(*args, **kwargs)
        for hook in tuple(self._forward_hooks.values()):
            res = hook(self, args, out)
            if res is not None:
                out = res
        return out

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, m in self._modules.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {sub}")
        return "\n".join(lines) + ")" if len(lines) > 1 else lines[0] + ")"


class Sequential(Module):
    """Modules applied one after another."""

    def __init__(self, *modules: Module):
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: item {i} is a {type(m).__name__}, not a Module")
            setattr(self, str(i), m)

    def __iter__(self):
        return iter(self._modules.values())

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x
