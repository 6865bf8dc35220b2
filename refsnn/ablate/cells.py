"""Cells of the ablation tables: one training run per (table, row, column, seed), stored as a small JSON.

    cell_config(table, row, variant, seed, quick)   the run's TrainConfig (from refsnn/configs/demo.toml)
    settings_hash(kind, cfg)                         what makes two runs the same run (output paths left out)
    run_cell(kind, cfg_dict)                         train it (Trainer, or the ANN of refsnn.ablate.ann)
    CellStore                                        <out>/cells/t<table>_<row>_<column>_s<seed>_<hash>.json
    run_cells(cells, store, jobs, stream)            run what is not stored yet, progress + time left on stderr

Runs are independent: a cell's configuration fixes its seed (model, data order), so the same seeds give
the same table, in any order and with any number of parallel jobs.  A finished cell is written atomically
and found again by its settings hash and seed (a cell shared by two tables runs once): an interrupted run
restarts where it stopped.
"""
from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from ..config import TrainConfig, bundled_config, load_config
from ..errors import TrainingDiverged
from ..nn.spiking import SpikingConfig
from ..files import atomic_write_text, json_default
from .registry import INITIAL, Row, Table, Variant

#: epochs of one cell in the full run, and of the quick run (which also trains on 320 samples)
FULL_EPOCHS = 15
QUICK_EPOCHS = 2
QUICK_SUBSET = 320
#: Eq. 21's penalties on W and S in the ablation: 5x the paper's 4e-2.  The paper trains 200 x 390 steps, a cell
#: 15 x 23; with 4e-2 the 1/1/1 cell ended at W/S/T 1.86/3.02/1.01, with 0.2 at 1.11/1.06/1.01 (seed 0, measured)
LAM_WS = 0.2
#: keys of a TrainConfig that do not change the run's numbers
OUTPUT_KEYS = ("out_dir", "progress", "plots", "description", "checkpoint_every", "keep_checkpoints")


def cell_epochs(table: Table, quick: bool, epochs: int | None = None) -> int:
    """--epochs, else the table's own (quick or full), else QUICK_EPOCHS / FULL_EPOCHS."""
    if epochs:
        return int(epochs)
    own = table.quick_epochs if quick else table.epochs
    return own or (QUICK_EPOCHS if quick else FULL_EPOCHS)


def base_config(table: Table, quick: bool, epochs: int | None = None) -> TrainConfig:
    """The table's base settings (Tables 3, 4, 5, 8: refsnn/configs/demo.toml, tiny_resnet on digits, float32,
    lam_T and That's lr 0.1; Tables 6-7: demo_events.toml) with the ablation's length: renewal's min_epochs
    scaled as in the demo (10 of 25 epochs); lam_w = lam_s = LAM_WS unless the table keeps the base's own."""
    cfg = load_config(bundled_config(table.base))
    n = cell_epochs(table, quick, epochs)
    data = replace(cfg.data, train_subset=QUICK_SUBSET) if quick else cfg.data
    renewal = replace(cfg.renewal, min_epochs=max(1, round(0.4 * n)))
    regulate = replace(cfg.regulate, lam_w=LAM_WS, lam_s=LAM_WS) if table.penalties else cfg.regulate
    model = replace(cfg.model, name=table.model) if table.model else cfg.model
    return cfg.replace(epochs=n, data=data, renewal=renewal, regulate=regulate, model=model, progress="none",
                       plots=False, checkpoint_every=0, description="refsnn ablate cell")


def cell_config(table: Table, row: Row, variant: Variant, seed: int, quick: bool,
                epochs: int | None = None) -> TrainConfig:
    """docs/method.md §15: U-quant. = widths frozen at the target, no renewal, no Eq. 21; LBW = learnable widths
    from 4/4/2 with Eq. 21 towards the target; "+ ... renew" = LBW with renewal on the named quantizers.
    Sequential mode (docs/method.md §14: the prior neuron, Tables 6-7): T is the row's constant, not learnt."""
    cfg = base_config(table, quick, epochs)
    W, S, T = row.target
    if variant.budget and not variant.learn:
        # Tables 6-7's prior cells: the Bit Budget W * S * T held at ``budget`` with W = 1 (S = budget / T)
        W, S = 1, variant.budget / T
    method = dict(cfg.method.spiking)
    if variant.learn:
        method.update(weight_bits=INITIAL[0], spike_bits=INITIAL[1], time_steps=INITIAL[2],
                      learn_weight_bits=True, learn_spike_bits=True, learn_time=True)
    else:
        method.update(weight_bits=float(W), spike_bits=float(S), time_steps=float(T),
                      learn_weight_bits=False, learn_spike_bits=False, learn_time=False)
    method.update(dict(variant.method))
    if method.get("temporal_mode") == "sequential":
        method.update(time_steps=float(T), learn_time=False)
    # a frozen width (Table 5's 16-bit weights) or a constant T (T = 8) may lie above the base's bounds
    for bound, width in (("weight_bound", method["weight_bits"]), ("spike_bound", method["spike_bits"]),
                         ("time_bound", method["time_steps"])):
        if int(width) > int(method.get(bound, getattr(SpikingConfig, bound))):
            method[bound] = int(width)
    reg = replace(cfg.regulate, enabled=variant.learn, W=float(W), S=float(S), T=float(T), **dict(variant.regulate))
    ren = replace(cfg.renewal, mode=variant.renewal if variant.learn else "none")
    optim = replace(cfg.optim, lr={**cfg.optim.lr, **dict(variant.lr)})
    data = cfg.data
    if "T" in data.options:   # event frames: one per step
        data = replace(data, options={**data.options, "T": int(T)})
    return cfg.replace(seed=int(seed), method=replace(cfg.method, spiking=method), regulate=reg, renewal=ren,
                       optim=optim, data=data)


def settings_hash(kind: str, cfg: TrainConfig) -> str:
    d = cfg.to_dict()
    for k in OUTPUT_KEYS:
        d.pop(k, None)
    d.pop("seed", None)
    text = json.dumps({"kind": kind, "config": d}, sort_keys=True, default=json_default)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Cell:
    table: Table
    row: Row
    variant: Variant
    seed: int
    config: TrainConfig

    @property
    def hash(self) -> str:
        return settings_hash(self.variant.kind, self.config)

    @property
    def name(self) -> str:
        row = self.row.key.replace("/", "")
        return f"t{self.table.number}_{row}_{self.variant.key}_s{self.seed}_{self.hash}"

    def label(self) -> str:
        return f"Table {self.table.number} {self.row.key} {self.variant.label} seed {self.seed}"


def table_seeds(table: Table, quick: bool, seeds: int | None = None) -> int:
    """--seeds, else 1 (quick) or the table's own full-run seeds (3 unless the table says otherwise)."""
    return int(seeds) if seeds is not None else (1 if quick else (table.seeds or 3))


def table_cells(table: Table, seeds: int | None, quick: bool, epochs: int | None = None) -> list:
    rows = [r for r in table.rows if not quick or r.key in table.quick_rows]
    cols = [c for c in table.columns if not quick or c.key in table.quick_columns]
    n = table_seeds(table, quick, seeds)
    return [Cell(table, r, c, s, cell_config(table, r, c, s, quick, epochs)) for r in rows for c in cols
            if table.runs(r, c) for s in range(n)]


def run_cell(kind: str, cfg_dict: dict) -> dict:
    """Train one cell (a fresh process or this one) and return its result record."""
    cfg = TrainConfig.from_dict(cfg_dict)
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        rec = _train(kind, cfg)
    except (ValueError, TrainingDiverged) as e:   # a run that diverged (a non-finite loss or width): a finding, recorded as such
        nan = float("nan")
        rec = {"test_acc": nan, "W": nan, "S": nan, "T": nan, "bit_budget": nan, "epochs": cfg.epochs,
               "diverged": str(e)}
    rec["time_s"] = time.perf_counter() - t0
    rec["cpu_s"] = time.process_time() - c0   # core-seconds (all threads): the cost on a quiet machine
    return rec


def _train(kind: str, cfg: TrainConfig) -> dict:
    if kind == "ann":
        from .ann import train_ann
        return train_ann(cfg)
    from ..train import Trainer
    with tempfile.TemporaryDirectory(prefix="refsnn-ablate-") as tmp:
        tr = Trainer(cfg.replace(out_dir=tmp))
        tr.fit()
    last = tr.history[-1]
    rec = {k: last[k] for k in ("test_acc", "W", "S", "T", "bit_budget")}
    # the history keeps raw units (refsnn.report); the ablation tables print MB and G
    rec["size_mb"] = last["size_bytes"] / 1e6
    rec["s_ace_g"] = last["s_ace"] / 1e9
    rec["epochs"] = cfg.epochs
    return rec


class CellStore:
    """Finished cells as JSON files in ``root``; a cell is found by its settings hash and seed."""

    def __init__(self, root):
        self.root = Path(root)

    def find(self, cell: Cell) -> dict | None:
        for path in sorted(self.root.glob(f"*_s{cell.seed}_{cell.hash}.json")):
            return json.loads(path.read_text())
        return None

    def put(self, cell: Cell, result: dict) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        rec = {"table": cell.table.number, "row": cell.row.key, "column": cell.variant.key, "seed": cell.seed,
               "kind": cell.variant.kind, "hash": cell.hash, "result": result, "config": cell.config.to_dict()}
        path = self.root / f"{cell.name}.json"
        atomic_write_text(path, json.dumps(rec, indent=1, default=json_default))
        return path


def _init_worker() -> None:
    import numba
    numba.set_num_threads(1)   # one core per job


def run_cells(cells: list, store: CellStore, jobs: int = 1, stream=None) -> dict:
    """Run every cell not in ``store``; returns {cell.name: result} for all cells (stored or new)."""
    stream = stream if stream is not None else sys.stderr
    results, todo, seen = {}, [], {}
    for c in cells:
        got = store.find(c)
        if got is not None:
            results[c.name] = got["result"]
        elif (c.hash, c.seed) in seen:
            seen[(c.hash, c.seed)].append(c)
        else:
            seen[(c.hash, c.seed)] = [c]
            todo.append(c)
    done_before = len(cells) - sum(len(v) for v in seen.values())
    print(f"refsnn ablate: {len(cells)} cells, {done_before} already stored in {store.root}, "
          f"{len(todo)} to run ({jobs} job{'s' if jobs > 1 else ''})", file=stream, flush=True)
    t0, durations = time.perf_counter(), []

    def finish(c, res, k):
        store.put(c, res)
        for same in seen[(c.hash, c.seed)]:
            results[same.name] = res
            if same is not c:
                store.put(same, res)
        durations.append(res["time_s"])
        left = (len(todo) - k) * (sum(durations) / len(durations)) / max(jobs, 1)
        print(f"[{k}/{len(todo)}] {c.label()}: {100 * res['test_acc']:.2f} %  W/S/T {res['W']:.2f}/{res['S']:.2f}/"
              f"{res['T']:.2f}  {res['time_s']:.1f} s   elapsed {time.perf_counter() - t0:.0f} s, "
              f"about {left:.0f} s left", file=stream, flush=True)

    if jobs <= 1:
        for k, c in enumerate(todo, 1):
            finish(c, run_cell(c.variant.kind, c.config.to_dict()), k)
    else:
        from concurrent.futures import ProcessPoolExecutor, as_completed
        with ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker) as ex:
            futs = {ex.submit(run_cell, c.variant.kind, c.config.to_dict()): c for c in todo}
            for k, f in enumerate(as_completed(futs), 1):
                finish(futs[f], f.result(), k)
    return results
