"""The regulating loss (Eq. 21) and the cost table (Eq. 7-8, App. A.6) for torch models.

    L_total = L_task + lam_w |W - W_tar| + lam_T |T - T_tar| + lam_s |S - S_tar|      (21)

W, S, T are the model averages of METHOD.md section 2 over the rounded widths with the
straight-through round (Eq. 9-11), as ``refsnn.method.regulate`` computes them; layers whose
widths are all frozen are left out (METHOD.md 7).  The cost table asks every layer for its
``refsnn.method.budget.LayerCost`` and reuses refsnn's ``model_cost`` / ``uniform`` /
``format_cost_table``.  Every rank holds the same widths, so these are equal on every rank.
"""
from __future__ import annotations

import numpy as np
import torch

from ..method.budget import ModelCost, model_cost, uniform
from ..method.regulate import Penalties, Targets
from ..models.costing import parse_input_shape
from .layers import spiking_layers


def learnable(layer) -> bool:
    """Whether a layer enters the averages of Eq. 21 (some width of it is learnable)."""
    c = layer.config
    return c.learn_weight_bits or (c.input_neuron and (c.learn_spike_bits or c.learn_time))


def model_averages(layers) -> dict:
    """Tensors W, S, T over the given spiking layers (straight-through in every width parameter).
    Each layer must have run a forward pass (N_f is its input's size per sample)."""
    layers = [l for l in layers if learnable(l)]
    if not layers:
        raise ValueError("regulating loss: no spiking layer has a learnable width")
    if any(l.in_shape is None for l in layers):
        raise ValueError("regulating loss: run a forward pass first (N_f of each layer comes from its input shape)")
    n_w_total = float(sum(l.weight.numel() for l in layers))
    n_f_total = float(sum(np.prod(l.in_shape) for l in layers if l.config.input_neuron))
    W = S = T = None
    for l in layers:
        B_w, B_s, T_l = l.widths()
        # W = sum_l B_w,l N_w,l / sum_l N_w,l
        term = B_w * (l.weight.numel() / n_w_total)
        W = term if W is None else W + term
        if not l.config.input_neuron:
            continue
        share = float(np.prod(l.in_shape)) / n_f_total
        n_steps = int(T_l.item())
        # S = sum_l mean_t(B_s,l^t) N_f,l / sum_l N_f,l   (mean over the T_l steps in use)
        s_term = B_s[:n_steps].mean() * share
        # T = sum_l T_l N_f,l / sum_l N_f,l
        t_term = T_l * share
        S = s_term if S is None else S + s_term
        T = t_term if T is None else T + t_term
    return {"W": W, "S": S, "T": T}


def regulating_loss(layers, targets: Targets, penalties: Penalties = Penalties()) -> tuple:
    """Eq. 21 without L_task: ``(loss tensor, {"W", "S", "T": float or None})``."""
    avg = model_averages(layers)
    loss = None
    for key, lam in (("W", penalties.lam_w), ("S", penalties.lam_s), ("T", penalties.lam_T)):
        value = avg[key]
        if value is None or lam == 0:
            continue
        # Eq. 21: lam * |X - X_tar|
        term = torch.abs(value - float(getattr(targets, key))) * float(lam)
        loss = term if loss is None else loss + term
    if loss is None:
        loss = avg["W"] * 0.0
    return loss, {k: (float(v.detach()) if v is not None else None) for k, v in avg.items()}


def layer_costs(model, input_shape) -> list:
    """``LayerCost`` of every spiking layer after one eval forward of a zero image (state untouched)."""
    shape = parse_input_shape(input_shape)
    layers = spiking_layers(model)
    if not layers:
        raise ValueError(f"layer_costs: {type(model).__name__} has no spiking layers")
    w = layers[0][1].weight
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros((1,) + shape, dtype=w.dtype, device=w.device))
    finally:
        for m, mode in modes:
            m.training = mode
    return [layer.cost(name) for name, layer in layers]


def model_costs(model, input_shape, wst=None) -> ModelCost:
    """Eq. 7-8 and App. A.6 for a torch model (``refsnn.models.model_costs`` for torch)."""
    costs = layer_costs(model, input_shape)
    if wst is not None:
        costs = uniform(costs, *[int(v) for v in wst])
    return model_cost(costs)
