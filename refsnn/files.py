"""Writing a run's files: atomic replacement and the JSON encoding of NumPy values.

Shared by ``refsnn.report`` (history.json / history.csv) and ``refsnn.checkpoint`` (checkpoint .json):
a reader never sees a half-written file, because each is written beside its destination and then
moved over it (``os.replace``).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def json_default(o):
    """``json.dumps(..., default=json_default)``: NumPy scalars and arrays as Python values, tuples as lists."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it, then move it over ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
