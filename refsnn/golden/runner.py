"""``refsnn golden write`` and ``refsnn golden check``: writing, re-computing and comparing golden sets."""
from __future__ import annotations

import fnmatch
import math
import sys
import time
from pathlib import Path

import numpy as np

from .. import __version__
from ..method.conventions import get_convention
from . import cases as C
from . import draw as D
from .store import (MANIFEST, SCHEMA, GoldenError, find_sets, json_text, load_manifest, npz_bytes, read_npz,
                    sha256_file, write_bytes_if_changed)
from .train_step import MIN_RATIO, compute_train_step, make_train_step

DEFAULT_SEED = 23717
CONVENTIONS = ("paper", "official")
DTYPES = ("float64", "float32")
#: relative part of every tolerance (allclose-style, per element)
RTOL = 1e-5
#: atol of an array = max(SAFETY x (largest |float32 - float64| refsnn shows), FLOOR x max|golden|)
SAFETY = 10.0
FLOOR = 1e-6
#: --strict: atol = STRICT[dtype] x max|reference|, rtol = 0 (for regression tests of refsnn itself)
STRICT = {"float64": 1e-9, "float32": 1e-4}
INPUT_PREFIXES = ("input", "param", "grad_output")
RESULT_PREFIXES = ("output", "grad")

COMPUTE = {"weight_quant": C.compute_weight_quant, "neuron": C.compute_neuron,
           "spiking_layer": C.compute_spiking_layer, "regulate": C.compute_regulate,
           "grid_search": C.compute_grid_search, "observer": C.compute_observer, "cost": C.compute_cost,
           "train_step": compute_train_step}
MAKERS = ((C.make_weight_quant, None), (C.make_neurons, None), (C.make_layers, tuple(C.LAYERS)),
          (C.make_regulate, ("regulating_loss_tiny_resnet",)), (C.make_grids, tuple(C.GRIDS)),
          (C.make_observers, tuple(C.OBSERVERS)), (C.make_costs, tuple(C.COSTS)),
          (make_train_step, ("train_step_tiny_resnet",)))

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


# =============================================================================================
# computing one case
# =============================================================================================
def _cast_inputs(arrays: dict, dtype, float64_arrays) -> dict:
    out = {}
    for k, v in arrays.items():
        v = np.asarray(v)
        if v.dtype.kind == "f":
            v = v.astype(np.float64 if k in float64_arrays else dtype)
        elif v.dtype.kind in "iu":
            v = v.astype(np.int64)
        out[k] = v
    return out


def run_case(kind: str, params: dict, inputs: dict, dtype, float64_arrays=()) -> dict:
    """Compute a case with refsnn: its ``output.*`` and ``grad.*`` arrays, in the set's dtype."""
    if kind not in COMPUTE:
        raise GoldenError(f"unknown case kind {kind!r}; this refsnn knows {sorted(COMPUTE)}")
    arrays = _cast_inputs({k: v for k, v in inputs.items() if k.split(".", 1)[0] in INPUT_PREFIXES},
                          np.dtype(dtype), float64_arrays)
    res = COMPUTE[kind](params, arrays)
    out = {}
    for k, v in res.items():
        if v is None:
            continue
        v = np.asarray(v)
        if v.dtype.kind == "f":
            v = v.astype(np.float64 if k in float64_arrays else dtype)
        elif v.dtype.kind in "iu":
            v = v.astype(np.int64)
        out[k] = np.require(v, requirements="C")
    return out


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


# =============================================================================================
# write
# =============================================================================================
def make_cases(seed: int = DEFAULT_SEED, patterns=None) -> list:
    """Every case (with its inputs), in manifest order; ``patterns`` (fnmatch globs) keep a subset."""
    out = []
    for maker, names in MAKERS:
        if patterns and names is not None and not any(fnmatch.fnmatchcase(n, p) for n in names for p in patterns):
            continue
        for case in maker(seed):
            if not patterns or any(fnmatch.fnmatchcase(case.name, p) for p in patterns):
                out.append(case)
    return out


def _eq_key(ref: str):
    """Order of the ``equations`` entries: Eq., App., Alg., METHOD.md sections, conventions; numerically."""
    kinds = ("Eq.", "App.", "Alg.", "METHOD.md", "C")
    head = next((i for i, k in enumerate(kinds) if ref.startswith(k)), len(kinds))
    num = ref[len(kinds[head]):].strip() if head < len(kinds) else ref
    parts = []
    for p in num.replace("A.", "").split("."):
        parts.append((0, int(p), "") if p.isdigit() else (1, 0, p))
    return head, parts


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
        get_convention(c)
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
                arrays = _cast_inputs(case.inputs, np.dtype(dt), case.float64_arrays)
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
            c = get_convention(conv)
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


# =============================================================================================
# compare
# =============================================================================================
def compare_arrays(got, ref, atol: float, rtol: float) -> dict:
    """max abs / rel error and the first failing index (C order) of ``got`` against ``ref``."""
    got, ref = np.asarray(got), np.asarray(ref)
    if got.shape != ref.shape:
        return {"ok": False, "reason": f"shape {got.shape}, expected {ref.shape}"}
    g, r = got.astype(np.float64), ref.astype(np.float64)
    same = (g == r) | (np.isnan(g) & np.isnan(r))
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = np.where(same, 0.0, np.abs(g - r))
        diff = np.where(np.isnan(diff), np.inf, diff)
        bad = diff > atol + rtol * np.abs(np.where(np.isfinite(r), r, 0.0))
        rel = np.where(diff == 0, 0.0, diff / np.where(r == 0, 0.0, np.abs(r)))
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = float(np.nanmax(rel)) if rel.size else 0.0
    res = {"ok": not bad.any(), "max_abs": max_abs, "max_rel": max_rel}
    if bad.any():
        idx = np.unravel_index(int(np.argmax(bad.ravel())), bad.shape) if bad.ndim else ()
        res["index"] = tuple(int(i) for i in idx)
        res["got"] = g[idx].item() if bad.ndim else g.item()
        res["expected"] = r[idx].item() if bad.ndim else r.item()
    return res


def _tol_for(case: dict, name: str, strict_dtype=None, ref=None) -> tuple:
    """(atol, rtol) of array ``name`` of a case (see TOLERANCE_DOC); ``strict_dtype``: the --strict rule."""
    prefix = name.split(".", 1)[0]
    if prefix not in RESULT_PREFIXES:
        return 0.0, 0.0
    if strict_dtype is not None:
        r = np.asarray(ref)
        if r.dtype.kind != "f":
            return 0.0, 0.0
        fin = np.isfinite(r)
        scale = float(np.max(np.abs(r[fin]))) if fin.any() else 0.0
        eps = STRICT[strict_dtype]  # the set's precision: float64 state arrays of a float32 set carry float32 error
        return eps * scale, 0.0
    if np.asarray(ref).dtype.kind not in "fc":
        return 0.0, 0.0   # integer and boolean arrays: exact
    tol = case.get("tolerance") or {}
    per = (tol.get("arrays") or {}).get(name)
    atol = float(per) if per is not None else float(tol.get("atol", 0.0))
    return atol, float(tol.get("rtol", 0.0))


class Report:
    """Counts and prints the comparisons."""

    def __init__(self, out, verbose: bool = True):
        self.out, self.verbose = out, verbose
        self.arrays = self.failed_arrays = self.cases = 0
        self.failed_cases: list = []
        self._case_header = None

    def case(self, label: str) -> None:
        self.cases += 1
        self._case_header = label
        if self.verbose:
            print(label, file=self.out)
            self._case_header = None

    def _header(self):
        if self._case_header is not None:
            print(self._case_header, file=self.out)
            self._case_header = None

    def fail_case(self, label: str, message: str) -> None:
        self._header()
        print(f"  FAIL  {message}", file=self.out)
        self.failed_cases.append(label)

    def array(self, label: str, name: str, res: dict, atol: float, rtol: float) -> None:
        self.arrays += 1
        if "reason" in res:
            line = f"  FAIL  {name:<44s} {res['reason']}"
        else:
            line = (f"  {'ok  ' if res['ok'] else 'FAIL'}  {name:<44s} max_abs {res['max_abs']:.3e}  "
                    f"max_rel {res['max_rel']:.3e}  (atol {atol:.1e}, rtol {rtol:.0e})")
            if not res["ok"]:
                line += (f"  first failing index {res['index']}: got {res['got']!r}, "
                         f"expected {res['expected']!r}")
        if not res.get("ok", False):
            self.failed_arrays += 1
            if not self.failed_cases or self.failed_cases[-1] != label:
                self.failed_cases.append(label)
            self._header()
            print(line, file=self.out)
        elif self.verbose:
            print(line, file=self.out)

    @property
    def ok(self) -> bool:
        return not self.failed_cases


def _verify_file(d: Path, case: dict, report: Report, label: str):
    path = d / case["file"]
    if not path.is_file():
        report.fail_case(label, f"file {path} is missing")
        return None
    sha = sha256_file(path)
    if sha != case["sha256"]:
        report.fail_case(label, f"sha256 mismatch for {path}: the file has {sha}, the manifest says "
                                f"{case['sha256']} (the file changed after it was written; regenerate the set "
                                "with 'refsnn golden write' or restore the file)")
        return None
    try:
        return read_npz(path)
    except GoldenError as e:
        report.fail_case(label, str(e))
        return None


def _selected(cases, patterns):
    return [c for c in cases if not patterns or any(fnmatch.fnmatchcase(c["name"], p) for p in patterns)]


def check_set(d: Path, report: Report, strict=False, patterns=None, rel="."):
    """Re-compute every case of the set in ``d`` with this refsnn and compare."""
    man = load_manifest(d)
    dtype = np.dtype(man["dtype"])
    for case in _selected(man["cases"], patterns):
        label = f"[{rel}] {case['name']}"
        report.case(f"{label} ({case['kind']})")
        arrays = _verify_file(d, case, report, label)
        if arrays is None:
            continue
        params = dict(case["params"])
        params.setdefault("convention", man["convention"])
        f64 = tuple(params.get("float64_arrays", ()))
        try:
            got = run_case(case["kind"], params, arrays, dtype, f64)
        except Exception as e:  # a case refsnn cannot compute any more is a failure, not a crash
            report.fail_case(label, f"re-computing failed: {type(e).__name__}: {e}")
            continue
        stored = {k: v for k, v in arrays.items() if k.split(".", 1)[0] in RESULT_PREFIXES}
        for name in sorted(set(stored) | set(got)):
            if name not in got:
                report.array(label, name, {"ok": False, "reason": "not produced by this refsnn"}, 0, 0)
                continue
            if name not in stored:
                report.array(label, name, {"ok": False, "reason": "produced by this refsnn but not in the file"},
                             0, 0)
                continue
            atol, rtol = _tol_for(case, name, man["dtype"] if strict else None, stored[name])
            report.array(label, name, compare_arrays(got[name], stored[name], atol, rtol), atol, rtol)


def against_set(d: Path, ref: Path, report: Report, strict=False, patterns=None, rel="."):
    """Compare the set in ``d`` (e.g. a port's output) with the reference set in ``ref``."""
    man_d, man_r = load_manifest(d), load_manifest(ref)
    if man_d["convention"] != man_r["convention"]:
        raise GoldenError(f"{d} is convention {man_d['convention']!r} but {ref} is {man_r['convention']!r}; "
                          "compare sets of the same convention")
    if man_d["dtype"] != man_r["dtype"]:
        print(f"note: comparing a {man_d['dtype']} set ({d}) with a {man_r['dtype']} reference ({ref})",
              file=report.out)
    mine = {c["name"]: c for c in man_d["cases"]}
    for case in _selected(man_r["cases"], patterns):
        label = f"[{rel}] {case['name']}"
        report.case(f"{label} ({case['kind']})")
        if case["name"] not in mine:
            report.fail_case(label, f"case missing from {d}")
            continue
        ref_arrays = _verify_file(ref, case, report, label)
        got_arrays = _verify_file(d, mine[case["name"]], report, label)
        if ref_arrays is None or got_arrays is None:
            continue
        for name in sorted(set(ref_arrays) | set(got_arrays)):
            if name not in got_arrays:
                report.array(label, name, {"ok": False, "reason": f"missing from {d}"}, 0, 0)
                continue
            if name not in ref_arrays:
                report.array(label, name, {"ok": False, "reason": f"not in the reference {ref}"}, 0, 0)
                continue
            atol, rtol = _tol_for(case, name, man_r["dtype"] if strict else None, ref_arrays[name])
            report.array(label, name, compare_arrays(got_arrays[name], ref_arrays[name], atol, rtol), atol, rtol)
    extra = sorted(set(mine) - {c["name"] for c in man_r["cases"]})
    if extra and not patterns:
        print(f"note: {len(extra)} case(s) of {d} are not in the reference: {', '.join(extra)}", file=report.out)


def check_golden(directory, against=None, strict=False, patterns=None, verbose=True, out=None) -> bool:
    """``refsnn golden check``: True when every compared array passes."""
    out = out or sys.stdout
    t0 = time.perf_counter()
    report = Report(out, verbose)
    sets = find_sets(directory)
    if against is None:
        for rel, d in sets:
            check_set(d, report, strict, patterns, rel)
    else:
        ref_sets = find_sets(against)
        if len(sets) == 1 and len(ref_sets) == 1:
            pairs = [(sets[0][0], sets[0][1], ref_sets[0][1])]
        else:
            refs = dict(ref_sets)
            missing = [rel for rel, _ in sets if rel not in refs]
            if missing == ["."]:
                raise GoldenError(f"{directory} is one set but {against} holds several {sorted(refs)}; name the "
                                  f"reference set itself, e.g. {Path(against) / sorted(refs)[0]}")
            if missing:
                raise GoldenError(f"{against} has no set {missing} to compare with (it has {sorted(refs)})")
            pairs = [(rel, d, refs[rel]) for rel, d in sets]
            unused = sorted(set(refs) - {rel for rel, _ in sets})
            if unused:
                print(f"note: reference set(s) {unused} have no counterpart in {directory} and are not compared",
                      file=out)
        for rel, d, r in pairs:
            against_set(d, r, report, strict, patterns, rel)
    dt = time.perf_counter() - t0
    verdict = "PASS" if report.ok else "FAIL"
    print(f"{verdict}: {report.cases} case(s), {report.arrays} array(s) compared, {report.failed_arrays} array(s) "
          f"failed, {len(report.failed_cases)} case(s) failed ({dt:.1f} s)", file=out)
    return report.ok
