"""Checkpoints of a training run: writing, reading, and the rule for resuming with a configuration.

A checkpoint is one self-contained ``.npz``: the arrays (parameters, BN statistics, observer/renewal buffers,
optimizer buffers) and, as the entry ``META_KEY``, its metadata (format, epoch, configuration, RNG note,
optimizer/schedule counters, initial averages, history, versions, the list of its arrays).  Beside it, a
``.json`` of the same name is a readable copy of that metadata plus the ``.npz``'s sha256.

    save_checkpoint(trainer, path)      write both files of a ``refsnn.train.Trainer``
    load_checkpoint(path) -> Checkpoint read and check a checkpoint (``CheckpointError`` if it is damaged)
    restore(trainer, checkpoint)        put the saved state into a freshly built Trainer (checking its counters)
    run_config(checkpoint, ...)         the configuration of a run rebuilt from a checkpoint (with changes)
    resume_changes(path, config, ...)   the resume-compatibility rule: the changes a resumed run takes from a
                                        configuration file, or a ConfigError if it differs in any other key

Saving under faults.  Each file is written under a unique temporary name and moved over its destination
(``refsnn.files``), the ``.npz`` first.  A kill before the first move leaves the previous checkpoint; a kill
between the two moves leaves the new ``.npz`` with the previous ``.json``, which no longer matches the
``.npz``'s sha256: loading uses the metadata inside the ``.npz`` (consistent with its arrays by construction)
and warns that the ``.json`` is stale.  A ``.json`` that does match the ``.npz`` but says something else (an
edited epoch or seed) is refused, as is a damaged file, a missing array, or metadata that contradicts itself
(``check_meta``) or the rebuilt run (``restore``).

A resumed run continues bit-identically to an uninterrupted one because nothing random is hidden:
the initial weights are a function of the seed (then overwritten), the batch order and augmentation
of epoch e a function of (seed, e), the lr a function of the schedule's counter, and the layers'
LSQ-initialised flag, observers and renewal switches are buffers in the state dict.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import __version__
from .config import ConfigError, TrainConfig
from .errors import CheckpointError
from .files import json_default, temp_path, write_durable
from .report import upgrade_costs

CHECKPOINT_FORMAT = "refsnn-checkpoint/2"
#: the format before the metadata moved into the .npz (read, without the self-checks of format 2)
LEGACY_FORMATS = ("refsnn-checkpoint/1",)
#: the .npz entry holding the metadata (UTF-8 JSON bytes as uint8)
META_KEY = "__meta__"
#: keys every checkpoint's metadata has
META_KEYS = ("format", "epoch", "config", "rng", "optimizer", "schedule", "initial", "history")
#: keys of a TrainConfig a resumed run may change without breaking bit-identical continuation
RESUME_FREE_KEYS = {"epochs", "out_dir", "progress", "plots", "checkpoint_every", "keep_checkpoints", "description"}
#: of those, the ones a resumed run takes from the configuration file it is given
RESUME_CARRIED_KEYS = ("epochs", "out_dir", "progress", "plots", "checkpoint_every", "keep_checkpoints")


class CheckpointWarning(UserWarning):
    """A checkpoint was loaded, but something beside it is off (a stale .json after an interrupted save)."""


@dataclass
class Checkpoint:
    """A checkpoint, read: its metadata and its arrays split by owner."""
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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _metadata(trainer, arrays: dict, scalars: dict, osd: dict) -> dict:
    return {
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
        "arrays": sorted(arrays),
    }


def save_checkpoint(trainer, path) -> Path:
    """``path`` (.npz: parameters, BN statistics, observer/renewal buffers, optimizer buffers, and the metadata:
    epoch, config, RNG note, optimizer/schedule counters, history, refsnn version) and its readable copy, the same
    name with .json, of ``trainer`` (a ``refsnn.train.Trainer``).  Returns the .npz path."""
    path = Path(path).with_suffix(".npz")
    json_path = path.with_suffix(".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"model/{k}": v for k, v in trainer.model.state_dict().items()}
    osd = trainer.optimizer.state_dict()
    scalars = {}
    for k, v in osd["state"].items():
        if isinstance(v, np.ndarray):
            arrays[f"optim/{k}"] = v
        else:
            scalars[k] = v
    meta = _metadata(trainer, arrays, scalars, osd)
    text = json.dumps(meta, indent=1, default=json_default)
    blob = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    npz_tmp, json_tmp = temp_path(path), temp_path(json_path)
    write_durable(npz_tmp, lambda fh: np.savez(fh, **arrays, **{META_KEY: blob}))
    copy = dict(json.loads(text), npz_sha256=_sha256(npz_tmp))
    try:
        write_durable(json_tmp, lambda fh: fh.write(json.dumps(copy, indent=1).encode("utf-8")))
    except BaseException:
        npz_tmp.unlink(missing_ok=True)
        raise
    # the two moves: a kill between them leaves a new .npz (self-contained) and a stale .json (detected on load)
    os.replace(npz_tmp, path)
    os.replace(json_tmp, json_path)
    return path


def _paths(path) -> tuple:
    """(the .npz, the .json) of the checkpoint named by ``path``; CheckpointError if the .npz is missing."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(".npz")
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {str(path)!r} does not exist (a checkpoint is a .npz, with a .json "
                              "of the same name beside it)")
    return path, path.with_suffix(".json")


def _read_json(path: Path, what: str):
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{path}: the {what} is damaged ({type(e).__name__}: {e})") from None
    if not isinstance(doc, dict):
        raise CheckpointError(f"{path}: the {what} is damaged (a JSON {type(doc).__name__}, not an object)")
    return doc


def _read_npz(npz_path: Path) -> tuple:
    """(the embedded metadata or None, {name: array}) of ``npz_path``; CheckpointError if it cannot be read whole
    (reading every entry checks each one's CRC, so a flipped bit is found here)."""
    try:
        with np.load(npz_path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zipfile.LargeZipFile) as e:
        raise CheckpointError(f"{npz_path}: damaged or not a checkpoint .npz ({type(e).__name__}: {e})") from None
    blob = arrays.pop(META_KEY, None)
    if blob is None:
        return None, arrays
    try:
        meta = json.loads(blob.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{npz_path}: the metadata inside is damaged ({e})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{npz_path}: the metadata inside is not a JSON object")
    return meta, arrays


def check_meta(meta: dict, where) -> None:
    """The metadata of a checkpoint agrees with itself: every key present, the epoch with the history, the
    RNG note and the configuration's epochs, the seed with the configuration's.  CheckpointError otherwise."""
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise CheckpointError(f"{where}: the checkpoint's metadata lacks {missing}")
    epoch, history = meta["epoch"], meta["history"]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise CheckpointError(f"{where}: epoch = {epoch!r} is not an integer >= 0")
    try:
        cfg = TrainConfig.from_dict(meta["config"])
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"{where}: the saved configuration is not valid: {e}") from None
    numbers = [r.get("epoch") if isinstance(r, dict) else None for r in history] if isinstance(history, list) else None
    problems = []
    if numbers != list(range(1, epoch + 1)):
        problems.append(f"the history holds epochs {numbers}, not 1..{epoch}")
    rng = meta["rng"] if isinstance(meta["rng"], dict) else {}
    if rng.get("next_epoch") != epoch:
        problems.append(f"rng.next_epoch = {rng.get('next_epoch')!r}")
    if rng.get("seed") != cfg.seed:
        problems.append(f"rng.seed = {rng.get('seed')!r} but config.seed = {cfg.seed}")
    if cfg.epochs < epoch:
        problems.append(f"config.epochs = {cfg.epochs} is below the epoch")
    if problems:
        raise CheckpointError(f"{where}: inconsistent checkpoint (epoch {epoch}): " + "; ".join(problems))


def _check_copy(meta: dict, json_path: Path, npz_path: Path) -> None:
    """The .json beside a format-2 checkpoint: absent or stale (an interrupted save: warn), or equal to the
    metadata inside the .npz (else CheckpointError: it was edited)."""
    if not json_path.is_file():
        return
    hint = f"; {npz_path.name} holds the same metadata: delete the .json to load the .npz alone"
    try:
        copy = _read_json(json_path, "checkpoint's .json")
    except CheckpointError as e:
        raise CheckpointError(f"{e}{hint}") from None
    sha = copy.pop("npz_sha256", None)
    if sha is None:
        raise CheckpointError(f"{json_path}: the checkpoint's .json is damaged (it lacks 'npz_sha256'){hint}")
    if sha != _sha256(npz_path):
        warnings.warn(f"{json_path} describes another save than {npz_path.name} (a save interrupted between the "
                      f"two files?): using the metadata stored in {npz_path.name} (epoch {meta.get('epoch')})",
                      CheckpointWarning, stacklevel=3)
        return
    differ = config_diff(meta, copy)
    if differ:
        raise CheckpointError(f"{json_path} was changed after saving: {differ} differ from the metadata stored in "
                              f"{npz_path.name}; a checkpoint's state cannot be edited (restore the file, or delete "
                              f"the .json to load the .npz alone)")


def _checked_meta(npz_path: Path, json_path: Path, meta, arrays: dict) -> dict:
    if meta is None:  # format 1: the metadata lives only in the .json
        if not json_path.is_file():
            raise CheckpointError(f"{npz_path}: no metadata inside and no {json_path.name} beside it")
        meta = _read_json(json_path, "checkpoint's .json")
        if meta.get("format") not in LEGACY_FORMATS:
            raise CheckpointError(f"{json_path}: not a refsnn checkpoint (format {meta.get('format')!r}, expected "
                                  f"{CHECKPOINT_FORMAT!r})")
    elif meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{npz_path}: not a refsnn checkpoint (format {meta.get('format')!r}, expected "
                              f"{CHECKPOINT_FORMAT!r})")
    else:
        _check_copy(meta, json_path, npz_path)
        listed = set(meta.get("arrays", ()))
        if listed != set(arrays):
            raise CheckpointError(f"{npz_path}: arrays missing {sorted(listed - set(arrays))}, unexpected "
                                  f"{sorted(set(arrays) - listed)}")
    check_meta(meta, npz_path)
    return meta


def read_meta(path) -> dict:
    """The checked metadata of the checkpoint named by ``path``; CheckpointError if it is not a sound checkpoint."""
    return load_checkpoint(path).meta


def load_checkpoint(path) -> Checkpoint:
    """The checkpoint named by ``path`` (.npz, with its .json beside it), read whole and checked."""
    npz_path, json_path = _paths(path)
    meta, arrays = _read_npz(npz_path)
    meta = _checked_meta(npz_path, json_path, meta, arrays)
    model_state = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    optim_arrays = {k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")}
    return Checkpoint(npz_path, meta, model_state, optim_arrays)


def restore(trainer, ck: Checkpoint) -> None:
    """Put the state saved in ``ck`` into ``trainer``, built from the checkpoint's (possibly changed) configuration:
    model, optimizer, the schedule's counter, epoch counter, history and initial averages.  CheckpointError if the
    state does not fit the model or its counters do not fit the epoch."""
    meta, epoch = ck.meta, ck.epoch
    om = meta["optimizer"]
    # the counters of a run saved after `epoch` whole epochs (saves happen only between epochs)
    steps_per_epoch = len(trainer.loader)
    t_expected = epoch * (steps_per_epoch if trainer.config.optim.schedule_unit == "step" else 1)
    try:
        steps, t = int(om["steps"]), int(meta["schedule"]["t"])
        if steps != epoch * steps_per_epoch or t != t_expected:
            raise CheckpointError(f"{ck.path}: inconsistent checkpoint: epoch {epoch} of {steps_per_epoch} steps "
                                  f"each, but the optimizer counts {steps} steps and the schedule {t} "
                                  f"(expected {epoch * steps_per_epoch} and {t_expected})")
        trainer.model.load_state_dict(ck.model_state)
        trainer.optimizer.load_state_dict({"type": om["type"], "steps": om["steps"], "groups": om["groups"],
                                           "state": {**om["scalars"], **ck.optim_arrays}})
        # the schedule keeps its counter; its length comes from the (possibly changed) configuration
        trainer.schedule.load_state_dict(meta["schedule"])
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{ck.path}: the saved state does not fit the run: {e}") from None
    trainer.epoch = epoch
    # costs in raw units (refsnn.report.upgrade_costs: also a run saved with the former G / MB keys)
    trainer.history = [upgrade_costs(rec) for rec in meta["history"]]
    trainer.initial = upgrade_costs(meta["initial"])


def run_config(ck: Checkpoint, epochs: int | None = None, out_dir=None, **config_changes) -> TrainConfig:
    """The configuration a run rebuilt from ``ck`` uses: the saved one with ``epochs`` / other changes, writing
    into ``out_dir``, by default the checkpoint's own directory (not the one recorded in it: a copied checkpoint
    must not write over the run it came from).  ConfigError if it asks for fewer epochs than the checkpoint
    has done."""
    cfg = ck.config
    changes = dict(config_changes)
    if epochs is not None:
        changes["epochs"] = int(epochs)
    changes["out_dir"] = str(out_dir if out_dir is not None else ck.path.resolve().parent)
    cfg = cfg.replace(**changes)
    if cfg.epochs < ck.epoch:
        raise ConfigError(f"epochs = {cfg.epochs} is fewer than the {ck.epoch} epochs the checkpoint has done")
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
