"""Run the theory checks, print a table, write ``verify/REPORT.md`` and figures.

    python -m verify.runner --quick            # seconds; smaller Monte Carlo
    python -m verify.runner --full             # minutes; the sizes of REPORT.md
    python -m verify.runner --only theorem1 lemma1

A check module is any module ``verify.<name>`` with

    run(quick: bool, seed: int = 0) -> list[verify.common.Result]
    figures(results, fig_dir) -> list[(path, caption)]     (optional)
    report(results) -> str                                  (optional, markdown)

and its module docstring (the derivation) goes into the report. To add one,
append its name to ``MODULES``.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import platform
import sys
import textwrap
import time

import numpy as np
import scipy

from .common import Z_TOL, Result

#: Registry of check modules, in report order. Extend by appending a name.
MODULES = [
    "flooring_vs_rounding",
    "theorem1",
    "lemma1",
    "bidirectional",
    "accumulation",
    "error_increase",
    "costs",
    "renewal_effect",
    "gradients",
    "time_flow",
]

_HERE = os.path.dirname(os.path.abspath(__file__))
#: outside a checkout (refsnn installed by pip) the full mode writes here, under the working directory
INSTALLED_OUT = "refsnn-verify"


def checkout_root() -> str | None:
    """The repository root when this package runs from a checkout (``verify/`` beside ``pyproject.toml``),
    None when it runs from an installed copy (``refsnn.verify`` in site-packages)."""
    root = os.path.dirname(_HERE)
    is_checkout = os.path.basename(_HERE) == "verify" and os.path.isfile(os.path.join(root, "pyproject.toml"))
    return root if is_checkout else None


def default_outputs(out: str | None = None) -> tuple:
    """(report path, figure directory) of the full mode: ``out/REPORT.md`` and ``out/figures`` for an explicit
    ``out``; else the checkout's ``verify/REPORT.md`` and ``figures/``; else ``./refsnn-verify/REPORT.md`` and
    ``./refsnn-verify/figures`` (an installed package is never written into)."""
    root = checkout_root()
    if out is None and root is not None:
        return os.path.join(root, "verify", "REPORT.md"), os.path.join(root, "figures")
    out = INSTALLED_OUT if out is None else out
    return os.path.join(out, "REPORT.md"), os.path.join(out, "figures")


def _print_table(rows: list[Result], width: int = 110) -> None:
    print(f"{'claim':<52} {'verdict':<12} {'ok':<4} method / values")
    print("-" * width)
    for r in rows:
        print(f"{r.claim[:52]:<52} {r.verdict:<12} {'yes' if r.passed else 'NO':<4} {r.method}")
        for line in textwrap.wrap(r.values, width - 8):
            print(" " * 8 + line)


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|")


def run_all(quick: bool, out_report: str | None, fig_dir: str | None,
            only: list[str] | None = None, seed: int = 0) -> int:
    """Run the registered checks (or only those named), print the table, write the
    report (if out_report) and figures (if fig_dir). Returns 0 if every result
    passed, 1 otherwise (2 if a module raised)."""
    names = MODULES if not only else [m for m in MODULES if m in only] + \
        [m for m in only if m not in MODULES]
    sections, all_rows, status = [], [], 0
    t_all = time.time()
    for name in names:
        mod = importlib.import_module(f"{__package__}.{name}")  # verify.<name> or, installed, refsnn.verify.<name>
        t0 = time.time()
        try:
            res = mod.run(quick=quick, seed=seed)
        except Exception as exc:  # a crashing check is a failure, not a silent skip
            print(f"[ERROR] verify.{name}: {type(exc).__name__}: {exc}", file=sys.stderr)
            status = 2
            sections.append((name, mod, [], [], time.time() - t0, f"{type(exc).__name__}: {exc}"))
            continue
        dt = time.time() - t0
        figs = []
        if fig_dir and hasattr(mod, "figures"):
            os.makedirs(fig_dir, exist_ok=True)
            figs = mod.figures(res, fig_dir) or []
        all_rows += res
        sections.append((name, mod, res, figs, dt, None))
    elapsed = time.time() - t_all
    _print_table(all_rows)
    n_fail = sum(not r.passed for r in all_rows)
    print(f"\n{len(all_rows)} results, {n_fail} not as expected, {elapsed:.1f} s "
          f"({'quick' if quick else 'full'} mode)")
    if n_fail and status == 0:
        status = 1
    if out_report:
        _write_report(out_report, sections, all_rows, quick, seed, elapsed, fig_dir)
        print(f"report: {out_report}")
    return status


#: the end-to-end demo's training figures (drawn by `refsnn figures` into figures/), captioned in the report
DEMO_FIGURES = [
    ("demo_wst_history.png", "Model-average W, S and T of `refsnn demo` (tiny_resnet on the UCI digits, 4/4/2 "
     "towards 2/2/1) after each epoch, against the targets (dashed); widths are bits, T is time steps "
     "(like the paper's Fig. 3)."),
    ("demo_layer_allocation.png", "Learned per-layer weight width B_w, mean spike width and T_l of the demo "
     "model, with each layer's weight count N_w and input size N_f on a log axis (like the paper's Fig. 4)."),
    ("demo_curves.png", "Train/test accuracy (%) and losses (train total = cross-entropy + Eq. 21, train and "
     "test cross-entropy; log axis) of the demo run per epoch."),
]


def _write_report(path, sections, rows, quick, seed, elapsed, fig_dir=None):
    rep_dir = os.path.dirname(os.path.abspath(path))
    lines = [
        "# verify/: checks of the paper's claims (docs/method.md §8 and the modules below)",
        "",
        f"Generated by `python -m verify.runner {'--quick' if quick else '--full'}` "
        f"(seed {seed}) on {datetime.date.today().isoformat()}, "
        f"Python {platform.python_version()}, NumPy {np.__version__}, SciPy {scipy.__version__}; "
        f"{elapsed:.1f} s. Do not edit by hand.",
        "",
        "Every Monte Carlo estimate uses a fixed-seed `numpy.random.Generator` and is reported "
        f"with its standard error; it is called consistent with an analytic value when within "
        f"{Z_TOL:g} standard errors (plus 1e-12). Analytic values come from closed forms and "
        "sums of truncated-normal moments over quantizer cells, cross-checked with "
        "`scipy.integrate.quad`. *Verdict* is what the check says about the paper's statement; "
        "*ok* says whether the computation confirmed that verdict (analytic routes agree, Monte "
        "Carlo agrees within tolerance, the stated relation holds).",
        "",
        "## Summary",
        "",
        "| claim | method | values | verdict | ok |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {_md_escape(r.claim)} | {_md_escape(r.method)} | {_md_escape(r.values)} "
                     f"| {r.verdict} | {'yes' if r.passed else '**NO**'} |")
    lines.append("")
    lines.append("Statements:")
    lines.append("")
    for r in rows:
        lines.append(f"* **{r.claim}** ({r.verdict}): {r.statement}")
    for name, mod, res, figs, dt, err in sections:
        lines += ["", f"## `verify.{name}` ({dt:.1f} s)", ""]
        if err:
            lines += [f"**Crashed:** `{err}`", ""]
        doc = (mod.__doc__ or "").strip()
        if doc:
            lines += [doc, ""]
        if res and hasattr(mod, "report"):
            extra = mod.report(res)
            if extra:
                lines += ["### Details", "", extra, ""]
        for fpath, caption in figs:
            rel = os.path.relpath(fpath, rep_dir)
            lines += [f"![{os.path.basename(fpath)}]({rel})", "",
                      f"*Figure `{os.path.basename(fpath)}`.* {caption}", ""]
    demo = [(os.path.join(fig_dir, f), c) for f, c in DEMO_FIGURES
            if fig_dir and os.path.isfile(os.path.join(fig_dir, f))]
    if demo:
        lines += ["", "## The demo run's training figures (`refsnn figures`)", ""]
        for fpath, caption in demo:
            rel = os.path.relpath(fpath, rep_dir)
            lines += [f"![{os.path.basename(fpath)}]({rel})", "", f"*Figure `{os.path.basename(fpath)}`.* {caption}", ""]
    os.makedirs(rep_dir, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines).rstrip() + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="small Monte Carlo (default)")
    g.add_argument("--full", action="store_true", help="full Monte Carlo sizes")
    ap.add_argument("--only", nargs="+", metavar="MODULE", help=f"subset of {MODULES}")
    ap.add_argument("--out", default=None, help="write REPORT.md and figures/ here (default: the checkout's "
                    f"verify/REPORT.md and figures/, or ./{INSTALLED_OUT}/ outside a checkout)")
    ap.add_argument("--report", default=None, help="report path (overrides --out; 'none' to skip)")
    ap.add_argument("--figures", default=None, help="figure directory (overrides --out; 'none' to skip)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    default_report, default_figs = default_outputs(a.out)
    report = default_report if a.report is None else (None if a.report == "none" else a.report)
    figs = default_figs if a.figures is None else (None if a.figures == "none" else a.figures)
    return run_all(quick=not a.full, out_report=report, fig_dir=figs, only=a.only, seed=a.seed)


if __name__ == "__main__":
    raise SystemExit(main())
