"""Training with the port: Algorithm A.1 from the same TOML configs, on one device or data-parallel (docs/method.md §16).

    python -m refsnn.torch.train --config FILE [--device cuda] [--sync-bn] [--resume CKPT]
    refsnn-torch [train] --config FILE ...
    torchrun --nproc_per_node N -m refsnn.torch.train --config FILE ...     (DistributedDataParallel)

``TorchTrainer`` is ``refsnn.train.Trainer`` with the model, the optimizer and the batches in
torch: the epoch loop, the switching-off rule, the history files, the figures and the report
are refsnn's own code.  Data parallelism:

* one process per device (``torchrun`` sets RANK / WORLD_SIZE / LOCAL_RANK); backend nccl when
  the device is CUDA, gloo on CPU; the model is wrapped in ``DistributedDataParallel``;
* ``[data] batch_size`` is the **global** batch: each rank gets ``batch_size / N`` samples of it
  through a ``DistributedSampler`` (seeded by ``seed``, re-shuffled per epoch), so N ranks step
  like one process on the same global batch;
* the observers and the LSQ initialisation reduce over the ranks (``refsnn.torch.renewal``), so
  every rank renews to the same steps; BN keeps per-rank statistics (DDP's default) or, with
  ``--sync-bn``, normalises over the global batch (``refsnn.torch.syncbn``, CPU and GPU);
* evaluation is sharded and all-reduced; only rank 0 writes history, checkpoints and figures.

Checkpoints are refsnn's format (``refsnn.torch.checkpoint``): ``--resume`` takes one written by
refsnn or by the port.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..config import ConfigError, TrainConfig, load_config
from ..method.regulate import Penalties, Targets, counted
from ..checkpoint import resume_changes
from ..report import Progress
from ..train import Trainer, build_datasets, build_model, build_schedule
from . import checkpoint as ckpt
from .layers import spiking_layers
from .models import from_refsnn
from .optim import OPTIMIZERS, clamp_steps, param_groups, parameter_kinds
from .syncbn import convert_global_batchnorm
from .regulate import model_costs, regulating_loss

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _rank_world() -> tuple:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ArrayDataset(torch.utils.data.Dataset):
    """A refsnn ``Dataset`` (arrays x, y in memory) for torch's DataLoader."""

    def __init__(self, ds):
        self.x, self.y = ds.x, ds.y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class TorchTrainer(Trainer):
    """``refsnn.train.Trainer`` on torch (see the module docstring); ``sync_bn``: BN over the global batch."""

    def __init__(self, config: TrainConfig, device=None, sync_bn: bool = False, progress: str | None = None,
                 stream=None):
        config.validate()
        self.config = cfg = config
        self.rank, self.world = _rank_world()
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dtype = DTYPES[cfg.dtype]
        self.train_set, self.test_set = build_datasets(cfg)
        self.input_shape = tuple(self.train_set.x.shape[1:])
        # the refsnn model of the config (seeded initial weights), mirrored into torch
        self.model = from_refsnn(build_model(cfg, self.train_set.classes), device=self.device)
        if sync_bn:
            # BN over the global batch (any device; refsnn.torch.syncbn); per-rank BN otherwise
            convert_global_batchnorm(self.model)
        self.layers = spiking_layers(self.model)
        for _, layer in self.layers:
            layer.ranks = self.world   # the LSQ scale counts the elements of the global batch
        self.net = self.model
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # buffers are not broadcast: the observers agree by their reductions, BN keeps per-rank statistics
            with warnings.catch_warnings():  # torch 2.13 deprecates the name; its advice is to keep it for rank-local buffers
                warnings.simplefilter("ignore", FutureWarning)
                self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids, broadcast_buffers=False)
        self.optimizer = self._build_optimizer()
        self.steps = 0
        if cfg.data.batch_size % self.world:
            raise ConfigError(f"[data] batch_size = {cfg.data.batch_size} is the global batch; it must be divisible "
                              f"by the number of processes ({self.world})")
        self.local_batch = cfg.data.batch_size // self.world
        self.sampler = torch.utils.data.DistributedSampler(ArrayDataset(self.train_set), num_replicas=self.world,
                                                           rank=self.rank, shuffle=cfg.data.shuffle, seed=cfg.seed,
                                                           drop_last=cfg.data.drop_last)
        self.loader = torch.utils.data.DataLoader(ArrayDataset(self.train_set), batch_size=self.local_batch,
                                                  sampler=self.sampler, drop_last=cfg.data.drop_last)
        if len(self.loader) == 0:
            raise ConfigError(f"[data] batch_size = {cfg.data.batch_size} with drop_last = true leaves no batch")
        # the dataset's augmentation (CIFAR: crop + flip), applied per local batch with an rng of (seed, epoch, batch,
        # rank) -- refsnn.data.DataLoader's rule with the rank added
        self.augment = None if cfg.data.augment == "off" else self.train_set.augment
        self.schedule = build_schedule(cfg, self.optimizer, len(self.loader))
        self.targets = Targets(cfg.regulate.W, cfg.regulate.S, cfg.regulate.T)
        self.penalties = Penalties(cfg.regulate.lam_w, cfg.regulate.lam_s, cfg.regulate.lam_T)
        self.regulate = cfg.regulate.enabled and any(counted(l, cfg.regulate.count_time_only) for _, l in self.layers)
        self.epoch = 0
        self.history = []
        self.progress = Progress((progress or cfg.progress) if self.rank == 0 else "none", stream)
        self.out_dir = Path(cfg.out_dir)
        self.initial = self.costs().as_dict()
        self.initial.pop("layers")

    def _build_optimizer(self):
        o = self.config.optim
        groups = param_groups(self.model, lr=o.lr, weight_decay=o.weight_decay)
        if o.name == "sgd":
            return OPTIMIZERS["sgd"](groups, lr=0.0, momentum=o.momentum, nesterov=o.nesterov)
        return OPTIMIZERS["adam"](groups, lr=0.0, betas=tuple(o.betas), eps=o.eps)

    # -- one epoch --------------------------------------------------------------------------
    def _batch(self, xb, yb) -> tuple:
        return (xb.to(device=self.device, dtype=self.dtype), yb.to(device=self.device, dtype=torch.int64))

    def train_epoch(self) -> dict:
        """Alg. A.1's inner loop over this rank's shard of every global batch."""
        cfg = self.config
        self.net.train()
        self.sampler.set_epoch(self.epoch)
        n = len(self.loader)
        sums = torch.zeros(5, dtype=torch.float64)   # loss, ce, reg (sample-weighted), correct, seen
        events, wst, t0 = [], (None, None, None), time.perf_counter()
        for k, (xb, yb) in enumerate(self.loader):
            if self.augment is not None:
                rng = np.random.default_rng(np.random.SeedSequence(cfg.seed + self.epoch, spawn_key=(k, self.rank)))
                xb = torch.from_numpy(self.augment(xb.numpy(), rng))
            xb, yb = self._batch(xb, yb)
            self._stage = f"step {k + 1}"
            logits, ce, loss, reg_value, avg = self._step(xb, yb)
            if avg is not None:
                wst = (avg["W"], avg["S"], avg["T"])
            self.steps += 1
            if cfg.optim.schedule_unit == "step":
                self.schedule.step()
            for name, layer in self.layers:
                events += [{"batch": k, "layer": name, "kind": kind, "index": int(i), "new_width": int(w),
                            "step": float(s)} for kind, i, w, s in layer.renewal_events]
            b = len(yb)
            sums += torch.tensor([float(loss.detach()) * b, float(ce.detach()) * b, reg_value * b,
                                  float((logits.detach().argmax(1) == yb).sum()), b], dtype=torch.float64)
            self.progress.batch(self.epoch + 1, cfg.epochs, k + 1, n, float(sums[0] / sums[4]), wst, t0)
        if cfg.optim.schedule_unit == "epoch":
            self.schedule.step()
        loss, ce, reg, correct, seen = self._all_sum(sums).tolist()
        seen = max(seen, 1)
        return {"train_loss": loss / seen, "train_ce": ce / seen, "train_reg": reg / seen, "train_acc": correct / seen,
                "renewal_events": events, "renewals_spike": sum(e["kind"] == "spike" for e in events),
                "renewals_weight": sum(e["kind"] == "weight" for e in events)}

    def _step(self, xb, yb) -> tuple:
        """One step of Alg. A.1 on this rank's shard: (logits, cross-entropy, loss, Eq. 21 value, W/S/T or None);
        non-finite logits, loss or parameters raise ``refsnn.errors.TrainingDiverged`` (as refsnn's trainer)."""
        # forward: the layers initialise (first batch) and renew their steps (Alg. 1), reduced over ranks
        logits = self.net(xb)
        if not bool(torch.isfinite(logits.detach()).all()):
            self._diverged("the model's output (logits) is not finite")
        # L_total = cross-entropy + Eq. 21
        ce = nn.functional.cross_entropy(logits, yb)
        loss, reg_value, avg = ce, 0.0, None
        if self.regulate:
            reg, avg = regulating_loss([l for _, l in self.layers], self.targets, self.penalties,
                                       self.config.regulate.count_time_only)
            loss, reg_value = ce + reg, float(reg.detach())
        if not bool(torch.isfinite(loss.detach()).all()):
            self._diverged(f"the loss is {float(loss.detach())}")
        self.optimizer.zero_grad()
        loss.backward()            # DDP averages the gradients over the ranks
        self.optimizer.step()
        clamp_steps(self.optimizer)
        self._check_parameters()
        return logits, ce, loss, reg_value, avg

    def _check_parameters(self) -> None:
        """After an optimizer step: every parameter finite, else ``TrainingDiverged`` (refsnn's rule)."""
        kinds = {name: kind for name, _, kind in parameter_kinds(self.model)}
        for name, p in self.model.named_parameters():
            if not bool(torch.isfinite(p.detach()).all()):
                self._diverged(f"parameter {name} ({kinds.get(name, '?')}) is not finite after the optimizer step")

    def _all_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            t = t.to(self.device)
            dist.all_reduce(t)
        return t.cpu()

    def evaluate(self, loader=None) -> tuple:
        """(mean cross-entropy, accuracy) on the test set; each rank takes every N-th sample, sums all-reduced."""
        ds = self.test_set
        idx = np.arange(self.rank, len(ds), self.world)
        bs = self.config.data.test_batch_size
        self.model.eval()
        sums = torch.zeros(3, dtype=torch.float64)
        try:
            with torch.no_grad():
                for j in range(0, len(idx), bs):
                    xb, yb = self._batch(torch.from_numpy(ds.x[idx[j:j + bs]]), torch.from_numpy(ds.y[idx[j:j + bs]]))
                    logits = self.model(xb)
                    sums += torch.tensor([float(nn.functional.cross_entropy(logits, yb, reduction="sum")),
                                          float((logits.argmax(1) == yb).sum()), len(yb)], dtype=torch.float64)
        finally:
            self.model.train()
        loss, correct, seen = self._all_sum(sums).tolist()
        return loss / max(seen, 1), correct / max(seen, 1)

    def costs(self):
        return model_costs(self.model, self.input_shape)

    # -- outputs: rank 0 only ----------------------------------------------------------------------
    def writes_outputs(self) -> bool:
        return self.rank == 0

    def write_history(self) -> None:
        if self.rank == 0:
            super().write_history()

    def draw_figures(self) -> list:
        return super().draw_figures() if self.rank == 0 else []

    def save_checkpoint(self, path):
        """refsnn's checkpoint format (readable by ``refsnn eval`` / ``refsnn train --resume``); rank 0 writes."""
        return ckpt.save(self, path) if self.rank == 0 else None

    @classmethod
    def from_checkpoint(cls, path, epochs=None, out_dir=None, progress=None, stream=None, device=None,
                        sync_bn=False, **config_changes) -> "TorchTrainer":
        """Continue a run from a refsnn-format checkpoint (written by refsnn or by the port)."""
        return ckpt.rebuild(cls, path, dict(config_changes, epochs=epochs, out_dir=out_dir), device=device,
                            sync_bn=sync_bn, progress=progress, stream=stream)


def setup_distributed(device_arg: str | None) -> torch.device:
    """Join the process group torchrun describes (if any); the device of this rank."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    want_cuda = device_arg == "cuda" or (device_arg is None and torch.cuda.is_available())
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if want_cuda else "gloo")
    if want_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device(device_arg or "cpu")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="refsnn-torch", description="Train with the PyTorch port of refsnn "
                                 "(Algorithm A.1) from a refsnn TOML config; data-parallel under torchrun.")
    ap.add_argument("--config", default=None, help="a refsnn TOML config (refsnn/configs/*.toml); with --resume "
                                                   "optional, and it must agree with the checkpoint's (refsnn's "
                                                   "resume rule: only epochs, out_dir, progress, ... may change)")
    ap.add_argument("--device", default=None, help="cpu, cuda (default: cuda if available); under torchrun the "
                                                     "rank's local GPU")
    ap.add_argument("--sync-bn", action="store_true",
                    help="BN over the global batch of all ranks (default: per-rank BN statistics)")
    ap.add_argument("--resume", default=None, help="continue from a checkpoint (.npz; refsnn's or the port's)")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--out-dir", default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:   # refsnn-torch train --config FILE
        argv = argv[1:]
    args = ap.parse_args(argv)
    if not (args.config or args.resume):
        ap.error("give --config FILE (a new run) or --resume CHECKPOINT (and optionally --config)")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = setup_distributed(args.device)
        if args.resume:
            changes = resume_changes(args.resume, load_config(args.config), args.config) if args.config else {}
            changes.update({k: v for k, v in (("epochs", args.epochs), ("out_dir", args.out_dir)) if v is not None})
            tr = TorchTrainer.from_checkpoint(args.resume, device=device, sync_bn=args.sync_bn, **changes)
        else:
            cfg = load_config(args.config)
            changes = {k: v for k, v in (("epochs", args.epochs), ("out_dir", args.out_dir)) if v is not None}
            tr = TorchTrainer(cfg.replace(**changes) if changes else cfg, device=device, sync_bn=args.sync_bn)
        tr.fit()
        if tr.rank == 0:
            print(tr.final_report())
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"refsnn-torch: error: {e}", file=sys.stderr)
        return 2
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
