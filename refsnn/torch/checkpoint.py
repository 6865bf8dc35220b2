"""Checkpoints shared with refsnn: the port reads and writes refsnn's own format (``refsnn.checkpoint``).

A checkpoint is ``NAME.npz`` (``model/<name>``: every parameter and buffer by refsnn's names;
``optim/g<i>.p<j>.<buffer>``: the optimizer's per-parameter buffers; ``__meta__``: the epoch,
configuration, optimizer groups and counters, schedule counter, history) beside ``NAME.json``, a
readable copy of that metadata.  Parameter
groups are formed per kind in the same order in both (``refsnn.torch.optim``), so a run
started by refsnn resumes in torch and the other way round, and a model moves either way:

    model = load_model("runs/x/checkpoint.npz")         # a refsnn (or port) checkpoint -> torch model
    refsnn eval runs/y/checkpoint.npz                   # a port's checkpoint, read by refsnn
"""
from __future__ import annotations

import numpy as np
import torch

from ..checkpoint import load_checkpoint, run_config, save_checkpoint
from ..report import upgrade_costs
from .models import get_model, load_numpy_state, state_to_numpy

__all__ = ["optimizer_state", "load_optimizer_state", "save", "restore", "load_model"]

#: torch optimizer state key -> refsnn's (refsnn.optim: SGD "momentum", Adam "exp_avg", "exp_avg_sq")
BUFFERS = {"SGD": {"momentum_buffer": "momentum"}, "Adam": {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"}}
GROUP_KEYS = {"SGD": ("lr", "initial_lr", "weight_decay", "min_value", "momentum", "nesterov"),
              "Adam": ("lr", "initial_lr", "weight_decay", "min_value", "betas", "eps")}


def optimizer_state(optimizer, steps: int) -> dict:
    """A torch SGD/Adam's state in refsnn's form ``{"type", "steps", "groups", "state"}`` (refsnn.optim)."""
    kind = type(optimizer).__name__
    if kind not in BUFFERS:
        raise ValueError(f"optimizer_state: only SGD and Adam have a refsnn counterpart, got {kind}")
    groups, state = [], {}
    for gi, g in enumerate(optimizer.param_groups):
        groups.append({"name": g["name"], "n_params": len(g["params"]),
                       **{k: (list(g[k]) if isinstance(g[k], tuple) else g[k]) for k in GROUP_KEYS[kind]}})
        for pi, p in enumerate(g["params"]):
            st = optimizer.state.get(p, {})
            for tkey, rkey in BUFFERS[kind].items():
                if st.get(tkey) is not None:
                    state[f"g{gi}.p{pi}.{rkey}"] = st[tkey].detach().cpu().numpy().copy()
                    state[f"g{gi}.p{pi}.step"] = int(st["step"]) if "step" in st else int(steps)
    return {"type": kind, "steps": int(steps), "groups": groups, "state": state}


def load_optimizer_state(optimizer, sd: dict) -> int:
    """Load refsnn's optimizer state (``optimizer_state``'s form) into a torch SGD/Adam; returns ``steps``."""
    kind = type(optimizer).__name__
    if sd.get("type") != kind:
        raise ValueError(f"load_optimizer_state: the state is of a {sd.get('type')!r}, this is a {kind}")
    if len(sd["groups"]) != len(optimizer.param_groups):
        raise ValueError(f"load_optimizer_state: {len(sd['groups'])} groups saved, the optimizer has "
                         f"{len(optimizer.param_groups)}")
    for g, saved in zip(optimizer.param_groups, sd["groups"]):
        if saved["name"] != g["name"] or saved["n_params"] != len(g["params"]):
            raise ValueError(f"load_optimizer_state: saved group {saved['name']!r} with {saved['n_params']} "
                             f"parameters does not match group {g['name']!r} with {len(g['params'])}")
        for k in GROUP_KEYS[kind]:
            if k in saved:
                g[k] = tuple(saved[k]) if k == "betas" else saved[k]
    back = {v: k for k, v in BUFFERS[kind].items()}
    for key, value in sd["state"].items():
        gs, ps, name = key.split(".", 2)
        p = optimizer.param_groups[int(gs[1:])]["params"][int(ps[1:])]
        st = optimizer.state.setdefault(p, {})
        if name == "step":
            if kind == "Adam":
                st["step"] = torch.tensor(float(value))
        else:
            st[back[name]] = torch.from_numpy(np.array(value, copy=True)).to(dtype=p.dtype, device=p.device)
    return int(sd["steps"])


class _NumpyView:
    """A port's trainer as ``refsnn.checkpoint.save_checkpoint`` reads a trainer: numpy state, refsnn's forms."""

    class _State:
        def __init__(self, fn):
            self.state_dict = fn

    def __init__(self, tr):
        self.model = self._State(lambda: state_to_numpy(tr.model))
        self.optimizer = self._State(lambda: optimizer_state(tr.optimizer, tr.steps))
        for name in ("epoch", "config", "schedule", "initial", "layers", "history"):
            setattr(self, name, getattr(tr, name))


def save(trainer, path):
    """Write a port's trainer (``refsnn.torch.train.TorchTrainer``) as a refsnn checkpoint (refsnn's own writer)."""
    return save_checkpoint(_NumpyView(trainer), path)


def restore(trainer, ck) -> None:
    """Put a refsnn checkpoint (``refsnn.checkpoint.load_checkpoint``) into a freshly built port's trainer:
    model, optimizer buffers and counters, schedule counter, epoch, history, initial averages."""
    meta = ck.meta
    load_numpy_state(trainer.model, ck.model_state)
    om = meta["optimizer"]
    trainer.steps = load_optimizer_state(trainer.optimizer, {"type": om["type"], "steps": om["steps"],
                                                              "groups": om["groups"],
                                                              "state": {**om["scalars"], **ck.optim_arrays}})
    trainer.schedule.load_state_dict(meta["schedule"])
    trainer.epoch = ck.epoch
    # costs in raw units (refsnn.report.upgrade_costs: also a run saved with the former G / MB keys)
    trainer.history = [upgrade_costs(rec) for rec in meta["history"]]
    trainer.initial = upgrade_costs(meta["initial"])


def num_classes(meta: dict, model_state: dict) -> int:
    """The classifier's output count: ``[model.options] num_classes`` or the last spiking layer's weight rows."""
    opts = meta["config"].get("model", {}).get("options", {})
    if "num_classes" in opts:
        return int(opts["num_classes"])
    return int(model_state[f"{meta['layers'][-1]}.weight"].shape[0])


def load_model(path, device=None, dtype=None) -> torch.nn.Module:
    """The torch model of a refsnn-format checkpoint (refsnn's or the port's), its state loaded."""
    ck = load_checkpoint(path)
    cfg = ck.config
    m = cfg.model
    dtype = dtype or {"float32": torch.float32, "float64": torch.float64}[cfg.dtype]
    kw = {k: v for k, v in m.options.items() if k != "num_classes"}
    model = get_model(m.name, dtype=dtype, device=device, num_classes=num_classes(ck.meta, ck.model_state),
                      config=cfg.spiking_config(), layer_configs=cfg.method.layers or None,
                      input_neuron=m.input_neuron, seed=cfg.seed, **kw)
    load_numpy_state(model, ck.model_state)
    return model


def rebuild(cls, path, changes: dict, **kw):
    """``cls(config, **kw)`` (a port's trainer class) from the checkpoint at ``path``, its state restored;
    ``changes``: configuration changes (``epochs``, ``out_dir``, ...; None values are ignored)."""
    ck = load_checkpoint(path)
    changes = {k: v for k, v in changes.items() if v is not None}
    tr = cls(run_config(ck, changes.pop("epochs", None), changes.pop("out_dir", None), **changes), **kw)
    restore(tr, ck)
    tr.last_checkpoint = (ck.path, ck.epoch)
    return tr
