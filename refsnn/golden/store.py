"""Files of a golden set: byte-deterministic ``.npz`` and ``manifest.json``, and their validation.

A *set* is one directory holding ``manifest.json`` and one ``.npz`` per case (schema
``refsnn-golden/1``, documented in ``docs/golden.md``).  Writing the same arrays twice
gives the same bytes:

* ``.npz``: a zip written here member by member, in sorted name order, uncompressed
  (``ZIP_STORED``), every member dated 1980-01-01 00:00:00 with fixed attributes; each
  member is ``<array name>.npy`` in NumPy format version 1.0, little-endian, C order.
  ``numpy.load`` reads it like any ``.npz``.
* ``manifest.json``: ``json.dumps(sort_keys=True, indent=1)``, ASCII, floats in Python's
  shortest round-trip ``repr``, no NaN or infinity, one trailing newline.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import re
import zipfile
from pathlib import Path

import numpy as np

from ..method.conventions import ROWS, get_convention

SCHEMA = "refsnn-golden/1"
MANIFEST = "manifest.json"
CONVENTIONS = ("paper", "official")
#: the prefixes an array name may have (docs/golden.md, "Arrays")
PREFIXES = ("input", "param", "output", "grad_output", "grad")
#: dtypes an array of a golden file may have
ARRAY_DTYPES = ("float64", "float32", "int64", "bool")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class GoldenError(Exception):
    """A golden directory or file cannot be used (missing, wrong schema, corrupted)."""


# ---------------------------------------------------------------------------------------------
# arrays
# ---------------------------------------------------------------------------------------------
def check_array_name(name: str) -> None:
    prefix = name.split(".", 1)[0]
    if prefix not in PREFIXES or "." not in name or name.endswith("."):
        raise GoldenError(f"array name {name!r} must be <prefix>.<name> with prefix one of {PREFIXES}")


def npz_bytes(arrays: dict) -> bytes:
    """The bytes of a deterministic ``.npz`` holding ``arrays`` ({name: ndarray})."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            check_array_name(name)
            a = np.asarray(arrays[name])
            if a.dtype.name not in ARRAY_DTYPES:
                raise GoldenError(f"array {name!r} has dtype {a.dtype}; golden arrays are one of {ARRAY_DTYPES}")
            a = np.require(a.astype(a.dtype.newbyteorder("<"), copy=False), requirements="C")
            member = io.BytesIO()
            np.lib.format.write_array(member, a, version=(1, 0), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3          # fixed, whatever the platform
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def _check_members(path: Path) -> None:
    """The file format of docs/golden.md 1.2: an uncompressed zip of ``<name>.npy`` members, NumPy format 1.0,
    little-endian, C order, one of ``ARRAY_DTYPES``."""
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy") or "/" in info.filename:
                raise GoldenError(f"{path}: member {info.filename!r} is not a <array name>.npy file")
            if info.compress_type != zipfile.ZIP_STORED:
                raise GoldenError(f"{path}: member {info.filename!r} is compressed; golden files are uncompressed")
            with zf.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version != (1, 0):
                    raise GoldenError(f"{path}: member {info.filename!r} is .npy format {version}, not (1, 0)")
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            if fortran and len(shape) > 1:
                raise GoldenError(f"{path}: member {info.filename!r} is in Fortran order; golden arrays are C order")
            if dtype.name not in ARRAY_DTYPES or dtype.byteorder == ">":
                raise GoldenError(f"{path}: member {info.filename!r} has dtype {dtype.str}; golden arrays are "
                                  f"little-endian {ARRAY_DTYPES}")


def read_npz(path: Path) -> dict:
    """{name: ndarray} of a golden ``.npz`` (no pickles), after checking its format (docs/golden.md 1.2)."""
    try:
        _check_members(path)
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise GoldenError(f"{path}: not a readable .npz file ({e})") from None
    for k in out:
        check_array_name(k)
    return out


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------------
def json_text(obj) -> str:
    """Deterministic JSON text (sorted keys, indent 1, shortest float repr, no NaN/inf)."""
    return json.dumps(obj, sort_keys=True, indent=1, allow_nan=False, ensure_ascii=True) + "\n"


def write_bytes_if_changed(path: Path, data: bytes) -> None:
    """Write ``data``; an identical file is left untouched (its mtime too)."""
    path = Path(path)
    if path.is_file() and path.read_bytes() == data:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


# ---------------------------------------------------------------------------------------------
# manifests
# ---------------------------------------------------------------------------------------------
_CASE_KEYS = ("name", "kind", "file", "sha256", "equations", "description", "params", "tolerance")
_TOP_KEYS = ("schema", "refsnn_version", "convention", "convention_flags", "dtype", "seed", "margin", "cases")
_SHA = re.compile(r"[0-9a-f]{64}")


def _no_constant(name):
    raise ValueError(f"{name} is not allowed (the manifest never holds NaN or infinity)")


def convention_flags(convention) -> dict:
    """The switches C1-C11 of a convention as written into ``manifest.json`` (docs/golden.md 3)."""
    c = get_convention(convention)
    return {f"{row}_{field}": getattr(c, field) for row, field in ROWS}


def _tolerance_error(tol):
    """Why a case's ``tolerance`` object breaks docs/golden.md 4 (None when it does not)."""
    if not isinstance(tol, dict) or not isinstance(tol.get("arrays"), dict):
        return "must be an object {atol, rtol, arrays: {name: atol}}"
    values = {"atol": tol.get("atol"), "rtol": tol.get("rtol"),
              **{f"arrays[{k!r}]": v for k, v in tol["arrays"].items()}}
    for key, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            return f"{key} is {v!r}; tolerances are finite numbers >= 0"
    if tol["arrays"] and tol["atol"] != max(tol["arrays"].values()):
        return f"atol {tol['atol']!r} is not the largest per-array atol {max(tol['arrays'].values())!r}"
    return None


def _check_case(mpath: Path, i: int, case, names: set, files: set) -> None:
    if not isinstance(case, dict):
        raise GoldenError(f"{mpath}: cases[{i}] is not an object")
    miss = [k for k in _CASE_KEYS if k not in case]
    if miss:
        raise GoldenError(f"{mpath}: case {case.get('name', i)!r} lacks field(s) {miss}")
    name = case["name"]
    if not isinstance(name, str) or not name:
        raise GoldenError(f"{mpath}: cases[{i}] has name {name!r}; names are non-empty strings")
    if name in names:
        raise GoldenError(f"{mpath}: case name {name!r} appears twice")
    names.add(name)
    if not isinstance(case["file"], str) or Path(case["file"]).name != case["file"] or \
            not case["file"].endswith(".npz"):
        raise GoldenError(f"{mpath}: case {name!r}: file {case['file']!r} must be a plain file name ending in .npz")
    if case["file"] in files:
        raise GoldenError(f"{mpath}: case {name!r}: file {case['file']!r} belongs to another case too")
    files.add(case["file"])
    if not isinstance(case["sha256"], str) or not _SHA.fullmatch(case["sha256"]):
        raise GoldenError(f"{mpath}: case {name!r}: sha256 {case['sha256']!r} is not 64 lower-case hex digits")
    if not isinstance(case["params"], dict):
        raise GoldenError(f"{mpath}: case {name!r}: params must be an object")
    if not isinstance(case["params"].get("float64_arrays", []), list):
        raise GoldenError(f"{mpath}: case {name!r}: params.float64_arrays must be a list of array names")
    why = _tolerance_error(case["tolerance"])
    if why:
        raise GoldenError(f"{mpath}: case {name!r}: tolerance: {why}")


def load_manifest(directory) -> dict:
    """Read and validate ``DIR/manifest.json``; raise GoldenError with a clear message."""
    d = Path(directory)
    if not d.exists():
        raise GoldenError(f"golden directory {str(d)!r} does not exist")
    if not d.is_dir():
        raise GoldenError(f"{str(d)!r} is not a directory")
    mpath = d / MANIFEST
    if not mpath.is_file():
        raise GoldenError(f"{str(d)!r} has no {MANIFEST}: not a golden set (write one with 'refsnn golden write')")
    try:
        man = json.loads(mpath.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except (OSError, ValueError) as e:
        raise GoldenError(f"{mpath}: not valid JSON ({e})") from None
    if not isinstance(man, dict):
        raise GoldenError(f"{mpath}: the manifest must be a JSON object")
    schema = man.get("schema")
    if schema != SCHEMA:
        raise GoldenError(f"{mpath}: schema is {schema!r}; this refsnn reads {SCHEMA!r} only")
    missing = [k for k in _TOP_KEYS if k not in man]
    if missing:
        raise GoldenError(f"{mpath}: missing field(s) {missing}")
    if man["dtype"] not in ("float64", "float32"):
        raise GoldenError(f"{mpath}: dtype must be 'float64' or 'float32', got {man['dtype']!r}")
    if man["convention"] not in CONVENTIONS:
        raise GoldenError(f"{mpath}: convention must be one of {CONVENTIONS}, got {man['convention']!r}")
    # a revision-1 manifest carries C1-C5 only, revision 2 C1-C11: every flag it carries must be the convention's
    flags, given = convention_flags(man["convention"]), man["convention_flags"]
    if not isinstance(given, dict) or not (set(list(flags)[:5]) <= set(given) <= set(flags)) \
            or any(given[k] != flags[k] for k in given):
        raise GoldenError(f"{mpath}: convention_flags {man['convention_flags']!r} are not those of the "
                          f"{man['convention']!r} convention {convention_flags(man['convention'])!r}")
    if not isinstance(man["cases"], list):
        raise GoldenError(f"{mpath}: 'cases' must be a list")
    if not man["cases"]:
        raise GoldenError(f"{mpath}: 'cases' is empty: a golden set holds at least one case")
    names, files = set(), set()
    for i, case in enumerate(man["cases"]):
        _check_case(mpath, i, case, names, files)
    return man


def find_sets(directory) -> list:
    """The golden sets under ``directory``: itself if it holds a manifest, else its sub-directories that do.

    Returns a list of (relative name, Path); raises GoldenError if there are none.
    """
    d = Path(directory)
    if not d.exists():
        raise GoldenError(f"golden directory {str(d)!r} does not exist")
    if not d.is_dir():
        raise GoldenError(f"{str(d)!r} is not a directory")
    if (d / MANIFEST).is_file():
        return [(".", d)]
    orphans = sorted(p.name for p in d.iterdir() if p.is_dir() and not (p / MANIFEST).is_file()
                     and any(p.glob("*.npz")))
    if orphans or any(d.glob("*.npz")):
        where = ", ".join(repr(o) for o in orphans) if orphans else repr(str(d))
        raise GoldenError(f"{str(d)!r}: {where} hold(s) .npz files but no {MANIFEST}: a broken golden set "
                          "(restore the manifest or write the set again)")
    subs = sorted(p for p in d.iterdir() if p.is_dir() and (p / MANIFEST).is_file())
    if not subs:
        raise GoldenError(f"{str(d)!r} holds no {MANIFEST}, neither itself nor in a sub-directory: not a golden "
                          "directory (write one with 'refsnn golden write')")
    return [(p.name, p) for p in subs]
