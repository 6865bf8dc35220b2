"""ABLATIONS.md and the figures of ``refsnn ablate``: per table, the cells (reached W/S/T, test accuracy
mean ± std over the seeds) beside the paper's numbers, the paper's orderings checked row by row, a verdict,
and a figure of accuracy against Bit Budget per variant."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .registry import Table


def summarize(table: Table, cells: list, results: dict) -> dict:
    """{(row key, column key): {"acc": [..], "W": mean, "S", "T", "bb", "n"}} over the seeds that ran."""
    out: dict = {}
    for c in cells:
        if c.table is not table or c.name not in results:
            continue
        r = results[c.name]
        e = out.setdefault((c.row.key, c.variant.key), {"acc": [], "W": [], "S": [], "T": [], "bb": []})
        e["acc"].append(100 * r["test_acc"])
        for k, src in (("W", "W"), ("S", "S"), ("T", "T"), ("bb", "bit_budget")):
            e[k].append(r[src])
    return {k: {"acc": v["acc"], "mean": float(np.mean(v["acc"])), "std": float(np.std(v["acc"])),
                "W": float(np.mean(v["W"])), "S": float(np.mean(v["S"])), "T": float(np.mean(v["T"])),
                "bb": float(np.mean(v["bb"])), "n": len(v["acc"])} for k, v in out.items()}


def _cell_text(s: dict | None, paper) -> str:
    if s is not None and not math.isfinite(s["mean"]):
        ours = "diverged in some seed"
    else:
        ours = "—" if s is None else (f"{s['W']:.2f}/{s['S']:.2f}/{s['T']:.2f}, {s['mean']:.2f} ± "
                                      f"{s['std']:.2f}" + (f" (n={s['n']})" if s["n"] != 1 else " (1 seed)"))
    if paper is None:
        return ours
    wst, acc = paper
    return f"{ours}<br>paper: {wst + ', ' if wst else ''}{acc:.2f}"


def orderings(table: Table, summ: dict) -> list:
    """Per claim (better, worse): (text, holds k, of n, mean gain pp, paper's k, paper's n)."""
    lines = []
    rows = [r.key for r in table.rows]
    for better, worse in table.orderings:
        ref = _reference(table, worse)
        gains = [summ[(r, better)]["mean"] - summ[(ref or r, worse)]["mean"] for r in rows
                 if (r, better) in summ and (ref or r, worse) in summ]
        pk = pn = 0
        if table.paper:
            pg = [table.paper[(r, better)][1] - table.paper[(ref or r, worse)][1] for r in rows
                  if (r, better) in table.paper and (ref or r, worse) in table.paper]
            pk, pn = sum(g > 0 for g in pg), len(pg)
        name = f"{table.column(better).label} > {table.column(worse).label}"
        if not gains:
            continue
        lines.append((name, sum(g > 0 for g in gains), len(gains), float(np.mean(gains)) if gains else math.nan,
                      pk, pn))
    return lines


def temporal_drops(table: Table, summ: dict) -> list:
    """The temporal constraint (Tables 6-7): per column, accuracy at the smallest T that ran minus at the largest
    (negative: a fall), ours and the paper's (between the smallest and the largest T it reports among our rows)."""
    lines = []
    for c in table.columns:
        ran = sorted((r.target[2], summ[(r.key, c.key)]["mean"]) for r in table.rows if (r.key, c.key) in summ)
        if len(ran) < 2:
            continue
        (t0, a0), (t1, a1) = ran[0], ran[-1]
        text = f"{c.label}: accuracy at T = {t0} minus at T = {t1}: {a0 - a1:+.2f} pp"
        pap = sorted((r.target[2], table.paper[(r.key, c.key)][1]) for r in table.rows
                     if table.paper and (r.key, c.key) in table.paper)
        if len(pap) >= 2:
            text += f" (paper: {pap[0][1] - pap[-1][1]:+.2f} pp, T = {pap[0][0]} minus T = {pap[-1][0]})"
        lines.append(text)
    return lines


def _reference(table: Table, key: str) -> str | None:
    """The one row of a column that runs in a single row (Table 5's original): every row compares with it."""
    rows = table.column(key).rows
    return rows[0] if len(rows) == 1 else None


def _verdict(lines: list) -> str:
    parts = []
    for name, k, n, gain, pk, pn in lines:
        state = "holds" if k == n else ("does not hold" if k == 0 else "holds only partly")
        paper = f"; the paper: {pk}/{pn}" if pn else ""
        parts.append(f"{name} {state} here ({k}/{n} rows, mean gain {gain:+.2f} pp{paper})")
    return "; ".join(parts) + "." if parts else "no comparable cells ran."


def _length(cells: list, table: Table) -> str:
    mine = [c for c in cells if c.table is table]
    if not mine:
        return "no cells"
    seeds = len({c.seed for c in mine})
    epochs = sorted({c.config.epochs for c in mine})
    return f"{'/'.join(map(str, epochs))} epoch{'s' if epochs != [1] else ''}, {seeds} seed{'s' if seeds != 1 else ''} per cell"


def table_markdown(table: Table, cells: list, results: dict, figure: str | None) -> str:
    summ = summarize(table, cells, results)
    ran_rows = [r for r in table.rows if any((r.key, c.key) in summ for c in table.columns)]
    cols = [c for c in table.columns if any((r.key, c.key) in summ for r in table.rows)]
    out = [f"## Table {table.number}: {table.title}", ""]
    out.append(f"Cells: reached W/S/T (mean over seeds), test accuracy % mean ± std; below, the paper's "
               f"numbers for the same cell ({table.paper_source}).  Ours are {table.ours}; {_length(cells, table)}.")
    out.append("")
    out.append("| target W/S/T | " + " | ".join(c.label for c in cols) + " |")
    out.append("|---|" + "---|" * len(cols))
    for r in ran_rows:
        cells_txt = [_cell_text(summ.get((r.key, c.key)), (table.paper or {}).get((r.key, c.key)))
                     for c in cols]
        out.append(f"| {r.key} | " + " | ".join(cells_txt) + " |")
    out.append("")
    if table.paper is None:
        out.append(f"Paper column: {table.paper_source}.")
        out.append("")
    lines = orderings(table, summ)
    for name, k, n, gain, pk, pn in lines:
        paper = f" (paper: holds in {pk}/{pn} rows)" if pn else ""
        out.append(f"* {name}: holds in {k}/{n} rows, mean gain {gain:+.2f} pp{paper}")
    if table.figure == "T":
        out += [f"* {line}" for line in temporal_drops(table, summ)]
    for note in table.notes:
        out.append(f"* {note}")
    out.append("")
    out.append(f"**Verdict.** {_verdict(lines)}")
    if figure:
        what = "T" if table.figure == "T" else "Bit Budget"
        out += ["", f"![Table {table.number}: accuracy against {what}]({figure})"]
    return "\n".join(out) + "\n"


def plot_table(table: Table, cells: list, results: dict, path) -> Path:
    """Accuracy (mean ± std over seeds) against the reached Bit Budget W*S*T, one line per variant; for a
    table with ``figure = "T"`` (Tables 6-7) against the constant T, one curve with its std band per variant."""
    from ..plots import save_figure   # first: it sets the Agg backend
    import matplotlib.pyplot as plt
    summ = summarize(table, cells, results)
    by_t = table.figure == "T"
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for c in table.columns:
        pts = sorted((r.target[2] if by_t else summ[(r.key, c.key)]["bb"], summ[(r.key, c.key)]["mean"],
                      summ[(r.key, c.key)]["std"]) for r in table.rows if (r.key, c.key) in summ)
        if not pts:
            continue
        x, y, e = (np.array(v) for v in zip(*pts))
        if by_t:
            line, = ax.plot(x, y, marker="o", label=c.label)
            ax.fill_between(x, y - e, y + e, color=line.get_color(), alpha=0.2)
        else:
            ax.errorbar(x, y, yerr=e, marker="o", capsize=3, label=c.label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("T (time steps, a constant of the run)" if by_t else "reached Bit Budget W*S*T (model averages)")
    ax.set_ylabel("test accuracy (%)")
    data = "event digits" if table.base == "demo_events" else "digits"
    ax.set_title(f"Table {table.number} on {data}: accuracy vs {'T' if by_t else 'Bit Budget'}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def write_report(tables: list, cells: list, results: dict, report_path, fig_dir, header: str) -> list:
    """Write ABLATIONS.md (and one figure per table); returns the paths written."""
    report_path = Path(report_path)
    written, parts = [], [header]
    for t in tables:
        fig = None
        if fig_dir is not None:
            p = plot_table(t, cells, results, Path(fig_dir) / f"ablation_table{t.number}.png")
            written.append(p)
            fig = _relpath(p, report_path.parent)
        parts.append(table_markdown(t, cells, results, fig))
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text("\n".join(parts))
    written.insert(0, report_path)
    return written


def _relpath(path, start) -> str:
    import os
    return os.path.relpath(Path(path).resolve(), Path(start).resolve())
