"""Golden outputs for other implementations (schema ``refsnn-golden/1``, ``docs/golden.md``).

    refsnn golden write DIR [--convention paper|official|both] [--dtype float64|float32|both] [--update]
    refsnn golden check DIR [--against OTHER] [--strict] [-v]
    refsnn golden search-seed

``write`` computes every case with refsnn and writes one set per (convention, dtype):
``DIR`` itself when one of each is chosen, ``DIR/<convention>-<dtype>/`` otherwise; each set
is a ``manifest.json`` and one ``.npz`` per case, byte-identical when written again.
``check`` re-computes every case of every set under ``DIR`` with this refsnn and compares;
with ``--against OTHER`` it compares the sets of ``DIR`` (e.g. a port's) with those of
``OTHER`` (the reference) instead.  Both print every failure (the max absolute and relative
error and the first failing index) and a summary per set, every array with ``-v``; exit 1 on a
failure, 2 on a broken golden directory.  ``write --update`` adds new cases to existing sets
and keeps every stored case that still matches byte for byte.

Python API: :func:`write_golden`, :func:`check_golden`, :func:`main`.
"""
from __future__ import annotations

import argparse
import sys

from .store import SCHEMA, GoldenError, load_manifest, read_npz
from .check import check_golden
from .runner import CONVENTIONS, DEFAULT_SEED, DTYPES, make_cases, run_case
from .runner import search_model_seeds
from .train_step import MODEL_SEEDS
from .write import write_golden

__all__ = ["SCHEMA", "GoldenError", "write_golden", "check_golden", "make_cases", "run_case", "load_manifest",
           "read_npz", "main"]


def _choices(value: str, allowed: tuple) -> tuple:
    return allowed if value == "both" else (value,)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="refsnn golden",
        description="Golden outputs for other implementations (schema refsnn-golden/1, see docs/golden.md).")
    sub = ap.add_subparsers(dest="command", required=True, metavar="{write,check,search-seed}")
    w = sub.add_parser("write", help="compute every case with refsnn and write golden sets into DIR",
                       description="Compute every case with refsnn and write one set per (convention, dtype): DIR "
                                   "itself for a single one, DIR/<convention>-<dtype>/ otherwise. Writing again "
                                   "gives byte-identical files.")
    w.add_argument("dir", metavar="DIR")
    w.add_argument("--convention", choices=("paper", "official", "both"), default="both",
                   help="docs/method.md §10 (default: both)")
    w.add_argument("--dtype", choices=("float64", "float32", "both"), default="both", help="default: both")
    w.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"seed of the drawn inputs (default {DEFAULT_SEED})")
    w.add_argument("--cases", nargs="+", metavar="GLOB", help="only the cases whose name matches a glob")
    w.add_argument("--update", action="store_true",
                   help="add to the existing sets in DIR: keep every stored case file byte for byte whose "
                        "re-computed arrays pass the --strict rule, write new cases, rewrite changed ones, and "
                        "report kept/added/changed/removed (with --cases: only those are computed, the other "
                        "stored cases stay)")
    sub.add_parser("search-seed", help="report the model seeds the margin search chooses on this machine",
                   description="Search the model seed of every case computed by a model (train steps, the SSA "
                               "block) as the case was made (the first seed from 0 up whose every decision keeps "
                               "10x its float32 deviation away, under both conventions) and report it with its "
                               "margins. The cases use their pinned seeds; the search depends on the machine's "
                               "BLAS kernel.")
    c = sub.add_parser("check", help="re-compute the golden sets in DIR with this refsnn (or compare DIR with "
                                     "OTHER) and report per array",
                       description="Re-compute every case of every set under DIR with this refsnn and compare "
                                   "with the stored arrays; with --against OTHER, compare the sets of DIR with "
                                   "those of OTHER (the reference) instead. Prints the failures and a summary per "
                                   "set (-v: every array). Exit status 0 = all pass, 1 = a case failed (an array "
                                   "out of tolerance or of the wrong dtype, a file missing, altered or of the "
                                   "wrong format), 2 = DIR or OTHER is not a usable golden directory (missing or "
                                   "invalid manifest, no cases).")
    c.add_argument("dir", metavar="DIR")
    c.add_argument("--against", metavar="OTHER", help="the reference directory to compare DIR with")
    c.add_argument("--strict", action="store_true",
                   help="detect any change of refsnn's numbers: float64 sets within 1e-9 x the array's largest "
                        "value instead of the manifest's tolerance; float32 sets at the manifest's tolerance (10x "
                        "the array's own float32 rounding error, see docs/golden.md)")
    c.add_argument("--cases", nargs="+", metavar="GLOB", help="only the cases whose name matches a glob")
    c.add_argument("-v", "--verbose", action="store_true", help="print every array compared, not only the failures")
    c.add_argument("-q", "--quiet", action="store_true",
                   help="print only the failures and the summary (the default; kept for scripts)")
    c.add_argument("--impl", choices=("refsnn", "torch"), default="refsnn",
                   help="who re-computes the cases: refsnn (default) or the PyTorch port refsnn.torch (needs the "
                        "'torch' extra; the same as python -m refsnn.torch.golden DIR)")
    return ap


def _torch_compute():
    """The torch port's case functions (imported only when asked for: refsnn itself never needs torch)."""
    try:
        from importlib import import_module
        return import_module("refsnn.torch.golden").COMPUTE
    except ImportError as e:
        print(f"refsnn golden: error: --impl torch needs the PyTorch port ({e}); pip install -e '.[torch]'",
              file=sys.stderr)
        return None


def main(argv=None) -> int:
    """``refsnn golden ...``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "write":
            write_golden(args.dir, _choices(args.convention, CONVENTIONS), _choices(args.dtype, DTYPES),
                         seed=args.seed, patterns=args.cases, update=args.update)
            return 0
        if args.command == "search-seed":
            for name, (seed, margins) in search_model_seeds().items():
                print(f"{name}: model seed chosen on this machine {seed}, pinned {MODEL_SEEDS.get(name)}")
                for k, v in sorted(margins.items()):
                    print(f"  {k:<14s} {v:.6g}")
            return 0
        compute = None
        if args.impl == "torch":
            if args.against or args.strict:
                print("refsnn golden: error: --impl torch re-computes the sets; it takes neither --against nor "
                      "--strict", file=sys.stderr)
                return 2
            compute = _torch_compute()
            if compute is None:
                return 2
        ok = check_golden(args.dir, against=args.against, strict=args.strict, patterns=args.cases,
                          verbose=args.verbose and not args.quiet, compute=compute)
        return 0 if ok else 1
    except GoldenError as e:
        print(f"refsnn golden: error: {e}", file=sys.stderr)
        return 2
