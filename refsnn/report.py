"""What a training run shows and leaves behind: the progress display, the history files and the final table.

    Progress        on stderr: a one-line bar per epoch on a terminal, else one line per epoch and a batch line
                    with the time left at least every 30 s
    format_banner   the lines a run shows (stderr) before its first epoch
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
from .models.costing import OPS_UNIT, format_mb, format_ops

#: columns of history.csv (every scalar of an epoch record)
CSV_COLUMNS = ("epoch", "lr", "train_loss", "train_ce", "train_reg", "train_acc", "test_loss", "test_acc", "W", "S",
               "T", "bit_budget", "s_ace", "s_ace_star", "size_bytes", "renewals_spike", "renewals_weight",
               "renew_spike_on", "renew_weight_on", "switched_off", "time_s")


class Progress:
    """What a run shows while it trains, on stderr (stdout keeps the results).

    ``bar`` (the default on a terminal): a one-line bar redrawn in place (batches, loss, running W/S/T, time
    left).  ``line`` (the default elsewhere: a log file, a pipe): one line per epoch, plus a batch line with the
    time left whenever ``interval`` seconds have passed since the last line (and every ``every`` batches if
    ``every`` > 0), so a long epoch is never silent.  ``none``: nothing.
    """

    def __init__(self, mode: str = "auto", stream=None, interval: float = 30.0, every: int = 0):
        self.stream = stream if stream is not None else sys.stderr
        if mode == "auto":
            isatty = getattr(self.stream, "isatty", lambda: False)
            mode = "bar" if isatty() else "line"
        self.mode = mode
        self.interval = float(interval)
        self.every = int(every)
        self._last = 0.0
        self._epoch_t0 = None

    def batch(self, epoch: int, epochs: int, k: int, n: int, loss: float, wst: tuple, t0: float) -> None:
        """After batch ``k`` of ``n`` of epoch ``epoch`` (of ``epochs``), begun at ``t0`` (perf_counter)."""
        if self.mode not in ("bar", "line"):
            return
        if self._epoch_t0 != t0:  # a new epoch: the heartbeat interval counts from its start
            self._epoch_t0, self._last = t0, t0
        now = time.perf_counter()
        el = now - t0
        eta = el / k * (n - k) if k else 0.0
        w, s, t = (f"{v:.2f}" if v is not None else "-" for v in wst)
        if self.mode == "bar":
            if k < n and now - self._last < 0.1:  # redraw at most 10 times a second
                return
            self._last = now
            width = 24
            fill = int(width * k / n)
            self.stream.write(f"\repoch {epoch}/{epochs} [{'#' * fill}{'.' * (width - fill)}] {k}/{n}  "
                              f"loss {loss:.4f}  W/S/T {w}/{s}/{t}  {el:.0f}s<{eta:.0f}s ")
            self.stream.flush()
            return
        due = now - self._last >= self.interval or (self.every > 0 and k % self.every == 0)
        if k >= n or not due:  # the epoch's own line follows the last batch
            return
        self._last = now
        # the run's time left: this epoch's rest, then the remaining epochs at this epoch's pace (training only)
        run_left = eta + (epochs - epoch) * el / k * n
        self.stream.write(f"epoch {epoch}/{epochs}  batch {k}/{n}  loss {loss:.4f}  W/S/T {w}/{s}/{t}  "
                          f"elapsed {format_duration(el)}  left: epoch {format_duration(eta)}, "
                          f"run ~{format_duration(run_left)}\n")
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


def format_duration(seconds: float) -> str:
    """``seconds`` as ``42s``, ``3m07s`` or ``2h05m``."""
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def format_banner(cfg, n_train: int, n_test: int, input_shape: tuple, classes: int, batches: int,
                  done: int = 0) -> str:
    """The lines a run shows (on the progress stream, stderr) once its checks passed, before its first epoch: model,
    data and its sizes, widths and targets, epochs, precision and the output directory of ``cfg`` (a
    ``TrainConfig``); ``done`` > 0: a resumed run, after that many epochs."""
    init, r = cfg.spiking_config(), cfg.regulate
    start = f"resuming after epoch {done} of {cfg.epochs}: " if done else "training "
    return (f"{start}{cfg.model.name} on {cfg.data.name} ({n_train} train / {n_test} test samples, "
            f"input {'x'.join(map(str, input_shape))}, {classes} classes)\n"
            f"  W/S/T {init.weight_bits:g}/{init.spike_bits:g}/{init.time_steps:g} -> targets "
            f"{r.W:g}/{r.S:g}/{r.T:g}, renewal '{cfg.renewal.mode}', {cfg.epochs} epochs of {batches} batches "
            f"(batch size {cfg.data.batch_size}), {cfg.dtype}, seed {cfg.seed}\n"
            f"  output: {cfg.out_dir}/")


def format_epoch(rec: dict, epochs: int) -> str:
    """The line printed after epoch ``rec['epoch']`` of ``epochs``."""
    ren = f"renewals s:{rec['renewals_spike']} w:{rec['renewals_weight']}"
    off = f"  switched off: {rec['switched_off']}" if rec["switched_off"] else ""
    return (f"epoch {rec['epoch']}/{epochs}  loss {rec['train_loss']:.4f}  train {100 * rec['train_acc']:.1f}%  "
            f"test {100 * rec['test_acc']:.1f}%  W/S/T {rec['W']:.2f}/{rec['S']:.2f}/{rec['T']:.2f}  "
            f"BB {rec['bit_budget']:.2f}  S-ACE ({OPS_UNIT[0]}) {format_ops(rec['s_ace'])}  {ren}{off}  "
            f"{rec['time_s']:.1f}s")


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


#: history records and initial averages written before the unit rule (refsnn.models.costing): key -> (new key, factor)
LEGACY_COST_KEYS = {"macs_g": ("macs", 1e9), "s_ace_g": ("s_ace", 1e9), "s_ace_star_g": ("s_ace_star", 1e9),
                    "size_mb": ("size_bytes", 1e6)}


def upgrade_costs(record: dict) -> dict:
    """``record`` (an epoch record or the initial averages of an older run) with its costs in raw units: the keys of
    ``LEGACY_COST_KEYS`` (G, MB) become ``macs``, ``s_ace``, ``s_ace_star`` (counts) and ``size_bytes``."""
    out = dict(record)
    for old, (new, factor) in LEGACY_COST_KEYS.items():
        if old in out and new not in out:
            value = out.pop(old) * factor
            out[new] = value if new == "size_bytes" else int(round(value))
    return out


def final_table(cost, test_acc: float, n_test: int, targets, initial: dict, renew_spike: bool,
                renew_weight: bool) -> str:
    """The table printed at the end of a run: accuracy on ``n_test`` samples, W/S/T, Bit Budget, S-ACE, S-ACE*
    and size of ``cost`` (a ``ModelCost``) against ``targets`` and the ``initial`` averages, the renewal
    switches and the per-layer allocation."""
    from .models.costing import format_cost_table
    t, u = targets, OPS_UNIT[0]
    lines = [f"test accuracy   {100 * test_acc:.2f} %   ({n_test} samples)",
             f"W / S / T       {cost.W:.3f} / {cost.S:.3f} / {cost.T:.3f}   (targets {t.W:g} / {t.S:g} / {t.T:g}; "
             f"initial {initial['W']:.3g} / {initial['S']:.3g} / {initial['T']:.3g})",
             f"Bit Budget      {cost.bit_budget:.3f}   (initial {initial['bit_budget']:.3g})",
             f"S-ACE ({u})       {format_ops(cost.s_ace)}   S-ACE* ({u}) {format_ops(cost.s_ace_star)}   "
             f"(initial S-ACE ({u}) {format_ops(initial['s_ace'])})",
             f"size (MB)       {format_mb(cost.size_mb)}   (initial {format_mb(initial['size_bytes'] / 1e6)})",
             f"renewal         spike {'on' if renew_spike else 'off'}, weight {'on' if renew_weight else 'off'}",
             "", "per-layer allocation:", format_cost_table(cost)]
    return "\n".join(lines)
