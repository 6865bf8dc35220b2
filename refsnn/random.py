"""The global random generator, as ``torch.manual_seed``: the default of every layer built without ``rng``.

    refsnn.manual_seed(0)
    a, b = nn.Linear(4, 4), nn.Linear(4, 4)      # different weights, the same on every run

The generator is a NumPy ``Generator`` (PCG64) seeded with 0 when refsnn is
imported, so a program that never calls ``manual_seed`` still gets the same bits
run after run.  A layer given ``rng=`` (an int seed or a ``Generator``) does not
touch the global generator; the models of ``refsnn.models`` are always built from
their own ``seed``, so the golden sets, the demo and ``verify`` do not depend on it.
``nn.Dropout`` / ``F.dropout`` draw their masks from it unless given ``rng``.

This module imports nothing of refsnn: every layer may use it.
"""
from __future__ import annotations

import numpy as np

_generator = np.random.default_rng(0)


def _check_seed(seed, where: str) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{where} must be an integer >= 0, got {seed!r}")
    return int(seed)


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed the global generator with ``seed`` (an integer >= 0) and return it."""
    global _generator
    _generator = np.random.default_rng(_check_seed(seed, "manual_seed: seed"))
    return _generator


def default_generator() -> np.random.Generator:
    """The global generator (the one ``manual_seed`` last set)."""
    return _generator


def get_rng_state() -> dict:
    """A copy of the global generator's state (a dict, as ``numpy``'s ``bit_generator.state``)."""
    return dict(_generator.bit_generator.state)


def set_rng_state(state: dict) -> None:
    """Restore a state returned by ``get_rng_state``."""
    if not isinstance(state, dict) or state.get("bit_generator") != type(_generator.bit_generator).__name__:
        raise ValueError(f"set_rng_state: state must be a dict from get_rng_state() "
                         f"(bit_generator {type(_generator.bit_generator).__name__!r}), got {state!r}")
    _generator.bit_generator.state = state


def resolve(rng) -> np.random.Generator:
    """The generator a layer draws from: the global one for ``None``, a fresh one for an int seed, or ``rng``."""
    if rng is None:
        return _generator
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, (bool, np.bool_)):
        return np.random.default_rng(_check_seed(rng, "rng (an int seed)"))
    if isinstance(rng, np.random.Generator):
        return rng
    raise TypeError(f"rng must be None (the global generator), an int seed >= 0 or a numpy Generator, "
                    f"got {type(rng).__name__}")
