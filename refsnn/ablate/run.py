"""``refsnn ablate``: run the ablation tables (docs/method.md §15) and write ABLATIONS.md with figures.

    refsnn ablate [--tables 3,4,5,6,8] [--quick] [--seeds N] [--epochs N] [--jobs N] [--out DIR] [--dataset digits]

Outputs (like ``refsnn verify``): ``--out DIR`` -> DIR/ABLATIONS.md, DIR/figures/, DIR/cells/; else in a
checkout the full run writes verify/ABLATIONS.md, figures/ablation_table*.png and verify/ablations/*.json;
``--quick`` without ``--out`` writes ./refsnn-ablate-quick/ (a quick run never replaces the full report);
an installed refsnn writes ./refsnn-ablate/.
"""
from __future__ import annotations

import datetime
import os
import platform
import sys
import time
from pathlib import Path

from . import cells as C
from .registry import TABLES

DATASETS = ("digits",)


def checkout_root() -> Path | None:
    """The repository root when refsnn runs from a checkout (``pyproject.toml`` and ``verify/`` beside it)."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "verify").is_dir() else None


def default_outputs(out: str | None, quick: bool) -> tuple:
    """(report path, figure directory, cell directory)."""
    root = checkout_root()
    if out is None and not quick and root is not None:
        return root / "verify" / "ABLATIONS.md", root / "figures", root / "verify" / "ablations"
    base = Path(out if out is not None else ("refsnn-ablate-quick" if quick else "refsnn-ablate"))
    return base / "ABLATIONS.md", base / "figures", base / "cells"


def parse_tables(text: str) -> list:
    keys = [t.strip() for t in str(text).split(",") if t.strip()]
    unknown = [k for k in keys if k not in TABLES]
    if not keys or unknown:
        raise ValueError(f"--tables {text!r}: choose from {', '.join(TABLES)} (comma-separated; 6 = Tables 6-7)")
    return [TABLES[k] for k in dict.fromkeys(keys)]


def _lengths(tables, cells) -> str:
    """Epochs x seeds per table (Tables 5 and 6-7 run fewer than 3 and 4 in the full run)."""
    parts = []
    for t in tables:
        mine = [c for c in cells if c.table is t]
        if mine:
            epochs = "/".join(str(e) for e in sorted({c.config.epochs for c in mine}))
            parts.append(f"Table {t.number}: {epochs} epochs x {len({c.seed for c in mine})} seed(s)")
    return "; ".join(parts)


def _header(tables, quick, cells, results, wall, ran) -> str:
    kind = "a QUICK RUN: a smoke test of few cells, one seed, 1-2 epochs on 320 samples, not the ablation" if quick \
        else "the full run"
    runs = {(c.hash, c.seed): results[c.name] for c in cells if c.name in results}
    cell_s = sum(r.get("time_s", 0.0) for r in runs.values())
    core_s = sum(r.get("cpu_s", 0.0) for r in runs.values())
    n_cells = len({c.name.rsplit("_s", 1)[0] for c in cells})
    resumed = f" (the other {len(runs) - ran} were stored by an earlier invocation)" if ran < len(runs) else ""
    return "\n".join([
        "# Ablations of the paper, run with refsnn" + (" — QUICK RUN" if quick else ""), "",
        f"Written by `refsnn ablate`, {kind}, on {datetime.date.today().isoformat()}, tables "
        f"{', '.join(t.number for t in tables)}: {n_cells} cells, {len(runs)} training runs (a cell shared by two "
        f"tables runs once; {_lengths(tables, cells)}).  Training time summed over all runs "
        f"{cell_s:.0f} s = {cell_s / 60:.1f} min ({core_s / 60:.1f} core-min); this invocation trained {ran} of them "
        f"in {wall:.0f} s = {wall / 60:.1f} min of wall time{resumed}, on "
        f"{platform.machine()} with {os.cpu_count()} CPUs.", "",
        "Variants (docs/method.md §15): U-quant. = widths fixed at the target, not learnable, no renewal, no "
        "Eq. 21; LBW = learnable widths from 4/4/2 with Eq. 21 towards the target, no renewal; "
        "\"+ ... renew\" = LBW with step-size renewal (Alg. 1-2) on the weight quantizers / both / the spike "
        "quantizers; \"tau = 2 & Eq. 3-5\" = the prior multi-bit LIF neuron (flooring, amplitude alpha, reset by "
        "alpha S) run step by step (docs/method.md §1, §14).  The paper's numbers are ResNet20 / Spikformer on "
        "CIFAR-10 (CIFAR10-DVS for Tables 6-7) after 200 epochs: compare orderings, not levels.", ""])


def main(tables="3,4,5,6,8", quick=False, seeds=None, out=None, dataset="digits", epochs=None, jobs=1,
         stream=None) -> int:
    stream = stream if stream is not None else sys.stderr
    if dataset not in DATASETS:
        raise ValueError(f"--dataset {dataset!r}: only {', '.join(DATASETS)} is available for the ablations yet")
    if seeds is not None and int(seeds) < 1:
        raise ValueError(f"--seeds {seeds}: must be an integer >= 1")
    if epochs is not None and int(epochs) < 1:
        raise ValueError(f"--epochs {epochs}: must be an integer >= 1")
    if int(jobs) < 1:
        raise ValueError(f"--jobs {jobs}: must be an integer >= 1")
    tabs = parse_tables(tables)
    report, figs, cell_dir = default_outputs(out, quick)
    cells = [c for t in tabs for c in C.table_cells(t, seeds, quick, epochs)]
    store = C.CellStore(cell_dir)
    ran = len({(c.hash, c.seed) for c in cells if store.find(c) is None})
    t0 = time.perf_counter()
    results = C.run_cells(cells, store, jobs=int(jobs), stream=stream)
    header = _header(tabs, quick, cells, results, time.perf_counter() - t0, ran)
    from .report import write_report
    for p in write_report(tabs, cells, results, report, figs, header):
        print(f"wrote {p}", file=stream)
    return 0
