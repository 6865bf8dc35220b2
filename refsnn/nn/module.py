"""Module and Parameter: containers of learnable tensors and state.

A ``Parameter`` is a leaf ``Tensor`` with ``requires_grad=True`` and a ``kind``
(``"weight"``, ``"bn"``, ``"bias"``, ``"threshold"``, ``"weight_step"``,
``"spike_width"``, ``"weight_width"``, ``"time"``) so that an optimizer can give
each kind its own learning rate (docs/method.md §11).  A ``Module`` finds its
parameters, buffers and sub-modules by attribute, in definition order.

Forward hooks (as in torch): ``handle = m.register_forward_hook(hook)`` calls
``hook(module, args, output)`` after every ``m(*args)``; a hook that returns a value replaces
the output.  ``handle.remove()`` (or leaving ``with handle:``) takes the hook off again.
"""
from __future__ import annotations

import itertools
from collections import OrderedDict, namedtuple
from typing import Callable, Iterator

import numpy as np

from ..autograd.tensor import Tensor, as_array

#: what ``load_state_dict`` returns (as torch): the keys of the model absent from the state, and the reverse
IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])

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

    def __delattr__(self, name):
        for store in (self._params, self._modules, self._buffers):
            store.pop(name, None)
        object.__delattr__(self, name)

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

    def named_children(self) -> Iterator[tuple]:
        """(name, module) of the direct sub-modules, in definition order."""
        return iter(list(self._modules.items()))

    def children(self) -> Iterator["Module"]:
        """The direct sub-modules, in definition order."""
        return (m for _, m in self.named_children())

    def apply(self, fn: Callable) -> "Module":
        """Call ``fn(module)`` on every sub-module (children first, as torch) and on this module; returns self."""
        if not callable(fn):
            raise TypeError(f"apply: fn must be callable, got {type(fn).__name__}")
        for m in self._modules.values():
            m.apply(fn)
        fn(self)
        return self

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        """Set ``requires_grad`` of every parameter (False freezes them: optimizers skip them); returns self."""
        if not isinstance(requires_grad, (bool, np.bool_)):
            raise TypeError(f"requires_grad_: requires_grad must be True or False, got {requires_grad!r}")
        for p in self.parameters():
            p.requires_grad = bool(requires_grad)
        return self

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

    def load_state_dict(self, state: dict, strict: bool = True) -> IncompatibleKeys:
        """Load arrays saved by ``state_dict``; each loaded key must match in shape and dtype.

        ``strict=True`` (the default, as torch): every key of the model must be in
        ``state`` and every key of ``state`` in the model, else a ``ValueError``
        lists the missing and the unexpected keys and nothing is loaded.
        ``strict=False``: the keys present in both are loaded; the others are
        returned as ``IncompatibleKeys(missing_keys, unexpected_keys)``.
        """
        targets = self._state_targets()
        missing = sorted(set(targets) - set(state))
        unexpected = sorted(set(state) - set(targets))
        if strict and (missing or unexpected):
            raise ValueError(f"load_state_dict: missing keys {missing} (in the model, not in the state), "
                             f"unexpected keys {unexpected} (in the state, not in the model); "
                             "strict=False loads the keys that match")
        matched = [(name, np.asarray(value)) for name, value in state.items() if name in targets]
        for name, value in matched:  # check every shape before writing anything
            old = targets[name][2]
            old = old.data if isinstance(old, Parameter) else np.asarray(old)
            if value.shape != old.shape or value.dtype != old.dtype:
                raise ValueError(f"load_state_dict: '{name}' has shape {value.shape} dtype {value.dtype}, "
                                 f"the model expects {old.shape} {old.dtype}")
        for name, value in matched:
            m, attr, old = targets[name]
            if isinstance(old, Parameter):
                old.data[...] = value
            elif isinstance(old, np.ndarray) and old.shape:
                old[...] = value
            else:
                object.__setattr__(m, attr, value.copy())
        return IncompatibleKeys(missing, unexpected)

    def _state_targets(self) -> dict:
        """{dotted name: (owning module, attribute, current value)} of every parameter and buffer."""
        targets = {}
        for mname, m in self.named_modules():
            for attr in list(m._params) + list(m._buffers):
                targets[f"{mname}.{attr}" if mname else attr] = (m, attr, getattr(m, attr))
        return targets

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
