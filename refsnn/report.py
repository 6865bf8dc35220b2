"""What a training run shows and leaves behind: the progress display, the history files and the final table.

    Progress        a one-line bar per epoch on a terminal, else one line per epoch
    format_epoch    the line printed after each epoch
    write_history   history.json (everything) and history.csv (the scalar columns, ``CSV_COLUMNS``)
    final_table     the table printed at the end of a run (accuracy, W/S/T, Bit Budget, S-ACE, S-ACE*, size,
                    per-layer allocation)

``refsnn.train.Trainer`` calls these; they read plain values (records, ``ModelCost``) and never the trainer.
"""
from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
from pathlib import Path

from .files import atomic_write_text, json_default

#: columns of history.csv (every scalar of an epoch record)
CSV_COLUMNS = ("epoch", "lr", "train_loss", "train_ce", "train_reg", "train_acc", "test_loss", "test_acc", "W", "S",
               "T", "bit_budget", "s_ace_g", "s_ace_star_g", "size_mb", "renewals_spike", "renewals_weight",
               "renew_spike_on", "renew_weight_on", "switched_off", "time_s")


class Progress:
    """A one-line bar per epoch on a TTY (batches, loss, running W/S/T); else one line per epoch."""

    def __init__(self, mode: str = "auto", stream=None):
        self.stream = stream if stream is not None else sys.stdout
        if mode == "auto":
            isatty = getattr(self.stream, "isatty", lambda: False)
            mode = "bar" if isatty() else "line"
        self.mode = mode
        self._last = 0.0

    def batch(self, epoch: int, epochs: int, k: int, n: int, loss: float, wst: tuple, t0: float) -> None:
        if self.mode != "bar":
            return
        now = time.perf_counter()
        if k < n and now - self._last < 0.1:  # redraw at most 10 times a second
            return
        self._last = now
        width = 24
        fill = int(width * k / n)
        el = now - t0
        eta = el / k * (n - k) if k else 0.0
        w, s, t = (f"{v:.2f}" if v is not None else "-" for v in wst)
        self.stream.write(f"\repoch {epoch}/{epochs} [{'#' * fill}{'.' * (width - fill)}] {k}/{n}  "
                          f"loss {loss:.4f}  W/S/T {w}/{s}/{t}  {el:.0f}s<{eta:.0f}s ")
        self.stream.flush()

    def epoch(self, line: str) -> None:
        if self.mode == "none":
            return
        if self.mode == "bar":
            self.stream.write("\r\033[K")
        self.stream.write(line + "\n")
        self.stream.flush()

    def message(self, line: str) -> None:
        if self.mode != "none":
            self.stream.write(line + "\n")
            self.stream.flush()


def format_epoch(rec: dict, epochs: int) -> str:
    """The line printed after epoch ``rec['epoch']`` of ``epochs``."""
    ren = f"renewals s:{rec['renewals_spike']} w:{rec['renewals_weight']}"
    off = f"  switched off: {rec['switched_off']}" if rec["switched_off"] else ""
    return (f"epoch {rec['epoch']}/{epochs}  loss {rec['train_loss']:.4f}  train {100 * rec['train_acc']:.1f}%  "
            f"test {100 * rec['test_acc']:.1f}%  W/S/T {rec['W']:.2f}/{rec['S']:.2f}/{rec['T']:.2f}  "
            f"BB {rec['bit_budget']:.2f}  S-ACE {rec['s_ace_g'] * 1e3:.3f}M  {ren}{off}  {rec['time_s']:.1f}s")


def write_history(out_dir, config: dict, initial: dict, targets: dict, history: list) -> None:
    """``out_dir``/history.json (the configuration, the initial averages, the targets and every epoch record)
    and ``out_dir``/history.csv (the scalar columns ``CSV_COLUMNS``, one row per epoch)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {"config": config, "initial": initial, "targets": targets, "epochs": history}
    atomic_write_text(out_dir / "history.json", json.dumps(doc, indent=1, default=json_default))
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for rec in history:
        w.writerow([_csv_value(rec.get(c)) for c in CSV_COLUMNS])
    atomic_write_text(out_dir / "history.csv", buf.getvalue())


def _csv_value(v):
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else str(v)
    if isinstance(v, bool):
        return int(v)
    return "" if v is None else v


def final_table(cost, test_acc: float, n_test: int, targets, initial: dict, renew_spike: bool,
                renew_weight: bool) -> str:
    """The table printed at the end of a run: accuracy on ``n_test`` samples, W/S/T, Bit Budget, S-ACE, S-ACE*
    and size of ``cost`` (a ``ModelCost``) against ``targets`` and the ``initial`` averages, the renewal
    switches and the per-layer allocation."""
    from .models.costing import format_cost_table
    t = targets
    lines = [f"test accuracy   {100 * test_acc:.2f} %   ({n_test} samples)",
             f"W / S / T       {cost.W:.3f} / {cost.S:.3f} / {cost.T:.3f}   (targets {t.W:g} / {t.S:g} / {t.T:g}; "
             f"initial {initial['W']:.3g} / {initial['S']:.3g} / {initial['T']:.3g})",
             f"Bit Budget      {cost.bit_budget:.3f}   (initial {initial['bit_budget']:.3g})",
             f"S-ACE           {cost.s_ace / 1e6:.4f} M   S-ACE* {cost.s_ace_star / 1e6:.4f} M   "
             f"(initial S-ACE {initial['s_ace_g'] * 1e3:.4f} M)",
             f"size            {cost.size_mb * 1e3:.3f} kB   (initial {initial['size_mb'] * 1e3:.3f} kB)",
             f"renewal         spike {'on' if renew_spike else 'off'}, weight {'on' if renew_weight else 'off'}",
             "", "per-layer allocation:", format_cost_table(cost)]
    return "\n".join(lines)
