"""Checkpoints of a training run: writing, reading, and the rule for resuming with a configuration.

A checkpoint is two files of the same name: an ``.npz`` of arrays (parameters, BN statistics,
observer/renewal buffers, optimizer buffers) and a ``.json`` of metadata (format, epoch, configuration,
RNG note, optimizer/schedule counters, initial averages, history, versions).

    save_checkpoint(trainer, path)      write both files of a ``refsnn.train.Trainer``
    load_checkpoint(path) -> Checkpoint read and check both files
    restore(trainer, checkpoint)        put the saved state into a freshly built Trainer
    run_config(checkpoint, ...)         the configuration of a run rebuilt from a checkpoint (with changes)
    resume_changes(path, config, ...)   the resume-compatibility rule: the changes a resumed run takes from a
                                        configuration file, or a ConfigError if it differs in any other key

A resumed run continues bit-identically to an uninterrupted one because nothing random is hidden:
the initial weights are a function of the seed (then overwritten), the batch order and augmentation
of epoch e a function of (seed, e), the lr a function of the schedule's counter, and the layers'
LSQ-initialised flag, observers and renewal switches are buffers in the state dict.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import __version__
from .config import ConfigError, TrainConfig
from .files import atomic_write_text, json_default

CHECKPOINT_FORMAT = "refsnn-checkpoint/1"
#: keys of a TrainConfig a resumed run may change without breaking bit-identical continuation
RESUME_FREE_KEYS = {"epochs", "out_dir", "progress", "plots", "checkpoint_every", "keep_checkpoints", "description"}
#: of those, the ones a resumed run takes from the configuration file it is given
RESUME_CARRIED_KEYS = ("epochs", "out_dir", "progress", "plots", "checkpoint_every", "keep_checkpoints")


@dataclass
class Checkpoint:
    """Both files of a checkpoint, read: the ``.json`` metadata and the ``.npz`` arrays split by owner."""
    path: Path
    meta: dict
    model_state: dict
    optim_arrays: dict

    @property
    def epoch(self) -> int:
        return int(self.meta["epoch"])

    @property
    def config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.meta["config"])


def save_checkpoint(trainer, path) -> Path:
    """``path`` (.npz: parameters, BN statistics, observer/renewal buffers, optimizer buffers) and the same
    name with .json (epoch, config, RNG state, optimizer/schedule counters, history, refsnn version) of
    ``trainer`` (a ``refsnn.train.Trainer``).  Returns the .npz path."""
    path = Path(path).with_suffix(".npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"model/{k}": v for k, v in trainer.model.state_dict().items()}
    osd = trainer.optimizer.state_dict()
    scalars = {}
    for k, v in osd["state"].items():
        if isinstance(v, np.ndarray):
            arrays[f"optim/{k}"] = v
        else:
            scalars[k] = v
    meta = {
        "format": CHECKPOINT_FORMAT,
        "refsnn_version": __version__,
        "numpy_version": np.__version__,
        "saved_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "epoch": trainer.epoch,
        "config": trainer.config.to_dict(),
        "rng": {"note": "all randomness of training is a pure function of (seed, epoch, batch): the model's "
                        "initial weights of seed, the loader's order/augmentation of (seed, epoch) "
                        "(refsnn.data.DataLoader); no generator state is carried between epochs",
                "seed": trainer.config.seed, "next_epoch": trainer.epoch, "next_batch": 0},
        "optimizer": {"type": osd["type"], "steps": osd["steps"], "groups": osd["groups"], "scalars": scalars},
        "schedule": trainer.schedule.state_dict(),
        "initial": trainer.initial,
        "layers": [n for n, _ in trainer.layers],
        "history": trainer.history,
    }
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=1, default=json_default))
    return path


def _paths(path) -> tuple:
    """(the .npz, the .json) of the checkpoint named by ``path``; FileNotFoundError if either is missing."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(".npz")
    meta_path = path.with_suffix(".json")
    for p in (path, meta_path):
        if not p.is_file():
            raise FileNotFoundError(f"checkpoint file {str(p)!r} does not exist (a checkpoint is a .npz and a "
                                    ".json of the same name)")
    return path, meta_path


def read_meta(path) -> dict:
    """The ``.json`` metadata of the checkpoint named by ``path``; ValueError if it is not a refsnn checkpoint."""
    _, meta_path = _paths(path)
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{meta_path}: not a refsnn checkpoint (format {meta.get('format')!r}, "
                         f"expected {CHECKPOINT_FORMAT!r})")
    return meta


def load_checkpoint(path) -> Checkpoint:
    """Both files of the checkpoint named by ``path`` (.npz, with its .json beside it)."""
    npz_path, _ = _paths(path)
    meta = read_meta(npz_path)
    with np.load(npz_path, allow_pickle=False) as z:
        model_state = {k[len("model/"):]: z[k] for k in z.files if k.startswith("model/")}
        optim_arrays = {k[len("optim/"):]: z[k] for k in z.files if k.startswith("optim/")}
    return Checkpoint(npz_path, meta, model_state, optim_arrays)


def restore(trainer, ck: Checkpoint) -> None:
    """Put the state saved in ``ck`` into ``trainer``, built from the checkpoint's (possibly changed) configuration:
    model, optimizer, the schedule's counter, epoch counter, history and initial averages."""
    meta = ck.meta
    trainer.model.load_state_dict(ck.model_state)
    om = meta["optimizer"]
    trainer.optimizer.load_state_dict({"type": om["type"], "steps": om["steps"], "groups": om["groups"],
                                       "state": {**om["scalars"], **ck.optim_arrays}})
    # the schedule keeps its counter; its length comes from the (possibly changed) configuration
    trainer.schedule.load_state_dict(meta["schedule"])
    trainer.epoch = ck.epoch
    trainer.history = list(meta["history"])
    trainer.initial = dict(meta["initial"])


def run_config(ck: Checkpoint, epochs: int | None = None, out_dir=None, **config_changes) -> TrainConfig:
    """The configuration a run rebuilt from ``ck`` uses: the saved one with ``epochs`` / ``out_dir`` / other
    changes; ValueError if it asks for fewer epochs than the checkpoint has done."""
    cfg = ck.config
    changes = dict(config_changes)
    if epochs is not None:
        changes["epochs"] = int(epochs)
    if out_dir is not None:
        changes["out_dir"] = str(out_dir)
    if changes:
        cfg = cfg.replace(**changes)
    if cfg.epochs < ck.epoch:
        raise ValueError(f"epochs = {cfg.epochs} is fewer than the {ck.epoch} epochs the checkpoint has done")
    return cfg


def config_diff(a: dict, b: dict, prefix: str = "") -> list:
    """The dotted keys in which two nested configuration dicts differ, sorted."""
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += config_diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}")
    return out


def resume_changes(path, config: TrainConfig, source: str = "the configuration") -> dict:
    """The resume-compatibility rule: resuming the checkpoint at ``path`` with ``config`` (read from ``source``)
    is allowed only if the two configurations agree outside ``RESUME_FREE_KEYS``; then the run takes
    ``RESUME_CARRIED_KEYS`` from ``config`` (returned as a dict of changes).  Otherwise a ConfigError names
    the keys that differ."""
    meta = read_meta(path)
    saved = {k: v for k, v in meta["config"].items() if k not in RESUME_FREE_KEYS}
    given = {k: v for k, v in config.to_dict().items() if k not in RESUME_FREE_KEYS}
    differ = config_diff(saved, given)
    if differ:
        raise ConfigError(f"train --resume: {source} differs from the checkpoint's configuration in "
                          f"{differ}; only {sorted(RESUME_FREE_KEYS)} may change on resume")
    return {key: getattr(config, key) for key in RESUME_CARRIED_KEYS}
