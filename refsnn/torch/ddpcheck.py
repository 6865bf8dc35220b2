"""A self-check of data-parallel training (docs/method.md §16): ``python -m refsnn.torch.ddpcheck [--nproc N]``.

Trains a tiny model on a few digits for two short epochs (float64) with widths forced to change
before each epoch, so that the LSQ initialisation and both kinds of observers fire (Alg. 1-2),
once in N processes (DDP, gloo on CPU) and once in a single process on the same global batches.
The cases (``CASES``):

* ``tiny_resnet``: both BN settings (per-rank statistics and BN over the global batch);
* ``tiny_spikformer``: squeeze mode, SSA's shared T, token BN; BN over the global batch
  (``GlobalTokenBatchNorm``).  Its BN biases start at 0.01 instead of 0 (``bn_bias``): a BN output feeds
  a neuron directly there, and at bias 0 a token whose value equals its feature's batch mean in exact
  arithmetic (the values lie on a lattice after a quantized layer; every seed tried has one at the first
  step) gives a neuron input of +-1e-16 at the clip bound 0 of Eq. 20, so the sign of a rounding error
  (the global mean summed over 2 ranks or over one batch) decides the gradient mask, and the runs part
  (docs/golden.md 6.10's problem; tiny_resnet's neurons sit after a ReLU and see exact zeros instead);
* ``tiny_resnet_seq``: tiny_resnet in sequential mode on the event digits, configured as
  refsnn/configs/demo_events.toml (T = 4 fixed, 2 channels, stem stride 2); BN over the global batch.

For each case and BN setting it checks:

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
_DIGITS = {"name": "digits", "batch_size": 16, "train_subset": 32, "test_subset": 16}
#: per case: the config's model, method and data sections, the BN settings checked, and the widths set before
#: epoch 1 and before epoch 2: (layer, parameter, index or None, value)
CASES = {
    "tiny_resnet": {
        "model": {"name": "tiny_resnet"}, "data": _DIGITS, "sync_bn": (False, True),
        "forced": {1: (("stem", "spike_width", 0, 3.2), ("layer1.0.conv1", "weight_width", None, 2.8)),
                   2: (("layer2.0.conv1", "spike_width", 1, 2.3), ("fc", "weight_width", None, 3.3))}},
    "tiny_spikformer": {
        "model": {"name": "tiny_spikformer"}, "data": {**_DIGITS, "batch_size": 8, "train_subset": 16},
        "sync_bn": (True,), "bn_bias": 0.01,
        "forced": {1: (("sps.conv0", "spike_width", 0, 3.2), ("blocks.0.attn.qkv", "weight_width", None, 2.8)),
                   2: (("blocks.0.attn.k_neuron", "spike_width", 1, 2.3), ("head", "weight_width", None, 3.3))}},
    "tiny_resnet_seq": {
        "model": {"name": "tiny_resnet", "input_neuron": True, "options": {"in_channels": 2, "stem_stride": 2}},
        "method": {"temporal_mode": "sequential", "time_steps": 4.0, "time_bound": 4, "learn_time": False},
        "data": {"name": "event_digits", "batch_size": 8, "train_subset": 16, "test_subset": 8,
                 "options": {"T": 4}},
        "sync_bn": (True,),
        "forced": {1: (("stem", "spike_width", 0, 3.2), ("layer1.0.conv1", "weight_width", None, 2.8)),
                   2: (("layer2.0.conv1", "spike_width", 3, 2.3), ("fc", "weight_width", None, 3.3))}},
}


def config(out_dir: str, case: str = "tiny_resnet") -> TrainConfig:
    c = CASES[case]
    d = {"epochs": 2, "seed": c.get("seed", 0), "dtype": "float64", "out_dir": out_dir, "progress": "none", "plots": False,
         "checkpoint_every": 0, "model": c["model"], "renewal": {"mode": "both", "min_epochs": 5, "K": 20},
         "data": c["data"]}
    if "method" in c:
        d["method"] = c["method"]
    return TrainConfig.from_dict(d)


def _force(tr: TorchTrainer, case: str, epoch: int) -> None:
    layers = dict(tr.layers)
    with torch.no_grad():
        for name, pname, idx, value in CASES[case]["forced"][epoch]:
            p = getattr(layers[name], pname)
            if idx is None:
                p.fill_(value)
            else:
                p[idx] = value


def _shift_bn(model, bias) -> None:
    """Set every BN bias to ``bias`` (None: leave them at 0), on every rank and in the single process alike."""
    if bias is None:
        return
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)) and m.bias is not None:
                m.bias.fill_(bias)


def train(out_dir: str, sync_bn: bool, case: str = "tiny_resnet") -> dict:
    """Train the check's run in this process (one rank of a group, or alone); the final state and events."""
    tr = TorchTrainer(config(out_dir, case), sync_bn=sync_bn, progress="none")
    _shift_bn(tr.model, CASES[case].get("bn_bias"))
    for epoch in (1, 2):
        _force(tr, case, epoch)
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


def _runs(cases) -> list:
    """(case, sync_bn) of every run the check makes."""
    return [(case, sync) for case in cases for sync in CASES[case]["sync_bn"]]


def _tag(case: str, sync: bool) -> str:
    return f"{case}-sync{int(sync)}"


def _worker(rank: int, world: int, port: int, out: str, cases: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        for case, sync in _runs(cases):
            res = train(str(Path(out) / f"run-{_tag(case, sync)}"), sync, case)
            _save(res, Path(out) / f"rank{rank}-{_tag(case, sync)}")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(nproc: int = 2, out: str | None = None, cases: tuple = ("tiny_resnet",)) -> dict:
    """Run the check on ``cases`` in one group of ``nproc`` processes:
    ``{case: {"ranks": {sync: [result per rank]}, "single": {True: result}}}``."""
    unknown = [c for c in cases if c not in CASES]
    if unknown or not cases:
        raise ValueError(f"ddpcheck.run: cases must be a non-empty tuple of {sorted(CASES)}, got {cases!r}")
    out = out or tempfile.mkdtemp(prefix="refsnn-ddpcheck-")
    torch.multiprocessing.spawn(_worker, args=(nproc, _free_port(), out, tuple(cases)), nprocs=nproc, join=True)
    res = {case: {"ranks": {}, "single": {}} for case in cases}
    for case, sync in _runs(cases):
        res[case]["ranks"][sync] = [_load(Path(out) / f"rank{r}-{_tag(case, sync)}") for r in range(nproc)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)        # as each rank: the result does not depend on the caller's thread count
    try:
        for case in cases:
            # BN over the global batch = one process's BN
            res[case]["single"][True] = train(str(Path(out) / f"single-{_tag(case, True)}"), True, case)
    finally:
        torch.set_num_threads(threads)
    return res


def compare(res: dict) -> list:
    """The differences the check found in one case's result ``run(...)[case]`` (empty: passed)."""
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
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    args = ap.parse_args(argv)
    res = run(args.nproc, cases=tuple(args.cases.split(",")))
    failed = False
    for case, r in res.items():
        problems = compare(r)
        failed = failed or bool(problems)
        for p in problems:
            print("FAIL", case, p)
        print(f"{'PASS' if not problems else 'FAIL'} {case}: {args.nproc} ranks, {r['ranks'][True][0]['steps']} steps, "
              f"{len(r['ranks'][True][0]['events'])} renewal events; ranks identical, DDP (global BN) = single "
              f"process within {TOL:g}")
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
