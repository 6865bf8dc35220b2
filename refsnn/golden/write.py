"""``refsnn golden write``: compute every case in both precisions, derive its tolerances, write the sets.

Each set is a ``manifest.json`` and one ``.npz`` per case, byte-identical when written again;
the tolerance rule and the margin rule written into every manifest are ``TOLERANCE_DOC`` and
``MARGIN_DOC``.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

from .. import __version__
from . import draw as D
from .runner import CONVENTIONS, DEFAULT_SEED, DTYPES, cast_inputs, convention_of, make_cases, run_case
from .store import (MANIFEST, SCHEMA, GoldenError, json_text, load_manifest, npz_bytes, sha256_file,
                    write_bytes_if_changed)
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
    """Order of the ``equations`` entries: Eq., App., Alg., METHOD.md sections, conventions; numerically.

    Ties ("Alg. 1" and "Alg. A.1") are broken by the text, so the order never depends on a set's hash order."""
    kinds = ("Eq.", "App.", "Alg.", "METHOD.md", "C")
    head = next((i for i, k in enumerate(kinds) if ref.startswith(k)), len(kinds))
    num = ref[len(kinds[head]):].strip() if head < len(kinds) else ref
    parts = []
    for p in num.replace("A.", "").split("."):
        parts.append((0, int(p), "") if p.isdigit() else (1, 0, p))
    return head, parts, ref


def _set_dirs(directory: Path, conventions, dtypes) -> dict:
    combos = [(c, d) for c in conventions for d in dtypes]
    if len(combos) == 1:
        return {combos[0]: directory}
    return {(c, d): directory / f"{c}-{d}" for c, d in combos}


def _remove_stale(d: Path, keep: set) -> None:
    """Delete the files an earlier manifest of ``d`` listed that the new one does not (nothing else)."""
    try:
        old = load_manifest(d)
    except GoldenError:
        return
    for case in old["cases"]:
        f = d / case["file"]
        if case["file"] not in keep and f.suffix == ".npz" and f.is_file():
            f.unlink()


def write_golden(directory, conventions=CONVENTIONS, dtypes=DTYPES, seed: int = DEFAULT_SEED, patterns=None,
                 out=None) -> list:
    """Write golden sets: one directory per (convention, dtype) -- ``directory`` itself for a single one,
    ``directory/<convention>-<dtype>/`` otherwise.  Returns the set directories."""
    out = out or sys.stdout
    directory = Path(directory)
    for c in conventions:
        convention_of(c)
    for d in dtypes:
        if d not in DTYPES:
            raise GoldenError(f"dtype must be one of {DTYPES}, got {d!r}")
    t0 = time.perf_counter()
    cases = make_cases(seed, patterns)
    if not cases:
        raise GoldenError(f"no case matches {list(patterns)}")
    t_make = time.perf_counter() - t0
    dirs = _set_dirs(directory, conventions, dtypes)
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    for conv in conventions:
        t1 = time.perf_counter()
        entries = {d: [] for d in dtypes}
        for case in cases:
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
            for dt in dtypes:
                arrays = cast_inputs(case.inputs, np.dtype(dt), case.float64_arrays)
                arrays.update(res[dt])
                path = dirs[(conv, dt)] / f"{case.name}.npz"
                write_bytes_if_changed(path, npz_bytes(arrays))
                entries[dt].append({"name": case.name, "kind": case.kind, "file": path.name,
                                    "sha256": sha256_file(path),
                                    "equations": sorted(set(case.equations), key=_eq_key),
                                    "description": case.description, "params": params, "tolerance": tol})
        for dt in dtypes:
            d = dirs[(conv, dt)]
            _remove_stale(d, {e["file"] for e in entries[dt]})
            c = convention_of(conv)
            manifest = {"schema": SCHEMA, "refsnn_version": __version__, "convention": conv, "dtype": dt,
                        "seed": int(seed),
                        "convention_flags": {"C1_bit_grad_lsq": c.bit_grad_lsq, "C2_one_bit_factor": c.one_bit_factor,
                                             "C3_bptt": c.bptt, "C4_reset_decay": c.reset_decay,
                                             "C5_renewal_formula": c.renewal_formula},
                        "margin": MARGIN_DOC, "tolerance_rule": TOLERANCE_DOC, "cases": entries[dt]}
            write_bytes_if_changed(d / MANIFEST, json_text(manifest).encode())
            size = sum((d / e["file"]).stat().st_size for e in entries[dt]) + (d / MANIFEST).stat().st_size
            print(f"wrote {d}: {len(entries[dt])} cases, {size / 1e3:.0f} kB "
                  f"({conv}, {dt}; {time.perf_counter() - t1:.1f} s)", file=out)
    print(f"(inputs drawn in {t_make:.1f} s; total {time.perf_counter() - t0:.1f} s)", file=out)
    return list(dirs.values())
