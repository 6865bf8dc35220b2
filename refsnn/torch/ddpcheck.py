"""A self-check of data-parallel training (docs/method.md §16): ``python -m refsnn.torch.ddpcheck [--nproc N]``.

Trains tiny_resnet on a few digits for two short epochs (float64) with widths forced to change
before each epoch, so that the LSQ initialisation and both kinds of observers fire (Alg. 1-2),
once in N processes (DDP, gloo on CPU) and once in a single process on the same global batches.
It runs both BN settings (per-rank statistics and BN over the global batch) and checks:

* every rank ends with identical parameters, thresholds, steps, widths and observer states
  (BN running statistics are per rank by design without ``sync_bn``);
* with ``sync_bn`` the N-process run equals the single-process run within ``TOL``
  (relative to each array's size), renewal events included.

The tests run it with N = 2; on a GPU machine it checks a real setup the same way.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..config import TrainConfig
from .layers import spiking_layers
from .models import state_to_numpy
from .train import TorchTrainer

TOL = 1e-9
#: widths set before epoch 1 and before epoch 2: (layer, parameter, index or None, value)
FORCED = {1: (("stem", "spike_width", 0, 3.2), ("layer1.0.conv1", "weight_width", None, 2.8)),
          2: (("layer2.0.conv1", "spike_width", 1, 2.3), ("fc", "weight_width", None, 3.3))}


def config(out_dir: str) -> TrainConfig:
    return TrainConfig.from_dict({
        "epochs": 2, "seed": 0, "dtype": "float64", "out_dir": out_dir, "progress": "none", "plots": False,
        "checkpoint_every": 0, "model": {"name": "tiny_resnet"},
        "renewal": {"mode": "both", "min_epochs": 5, "K": 20},
        "data": {"name": "digits", "batch_size": 16, "train_subset": 32, "test_subset": 16}})


def _force(tr: TorchTrainer, epoch: int) -> None:
    layers = dict(tr.layers)
    with torch.no_grad():
        for name, pname, idx, value in FORCED[epoch]:
            p = getattr(layers[name], pname)
            if idx is None:
                p.fill_(value)
            else:
                p[idx] = value


def train(out_dir: str, sync_bn: bool) -> dict:
    """Train the check's run in this process (one rank of a group, or alone); the final state and events."""
    tr = TorchTrainer(config(out_dir), sync_bn=sync_bn, progress="none")
    for epoch in (1, 2):
        _force(tr, epoch)
        tr.fit(until=epoch)
    state = state_to_numpy(tr.model)
    events = [e for rec in tr.history for e in rec["renewal_events"]]
    widths = {name: list(l.width_values()) for name, l in spiking_layers(tr.model)}
    return {"state": state, "events": events, "widths": widths, "steps": tr.steps}


def _save(res: dict, path: Path) -> None:
    np.savez(path.with_suffix(".npz"), **res["state"])
    path.with_suffix(".json").write_text(json.dumps({k: res[k] for k in ("events", "widths", "steps")}))


def _load(path: Path) -> dict:
    with np.load(path.with_suffix(".npz")) as z:
        res = {"state": {k: z[k] for k in z.files}}
    res.update(json.loads(path.with_suffix(".json").read_text()))
    return res


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        for sync in (False, True):
            _save(train(str(Path(out) / f"run-sync{int(sync)}"), sync), Path(out) / f"rank{rank}-sync{int(sync)}")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(nproc: int = 2, out: str | None = None) -> dict:
    """Run the check; ``{"ranks": {sync: [result per rank]}, "single": {sync: result}}``."""
    out = out or tempfile.mkdtemp(prefix="refsnn-ddpcheck-")
    torch.multiprocessing.spawn(_worker, args=(nproc, _free_port(), out), nprocs=nproc, join=True)
    ranks = {s: [_load(Path(out) / f"rank{r}-sync{int(s)}") for r in range(nproc)] for s in (False, True)}
    single = {True: train(str(Path(out) / "single-sync1"), True)}   # BN over the global batch = one process's BN
    return {"ranks": ranks, "single": single}


def compare(res: dict) -> list:
    """The differences the check found (empty: passed)."""
    problems = []
    for sync, rows in res["ranks"].items():
        first = rows[0]
        for r, other in enumerate(rows[1:], start=1):
            for k, v in first["state"].items():
                per_rank_bn = not sync and (k.endswith("running_mean") or k.endswith("running_var"))
                if not per_rank_bn and not np.array_equal(v, other["state"][k]):
                    problems.append(f"sync_bn={sync}: {k} differs between rank 0 and rank {r}")
            for key in ("events", "widths", "steps"):
                if first[key] != other[key]:
                    problems.append(f"sync_bn={sync}: {key} differ between rank 0 and rank {r}")
    for sync, single in res["single"].items():
        dp = res["ranks"][sync][0]
        for k, v in single["state"].items():
            a, b = np.asarray(v, np.float64), np.asarray(dp["state"][k], np.float64)
            scale = max(1.0, float(np.max(np.abs(a[np.isfinite(a)])))) if np.isfinite(a).any() else 1.0
            same_inf = np.array_equal(np.isfinite(a), np.isfinite(b)) and np.array_equal(a[~np.isfinite(a)],
                                                                                          b[~np.isfinite(b)])
            if not same_inf or np.max(np.abs(a[np.isfinite(a)] - b[np.isfinite(b)]), initial=0.0) > TOL * scale:
                problems.append(f"sync_bn={sync}: {k} of the DDP run differs from the single-process run")
        if [e["kind"] for e in single["events"]] != [e["kind"] for e in dp["events"]] \
                or single["widths"] != dp["widths"] or single["steps"] != dp["steps"]:
            problems.append(f"sync_bn={sync}: renewal events, widths or step counts differ from the single process")
        for e1, e2 in zip(single["events"], dp["events"]):
            if abs(e1["step"] - e2["step"]) > TOL * max(1.0, abs(e1["step"])):
                problems.append(f"sync_bn={sync}: renewed step {e1} differs from {e2}")
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m refsnn.torch.ddpcheck", description=__doc__.split("\n")[0])
    ap.add_argument("--nproc", type=int, default=2)
    args = ap.parse_args(argv)
    res = run(args.nproc)
    problems = compare(res)
    n_events = len(res["ranks"][True][0]["events"])
    for p in problems:
        print("FAIL", p)
    print(f"{'PASS' if not problems else 'FAIL'}: {args.nproc} ranks, {res['ranks'][True][0]['steps']} steps, "
          f"{n_events} renewal events; ranks identical, DDP (global BN) = single process within {TOL:g}")
    return 0 if not problems else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
