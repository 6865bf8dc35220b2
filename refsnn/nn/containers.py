"""ModuleList and ModuleDict: containers that register their modules (as torch).

A Python ``list`` or ``dict`` of modules kept as an attribute is invisible to
``parameters()``, ``state_dict()``, ``train()`` and the optimizer; these two are
not.  The entries are registered under their index (``"0"``, ``"1"``, ...) or
their key, so ``state_dict`` names read ``blocks.0.weight`` / ``heads.cls.weight``.
Neither has a ``forward``: the owner decides how to call the modules it holds.
"""
from __future__ import annotations

from typing import Iterable

from .module import Module


def _check_module(owner: str, where, m) -> Module:
    if not isinstance(m, Module):
        raise TypeError(f"{owner}: item {where!r} is a {type(m).__name__}, not a Module")
    return m


class ModuleList(Module):
    """A list of modules, each registered as a sub-module under its index."""

    def __init__(self, modules: Iterable[Module] = ()):
        super().__init__()
        self.extend(modules)

    def _index(self, i: int) -> int:
        n = len(self)
        if isinstance(i, bool) or not isinstance(i, int) or not -n <= i < n:
            raise IndexError(f"ModuleList: index {i!r} is out of range for {n} module(s)")
        return i % n

    def _reset(self, modules: list) -> None:
        for name in list(self._modules):
            delattr(self, name)
        for i, m in enumerate(modules):
            setattr(self, str(i), m)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return ModuleList(list(self._modules.values())[i])
        return self._modules[str(self._index(i))]

    def __setitem__(self, i, m: Module) -> None:
        setattr(self, str(self._index(i)), _check_module("ModuleList", i, m))

    def __delitem__(self, i) -> None:
        modules = list(self._modules.values())
        del modules[i if isinstance(i, slice) else self._index(i)]
        self._reset(modules)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(list(self._modules.values()))

    def append(self, m: Module) -> "ModuleList":
        setattr(self, str(len(self)), _check_module("ModuleList", len(self), m))
        return self

    def extend(self, modules: Iterable[Module]) -> "ModuleList":
        if isinstance(modules, Module) and not isinstance(modules, ModuleList):
            raise TypeError(f"ModuleList.extend: expected an iterable of modules, got a {type(modules).__name__}")
        for m in list(modules):
            self.append(m)
        return self

    def insert(self, index: int, m: Module) -> None:
        modules = list(self._modules.values())
        modules.insert(index, _check_module("ModuleList", index, m))
        self._reset(modules)

    def forward(self, *args, **kwargs):
        raise TypeError("ModuleList has no forward(): iterate over it and call its modules")


class ModuleDict(Module):
    """A dict of modules (insertion order), each registered as a sub-module under its key."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def _key(self, key) -> str:
        if not isinstance(key, str) or not key.isidentifier():
            raise KeyError(f"ModuleDict: a key must be a Python identifier string (no dots), got {key!r}")
        if hasattr(ModuleDict, key) or (key in self.__dict__ and key not in self._modules):
            raise KeyError(f"ModuleDict: key {key!r} is the name of a Module attribute; choose another key")
        return key

    def __getitem__(self, key: str) -> Module:
        if key not in self._modules:
            raise KeyError(f"ModuleDict: no module {key!r}; keys are {list(self._modules)}")
        return self._modules[key]

    def __setitem__(self, key: str, m: Module) -> None:
        setattr(self, self._key(key), _check_module("ModuleDict", key, m))

    def __delitem__(self, key: str) -> None:
        self[key]  # noqa: B018 - raises the KeyError that names the keys
        delattr(self, key)

    def __contains__(self, key) -> bool:
        return key in self._modules

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(list(self._modules))

    def keys(self):
        return list(self._modules.keys())

    def values(self):
        return list(self._modules.values())

    def items(self):
        return list(self._modules.items())

    def update(self, modules) -> None:
        """Add (key, module) pairs from a mapping or an iterable of pairs."""
        pairs = modules.items() if hasattr(modules, "items") else modules
        for key, m in pairs:
            self[key] = m

    def forward(self, *args, **kwargs):
        raise TypeError("ModuleDict has no forward(): index it by key and call its modules")
