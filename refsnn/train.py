"""Training: Algorithm A.1 of the paper (docs/method.md §11).

    initialise widths (e.g. 4/4/2); steps by the LSQ rule at the first training batch   (inside the layers)
    for epoch:
        for batch:
            forward            (observers renew steps where widths changed, while renewal is on; Alg. 1-2)
            L_total = cross-entropy + Eq. 21
            backward; SGD step (momentum 0.9, weight decay on weights only, lr per parameter kind); cosine schedule
        check the switching-off rule (docs/method.md §9), per kind; evaluate;
        log W/S/T, Bit Budget, S-ACE, S-ACE*, size, accuracy

``Trainer`` holds everything of one run: the model, the optimizer, the schedule,
the loaders, the history and the epoch counter.  Its whole state is written by
``save_checkpoint`` and read back by ``Trainer.from_checkpoint`` (both in
``refsnn.checkpoint``, which also says why a resumed run continues bit-identically);
what the run prints and the history files come from ``refsnn.report``.

Output files in ``out_dir``: ``history.json``, ``history.csv`` (``refsnn.report``),
``checkpoint.npz`` + ``checkpoint.json`` (and ``checkpoint_epochNNN.*`` with
``keep_checkpoints``; ``refsnn.checkpoint``), figures ``*.png`` (``refsnn.plots``), and while a run is
alive its lock ``.refsnn.lock`` (``refsnn.rundir``).
"""
from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path

import numpy as np

from . import functional as F
from .autograd.tensor import Tensor, no_grad
from .checkpoint import load_checkpoint, restore, run_config, save_checkpoint
from .config import ConfigError, TrainConfig
from .data import DataLoader, Dataset, get_dataset
from .errors import RefsnnError, RunInterrupted, TrainingDiverged, is_interrupt
from .method.regulate import Penalties, Targets, counted, model_averages, regulating_loss
from .method.renewal import should_switch_off, should_switch_off_release
from .nn import spiking_layers
from .optim import OPTIMIZERS, ConstantSchedule, CosineSchedule, param_groups
from .report import Progress, final_table, format_banner, format_epoch, write_history
from .rundir import RunLock, check_overwrite

#: how the layers and kernels word a check that failed on inf or NaN
NON_FINITE = re.compile(r"finite|NaN|\binf\b")
#: the switching-off rule per kind: (kind, model average it watches, the layers' buffer)
RENEWAL_KINDS = (("weight", "W", "renew_weight"), ("spike", "S", "renew_spike"))


# ---------------------------------------------------------------------------------------------
# Building the pieces from a TrainConfig
# ---------------------------------------------------------------------------------------------
def _subset(ds: Dataset, n: int, seed: int = 0) -> Dataset:
    """A fixed subset of ``n`` samples (a permutation by ``seed``, kept in the original order)."""
    if n <= 0 or n >= len(ds):
        return ds
    idx = np.sort(np.random.default_rng(seed).permutation(len(ds))[:n])
    return Dataset(x=ds.x[idx], y=ds.y[idx], classes=ds.classes, name=f"{ds.name}[{n}]", augment=ds.augment,
                   class_names=ds.class_names)


def build_datasets(cfg: TrainConfig) -> tuple:
    """(train, test) Datasets of ``cfg.data`` in the run's dtype."""
    d = cfg.data
    if d.name == "imagenet":
        raise ConfigError("[data] name = 'imagenet': refsnn.data has no ImageNet reader yet; this configuration "
                          "validates and documents the paper's settings but cannot be trained")
    kw = dict(d.options)
    kw["dtype"] = cfg.np_dtype
    root = d.root or None
    out = []
    for split in ("train", "test"):
        skw = dict(kw)
        if d.augment == "on":
            if d.name not in ("cifar10", "cifar100"):
                raise ConfigError(f"[data] augment = 'on': dataset {d.name!r} has no augmentation "
                                  "(only cifar10/cifar100 do); use 'auto' or 'off'")
            skw["augment"] = split == "train"
        try:
            ds = get_dataset(d.name, root=root, split=split, **skw)
        except TypeError as e:
            raise ConfigError(f"[data.options] {e}") from None
        except ValueError as e:
            raise ConfigError(f"[data] {e}") from None
        out.append(_subset(ds, d.train_subset if split == "train" else d.test_subset))
    return tuple(out)


def build_model(cfg: TrainConfig, num_classes: int):
    """``refsnn.models.get_model`` with the run's SpikingConfig, per-layer overrides, seed and dtype."""
    from .models import get_model
    m = cfg.model
    kw = {"num_classes": num_classes, **m.options}
    try:
        return get_model(m.name, config=cfg.spiking_config(), layer_configs=cfg.method.layers or None,
                         input_neuron=m.input_neuron, seed=cfg.seed, dtype=cfg.np_dtype, **kw)
    except TypeError as e:
        raise ConfigError(f"[model] / [model.options]: {e}") from None
    except ValueError as e:
        raise ConfigError(f"[model] / [method.layers]: {e}") from None


def build_optimizer(cfg: TrainConfig, model):
    o = cfg.optim
    groups = param_groups(model, lr=o.lr, weight_decay=o.weight_decay)
    if o.name == "sgd":
        return OPTIMIZERS["sgd"](groups, momentum=o.momentum, nesterov=o.nesterov)
    return OPTIMIZERS["adam"](groups, betas=tuple(o.betas), eps=o.eps)


def build_schedule(cfg: TrainConfig, optimizer, steps_per_epoch: int):
    o = cfg.optim
    total = cfg.epochs * (steps_per_epoch if o.schedule_unit == "step" else 1)
    if o.schedule == "constant":
        return ConstantSchedule(optimizer, max(total, 1))
    if o.warmup >= total:
        raise ConfigError(f"warmup in [optim] = {o.warmup}: must be below the total number of "
                          f"{o.schedule_unit}s ({total})")
    return CosineSchedule(optimizer, total, warmup=o.warmup, min_factor=o.min_lr_factor)


# ---------------------------------------------------------------------------------------------
# The trainer
# ---------------------------------------------------------------------------------------------
class Trainer:
    """One run of Algorithm A.1; see the module docstring."""

    #: (path, epoch) of the last checkpoint written or resumed from (named when a run diverges or is interrupted)
    last_checkpoint = None
    # where the run is, for the messages of TrainingDiverged and RunInterrupted
    _stage_epoch, _stage = 1, "before the first step"

    def __init__(self, config: TrainConfig, progress: str | None = None, stream=None):
        config.validate()
        self.config = cfg = config
        self.train_set, self.test_set = build_datasets(cfg)
        self.input_shape = tuple(self.train_set.x.shape[1:])
        self.model = build_model(cfg, self.train_set.classes)
        _check_input_channels(cfg, self.model, self.input_shape)
        self.layers = spiking_layers(self.model)
        self.optimizer = build_optimizer(cfg, self.model)
        self.loader = DataLoader(self.train_set, cfg.data.batch_size, shuffle=cfg.data.shuffle, seed=cfg.seed,
                                 drop_last=cfg.data.drop_last, augment=False if cfg.data.augment == "off" else None)
        if len(self.loader) == 0:
            raise ConfigError(f"[data] batch_size = {cfg.data.batch_size} with drop_last = true leaves no batch of "
                              f"the {len(self.train_set)} training samples")
        self.test_loader = DataLoader(self.test_set, cfg.data.test_batch_size, shuffle=False, augment=False)
        self.schedule = build_schedule(cfg, self.optimizer, len(self.loader))
        self.targets = Targets(cfg.regulate.W, cfg.regulate.S, cfg.regulate.T)
        self.penalties = Penalties(cfg.regulate.lam_w, cfg.regulate.lam_s, cfg.regulate.lam_T)
        self.regulate = cfg.regulate.enabled and any(counted(l, cfg.regulate.count_time_only) for _, l in self.layers)
        self.epoch = 0                 # epochs completed
        self.history: list = []        # one record per completed epoch
        self.progress = Progress(progress or cfg.progress, stream)
        self.out_dir = Path(cfg.out_dir)
        # the averages before training: the reference point of the switching-off rule (docs/method.md §9)
        self.initial = self.costs().as_dict()
        self.initial.pop("layers")

    # -- one epoch ------------------------------------------------------------------------
    def train_epoch(self) -> dict:
        """Train one epoch (Alg. A.1 inner loop); returns the training part of the epoch record."""
        cfg = self.config
        self.model.train()
        self.loader.set_epoch(self.epoch)
        n = len(self.loader)
        sums = {"loss": 0.0, "ce": 0.0, "reg": 0.0, "correct": 0, "seen": 0}
        events = []
        wst = (None, None, None)
        t0 = time.perf_counter()
        for k, (xb, yb) in enumerate(self.loader.batches(0)):
            self._stage = f"step {k + 1}"
            logits, ce, loss, reg_value, avg = self._step(k, xb, yb)
            if avg is not None:
                wst = (avg["W"], avg["S"], avg["T"])
            if cfg.optim.schedule_unit == "step":
                self.schedule.step()
            for name, layer in self.layers:
                for kind, index, width, step in layer.renewal_events:
                    events.append({"batch": k, "layer": name, "kind": kind, "index": int(index),
                                   "new_width": int(width), "step": float(step)})
            b = len(yb)
            sums["loss"] += float(loss.data) * b
            sums["ce"] += float(ce.data) * b
            sums["reg"] += reg_value * b
            sums["correct"] += int((np.argmax(logits.data, axis=1) == yb).sum())
            sums["seen"] += b
            self.progress.batch(self.epoch + 1, cfg.epochs, k + 1, n, sums["loss"] / sums["seen"], wst, t0)
        if cfg.optim.schedule_unit == "epoch":
            self.schedule.step()
        seen = max(sums["seen"], 1)
        return {"train_loss": sums["loss"] / seen, "train_ce": sums["ce"] / seen, "train_reg": sums["reg"] / seen,
                "train_acc": sums["correct"] / seen, "renewal_events": events,
                "renewals_spike": sum(e["kind"] == "spike" for e in events),
                "renewals_weight": sum(e["kind"] == "weight" for e in events)}

    def _step(self, k: int, xb: np.ndarray, yb: np.ndarray) -> tuple:
        """One training step on batch ``k``: (logits, cross-entropy, total loss, Eq. 21 value, W/S/T averages)."""
        # forward: the layers initialise (first batch) and renew their steps (Alg. 1) themselves
        logits = self.model(Tensor(xb))
        if not np.isfinite(logits.data).all():
            self._diverged("the model's output (logits) is not finite")
        # L_total = cross-entropy + Eq. 21
        ce = F.cross_entropy(logits, yb)
        loss, reg_value, avg = ce, 0.0, None
        if self.regulate:
            reg, avg = regulating_loss([l for _, l in self.layers], self.targets, self.penalties,
                                       self.config.regulate.count_time_only)
            loss = ce + reg
            reg_value = float(reg.data)
        if not np.isfinite(loss.data).all():
            self._diverged(f"the loss is {float(loss.data)}")
        # backward; step
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self._check_parameters()
        return logits, ce, loss, reg_value, avg

    def evaluate(self, loader: DataLoader | None = None) -> tuple:
        """(mean cross-entropy, accuracy) on the test set (eval mode: BN running statistics, no observers)."""
        loader = loader or self.test_loader
        self.model.eval()
        loss_sum, correct, seen = 0.0, 0, 0
        try:
            with no_grad():
                for xb, yb in loader.batches(0):
                    logits = self.model(Tensor(xb))
                    loss_sum += float(F.cross_entropy(logits, yb).data) * len(yb)
                    correct += int((np.argmax(logits.data, axis=1) == yb).sum())
                    seen += len(yb)
        finally:
            self.model.train()
        return loss_sum / max(seen, 1), correct / max(seen, 1)

    def costs(self):
        """ModelCost of the current widths (docs/method.md §2, Eq. 7-8, App. A.6)."""
        from .models.costing import model_costs
        return model_costs(self.model, self.input_shape)

    def renewal_on(self, buffer: str) -> bool:
        return any(bool(getattr(l, buffer)) for _, l in self.layers)

    def apply_switch_off(self, cost) -> list:
        """docs/method.md §9: per kind, switch renewal off for good once, after ``min_epochs`` epochs,
        |average - target| < 0.24 |initial average - target| (weight: W, spike: S); ``[renewal] rule = "release"``:
        the authors' signed variant (``refsnn.method.renewal.should_switch_off_release``).  Returns the kinds
        switched off."""
        r = self.config.renewal
        switched = []
        if not r.switch_off:
            return switched
        if r.rule == "release":
            # the release watches the averages of the regulated layers, its initial value is the configured width
            with no_grad():
                avg = model_averages([l for _, l in self.layers], self.config.regulate.count_time_only)
            current = {k: float(v.data) for k, v in avg.items() if v is not None}
            spk = self.config.spiking_config()
            initial = {"W": float(spk.weight_bits), "S": float(spk.spike_bits)}
        for kind, key, buffer in RENEWAL_KINDS:
            if not self.renewal_on(buffer):
                continue
            if r.rule == "release":
                off = should_switch_off_release(self.epoch, r.min_epochs, current[key], initial[key],
                                                getattr(self.targets, key))
            else:
                off = should_switch_off(self.epoch, r.min_epochs, getattr(cost, key), self.initial[key],
                                        getattr(self.targets, key))
            if off:
                for _, layer in self.layers:
                    getattr(layer, buffer)[...] = False
                switched.append(kind)
        return switched

    def fit(self, until: int | None = None, force: bool = False) -> list:
        """Train from the current epoch to ``until`` (default: ``config.epochs``); write checkpoints, history and
        (at the last epoch) figures.  Returns the history.

        The output directory is held for the whole call (``refsnn.rundir.RunLock``: refused while another run
        uses it, and proved writable before the first epoch); a history there that has gone further than this
        run's start is not overwritten unless ``force``.  Ctrl-C raises ``RunInterrupted`` saying which
        checkpoint was kept; non-finite values raise ``TrainingDiverged`` (the epoch, the step, the last good
        checkpoint)."""
        cfg = self.config
        if until is not None and (isinstance(until, bool) or int(until) <= self.epoch):
            raise ConfigError(f"stop after epoch {until!r}: must be an integer above the {self.epoch} epoch(s) "
                              "already done (a later one than epochs just ends the run)")
        until = cfg.epochs if until is None else min(int(until), cfg.epochs)
        writer = self.writes_outputs()
        with RunLock(self.out_dir) if writer else contextlib.nullcontext():
            if writer:
                check_overwrite(self.out_dir, self.epoch, force)
            if self.epoch < until:
                # the start banner, once the checks above passed (an error is then the only message)
                self.progress.message(self.banner())
            try:
                while self.epoch < until:
                    self._fit_epoch(until)
            except ValueError as e:
                # a layer or kernel met inf/NaN although data and parameters were finite: values overflowed
                if NON_FINITE.search(str(e)) and not isinstance(e, RefsnnError):
                    self._diverged(f"a value overflowed ({e})")
                raise
            except BaseException as e:
                if is_interrupt(e) and not isinstance(e, RunInterrupted):
                    raise RunInterrupted(self._interrupted_message()) from None
                raise
            if self.epoch == cfg.epochs and cfg.plots and self.history:
                self.draw_figures()
        return self.history

    def banner(self) -> str:
        """The run's start banner (``refsnn.report.format_banner``): model, data sizes, widths, epochs, output."""
        return format_banner(self.config, len(self.train_set), len(self.test_set), self.input_shape,
                             self.train_set.classes, len(self.loader), done=self.epoch)

    def _fit_epoch(self, until: int) -> None:
        """One epoch of ``fit``: train, switch-off rule, evaluate, record; then checkpoint and history."""
        cfg = self.config
        self._stage_epoch = self.epoch + 1
        t0 = time.perf_counter()
        rec = {"epoch": self.epoch + 1, "lr": self.optimizer.groups[0]["lr"], "lrs": self.optimizer.lrs()}
        rec.update(self.train_epoch())
        self._stage = "the evaluation after its last step"
        self.epoch += 1
        cost = self.costs()
        switched = self.apply_switch_off(cost)
        rec["test_loss"], rec["test_acc"] = self.evaluate()
        cd = cost.as_dict()
        rec.update({k: cd[k] for k in ("W", "S", "T", "bit_budget", "s_ace", "s_ace_star", "size_bytes")})
        rec["renew_spike_on"] = self.renewal_on("renew_spike")
        rec["renew_weight_on"] = self.renewal_on("renew_weight")
        rec["switched_off"] = ",".join(switched)
        rec["layers"] = [{"name": lc.name, "B_w": lc.B_w, "B_s": list(lc.B_s), "T": lc.T, "n_w": lc.n_w,
                          "n_f": lc.n_f, "macs": lc.macs, "spiking": lc.spiking} for lc in cost.layers]
        rec["time_s"] = time.perf_counter() - t0
        self.history.append(rec)
        self.progress.epoch(format_epoch(rec, cfg.epochs))
        # the checkpoint before the history: a kill between them leaves a checkpoint at least as far as the history
        every = cfg.checkpoint_every
        if self.epoch in (cfg.epochs, until) or (every and self.epoch % every == 0):
            path = self.save_checkpoint(self.out_dir / "checkpoint.npz")
            if path is not None:
                self.last_checkpoint = (path, self.epoch)
            if cfg.keep_checkpoints:
                self.save_checkpoint(self.out_dir / f"checkpoint_epoch{self.epoch:03d}.npz")
        self.write_history()

    # -- faults -------------------------------------------------------------------------------
    def writes_outputs(self) -> bool:
        """Whether this process writes the run's files, and so holds its output directory (``fit``); a
        data-parallel subclass answers True on one process only."""
        return True

    def _last_good(self) -> str:
        if self.last_checkpoint is None:
            return "no checkpoint has been written"
        path, epoch = self.last_checkpoint
        return f"{path} (epoch {epoch})"

    def _interrupted_message(self) -> str:
        """What Ctrl-C during ``fit`` leaves: the epoch it stopped, the checkpoint kept, how to resume."""
        msg = f"interrupted in epoch {self._stage_epoch} of {self.config.epochs}; "
        if self.last_checkpoint is None:
            return msg + ("no checkpoint was kept (checkpoint_every = "
                          f"{self.config.checkpoint_every}: none written yet)")
        path, epoch = self.last_checkpoint
        return msg + f"kept {path} (epoch {epoch}); continue with: refsnn train --resume {path}"

    def _diverged(self, what: str) -> None:
        raise TrainingDiverged(f"training diverged at epoch {self._stage_epoch}, {self._stage}: {what}; last good "
                               f"checkpoint: {self._last_good()}; lower the learning rates in [optim.lr] "
                               f"(initial: {({g['name']: g['initial_lr'] for g in self.optimizer.groups})})")

    def _check_parameters(self) -> None:
        """After an optimizer step: every parameter finite, else ``TrainingDiverged``."""
        for name, p in self.model.named_parameters():
            if not np.isfinite(p.data).all():
                self._diverged(f"parameter {name} ({p.kind}) is not finite after the optimizer step")

    # -- outputs ----------------------------------------------------------------------------
    def write_history(self) -> None:
        """history.json (everything) and history.csv (the scalar columns); ``refsnn.report.write_history``."""
        write_history(self.out_dir, self.config.to_dict(), self.initial, vars(self.targets), self.history)

    def draw_figures(self) -> list:
        from .plots import plot_all
        return plot_all(self.history, self.initial, vars(self.targets), self.out_dir)

    def final_report(self) -> str:
        """The table printed at the end: accuracy, W/S/T, Bit Budget, S-ACE, S-ACE*, size, per-layer allocation."""
        acc = self.history[-1]["test_acc"] if self.history else self.evaluate()[1]
        return final_table(self.costs(), acc, len(self.test_set), self.targets, self.initial,
                           self.renewal_on("renew_spike"), self.renewal_on("renew_weight"))

    # -- checkpoints ------------------------------------------------------------------------
    def save_checkpoint(self, path) -> Path:
        """Write the run's whole state to ``path`` (.npz) and its .json; ``refsnn.checkpoint.save_checkpoint``."""
        return save_checkpoint(self, path)

    @classmethod
    def from_checkpoint(cls, path, epochs: int | None = None, out_dir=None, progress: str | None = None,
                        stream=None, **config_changes) -> "Trainer":
        """Rebuild a run from ``path`` (.npz, with its .json beside it) to continue or evaluate it.

        ``epochs`` / ``out_dir`` / ``config_changes`` override the saved configuration (changing ``epochs``
        changes the cosine schedule, so only an unchanged configuration resumes bit-identically).  The run
        writes into ``out_dir``, by default the checkpoint's own directory (not the one recorded in it: a
        copied checkpoint must not write over the run it came from).
        """
        ck = load_checkpoint(path)
        tr = cls(run_config(ck, epochs, out_dir, **config_changes), progress=progress, stream=stream)
        restore(tr, ck)
        tr.last_checkpoint = (ck.path, ck.epoch)
        return tr


def _check_input_channels(cfg: TrainConfig, model, input_shape: tuple) -> None:
    """The data's channels match the model's first layer (before any training): a ConfigError otherwise."""
    first = spiking_layers(model)[0][1]
    want = getattr(first, "in_channels", None)
    if want is not None and len(input_shape) == 3 and input_shape[0] != want:
        raise ConfigError(f"[model] name = {cfg.model.name!r} takes {want}-channel images but [data] name = "
                          f"{cfg.data.name!r} has {input_shape[0]} channel(s) (shape {input_shape}); choose a model "
                          "for this dataset")


def train(config: TrainConfig, resume=None, progress: str | None = None, stream=None, until: int | None = None):
    """Run (or resume) a training; returns the Trainer (its ``history``, ``model``, ``final_report()``)."""
    if resume is not None:
        tr = Trainer.from_checkpoint(resume, epochs=config.epochs, out_dir=config.out_dir, progress=progress,
                                     stream=stream)
    else:
        tr = Trainer(config, progress=progress, stream=stream)
    tr.fit(until=until)
    return tr
