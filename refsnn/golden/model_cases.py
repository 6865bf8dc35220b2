"""Golden cases of whole models: the regulating loss over tiny_resnet (Eq. 21 with the averages of
docs/method.md §2) and the cost model of the paper's architectures (Eq. 7-8, App. A.6), with the tiny_resnet
helpers they share with ``train_step.py``.  The ``Case`` record and the conventions of a case are
described in ``refsnn.golden.cases``.
"""
from __future__ import annotations

import numpy as np

from ..method.regulate import Penalties, Targets, counted, model_averages, regulating_loss
from ..nn import SpikingConfig, spiking_layers
from . import draw as D
from .cases import B_BOUND, T_BOUND, T_HAT, Case, i64


# =============================================================================================
# tiny_resnet helpers (regulating loss, cost model, training step)
# =============================================================================================
TINY_INPUT = (1, 8, 8)
WIDTH_PARAMS = ("weight_width", "spike_width", "time")


def tiny_model(p, dt, seed=0):
    """tiny_resnet (or ``p["model"]``) with the case's configuration ``p`` (SpikingConfig, layer configs, input neuron) in dtype ``dt``."""
    from ..models import get_model
    cfg = SpikingConfig(**p["config"], convention=p["convention"])
    return get_model(p.get("model", "tiny_resnet"), config=cfg, layer_configs=p.get("layer_configs") or None,
                     input_neuron=p.get("input_neuron", True), seed=seed, dtype=dt)


def mixed_widths(rng, layers, spike_choices=(1, 2, 3, 4, 5, 6), weight_choices=(1, 2, 3, 4, 5, 6)) -> dict:
    """Random width parameters for every layer (float32-exact), away from the rounding ties."""
    arrays = {}
    for name, l in layers:
        arrays[f"param.{name}.weight_width"] = np.asarray(D.width_hat(rng, int(rng.choice(weight_choices)), B_BOUND))
        if l.config.input_neuron:
            n = l.spike_width.shape[0]
            arrays[f"param.{name}.spike_width"] = D.f32([D.width_hat(rng, int(rng.choice(spike_choices)), B_BOUND)
                                                         for _ in range(n)])
            arrays[f"param.{name}.time"] = np.asarray(D.f32(T_HAT[int(rng.integers(1, T_BOUND + 1))]))
    return arrays


def width_margin(arrays) -> float:
    """Smallest distance of the width parameters to their decision points (multiples of 1/2 in [1, bound])."""
    hats = np.concatenate([np.ravel(v) for v in arrays.values()])
    return float(D.crit_distance(hats, 1, max(B_BOUND, T_BOUND)).min())


def set_widths(model, a) -> None:
    """Put the width parameters ``param.<layer>.<name>`` of the arrays ``a`` into the model's layers."""
    for name, l in spiking_layers(model):
        for pn in WIDTH_PARAMS:
            key = f"param.{name}.{pn}"
            if key in a:
                getattr(l, pn).data[...] = a[key]


def layer_table(model, costs=None) -> dict:
    """Per-layer integer arrays: N_w, N_f, B_w, B_s^t (T_bound columns, 0 beyond T_l), T_l."""
    layers = spiking_layers(model)
    nb = max((l.config.time_bound for _, l in layers), default=1)
    B_s = np.zeros((len(layers), nb), np.int64)
    rows = {"n_w": [], "B_w": [], "T": []}
    for i, (_, l) in enumerate(layers):
        bw, bs, t = l.width_values()
        rows["n_w"].append(l.weight.size)
        rows["B_w"].append(bw)
        rows["T"].append(t)
        B_s[i, :len(bs)] = bs
    return {"output.n_w": i64(rows["n_w"]), "output.B_w": i64(rows["B_w"]), "output.B_s": B_s,
            "output.T_l": i64(rows["T"])}


# =============================================================================================
# regulating loss (Eq. 21 with the averages of docs/method.md §2)
# =============================================================================================
REG_LAYER_CONFIGS = {"layer1.0.conv2": {"learn_weight_bits": False, "learn_spike_bits": False, "learn_time": False},
                     "layer2.0.conv1": {"temporal_wise": False},
                     "fc": {"learn_time": False}}


def make_regulate(seed) -> list:
    name = "regulating_loss_tiny_resnet"
    rng = D.case_rng(seed, name)
    p = {"model": "tiny_resnet", "input_shape": list(TINY_INPUT), "input_neuron": True,
         "config": {"weight_bound": B_BOUND, "spike_bound": B_BOUND, "time_bound": T_BOUND, "renewal": "none"},
         "layer_configs": REG_LAYER_CONFIGS, "targets": {"W": 2.0, "S": 1.5, "T": 1.5},
         "penalties": {"lam_w": 4e-2, "lam_s": 4e-2, "lam_T": 1e-2}, "convention": "paper"}
    model = tiny_model(p, np.float64)
    layers = spiking_layers(model)
    arrays = mixed_widths(rng, layers)
    p["layers"] = [n for n, _ in layers]
    return [Case(name, "regulate",
                 "Regulating loss (Eq. 21) over tiny_resnet with mixed per-layer widths (one layer frozen, one with "
                 "widths shared over time, the classifier with a frozen T): the averages W, S, T of METHOD.md "
                 "section 2 (weighted by N_w and N_f of a 1x8x8 input), the loss, and its gradient to every "
                 "learnable width parameter (Bhat_w, Bhat_s^t, That) through the straight-through round.",
                 ["Eq. 9", "Eq. 10", "Eq. 11", "Eq. 21", "METHOD.md 2", "METHOD.md 7"], p, arrays,
                 margins={"u": width_margin(arrays)})]


def _counted(layer) -> bool:
    """Whether a layer enters the averages of Eq. 21 (the layer protocol: some width of it is learnable)."""
    return bool(layer.has_learnable_width)


def compute_regulate(p, a):
    from ..models import layer_costs
    dt = next(v.dtype for k, v in a.items() if k.startswith("param."))
    model = tiny_model(p, dt)
    set_widths(model, a)
    layer_costs(model, tuple(p["input_shape"]))   # one eval forward: N_f of each layer
    layers = [l for _, l in spiking_layers(model)]
    avg = model_averages(layers)
    loss, _ = regulating_loss(layers, Targets(**p["targets"]), Penalties(**p["penalties"]))
    loss.backward()
    out = {"output.W": avg["W"].data, "output.S": avg["S"].data, "output.T": avg["T"].data, "output.loss": loss.data}
    out.update(layer_table(model))
    out["output.n_f"] = i64([int(np.prod(l.in_shape)) for l in layers])
    # docs/method.md §7: layers whose widths are all frozen are left out of the averages
    out["output.counted"] = i64([_counted(l) for l in layers])
    for name, l in spiking_layers(model):
        for pn in WIDTH_PARAMS:
            prm = getattr(l, pn, None)
            if prm is not None and prm.requires_grad and prm.grad is not None:
                out[f"grad.{name}.{pn}"] = prm.grad
    return out


# =============================================================================================
# cost model (Eq. 7-8, App. A.6, docs/method.md §2)
# =============================================================================================
COSTS = {
    "cost_resnet20_W4S4T2": dict(model="resnet20", input_shape=[3, 32, 32], wst=[4, 4, 2], input_neuron=True),
    "cost_resnet18_W2S1T3_plain_stem": dict(model="resnet18", input_shape=[3, 32, 32], wst=[2, 1, 3],
                                            input_neuron=False),
    "cost_sew_resnet34_W4S4T1": dict(model="sew_resnet34", input_shape=[3, 224, 224], wst=[4, 4, 1],
                                     input_neuron=True),
    "cost_tiny_resnet_mixed": dict(model="tiny_resnet", input_shape=list(TINY_INPUT), wst=None, input_neuron=True,
                                   layer_configs={"layer2.0.conv1": {"temporal_wise": False}}),
}
COST_FLOATS = ("output.size_mb", "output.mean_B_s", "output.W", "output.S", "output.T", "output.bit_budget",
               "output.total_size_mb")


def make_costs(seed) -> list:
    from ..models import get_model
    cases = []
    for name, c in COSTS.items():
        p = dict(c)
        arrays = {}
        model = get_model(c["model"], layer_configs=c.get("layer_configs"), input_neuron=c["input_neuron"],
                          dtype=np.float32)
        p["layers"] = [n for n, _ in spiking_layers(model)]
        if c["model"] == "tiny_resnet":
            arrays = mixed_widths(D.case_rng(seed, name), spiking_layers(model))
        del model
        desc = (f"Cost model of {c['model']} on a {'x'.join(map(str, c['input_shape']))} input"
                + (f" with every layer at W/S/T = {'/'.join(map(str, c['wst']))}" if c["wst"] else
                   " with mixed per-layer widths (width parameters given; one layer shares its width over time)")
                + ("" if c["input_neuron"] else ", stem without input neuron (left out of S-ACE, S-ACE*, S, T)")
                + ": per-layer MACs, N_w, N_f, widths, Bit Budget, S-ACE, S-ACE*, size; model W, S, T, Bit Budget "
                  "and totals. Integer and float64 arrays in every set.")
        cases.append(Case(name, "cost", desc, ["Eq. 7", "Eq. 8", "App. A.6", "METHOD.md 2", "METHOD.md 12"], p,
                          arrays, float64_arrays=COST_FLOATS,
                          margins={"u": width_margin(arrays)} if arrays else {}))
    return cases


_COST_MEMO: dict = {}


def compute_cost(p, a):
    """Cost cases do not depend on the convention nor on the dtype; the result is memoised per process."""
    from ..models import get_model, model_costs
    key = (p["model"], str(p["input_shape"]), str(p["wst"]), p["input_neuron"], str(p.get("layer_configs")),
           tuple((k, np.asarray(a[k], np.float64).tobytes()) for k in sorted(a)))
    if key not in _COST_MEMO:
        model = get_model(p["model"], layer_configs=p.get("layer_configs") or None, input_neuron=p["input_neuron"],
                          dtype=np.float32)
        set_widths(model, {k: np.asarray(v, np.float32) for k, v in a.items()})
        cost = model_costs(model, tuple(p["input_shape"]), wst=tuple(p["wst"]) if p["wst"] else None)
        _COST_MEMO[key] = cost_arrays(cost)
    return {k: v.copy() for k, v in _COST_MEMO[key].items()}


def cost_arrays(cost) -> dict:
    """The ``output.*`` arrays of a cost case (docs/golden.md 6.7) from a ``ModelCost``; shared with other
    implementations' case functions (refsnn.torch.golden)."""
    nb = max(len(lc.B_s) for lc in cost.layers)
    B_s = np.zeros((len(cost.layers), nb), np.int64)
    for i, lc in enumerate(cost.layers):
        B_s[i, :len(lc.B_s)] = lc.B_s
    col = lambda attr: [getattr(lc, attr) for lc in cost.layers]  # noqa: E731
    return {
        "output.macs": i64(col("macs")), "output.n_w": i64(col("n_w")), "output.n_f": i64(col("n_f")),
        "output.B_w": i64(col("B_w")), "output.B_s": B_s, "output.T_l": i64(col("T")),
        "output.spiking": i64(col("spiking")), "output.bit_budget_l": i64(col("bit_budget")),
        "output.s_ace_l": i64(col("s_ace")), "output.s_ace_star_l": i64(col("s_ace_star")),
        "output.size_mb": np.asarray(col("size_mb"), np.float64),
        "output.mean_B_s": np.asarray([lc.mean_B_s if lc.spiking else 0.0 for lc in cost.layers], np.float64),
        "output.W": np.float64(cost.W), "output.S": np.float64(cost.S), "output.T": np.float64(cost.T),
        "output.bit_budget": np.float64(cost.bit_budget), "output.total_macs": i64(cost.macs),
        "output.total_s_ace": i64(cost.s_ace), "output.total_s_ace_star": i64(cost.s_ace_star),
        "output.total_size_mb": np.float64(cost.size_mb)}
