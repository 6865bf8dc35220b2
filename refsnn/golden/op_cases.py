"""Golden cases of one operation at a time: the weight quantizer, the spiking neuron, the spiking
layers, the grid search of Alg. 2 and a sequence of observers (Alg. 1).  The ``Case`` record and the
conventions of a case (``make_<group>``, ``compute_<kind>``) are described in ``refsnn.golden.cases``.
"""
from __future__ import annotations

import numpy as np

from ..autograd.tensor import Tensor, no_grad
from ..method.neuron import ROUNDINGS, emitted_spikes, membrane_potentials, spike_grid, spiking_neuron
from ..method.parametrize import parametrized_width, width_value
from ..method.renewal import grid_search, observe, observe_weight
from ..method.weight_quant import quantize_weight, weight_grid
from ..nn import SpikingConfig, SpikingConv2d, SpikingLinear
from . import draw as D
from .cases import B_BOUND, T_BOUND, T_HAT, Case, i64, leaf


# =============================================================================================
# weight quantizer (Eq. 6, 11, 18-19, App. A.8-A.9)
# =============================================================================================
W_SHAPE = (4, 2, 3, 3)


def make_weight_quant(seed) -> list:
    cases = []
    for B in range(1, 7):
        for per_channel in (False, True):
            name = f"weight_quant_B{B}_{'channel' if per_channel else 'layer'}"
            rng = D.case_rng(seed, name)
            step = D.f32(rng.uniform(0.02, 0.08, W_SHAPE[0])) if per_channel else D.f32(rng.uniform(0.02, 0.08))
            w = D.weights(rng, W_SHAPE, step, B)
            q_min, q_max = weight_grid(B)
            n = int(np.prod(W_SHAPE)) // (W_SHAPE[0] if per_channel else 1)
            eqs = ["Eq. 6", "Eq. 11", "Eq. 18", "Eq. 19", "App. A.8", "App. A.9", "METHOD.md 6.4", "C1"]
            if B == 1:
                eqs.append("C2")
            cases.append(Case(
                name, "weight_quant",
                f"Weight quantizer, B_w = {B}, "
                f"{'one step per output channel' if per_channel else 'one layer-wise step'}: "
                "w_q = S_q clip(round(w/S_q), q_min, q_max) (S_q sgn(w/S_q) at B_w = 1), the integer level, and the "
                "gradients to w, S_q and the width parameter Bhat_w (straight through Eq. 11).",
                eqs,
                {"B_w": B, "bound": B_BOUND, "per_channel": per_channel, "q_min": q_min, "q_max": q_max,
                 "N_per_step": n, "eps": 1e-5},
                {"param.weight": w, "param.step": np.asarray(step),
                 "param.width_param": np.asarray(D.width_hat(rng, B, B_BOUND)),
                 "grad_output.w_q": D.gaussian(rng, W_SHAPE)},
                margins={"u": float(D.crit_distance(D.weight_ratio(w, step), q_min, q_max).min())}))
    return cases


def compute_weight_quant(p, a):
    w, step, bhat = leaf(a["param.weight"]), leaf(a["param.step"]), leaf(a["param.width_param"])
    # Eq. 11: B_w = round(clip(Bhat_w, 1, bound))
    B = parametrized_width(bhat, p["bound"], "weight_width")
    # Eq. 6
    wq = quantize_weight(w, step, B, convention=p["convention"])
    wq.backward(a["grad_output.w_q"])
    s = np.maximum(step.data, step.dtype.type(1e-5))
    sb = s.reshape((-1,) + (1,) * (w.ndim - 1)) if s.ndim == 1 else s
    return {"output.w_q": wq.data, "output.level": i64(np.rint(wq.data / sb)), "output.B_w": i64(B.data),
            "grad.weight": w.grad, "grad.step": step.grad, "grad.width_param": bhat.grad}


# =============================================================================================
# the spiking neuron (Eq. 9-10, 12-17, 20, App. A.6-A.7, A.10-A.13, docs/method.md §6.5-6.6)
# =============================================================================================
N_SHAPE = (2, 3, 5)


def _neuron_case(seed, name, domain, B, T, rounding, tau, temporal_wise):
    rng = D.case_rng(seed, name)
    n_p = T_BOUND if temporal_wise else 1
    v_th = D.f32(rng.uniform(0.25, 0.6, n_p))
    bhat = D.f32([D.width_hat(rng, B, B_BOUND) for _ in range(n_p)])
    that = D.f32(T_HAT[T])
    V = np.broadcast_to(v_th, (T_BOUND,)).copy()
    bits = np.full(T_BOUND, B, np.int64)
    shift = ROUNDINGS[rounding]
    x = D.neuron_input(rng, N_SHAPE, V, bits, T, domain, shift, tau)
    q_min, q_max = spike_grid(B, domain)
    eqs = ["Eq. 9", "Eq. 10", "Eq. 12", "Eq. 13", "Eq. 20", "METHOD.md 6.5", "METHOD.md 6.6", "C1"]
    if domain == "positive":
        eqs += ["Eq. 14" if rounding == "round" else "Eq. 5", "Eq. 16", "Eq. 17", "App. A.6", "App. A.7"]
    else:
        eqs += ["Eq. 15", "App. A.10", "App. A.11", "App. A.12", "App. A.13"]
    if B == 1:
        eqs.append("C2")
    if T > 1:
        eqs.append("C3")
        if tau != 1:
            eqs.append("C4")
    desc = (f"{'Positive' if domain == 'positive' else 'Bidirectional'} spiking neuron, B_s = {B}, T = {T} "
            f"(T_bound {T_BOUND}), {'rounding (shift 1/2)' if rounding == 'round' else 'flooring (shift 0)'}, "
            f"tau = {tau}, "
            + ("temporal-wise thresholds and widths: " if temporal_wise else
               "one threshold and width shared over time: ") +
            "membrane v^t, integer spikes S^t, squeezed output y, and the gradients to the input x, the thresholds "
            "V_th, the width parameters Bhat_s (straight through Eq. 9) and That (Eq. 10, METHOD.md 6.5).")
    return Case(name, "neuron", desc, eqs,
                {"domain": domain, "rounding": rounding, "shift": shift, "tau": tau, "temporal_wise": temporal_wise,
                 "B_s": B, "T": T, "T_bound": T_BOUND, "bound": B_BOUND, "q_min": q_min, "q_max": q_max,
                 "N": int(np.prod(N_SHAPE))},
                {"input.x": x, "param.v_th": v_th, "param.width_param": bhat, "param.T_param": np.asarray(that),
                 "grad_output.y": D.gaussian(rng, N_SHAPE)},
                margins={"u": D.neuron_min_distance(x, V, bits, T, domain, shift, tau)})


def make_neurons(seed) -> list:
    cases = []
    for B in (1, 2, 4):
        for T in (1, 2, 3):
            for rounding in ("round", "floor"):
                for tau in (1, 2):
                    for tw in (True, False):
                        name = f"neuron_pos_B{B}_T{T}_{rounding}_tau{tau}_{'temporal' if tw else 'shared'}"
                        cases.append(_neuron_case(seed, name, "positive", B, T, rounding, tau, tw))
    for B in (1, 2, 3):
        for T in (1, 2):
            cases.append(_neuron_case(seed, f"neuron_bidir_B{B}_T{T}", "bidirectional", B, T, "round", 1, True))
    return cases


def _spikes(x, V, B, T, domain, rounding, tau, convention):
    """(v, S): membrane (T, ...) and integer spikes (T, ...) by the kernel's NumPy twin (Eq. 13-15)."""
    v = membrane_potentials(x, V, B, T, domain=domain, rounding=rounding, tau=tau, convention=convention,
                            impl="numpy")
    S = np.stack([emitted_spikes(v[t] / V[t], B[t], domain=domain, rounding=rounding) for t in range(T)])
    return v, i64(S)


def compute_neuron(p, a):
    x, vth = leaf(a["input.x"]), leaf(a["param.v_th"])
    bhat, that = leaf(a["param.width_param"]), leaf(a["param.T_param"])
    # Eq. 9: B_s^t = round(clip(Bhat_s^t, 1, bound));  Eq. 10: T = round(clip(That, 1, T_bound))
    B = parametrized_width(bhat, p["bound"], "spike_width")
    T = parametrized_width(that, p["T_bound"], "time")
    V = vth
    if not p["temporal_wise"]:  # one value shared over all steps
        ones = np.ones(p["T_bound"], x.dtype)
        B, V = B * ones, vth * ones
    y = spiking_neuron(x, V, B, T, domain=p["domain"], rounding=p["rounding"], tau=p["tau"],
                       convention=p["convention"])
    y.backward(a["grad_output.y"])
    Bi, Ti = i64(B.data), int(T.data)
    v, S = _spikes(x.data, V.data, Bi, Ti, p["domain"], p["rounding"], float(p["tau"]), p["convention"])
    return {"output.y": y.data, "output.v": v, "output.S": S, "output.B_s": Bi, "output.T": i64(Ti),
            "grad.x": x.grad, "grad.v_th": vth.grad, "grad.width_param": bhat.grad, "grad.T_param": that.grad}


# =============================================================================================
# spiking layers (neuron + squeeze + quantized conv / linear)
# =============================================================================================
LAYERS = {
    "spiking_conv": dict(layer="conv", in_channels=3, out_channels=4, kernel_size=3, stride=1, padding=1,
                         bias=False, x_shape=(2, 3, 5, 5),
                         config=dict(temporal_wise=True, per_channel_step=False, tau=1.0, rounding="round"),
                         widths=dict(weight=3, spike=(2, 3, 2), T=2)),
    "spiking_linear": dict(layer="linear", in_features=12, out_features=5, bias=True, x_shape=(3, 12),
                           config=dict(temporal_wise=False, per_channel_step=True, tau=2.0, rounding="round"),
                           widths=dict(weight=2, spike=(3,), T=3)),
}


def _build_layer(p, dt):
    cfg = SpikingConfig(**p["config"], convention=p["convention"])
    if p["layer"] == "conv":
        return SpikingConv2d(p["in_channels"], p["out_channels"], p["kernel_size"], stride=p["stride"],
                             padding=p["padding"], bias=p["bias"], config=cfg, rng=0, dtype=dt)
    return SpikingLinear(p["in_features"], p["out_features"], bias=p["bias"], config=cfg, rng=0, dtype=dt)


def make_layers(seed) -> list:
    cases = []
    for name, spec in LAYERS.items():
        rng = D.case_rng(seed, name)
        p = {k: v for k, v in spec.items() if k not in ("widths", "x_shape")}
        p["config"] = dict(spec["config"], weight_bound=B_BOUND, spike_bound=B_BOUND, time_bound=T_BOUND,
                           renewal="none")
        p["convention"] = "paper"
        layer = _build_layer(p, np.float64)
        wd = spec["widths"]
        n_p = T_BOUND if spec["config"]["temporal_wise"] else 1
        arrays = {}
        bw = D.width_hat(rng, wd["weight"], B_BOUND)
        bs = D.f32([D.width_hat(rng, b, B_BOUND) for b in wd["spike"]])
        th = D.f32(rng.uniform(0.2, 0.5, n_p))
        n_out = layer.weight.shape[0]
        step = D.f32(rng.uniform(0.03, 0.08, n_out)) if spec["config"]["per_channel_step"] else \
            np.asarray(D.f32(rng.uniform(0.03, 0.08)))
        w = D.weights(rng, layer.weight.shape, step, wd["weight"])
        V = np.broadcast_to(th, (T_BOUND,)).copy()
        bits = np.broadcast_to(np.array([int(width_value(b, B_BOUND)) for b in bs]), (T_BOUND,)).copy()
        shift = ROUNDINGS[spec["config"]["rounding"]]
        x = D.neuron_input(rng, spec["x_shape"], V, bits, wd["T"], "positive", shift, spec["config"]["tau"])
        arrays.update({"input.x": x, "param.weight": w, "param.weight_step": step,
                       "param.weight_width": np.asarray(bw), "param.threshold": th, "param.spike_width": bs,
                       "param.time": np.asarray(D.f32(T_HAT[wd["T"]]))})
        if spec["bias"]:
            arrays["param.bias"] = D.f32(rng.uniform(-0.1, 0.1, n_out))
        # the output's shape: run the layer once
        with no_grad():
            layer.eval()
            for pname, prm in layer.named_parameters():
                prm.data[...] = arrays[f"param.{pname}"]
            z = layer(Tensor(x))
        arrays["grad_output.z"] = D.gaussian(rng, z.shape)
        kind = "SpikingConv2d" if spec["layer"] == "conv" else "SpikingLinear"
        eqs = ["Eq. 6", "Eq. 9", "Eq. 10", "Eq. 11", "Eq. 12", "Eq. 13", "Eq. 14", "Eq. 16", "Eq. 17", "Eq. 18",
               "Eq. 19", "Eq. 20", "App. A.6", "App. A.7", "App. A.8", "App. A.9", "METHOD.md 5.1", "METHOD.md 6.5",
               "METHOD.md 6.6", "C1", "C3"]
        if spec["config"]["tau"] != 1:
            eqs.append("C4")
        cases.append(Case(
            name, "spiking_layer",
            f"A {kind} layer (eval mode: no LSQ initialisation, no renewal): positive neuron over T steps, temporal "
            "squeeze, quantized weights, then the "
            f"{'convolution' if spec['layer'] == 'conv' else 'linear map (+ bias)'}; forward intermediates and the "
            "gradients to the input and to every parameter.",
            eqs, p, arrays,
            margins={"u": min(D.neuron_min_distance(x, V, bits, wd["T"], "positive", shift, spec["config"]["tau"]),
                              float(D.crit_distance(D.weight_ratio(w, step), *weight_grid(wd["weight"])).min()))}))
    return cases


def run_layer(layer, a):
    """Load a case's ``param.*`` into ``layer``, run it in eval mode on ``input.x`` and back from
    ``grad_output.z``: (``x`` leaf, ``{output.z, grad.x, grad.<param>}``)."""
    for pname, prm in layer.named_parameters():
        prm.data[...] = a[f"param.{pname}"]
    layer.eval()
    x = leaf(a["input.x"])
    z = layer(x)
    z.backward(a["grad_output.z"])
    out = {"output.z": z.data, "grad.x": x.grad}
    for pname, prm in layer.named_parameters():
        out[f"grad.{pname}"] = prm.grad
    return x, out


def compute_spiking_layer(p, a):
    dt = a["input.x"].dtype
    layer = _build_layer(p, dt)
    x, out = run_layer(layer, a)
    c = layer.config
    with no_grad():
        B_w, B_s, T = layer.widths()
        V = layer.thresholds().data
        y = spiking_neuron(x.data, V, B_s.data, T.data, domain=c.domain, rounding=c.rounding, tau=c.tau,
                           convention=c.convention)
        wq = quantize_weight(layer.weight.data, layer.weight_step.data, B_w.data, convention=c.convention)
    Bi, Ti = i64(B_s.data), int(T.data)
    v, S = _spikes(x.data, V, Bi, Ti, c.domain, c.rounding, float(c.tau), c.convention)
    out.update({"output.y": y.data, "output.v": v, "output.S": S, "output.w_q": wq.data,
                "output.B_w": i64(B_w.data), "output.B_s": Bi, "output.T": i64(Ti)})
    return out


# =============================================================================================
# renewal: grid search (Alg. 2) and an observer sequence (Alg. 1, Eq. 24-25)
# =============================================================================================
GRIDS = {
    "renewal_grid_positive": dict(q_min=0, q_max=7, K=100, p=2.4, symmetric=None, sign="positive", n=64),
    "renewal_grid_symmetric": dict(q_min=-3, q_max=3, K=50, p=2.0, symmetric=None, sign="mixed", n=64),
}


def _draw_grid_X(rng, sign, n, q_min, q_max, K, p, symmetric):
    return D.grid_input(rng, n, sign == "positive", 1.0, [(q_min, q_max, K, p, symmetric, False)])


def make_grids(seed) -> list:
    cases = []
    for name, g in GRIDS.items():
        rng = D.case_rng(seed, name)
        X, gap = _draw_grid_X(rng, g["sign"], g["n"], g["q_min"], g["q_max"], g["K"], g["p"], g["symmetric"])
        cases.append(Case(
            name, "grid_search",
            f"Alg. 2 grid search over K = {g['K']} candidates with power p = {g['p']} on the grid "
            f"[{g['q_min']}, {g['q_max']}] "
            f"({'lo = 0: X is non-negative' if g['sign'] == 'positive' else 'lo = -hi: X has negative values'}); "
            "the winning range (V'_min, V'_max), its score and the score of every candidate k = 1..K.",
            ["Alg. 2"], {k: g[k] for k in ("q_min", "q_max", "K", "p", "symmetric")}, {"input.X": X},
            float64_arrays=("output.v_min", "output.v_max", "output.score", "output.scores"),
            margins={"grid": gap}))
    return cases


def compute_grid_search(p, a):
    X = a["input.X"]
    # C9: a 1-bit quantizer's grid ("one_bit", revision 2) is scored with sgn under the official convention
    sgn = bool(p.get("one_bit", False)) and p["convention"].one_bit_grid_sign
    lo, hi, score = grid_search(X, p["q_min"], p["q_max"], p["K"], p["p"], p["symmetric"], one_bit_sign=sgn)
    scores = D.grid_scores(X, p["q_min"], p["q_max"], p["K"], p["p"], p["symmetric"], one_bit_sign=sgn)
    return {"output.v_min": np.float64(lo), "output.v_max": np.float64(hi), "output.score": np.float64(score),
            "output.scores": scores}


OBSERVERS = {
    # a spike quantizer (positive grid, lo = 0 as in the layers): width 4 -> 4 (nothing) -> 3 -> 3 -> 2 -> 3
    "renewal_observer_spike": dict(quantizer="spike_positive", symmetric=False, K=100, p=2.4, b0=4,
                                   B=(4, 3, 3, 2, 3), signs=("positive",) * 5, scale=(1.0, 1.0, 1.3, 0.8, 1.6)),
    # a weight quantizer (symmetric grid; lo = -hi only when X has negative values): the first renewal sees
    # non-negative X, the second mixed-sign X, so the running range is asymmetric and C5 shows
    "renewal_observer_weight": dict(quantizer="weight", symmetric=None, K=100, p=2.4, b0=4,
                                    B=(3, 3, 2, 4, 2), signs=("positive", "mixed", "mixed", "mixed", "mixed"),
                                    scale=(0.2, 0.2, 0.1, 0.1, 0.3)),
}


def _grid_of(quantizer, B):
    return spike_grid(B, "positive") if quantizer == "spike_positive" else weight_grid(B)


def make_observers(seed) -> list:
    cases = []
    n = 48
    for name, o in OBSERVERS.items():
        rng = D.case_rng(seed, name)
        Xs, gaps = [], []
        for B, sign, scale in zip(o["B"], o["signs"], o["scale"]):
            q_min, q_max = _grid_of(o["quantizer"], B)
            X, gap = _draw_grid_X(rng, sign, n, q_min, q_max, o["K"], o["p"], o["symmetric"])
            Xs.append(D.f32(X * scale))
            gaps.append(D.grid_gap(D.grid_scores(Xs[-1], q_min, q_max, o["K"], o["p"], o["symmetric"])))
        cases.append(Case(
            name, "observer",
            "One bit-width observer (Alg. 1) on a "
            f"{'spike (positive grid, lo = 0)' if o['quantizer'] == 'spike_positive' else 'weight (symmetric grid)'} "
            f"quantizer over {len(o['B'])} forward passes with widths {list(o['B'])} (recorded width {o['b0']}, empty "
            "range at the start): whether it fires, the grid of each width, the running range (Eq. 24), the "
            "recorded width and the renewed step (Eq. 25; 0 where it did not fire).",
            ["Alg. 1", "Alg. 2", "Eq. 24", "Eq. 25", "C5"],
            {"quantizer": o["quantizer"], "symmetric": o["symmetric"], "K": o["K"], "p": o["p"]},
            {"input.X": np.stack(Xs), "input.B": i64(o["B"]), "input.b_old0": i64(o["b0"]),
             "input.v_rmin0": np.float64(np.inf), "input.v_rmax0": np.float64(-np.inf)},
            float64_arrays=("input.v_rmin0", "input.v_rmax0", "output.step", "output.v_rmin", "output.v_rmax"),
            margins={"grid": float(min(gaps))}))
    return cases


def compute_observer(p, a):
    formula = p["convention"].renewal_formula
    b_old, v_rmin, v_rmax = int(a["input.b_old0"]), float(a["input.v_rmin0"]), float(a["input.v_rmax0"])
    step = float(a.get("input.step0", np.nan))   # the quantizer's step: read by row C10 only
    rows = {k: [] for k in ("fired", "step", "b_old", "v_rmin", "v_rmax", "q_min", "q_max")}
    for X, B in zip(a["input.X"], a["input.B"]):
        q_min, q_max = _grid_of(p["quantizer"], int(B))
        if p["quantizer"] == "weight":
            # Alg. 1-2 for a weight quantizer; the convention picks the grid (C8, C9) or a rescaling (C10)
            r = observe_weight(X, int(B), b_old, v_rmin, v_rmax, step, conv=bool(p.get("conv", False)),
                               K=p["K"], p=p["p"], convention=p["convention"])
        else:
            r = observe(X, int(B), b_old, v_rmin, v_rmax, q_min, q_max, K=p["K"], p=p["p"],
                        symmetric=p["symmetric"], formula=formula)
        b_old, v_rmin, v_rmax = r.b_old, r.v_rmin, r.v_rmax
        step = r.step if r.fired else step
        for k, v in (("fired", int(r.fired)), ("step", r.step if r.fired else 0.0), ("b_old", b_old),
                     ("v_rmin", v_rmin), ("v_rmax", v_rmax), ("q_min", q_min), ("q_max", q_max)):
            rows[k].append(v)
    out = {f"output.{k}": (np.asarray(v, np.float64) if k in ("step", "v_rmin", "v_rmax") else i64(v))
           for k, v in rows.items()}
    return out
