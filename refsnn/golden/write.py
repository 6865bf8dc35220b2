"""``refsnn golden write``: compute every case in both precisions, derive its tolerances, write the sets.

Each set is a ``manifest.json`` and one ``.npz`` per case, byte-identical when written again;
the tolerance rule and the margin rule written into every manifest are ``TOLERANCE_DOC`` and
``MARGIN_DOC``.
"""
from __future__ import annotations

import fnmatch
import math
import sys
import time
from pathlib import Path

import numpy as np

from .. import __version__
from ..method.conventions import ROWS
from . import draw as D
from .runner import CONVENTIONS, DEFAULT_SEED, DTYPES, REVISION, cast_inputs, convention_of, make_cases, run_case
from .check import compare_arrays, tolerance_for
from .store import (MANIFEST, SCHEMA, GoldenError, convention_flags, json_text, load_manifest, npz_bytes,
                    read_npz, sha256_file, write_bytes_if_changed)
from .train_step import MIN_RATIO

#: relative part of every tolerance (allclose-style, per element)
RTOL = 1e-5
#: atol of an array = max(SAFETY x (largest |float32 - float64| refsnn shows), FLOOR x max|golden|)
SAFETY = 10.0
FLOOR = 1e-6

MARGIN_DOC = {
    "drawn": D.MARGIN,
    "grid": D.MARGIN_GRID,
    "model_min_ratio": MIN_RATIO,
    "description": (
        "Discrete choices are kept away from their decision points so that a port in another precision makes "
        "the same ones. A 'pre-rounding value' u is v^t/V_th^t (spike quantizer, every step), w/S_q (weight "
        "quantizer) or a width parameter Bhat/That (Eq. 9-11); its decision points are the multiples of 1/2 "
        "between q_min and q_max (1 and the bound for a width): rounding ties, flooring steps, clip "
        "boundaries, the sign at 0. 'drawn': in every case whose inputs are drawn (all but train_step), every "
        "u is at least this far from its nearest decision point, except exact zeros that come from exact-zero "
        "inputs (they are exact in every precision), under both conventions. 'grid': in the drawn grid "
        "searches (Alg. 2) the winning candidate's score beats every other by at least this relative gap. "
        "'model_min_ratio': in train_step, where the rounded values are computed by the model, every u, every "
        "ReLU input and every grid-search winner of the forward pass is at least this many times farther from "
        "its decision point than the largest float32-vs-float64 deviation refsnn itself shows at that layer "
        "and step; the achieved values are in the case's params.margin_achieved.")}
TOLERANCE_DOC = (
    "An element x of a port's array passes against the golden element g when |x - g| <= atol + rtol * |g| "
    "(equal infinities and NaN pairs pass), with atol = tolerance.arrays[name] and rtol = tolerance.rtol for "
    "the float output.* and grad.* arrays, and atol = rtol = 0 (exact) for input.*, param.* and grad_output.* "
    "arrays and for integer and boolean arrays. tolerance.atol is the largest per-array atol (a single bound "
    "for checkers that ignore the per-array ones). Per-array atol = max("
    f"{SAFETY:g} x the largest |float32 - float64| of that array "
    f"when refsnn computes the case in both precisions from the same inputs, {FLOOR:g} x the array's largest "
    f"|value|), rounded up to one significant digit; rtol = {RTOL:g}. It is meant for a float32 port compared "
    "with either the float64 or the float32 set.")


def _ceil1(x: float) -> float:
    """``x`` rounded up to one significant digit (1.2e-6 -> 2e-06)."""
    if x <= 0:
        return 0.0
    e = math.floor(math.log10(x))
    m = x / 10.0 ** e
    d = math.ceil(m - 1e-9)
    if d >= 10:
        d, e = 1, e + 1
    return float(f"{d}e{e}")


def derive_tolerance(out64: dict, out32: dict) -> dict:
    """``{"atol", "rtol", "arrays": {name: atol}}`` from refsnn's own float32 deviation (see TOLERANCE_DOC).

    Only float result arrays get an entry; integer and boolean arrays are compared exactly.
    """
    arrays = {}
    for name in sorted(out64):
        g = out64[name]
        if g.dtype.kind != "f":
            continue
        g = g.astype(np.float64)
        f = out32[name].astype(np.float64)
        fin = np.isfinite(g)
        scale = float(np.max(np.abs(g[fin]))) if fin.any() else 0.0
        same = (f == g) | (np.isnan(f) & np.isnan(g))
        with np.errstate(invalid="ignore"):
            err = float(np.max(np.where(same, 0.0, np.abs(f - g)))) if g.size else 0.0
        if not math.isfinite(err):
            raise GoldenError(f"array {name}: float32 and float64 differ by {err}")
        arrays[name] = _ceil1(max(SAFETY * err, FLOOR * scale, 1e-30))
    atol = max(arrays.values(), default=0.0)
    return {"atol": atol, "rtol": RTOL, "arrays": arrays}


def _eq_key(ref: str):
    """Order of the ``equations`` entries: Eq., App., Alg., docs/method.md sections, conventions; numerically.

    Ties ("Alg. 1" and "Alg. A.1") are broken by the text, so the order never depends on a set's hash order."""
    kinds = ("Eq.", "App.", "Alg.", "METHOD.md", "C")
    head = next((i for i, k in enumerate(kinds) if ref.startswith(k)), len(kinds))
    num = ref[len(kinds[head]):].strip() if head < len(kinds) else ref
    parts = []
    for p in num.replace("A.", "").split("."):
        parts.append((0, int(p), "") if p.isdigit() else (1, 0, p))
    return head, parts, ref


def equation_order(equations) -> list:
    """The ``equations`` of a manifest entry: unique, in ``_eq_key`` order (the same for any hash seed)."""
    return sorted(set(equations), key=_eq_key)


def _set_dirs(directory: Path, conventions, dtypes) -> dict:
    combos = [(c, d) for c in conventions for d in dtypes]
    if len(combos) == 1:
        return {combos[0]: directory}
    return {(c, d): directory / f"{c}-{d}" for c, d in combos}


def _remove_stale(d: Path, old: dict, keep: set) -> None:
    """Delete the files the earlier manifest ``old`` of ``d`` listed that the new one does not (nothing else)."""
    for case in old.get("cases", []):
        f = d / case["file"]
        if case["file"] not in keep and f.suffix == ".npz" and f.is_file():
            f.unlink()


def _old_manifest(d: Path) -> dict:
    try:
        return load_manifest(d)
    except GoldenError:
        return {}


def _compute(case, conv) -> tuple:
    """(params, {dtype: arrays}, tolerance) of a case under a convention, computed in both precisions."""
    params = dict(case.params, convention=conv)
    if case.margins:
        params["margin_achieved"] = {k: float(v) for k, v in sorted(case.margins.items())}
    if case.float64_arrays:
        params["float64_arrays"] = sorted(case.float64_arrays)
    res = {dt: run_case(case.kind, params, case.inputs, np.dtype(dt), case.float64_arrays) for dt in DTYPES}
    for k, v in res["float64"].items():
        if v.dtype.kind != "f" and not np.array_equal(v, res["float32"][k]):
            raise GoldenError(f"case {case.name}: {k} differs between float32 and float64 (a discrete "
                              "choice is not robust; the margins are too small)")
    tol = derive_tolerance(res["float64"], res["float32"])
    arrays = {}
    for dt in DTYPES:
        arrays[dt] = cast_inputs(case.inputs, np.dtype(dt), case.float64_arrays)
        arrays[dt].update(res[dt])
    return params, arrays, tol


def _same_case(old_entry: dict, d: Path, entry: dict, arrays: dict, dtype: str):
    """None when the stored case ``old_entry`` of set ``d`` may stay as it is (its file byte for byte), else why.

    Kept: same kind and params (``margin_achieved`` aside: it is measured on the writing machine), the file
    intact, the same array names, dtypes and shapes, every input and integer array identical and every float
    result within the ``--strict`` rule of ``tolerance_for`` (with the stored case's tolerance)."""
    strip = lambda prm: json_text({k: v for k, v in prm.items() if k != "margin_achieved"})  # noqa: E731
    if old_entry["kind"] != entry["kind"] or strip(old_entry["params"]) != strip(entry["params"]):
        return "kind or params changed"
    path = d / old_entry["file"]
    if not path.is_file() or sha256_file(path) != old_entry["sha256"]:
        return "the stored file is missing or does not match its sha256"
    try:
        stored = read_npz(path)
    except GoldenError as e:
        return str(e)
    if set(stored) != set(arrays):
        return f"arrays differ: {sorted(set(stored) ^ set(arrays))}"
    for name in sorted(stored):
        a, b = arrays[name], stored[name]
        if a.dtype != b.dtype or a.shape != b.shape:
            return f"{name}: {b.dtype}{b.shape} -> {a.dtype}{a.shape}"
        atol, rtol = tolerance_for(old_entry, name, b, dtype, strict=True)
        res = compare_arrays(a, b, atol, rtol)
        if not res["ok"]:
            return f"{name}: max_abs {res['max_abs']:.3e} beyond atol {atol:.1e}, rtol {rtol:.0e}"
    return None


def _place(d: Path, dt: str, case, params, arrays, tol, old: dict, update: bool, report: dict) -> dict:
    """Write (or, with ``update``, keep) one case file of the ``dt`` set ``d``; its manifest entry."""
    path = d / f"{case.name}.npz"
    entry = {"name": case.name, "kind": case.kind, "file": path.name, "sha256": "",
             "equations": equation_order(case.equations), "description": case.description,
             "params": params, "tolerance": tol}
    prev = old.get(case.name)
    if update and prev is not None:
        why = _same_case(prev, d, entry, arrays, dt)
        if why is None:
            report["kept"].append(case.name)
            entry["params"] = dict(params)
            if "margin_achieved" in prev["params"]:
                entry["params"]["margin_achieved"] = prev["params"]["margin_achieved"]
            return dict(entry, file=prev["file"], sha256=prev["sha256"], tolerance=prev["tolerance"])
        report["changed"].append(f"{case.name} ({why})")
    elif update:
        report["added"].append(case.name)
    write_bytes_if_changed(path, npz_bytes(arrays))
    entry["sha256"] = sha256_file(path)
    return entry


def _manifest(conv: str, dt: str, seed: int, entries: list) -> dict:
    return {"schema": SCHEMA, "refsnn_version": __version__, "convention": conv, "dtype": dt, "seed": int(seed),
            "revision": REVISION, "convention_flags": convention_flags(conv), "margin": MARGIN_DOC, "tolerance_rule": TOLERANCE_DOC,
            "cases": entries}


def _selected(name, patterns) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(name, p) for p in patterns)


def write_golden(directory, conventions=CONVENTIONS, dtypes=DTYPES, seed: int = DEFAULT_SEED, patterns=None,
                 out=None, update: bool = False) -> list:
    """Write golden sets: one directory per (convention, dtype) -- ``directory`` itself for a single one,
    ``directory/<convention>-<dtype>/`` otherwise.  Returns the set directories.

    ``update``: add to existing sets without rewriting them: a stored case whose file is intact and whose
    re-computed arrays pass ``_same_case`` keeps its file and manifest entry byte for byte; new cases are
    written; a changed case is rewritten.  With ``patterns`` only the matching cases are computed and the
    other stored cases stay as they are; without, stored cases that refsnn no longer makes are removed.
    Reports kept / added / changed / removed per set."""
    out = out or sys.stdout
    directory = Path(directory)
    for c in conventions:
        convention_of(c)
    for d in dtypes:
        if d not in DTYPES:
            raise GoldenError(f"dtype must be one of {DTYPES}, got {d!r}")
    t0 = time.perf_counter()
    every = make_cases(seed, patterns if not update else None)
    cases = [c for c in every if _selected(c.name, patterns)]
    if not cases:
        raise GoldenError(f"no case matches {list(patterns)}")
    t_make = time.perf_counter() - t0
    dirs = _set_dirs(directory, conventions, dtypes)
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    for conv in conventions:
        t1 = time.perf_counter()
        olds = {dt: _old_manifest(dirs[(conv, dt)]) for dt in dtypes}
        if update and olds[dtypes[0]] and olds[dtypes[0]]["seed"] != seed:
            raise GoldenError(f"{dirs[(conv, dtypes[0])]} was written with seed {olds[dtypes[0]]['seed']}, not "
                              f"{seed}: --update keeps a set's seed")
        reports = {dt: {"kept": [], "added": [], "changed": [], "removed": []} for dt in dtypes}
        entries = {dt: {} for dt in dtypes}
        for case in cases:
            params, arrays, tol = _compute(case, conv)
            for dt in dtypes:
                old = {c["name"]: c for c in olds[dt].get("cases", [])}
                entries[dt][case.name] = _place(dirs[(conv, dt)], dt, case, params, arrays[dt], tol, old, update,
                                                reports[dt])
        for dt in dtypes:
            d = dirs[(conv, dt)]
            ordered = _order(every, entries[dt], olds[dt], patterns, update, reports[dt])
            _remove_stale(d, olds[dt], {e["file"] for e in ordered})
            write_bytes_if_changed(d / MANIFEST, json_text(_manifest(conv, dt, seed, ordered)).encode())
            size = sum((d / e["file"]).stat().st_size for e in ordered) + (d / MANIFEST).stat().st_size
            print(f"wrote {d}: {len(ordered)} cases, {size / 1e3:.0f} kB "
                  f"({conv}, {dt}; {time.perf_counter() - t1:.1f} s)", file=out)
            if update:
                _print_update(reports[dt], out)
    print(f"(inputs drawn in {t_make:.1f} s; total {time.perf_counter() - t0:.1f} s)", file=out)
    return list(dirs.values())


def _order(every, entries: dict, old: dict, patterns, update: bool, report: dict) -> list:
    """The manifest's case list: refsnn's case order; with ``update``, stored cases not re-computed stay
    (those refsnn no longer makes: kept with ``patterns``, removed without)."""
    if not update:
        return [entries[c.name] for c in every if c.name in entries]
    stored = {c["name"]: c for c in old.get("cases", [])}
    made = {c.name for c in every}
    ordered = [entries.get(c.name) or stored[c.name] for c in every if c.name in entries or c.name in stored]
    for name, entry in stored.items():
        if name not in made:
            if patterns:
                ordered.append(entry)
            else:
                report["removed"].append(name)
    return ordered


def _print_update(report: dict, out) -> None:
    print(f"  kept {len(report['kept'])}, added {len(report['added'])}, changed {len(report['changed'])}, "
          f"removed {len(report['removed'])}", file=out)
    for what in ("added", "changed", "removed"):
        for name in report[what]:
            print(f"  {what}: {name}", file=out)
