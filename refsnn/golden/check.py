"""``refsnn golden check``: re-compute the golden sets with this refsnn (or compare a port's sets with the
reference sets) and report, per array, the max absolute and relative error and the first failing index.

The tolerances are the manifest's (``refsnn.golden.write.TOLERANCE_DOC``), or with ``strict`` the rule of
``tolerance_for``, to detect any change of refsnn's own numbers.  Every rule of ``docs/golden.md`` is checked:
a broken set (manifest missing, invalid or empty) raises GoldenError (exit 2); a missing or altered file, a
file of the wrong format or dtype, or an array out of tolerance fails its case (exit 1).
"""
from __future__ import annotations

import fnmatch
import sys
import time
from pathlib import Path

import numpy as np

from .runner import RESULT_PREFIXES, run_case
from .store import GoldenError, find_sets, load_manifest, read_npz, sha256_file

#: --strict on a float64 set: atol = STRICT_FLOAT64 x max|reference|, rtol = 0 (regression tests of refsnn
#: itself); float32 sets keep the manifest's tolerance (see ``tolerance_for``)
STRICT_FLOAT64 = 1e-9
#: an implementation's computation (``check_golden(compute=...)``) may return ``allowance.<array>``: a number or an
#: array of that array's shape, >= 0, that it documents as the legitimate difference its own data shows (the
#: torch port: ``refsnn.torch.ambiguity``, docs/golden.md "The port"); added to the manifest's atol of <array>.
#: refsnn's own computation returns none, and ``--strict`` ignores none.
ALLOWANCE = "allowance."


def compare_arrays(got, ref, atol, rtol: float) -> dict:
    """max abs / rel error and the first failing index (C order) of ``got`` against ``ref``; ``atol`` a number or an
    array of ``ref``'s shape (the manifest's atol plus an implementation's allowance, ``ALLOWANCE``)."""
    got, ref = np.asarray(got), np.asarray(ref)
    a = np.asarray(atol, dtype=np.float64)
    if not (np.all(np.isfinite(a)) and np.isfinite(rtol) and np.all(a >= 0) and rtol >= 0):
        return {"ok": False, "reason": f"tolerance atol {atol!r}, rtol {rtol!r} is not finite and >= 0"}
    if got.shape != ref.shape:
        return {"ok": False, "reason": f"shape {got.shape}, expected {ref.shape}"}
    if a.ndim and a.shape != ref.shape:
        return {"ok": False, "reason": f"allowance of shape {a.shape}, the array is {ref.shape}"}
    g, r = got.astype(np.float64), ref.astype(np.float64)
    same = (g == r) | (np.isnan(g) & np.isnan(r))
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = np.where(same, 0.0, np.abs(g - r))
        diff = np.where(np.isnan(diff), np.inf, diff)
        bad = diff > a + rtol * np.abs(np.where(np.isfinite(r), r, 0.0))
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


def tolerance_for(case: dict, name: str, ref, set_dtype: str, strict: bool = False) -> tuple:
    """(atol, rtol) of array ``name`` of a case whose stored value is ``ref``, in a set of dtype ``set_dtype``.

    ``input.*``, ``param.*``, ``grad_output.*``, integer and boolean arrays: exact.  Float results: the
    manifest's tolerance (docs/golden.md 4), or with ``strict``:

    * float64 sets: ``1e-9 x max|ref|``, rtol 0 -- float64 results differ across machines (BLAS kernels,
      summation order) by ~1e-16 relative to the terms summed, far below this;
    * float32 sets: the manifest's tolerance itself.  Its per-array atol is 10x the float32 rounding error
      refsnn measured on that very array (float32 against float64), so it scales with the array's condition
      (a sum with cancellation, such as ``grad.*.time``, gets a wide one, a well-conditioned array ~1e-6 x
      max|ref|); another summation order (another BLAS kernel) moves a float32 result by about that
      rounding error, and any change of refsnn's numbers beyond it is caught.
    """
    prefix = name.split(".", 1)[0]
    r = np.asarray(ref)
    if prefix not in RESULT_PREFIXES or r.dtype.kind != "f":
        return 0.0, 0.0
    if strict and set_dtype == "float64":
        fin = np.isfinite(r)
        scale = float(np.max(np.abs(r[fin]))) if fin.any() else 0.0
        return STRICT_FLOAT64 * scale, 0.0
    tol = case["tolerance"]
    per = tol["arrays"].get(name)
    return float(per if per is not None else tol["atol"]), float(tol["rtol"])


def dtype_error(name: str, arr, set_dtype: str, float64_arrays) -> str | None:
    """Why the dtype of a stored array breaks docs/golden.md 1.3 (None when it does not)."""
    dt = np.asarray(arr).dtype
    if dt.kind == "f":
        want = "float64" if name in float64_arrays else set_dtype
        return None if dt.name == want else f"dtype {dt.name}, the set's float arrays are {want}"
    if dt.kind in "iu":
        return None if dt.name == "int64" else f"dtype {dt.name}, integer arrays are int64"
    return None if dt.kind == "b" else f"dtype {dt.name}: not a golden dtype"


class Report:
    """Counts the comparisons and prints them: failures always, every array with ``verbose``, a summary."""

    def __init__(self, out, verbose: bool = False):
        self.out, self.verbose = out, verbose
        self.arrays = self.failed_arrays = self.cases = 0
        self.failed_cases: list = []
        self.per_set: dict = {}
        self._case_header = None
        self._set = "."

    def case(self, rel: str, label: str) -> None:
        self.cases += 1
        self._set = rel
        counts = self.per_set.setdefault(rel, [0, 0, 0])
        counts[0] += 1
        self._case_header = label
        if self.verbose:
            print(label, file=self.out)
            self._case_header = None

    def _header(self):
        if self._case_header is not None:
            print(self._case_header, file=self.out)
            self._case_header = None

    def _failed(self, label: str) -> None:
        if not self.failed_cases or self.failed_cases[-1] != label:
            self.failed_cases.append(label)
            self.per_set[self._set][2] += 1

    def fail_case(self, label: str, message: str) -> None:
        self._header()
        print(f"  FAIL  {message}", file=self.out)
        self._failed(label)

    def array(self, label: str, name: str, res: dict, atol: float, rtol: float) -> None:
        self.arrays += 1
        self.per_set[self._set][1] += 1
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
            self._failed(label)
            self._header()
            print(line, file=self.out)
        elif self.verbose:
            print(line, file=self.out)

    def summary(self, seconds: float) -> None:
        for rel, (cases, arrays, failed) in self.per_set.items():
            print(f"[{rel}] {cases} case(s), {arrays} array(s): "
                  f"{'PASS' if not failed else f'FAIL ({failed} case(s) failed)'}", file=self.out)
        verdict = "PASS" if self.ok else "FAIL"
        print(f"{verdict}: {self.cases} case(s), {self.arrays} array(s) compared, {self.failed_arrays} array(s) "
              f"failed, {len(self.failed_cases)} case(s) failed ({seconds:.1f} s)", file=self.out)

    @property
    def ok(self) -> bool:
        return not self.failed_cases


def _verify_file(d: Path, case: dict, report: Report, label: str, set_dtype: str):
    """The arrays of a case's file, after its sha256, its format and its dtypes (None, reported, if broken)."""
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
        arrays = read_npz(path)
    except GoldenError as e:
        report.fail_case(label, str(e))
        return None
    f64 = tuple(case["params"].get("float64_arrays", ()))
    bad = [f"{k}: {why}" for k in sorted(arrays) if (why := dtype_error(k, arrays[k], set_dtype, f64))]
    if bad:
        report.fail_case(label, f"{path}: wrong dtype (docs/golden.md 1.3): " + "; ".join(bad))
        return None
    return arrays


def _selected(cases, patterns):
    return [c for c in cases if not patterns or any(fnmatch.fnmatchcase(c["name"], p) for p in patterns)]


def _compare_all(report: Report, label: str, got: dict, ref: dict, case: dict, set_dtype: str, strict: bool,
                 missing: str, extra: str, allow=None) -> None:
    """Compare every array of ``got`` with ``ref`` (names, dtype kinds, shapes, values) and report it;
    ``allow``: {array: allowance} added to the manifest's atol (see ``ALLOWANCE``)."""
    allow = allow or {}
    for name in sorted(set(ref) | set(got)):
        if name not in got:
            report.array(label, name, {"ok": False, "reason": missing}, 0, 0)
        elif name not in ref:
            report.array(label, name, {"ok": False, "reason": extra}, 0, 0)
        elif got[name].dtype.kind != ref[name].dtype.kind or \
                (got[name].dtype.kind != "f" and got[name].dtype != ref[name].dtype):
            report.array(label, name, {"ok": False, "reason": f"dtype {got[name].dtype}, expected "
                                                               f"{ref[name].dtype}"}, 0, 0)
        else:
            atol, rtol = tolerance_for(case, name, ref[name], set_dtype, strict)
            if name in allow:   # an implementation's allowance (ALLOWANCE): reported as the largest atol used
                eff = atol + np.asarray(allow[name], dtype=np.float64)
                report.array(label, name, compare_arrays(got[name], ref[name], eff, rtol), float(np.max(eff)), rtol)
            else:
                report.array(label, name, compare_arrays(got[name], ref[name], atol, rtol), atol, rtol)


def check_set(d: Path, report: Report, strict=False, patterns=None, rel=".", compute=None):
    """Re-compute every case of the set in ``d`` with this refsnn (or ``compute``, see ``run_case``) and compare."""
    man = load_manifest(d)
    dtype = np.dtype(man["dtype"])
    for case in _selected(man["cases"], patterns):
        label = f"[{rel}] {case['name']}"
        report.case(rel, f"{label} ({case['kind']})")
        arrays = _verify_file(d, case, report, label, man["dtype"])
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
        allow = {k[len(ALLOWANCE):]: got.pop(k) for k in [k for k in got if k.startswith(ALLOWANCE)]}
        unknown = sorted(set(allow) - set(got))
        if unknown:
            report.fail_case(label, f"allowance for array(s) {unknown} that the computation did not produce")
            continue
        stored = {k: v for k, v in arrays.items() if k.split(".", 1)[0] in RESULT_PREFIXES}
        _compare_all(report, label, got, stored, case, man["dtype"], strict, "not produced by this refsnn",
                     "produced by this refsnn but not in the file", allow)


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
        report.case(rel, f"{label} ({case['kind']})")
        if case["name"] not in mine:
            report.fail_case(label, f"case missing from {d}")
            continue
        ref_arrays = _verify_file(ref, case, report, label, man_r["dtype"])
        got_arrays = _verify_file(d, mine[case["name"]], report, label, man_d["dtype"])
        if ref_arrays is None or got_arrays is None:
            continue
        _compare_all(report, label, got_arrays, ref_arrays, case, man_r["dtype"], strict, f"missing from {d}",
                     f"not in the reference {ref}")
    extra = sorted(set(mine) - {c["name"] for c in man_r["cases"]})
    if extra and not patterns:
        print(f"note: {len(extra)} case(s) of {d} are not in the reference: {', '.join(extra)}", file=report.out)


def _pairs(directory, against, sets, out) -> list:
    """(name, set of DIR, reference set) for ``check DIR --against OTHER``."""
    ref_sets = find_sets(against)
    if len(sets) == 1 and len(ref_sets) == 1:
        return [(sets[0][0], sets[0][1], ref_sets[0][1])]
    refs = dict(ref_sets)
    missing = [rel for rel, _ in sets if rel not in refs]
    if missing == ["."]:
        raise GoldenError(f"{directory} is one set but {against} holds several {sorted(refs)}; name the "
                          f"reference set itself, e.g. {Path(against) / sorted(refs)[0]}")
    if missing:
        raise GoldenError(f"{against} has no set {missing} to compare with (it has {sorted(refs)})")
    unused = sorted(set(refs) - {rel for rel, _ in sets})
    if unused:
        print(f"note: reference set(s) {unused} have no counterpart in {directory} and are not compared", file=out)
    return [(rel, d, refs[rel]) for rel, d in sets]


def check_golden(directory, against=None, strict=False, patterns=None, verbose=False, out=None,
                 compute=None) -> bool:
    """``refsnn golden check``: True when every compared array passes.  ``compute``: re-compute with another
    implementation's ``{kind: function}`` (``refsnn golden check --impl torch``) instead of refsnn.

    Prints the failures and a summary per set (every array with ``verbose``); raises GoldenError when a
    directory is not a usable golden directory or no case is selected."""
    out = out or sys.stdout
    t0 = time.perf_counter()
    report = Report(out, verbose)
    sets = find_sets(directory)
    if against is None:
        for rel, d in sets:
            check_set(d, report, strict, patterns, rel, compute)
    else:
        for rel, d, r in _pairs(directory, against, sets, out):
            against_set(d, r, report, strict, patterns, rel)
    if report.cases == 0:
        raise GoldenError(f"no case of {directory} matches {list(patterns)}" if patterns else
                          f"{directory} holds no case to check")
    report.summary(time.perf_counter() - t0)
    return report.ok
