"""The training step of ``refsnn bench train`` in the port (``refsnn bench train --against torch``).

The same step as ``refsnn.bench.train``: the same model (seed 0), the same batch, forward
(with the LSQ initialisation at the warm-up step), cross-entropy + Eq. 21, backward, SGD
update with the per-kind learning rates, thresholds and steps clamped.
"""
from __future__ import annotations

import numpy as np
import torch

from ..bench.train import model_kwargs
from ..method.regulate import Penalties, Targets
from .layers import spiking_layers
from .models import get_model
from .optim import SGD, clamp_steps, param_groups
from .regulate import regulating_loss


def step_fn(model_name: str, dtype: str, x: np.ndarray, y: np.ndarray, threads: int):
    """A closure that runs one training step of the port on the batch ``(x, y)`` with ``threads`` CPU threads."""
    torch.set_num_threads(int(threads))
    dt = {"float32": torch.float32, "float64": torch.float64}[dtype]
    model = get_model(model_name.replace("_seq", ""), dtype=dt, num_classes=10, seed=0, **model_kwargs(model_name))
    layers = [l for _, l in spiking_layers(model)]
    opt = SGD(param_groups(model, weight_decay=1e-4), lr=0.0, momentum=0.9)
    targets, penalties = Targets(2, 2, 1), Penalties()
    xt, yt = torch.from_numpy(np.ascontiguousarray(x)).to(dt), torch.from_numpy(np.asarray(y, np.int64))
    model.train()

    def step():
        logits = model(xt)
        loss = torch.nn.functional.cross_entropy(logits, yt)
        reg, _ = regulating_loss(layers, targets, penalties)
        loss = loss + reg
        opt.zero_grad()
        loss.backward()
        opt.step()
        clamp_steps(opt)
        return float(loss.detach())

    return step
