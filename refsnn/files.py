"""Writing a run's files: atomic replacement and the JSON encoding of NumPy values.

Shared by ``refsnn.report`` (history.json / history.csv) and ``refsnn.checkpoint`` (checkpoint .npz / .json):
a reader never sees a half-written file, because each is written beside its destination under a name no
other writer uses (``temp_path``: the process id and a random part), flushed to disk, and then moved over
it (``os.replace``).  A writer killed before the move leaves only its temporary file behind, which
``remove_stale_temps`` deletes when the next run takes the directory (``refsnn.rundir``).
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

import numpy as np

#: the temporary files of this module end so: ``.<name>.<pid>-<random>.tmp``
TEMP_SUFFIX = ".tmp"


def json_default(o):
    """``json.dumps(..., default=json_default)``: NumPy scalars and arrays as Python values, tuples as lists."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def temp_path(path: Path) -> Path:
    """A fresh name beside ``path`` for writing it: hidden, with this process's id and a random part."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}")


def write_durable(tmp: Path, write) -> None:
    """Open ``tmp`` for writing in binary, call ``write(fh)``, flush it to disk; remove ``tmp`` on any failure."""
    try:
        with open(tmp, "xb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it, then move it over ``path``."""
    path = Path(path)
    tmp = temp_path(path)
    write_durable(tmp, lambda fh: fh.write(data))
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    """``atomic_write_bytes`` of ``text`` in UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_stale_temps(directory: Path) -> list:
    """Delete the temporary files ``temp_path`` made in ``directory`` (left by a writer that was killed before
    its move); call it only while holding the directory (no other writer is alive).  Returns the removed paths."""
    removed = []
    for p in Path(directory).glob(f".*{TEMP_SUFFIX}"):
        if p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed
