"""Optimizer set-up of Algorithm A.1 for torch models (docs/method.md §11), as ``refsnn.optim`` does it.

One parameter group per kind (``refsnn.nn.PARAMETER_KINDS`` order, parameters in definition
order), learning rates per kind (``refsnn.optim.DEFAULT_LR``), weight decay on conv/linear
weights only, and thresholds / weight steps clamped to >= eps after every step (docs/method.md §3).
The group order equals refsnn's, so the momentum buffers of the two are interchangeable
(``refsnn.torch.checkpoint``).
"""
from __future__ import annotations

import torch
from torch import nn

from ..method.renewal import EPS
from ..nn.module import PARAMETER_KINDS
from ..optim import CLAMPED_KINDS, DEFAULT_LR
from .neurons import NeuronPart

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.SyncBatchNorm)


def parameter_kinds(model: nn.Module) -> list:
    """(name, parameter, kind) of every parameter, in definition order; kinds as refsnn.nn names them."""
    inner = getattr(model, "module", model)
    out = []
    for mname, m in inner.named_modules():
        for pname, p in m.named_parameters(recurse=False):
            if isinstance(m, NeuronPart):
                # weight, bias, weight_step, weight_width, threshold, spike_width, time; alpha^t (Eq. 3-5) as threshold
                kind = "threshold" if pname == "amplitude" else pname
            elif pname == "time":
                kind = "time"                    # a That shared by several neurons (Spikformer's SSA, attn.time)
            elif isinstance(m, _BN):
                kind = "bn"
            else:
                kind = "bias" if pname == "bias" else "weight"
            out.append((f"{mname}.{pname}" if mname else pname, p, kind))
    return out


def param_groups(model: nn.Module, lr: dict | None = None, weight_decay: float = 1e-4) -> list:
    """``refsnn.optim.param_groups`` for a torch model: dicts for ``torch.optim`` with ``name`` and ``min_value``."""
    lr = dict(lr or {})
    unknown = set(lr) - set(PARAMETER_KINDS)
    if unknown:
        raise ValueError(f"param_groups: unknown parameter kind(s) {sorted(unknown)} in lr; "
                         f"valid kinds: {list(PARAMETER_KINDS)}")
    by_kind: dict = {}
    for _, p, kind in parameter_kinds(model):
        by_kind.setdefault(kind, []).append(p)
    return [{"name": kind, "params": by_kind[kind], "lr": float(lr.get(kind, DEFAULT_LR[kind])),
             "initial_lr": float(lr.get(kind, DEFAULT_LR[kind])),
             "weight_decay": float(weight_decay) if kind == "weight" else 0.0,
             "min_value": EPS if kind in CLAMPED_KINDS else None}
            for kind in PARAMETER_KINDS if kind in by_kind]


@torch.no_grad()
def clamp_steps(optimizer) -> None:
    """docs/method.md §3: thresholds and weight steps stay >= eps after a step."""
    for g in optimizer.param_groups:
        if g.get("min_value") is not None:
            for p in g["params"]:
                p.clamp_(min=g["min_value"])


class KindGroups:
    """What refsnn's trainer and schedules use of an optimizer (``groups``, ``lrs``, ``set_lr_factor``)."""

    @property
    def groups(self) -> list:
        return self.param_groups

    def lrs(self) -> dict:
        return {g["name"]: g["lr"] for g in self.param_groups}

    def set_lr_factor(self, factor: float) -> None:
        """lr of every group = its initial lr times ``factor`` (refsnn.optim.CosineSchedule drives this)."""
        for g in self.param_groups:
            g["lr"] = g["initial_lr"] * factor


class SGD(KindGroups, torch.optim.SGD):
    """torch's SGD over ``param_groups`` (docs/method.md §11: momentum 0.9, first step b = g)."""


class Adam(KindGroups, torch.optim.Adam):
    """torch's Adam over ``param_groups`` (weight decay as L2 on the gradient, as refsnn.optim.Adam)."""


OPTIMIZERS = {"sgd": SGD, "adam": Adam}
