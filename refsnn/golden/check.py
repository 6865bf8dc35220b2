"""``refsnn golden check``: re-compute the golden sets with this refsnn (or compare a port's sets with the
reference sets) and report, per array, the max absolute and relative error and the first failing index.

The tolerances are the manifest's (``refsnn.golden.write.TOLERANCE_DOC``), or with ``strict`` a tight rule
in the set's precision (``STRICT``), to detect any change of refsnn's own numbers.
"""
from __future__ import annotations

import fnmatch
import sys
import time
from pathlib import Path

import numpy as np

from .runner import RESULT_PREFIXES, run_case
from .store import GoldenError, find_sets, load_manifest, read_npz, sha256_file

#: --strict: atol = STRICT[dtype] x max|reference|, rtol = 0 (for regression tests of refsnn itself)
STRICT = {"float64": 1e-9, "float32": 1e-4}


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


def check_set(d: Path, report: Report, strict=False, patterns=None, rel=".", compute=None):
    """Re-compute every case of the set in ``d`` with this refsnn (or ``compute``, see ``run_case``) and compare."""
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
            got = run_case(case["kind"], params, arrays, dtype, f64, compute)
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


def check_golden(directory, against=None, strict=False, patterns=None, verbose=True, out=None, compute=None) -> bool:
    """``refsnn golden check``: True when every compared array passes.  ``compute``: re-compute with another
    implementation's ``{kind: function}`` (``refsnn golden check --impl torch``) instead of refsnn."""
    out = out or sys.stdout
    t0 = time.perf_counter()
    report = Report(out, verbose)
    sets = find_sets(directory)
    if against is None:
        for rel, d in sets:
            check_set(d, report, strict, patterns, rel, compute)
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
