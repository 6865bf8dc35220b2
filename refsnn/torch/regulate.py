"""The regulating loss (Eq. 21) and the cost table (Eq. 7-8, App. A.6) for torch models.

    L_total = L_task + lam_w |W - W_tar| + lam_T |T - T_tar| + lam_s |S - S_tar|      (21)

W, S, T are the model averages of docs/method.md §2 over the rounded widths with the
straight-through round (Eq. 9-11): ``refsnn.method.regulate.model_averages`` itself, which reads
the port's layers through refsnn's layer protocol; layers whose widths are all frozen are left
out (docs/method.md §7).  The cost table asks every layer for its
``refsnn.method.budget.LayerCost`` and reuses refsnn's ``model_cost`` / ``uniform`` /
``format_cost_table``.  Every rank holds the same widths, so these are equal on every rank.
"""
from __future__ import annotations

import torch

from ..method.budget import AttentionCost, ModelCost, model_cost, uniform
from ..method.regulate import Penalties, Targets, model_averages
from ..models.costing import parse_input_shape
from .layers import spiking_layers
from .spikformer import SSA


def regulating_loss(layers, targets: Targets, penalties: Penalties = Penalties(), count_time_only: bool = True) -> tuple:
    """Eq. 21 without L_task: ``(loss tensor, {"W", "S", "T": float or None})``; ``count_time_only``: as
    ``refsnn.method.regulate.counted`` (false: the release's filter, a layer whose only learnable width is T stays out)."""
    avg = model_averages(layers, count_time_only)
    loss = None
    for key, lam in (("W", penalties.lam_w), ("S", penalties.lam_s), ("T", penalties.lam_T)):
        value = avg[key]
        if value is None or lam == 0:
            continue
        if key == "T" and not isinstance(value, torch.Tensor):
            continue  # docs/method.md §14: a fixed T (sequential mode) has no term in Eq. 21
        # Eq. 21: lam * |X - X_tar|
        term = torch.abs(value - float(getattr(targets, key))) * float(lam)
        loss = term if loss is None else loss + term
    if loss is None:
        loss = avg["W"] * 0.0
    return loss, {k: (float(v.detach()) if isinstance(v, torch.Tensor) else v) for k, v in avg.items()}


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
    return model_cost(costs, attention_costs(model, costs))


def attention_costs(model, costs: list) -> list:
    """``AttentionCost`` of every SSA block with the Q/K/V widths of ``costs`` (docs/method.md §13), as
    ``refsnn.models.costing.attention_costs``."""
    by_name = {lc.name: lc for lc in costs}
    out = []
    for name, m in getattr(model, "module", model).named_modules():
        if isinstance(m, SSA):
            q, k, v = (by_name[f"{name}.{n}_neuron"] for n in "qkv")
            out.append(AttentionCost(name, m.n_tokens, m.dim, m.heads, q.B_s[:q.T], k.B_s[:k.T], v.B_s[:v.T]))
    return out
