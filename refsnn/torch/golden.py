"""The golden cases computed by the torch port: ``python -m refsnn.torch.golden DIR`` (= ``refsnn golden
check DIR --impl torch``).

One ``compute_<kind>(params, arrays) -> {output.*, grad.*}`` per case kind of docs/golden.md
section 6, written against this package only (torch tensors in the set's dtype); refsnn's own
checker (``refsnn.golden.check_golden(..., compute=COMPUTE)``) feeds them every case of every
set and compares with the documented tolerances.  A case kind added to the golden sets needs
one entry here.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from ..golden.model_cases import cost_arrays
from ..method.neuron import ROUNDINGS, spike_grid
from ..method.regulate import Penalties, Targets
from ..method.weight_quant import weight_grid
from ..nn.spiking import SpikingConfig
from .ambiguity import NeuronTaps, PoolTaps, tie_allowances, time_allowance
from .functions import quantize_weight, round_clip, spiking_neuron
from .golden_seq import compute_seq_neuron, compute_seq_spiking_layer, compute_ssa, compute_to_frames
from .golden_util import TORCH, allowances, i64, leaf, run_layer, spikes, to_np
from .layers import SpikingConv2d, SpikingLayer, SpikingLinear, spiking_layers
from .models import get_model, load_numpy_state, state_to_numpy
from .optim import SGD, clamp_steps, param_groups
from .regulate import layer_costs, model_averages, model_costs, regulating_loss
from .renewal import grid_scores, grid_search, observe, observe_weight

WIDTH_PARAMS = ("weight_width", "spike_width", "time")


# =============================================================================================
# weight quantizer, neuron, one spiking layer
# =============================================================================================
def compute_weight_quant(p, a):
    w, step, bhat = leaf(a["param.weight"]), leaf(a["param.step"]), leaf(a["param.width_param"])
    # Eq. 11: B_w = round(clip(Bhat_w, 1, bound))
    B = round_clip(bhat, p["bound"], "weight_width")
    # Eq. 6
    wq = quantize_weight(w, step, B, convention=p["convention"])
    wq.backward(torch.from_numpy(a["grad_output.w_q"]))
    s = torch.clamp(step.detach(), min=1e-5)
    sb = s.reshape((-1,) + (1,) * (w.dim() - 1)) if s.dim() == 1 else s
    return {"output.w_q": to_np(wq), "output.level": i64(to_np(torch.round(wq.detach() / sb))),
            "output.B_w": i64(to_np(B)), "grad.weight": to_np(w.grad), "grad.step": to_np(step.grad),
            "grad.width_param": to_np(bhat.grad)}


def compute_neuron(p, a):
    x, vth = leaf(a["input.x"]), leaf(a["param.v_th"])
    bhat, that = leaf(a["param.width_param"]), leaf(a["param.T_param"])
    # Eq. 9: B_s^t = round(clip(Bhat_s^t, 1, bound));  Eq. 10: T = round(clip(That, 1, T_bound))
    B = round_clip(bhat, p["bound"], "spike_width").expand(p["T_bound"])
    T = round_clip(that, p["T_bound"], "time")
    V = vth.expand(p["T_bound"])     # temporal-wise: (T_bound,) already; shared: one value on every step
    y = spiking_neuron(x, V, B, T, domain=p["domain"], rounding=p["rounding"], tau=p["tau"],
                       convention=p["convention"])
    y.backward(torch.from_numpy(a["grad_output.y"]))
    Bi, Ti = [int(b) for b in B.tolist()], int(T.item())
    v, S = spikes(x.detach(), V.detach(), Bi, Ti, p["domain"], p["shift"], float(p["tau"]),
                   p["convention"].reset_decay)
    return {"output.y": to_np(y), "output.v": v, "output.S": S, "output.B_s": i64(Bi), "output.T": i64(Ti),
            "grad.x": to_np(x.grad), "grad.v_th": to_np(vth.grad), "grad.width_param": to_np(bhat.grad),
            "grad.T_param": to_np(that.grad),
            # docs/golden.md "The port": the cancellation bound of dL/dThat (refsnn.torch.ambiguity)
            "allowance.grad.T_param": time_allowance([(y, torch.from_numpy(a["grad_output.y"]), Ti)], x.dtype)}


def _layer(p, dtype):
    cfg = SpikingConfig(**p["config"], convention=p["convention"])
    if p["layer"] == "conv":
        return SpikingConv2d(p["in_channels"], p["out_channels"], p["kernel_size"], stride=p["stride"],
                             padding=p["padding"], bias=p["bias"], config=cfg, dtype=dtype)
    return SpikingLinear(p["in_features"], p["out_features"], bias=p["bias"], config=cfg, dtype=dtype)


def compute_spiking_layer(p, a):
    layer = _layer(p, TORCH[a["input.x"].dtype])
    x, out = run_layer(layer, a)
    c = layer.config
    with torch.no_grad():
        B_w, B_s, T = layer.widths()
        y = layer.neuron(x)
        wq = quantize_weight(layer.weight, layer.weight_step, B_w, convention=c.convention)
        Bi, Ti = [int(b) for b in B_s.tolist()], int(T.item())
        v, S = spikes(x, layer.thresholds(), Bi, Ti, c.domain, ROUNDINGS[c.rounding], float(c.tau),
                       c.convention.reset_decay)
    out.update({"output.y": to_np(y), "output.v": v, "output.S": S, "output.w_q": to_np(wq),
                "output.B_w": i64(to_np(B_w)), "output.B_s": i64(Bi), "output.T": i64(Ti)})
    return out


# =============================================================================================
# tiny_resnet: regulating loss, cost table
# =============================================================================================
def _tiny(p, dtype, seed=0):
    cfg = SpikingConfig(**p["config"], convention=p["convention"])
    return get_model(p.get("model", "tiny_resnet"), dtype=dtype, config=cfg, layer_configs=p.get("layer_configs") or None,
                     input_neuron=p.get("input_neuron", True), seed=seed)


def _set_widths(model, a) -> None:
    with torch.no_grad():
        for name, l in spiking_layers(model):
            for pn in WIDTH_PARAMS:
                key = f"param.{name}.{pn}"
                if key in a:
                    getattr(l, pn).copy_(torch.from_numpy(np.asarray(a[key])))


def _layer_table(model) -> dict:
    layers = spiking_layers(model)
    nb = max(l.config.time_bound for _, l in layers)
    B_s = np.zeros((len(layers), nb), np.int64)
    rows = {"n_w": [], "B_w": [], "T": []}
    for i, (_, l) in enumerate(layers):
        bw, bs, t = l.width_values()
        rows["n_w"].append(l.weight.numel())
        rows["B_w"].append(bw)
        rows["T"].append(t)
        B_s[i, :len(bs)] = bs
    return {"output.n_w": i64(rows["n_w"]), "output.B_w": i64(rows["B_w"]), "output.B_s": B_s,
            "output.T_l": i64(rows["T"])}


def compute_regulate(p, a):
    dtype = TORCH[next(v.dtype for k, v in a.items() if k.startswith("param."))]
    model = _tiny(p, dtype)
    _set_widths(model, a)
    layer_costs(model, tuple(p["input_shape"]))   # one eval forward: N_f of each layer
    layers = [l for _, l in spiking_layers(model)]
    avg = model_averages(layers)
    loss, _ = regulating_loss(layers, Targets(**p["targets"]), Penalties(**p["penalties"]))
    loss.backward()
    out = {"output.W": to_np(avg["W"]), "output.S": to_np(avg["S"]), "output.T": to_np(avg["T"]), "output.loss": to_np(loss)}
    out.update(_layer_table(model))
    out["output.n_f"] = i64([int(np.prod(l.in_shape)) for l in layers])
    out["output.counted"] = i64([l.has_learnable_width for l in layers])
    for name, l in spiking_layers(model):
        for pn in WIDTH_PARAMS:
            prm = getattr(l, pn, None)
            if prm is not None and prm.requires_grad and prm.grad is not None:
                out[f"grad.{name}.{pn}"] = to_np(prm.grad)
    return out


def compute_cost(p, a):
    model = get_model(p["model"], dtype=torch.float32, layer_configs=p.get("layer_configs") or None,
                      input_neuron=p["input_neuron"])
    _set_widths(model, {k: np.asarray(v, np.float32) for k, v in a.items()})
    cost = model_costs(model, tuple(p["input_shape"]), wst=tuple(p["wst"]) if p["wst"] else None)
    return cost_arrays(cost)


# =============================================================================================
# renewal: grid search, observer
# =============================================================================================
def compute_grid_search(p, a):
    X = torch.from_numpy(a["input.X"])
    # C9: a 1-bit quantizer's grid ("one_bit") is scored with sgn under the official convention
    sgn = bool(p.get("one_bit", False)) and p["convention"].one_bit_grid_sign
    lo, hi, score = grid_search(X, p["q_min"], p["q_max"], p["K"], p["p"], p["symmetric"], sgn)
    scores, _, _ = grid_scores(X, p["q_min"], p["q_max"], p["K"], p["p"], p["symmetric"], sgn)
    return {"output.v_min": np.float64(lo), "output.v_max": np.float64(hi), "output.score": np.float64(score),
            "output.scores": to_np(scores)}


def compute_observer(p, a):
    formula = p["convention"].renewal_formula
    b_old, v_rmin, v_rmax = int(a["input.b_old0"]), float(a["input.v_rmin0"]), float(a["input.v_rmax0"])
    step = float(a.get("input.step0", np.nan))   # read by row C10 only
    rows = {k: [] for k in ("fired", "step", "b_old", "v_rmin", "v_rmax", "q_min", "q_max")}
    for X, B in zip(a["input.X"], a["input.B"]):
        q_min, q_max = spike_grid(int(B), "positive") if p["quantizer"] == "spike_positive" else weight_grid(int(B))
        Xt = torch.from_numpy(np.array(X))
        if p["quantizer"] == "weight":
            # the convention picks the grid (C8, C9) or a rescaling (C10)
            r = observe_weight(Xt, int(B), b_old, v_rmin, v_rmax, step, conv=bool(p.get("conv", False)),
                               convention=p["convention"], K=p["K"], p=p["p"])
        else:
            r = observe(Xt, int(B), b_old, v_rmin, v_rmax, q_min, q_max, K=p["K"], p=p["p"],
                        symmetric=p["symmetric"], formula=formula)
        b_old, v_rmin, v_rmax = r.b_old, r.v_rmin, r.v_rmax
        step = r.step if r.fired else step
        for k, v in (("fired", int(r.fired)), ("step", r.step if r.fired else 0.0), ("b_old", b_old),
                     ("v_rmin", v_rmin), ("v_rmax", v_rmax), ("q_min", q_min), ("q_max", q_max)):
            rows[k].append(v)
    return {f"output.{k}": (np.asarray(v, np.float64) if k in ("step", "v_rmin", "v_rmax") else i64(v))
            for k, v in rows.items()}


# =============================================================================================
# one training step (Alg. A.1)
# =============================================================================================
def compute_train_step(p, a):
    dtype = TORCH[a["input.x"].dtype]
    model = _tiny(p, dtype, seed=p["model_seed"])
    state = {k.split(".", 1)[1]: v for k, v in a.items() if k.startswith("param.")}
    state.update({k[len("input.state."):]: v for k, v in a.items() if k.startswith("input.state.")})
    load_numpy_state(model, state)
    layers = spiking_layers(model)
    acts = {}
    for name, l in layers:
        l.register_forward_pre_hook(lambda m, args, _n=name: acts.__setitem__(_n, to_np(args[0])))
    model.train()
    taps, pools = NeuronTaps(layers), PoolTaps(model)
    logits = model(torch.from_numpy(a["input.x"]))
    ce = torch.nn.functional.cross_entropy(logits, torch.from_numpy(a["input.labels"]))
    reg, avg = regulating_loss([l for _, l in layers], Targets(**p["targets"]), Penalties(**p["penalties"]))
    loss = ce + reg
    out = {"output.logits": to_np(logits), "output.loss_task": to_np(ce), "output.loss_reg": to_np(reg),
           "output.loss": to_np(loss)}
    for k in ("W", "S", "T"):
        out[f"output.{k}"] = np.asarray(avg[k])
    for name, l in layers:
        out[f"output.act.{name}"] = acts[name]
        out[f"output.forward.{name}.threshold"] = to_np(l.threshold)
        if isinstance(l, SpikingLayer):
            out[f"output.forward.{name}.weight_step"] = to_np(l.weight_step)
    opt = SGD(param_groups(model, lr=p["lr"], weight_decay=p["weight_decay"]), lr=0.0, momentum=p["momentum"])
    opt.zero_grad()
    loss.backward(retain_graph=True)
    for name, prm in model.named_parameters():
        if prm.grad is not None:
            out[f"grad.{name}"] = to_np(prm.grad)
    out.update(_step_allowances(model, opt, taps, pools, layers, dtype))
    opt.step()
    clamp_steps(opt)
    params = dict(model.named_parameters())
    for k, v in state_to_numpy(model).items():
        out[("output.updated." if k in params else "output.state.") + k] = v
    return out


def _step_allowances(model, opt, taps, pools, layers, dtype) -> dict:
    """The allowances of a training step (refsnn.torch.ambiguity): dL/dThat's cancellation bound plus the max-pool
    tie bound of every gradient; an updated parameter (first SGD step, p - lr (g + wd p)) moves by lr times it."""
    params = dict(model.named_parameters())
    grads = tie_allowances(pools, params)
    for k, v in allowances(taps, layers, params, dtype).items():
        name = k[len("allowance."):]
        grads[name] = grads.get(name, 0.0) + v
    lr = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    out = {}
    for name, v in grads.items():
        out[f"allowance.{name}"] = v
        out[f"allowance.output.updated.{name[len('grad.'):]}"] = lr[id(params[name[len('grad.'):]])] * np.asarray(v)
    return out


COMPUTE = {"weight_quant": compute_weight_quant, "neuron": compute_neuron, "spiking_layer": compute_spiking_layer,
           "regulate": compute_regulate, "grid_search": compute_grid_search, "observer": compute_observer,
           "cost": compute_cost, "train_step": compute_train_step, "seq_neuron": compute_seq_neuron,
           "seq_spiking_layer": compute_seq_spiking_layer, "to_frames": compute_to_frames, "ssa": compute_ssa}


#: models whose training step the port computes (``train_step`` cases name their model)
PORTED_MODELS = frozenset({"tiny_resnet", "tiny_spikformer"})


def ported(case: dict) -> bool:
    """Whether the port computes this manifest case (every kind of docs/golden.md 6, every model of a training step:
    a case the port does not compute fails the check, it is never skipped)."""
    if case["kind"] not in COMPUTE:
        return False
    return case["kind"] != "train_step" or case["params"].get("model") in PORTED_MODELS


def not_ported(directory) -> list:
    """Names of the cases under ``directory`` that the port does not compute, sorted (empty for the tracked sets)."""
    from ..golden.store import find_sets, load_manifest
    return sorted({c["name"] for _, d in find_sets(directory) for c in load_manifest(d)["cases"] if not ported(c)})


def check(directory, patterns=None, verbose=True, out=None) -> bool:
    """Re-compute every case of every golden set under ``directory`` with the torch port and compare (refsnn's
    checker, the documented tolerances and the port's allowances, docs/golden.md "The port").  A case the port
    does not compute is named and fails the check."""
    from ..golden import check_golden
    out = out or sys.stdout
    skipped = not_ported(directory)
    if skipped:
        print(f"FAIL: the port does not compute {len(skipped)} case(s): {', '.join(skipped)}", file=out)
    ok = check_golden(directory, patterns=patterns, verbose=verbose, out=out, compute=COMPUTE)
    return ok and not skipped


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m refsnn.torch.golden",
                                 description="Check the torch port against golden sets (docs/golden.md).")
    ap.add_argument("dir", metavar="DIR")
    ap.add_argument("--cases", nargs="+", metavar="GLOB")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)
    from ..golden import GoldenError
    try:
        return 0 if check(args.dir, args.cases, verbose=not args.quiet) else 1
    except GoldenError as e:
        print(f"refsnn.torch.golden: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
