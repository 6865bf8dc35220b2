"""The experiments of ``verify.renewal_effect`` on the trained tiny_resnet (``verify.fixture``):
(b) the membrane potentials and the whole network right after a spike-width drop, kept against
renewed thresholds, and (c) training through a drop with renewal on and off; with the observer of
Alg. 1 (``renew``) they and the half-normal experiment (a) share.  The derivation and the claims
are in ``verify.renewal_effect``.
"""
from __future__ import annotations

import math

import numpy as np

from .common import quant_pos_round, quant_sym
from .fixture import calibration_batch, capture, evaluate, pretrained, sgd_steps, single_thread, spiking

#: the grid search of Alg. 2: K candidate ranges, score exponent p
K_GRID, P_SCORE = 100, 2.4


def renew(X, b_new: int, b_old: int, v_rmin=math.inf, v_rmax=-math.inf, symmetric=False):
    """The observer of Alg. 1 on data X at the new width (positive or symmetric grid)."""
    from refsnn.method.renewal import observe
    if symmetric:
        q = 1 if b_new == 1 else 2 ** (b_new - 1) - 1
        q_min, q_max = -q, q
    else:
        q_min, q_max = 0, 2 ** b_new - 1
    return observe(X, b_new, b_old, v_rmin, v_rmax, q_min, q_max, K=K_GRID, p=P_SCORE, symmetric=symmetric,
                   formula="paper")


# --------------------------------------------------------------------------- #
# (b) real membrane potentials and the network right after a drop
# --------------------------------------------------------------------------- #
def layer_inputs(model, xb):
    """{layer: (layer, I)}: the analog input current of every spiking layer in a train-mode
    forward of the batch xb (as the observers see it); the model's state is restored."""
    from refsnn.autograd.tensor import Tensor, no_grad
    sd = model.state_dict()
    model.train()
    with capture(model) as st, no_grad():
        model(Tensor(xb))
    model.load_state_dict(sd)  # BN running statistics back
    return {name: (layer, st[name]["x"]) for name, layer in spiking(model)}


def quant_mse(v, s, b, domain):
    q = quant_sym(v, s, b) if domain == "bidirectional" else quant_pos_round(v, s, b)
    return float(np.mean((v - q) ** 2))


def best_step_grid(v, b, domain, n=100):
    """The MSE-optimal step on a grid of n ranges (reference for the renewed step)."""
    R = float(np.max(np.abs(v))) if domain == "bidirectional" else float(np.max(v))
    q = (1 if b == 1 else 2 ** (b - 1) - 1) if domain == "bidirectional" else 2 ** b - 1
    steps = np.linspace(R / n, R, n) / q
    m = [quant_mse(v, s, b, domain) for s in steps]
    i = int(np.argmin(m))
    return float(steps[i]), float(m[i])


def real_membranes(model, seed: int, batch: int = 64):
    """Per layer and b' = 3, 2, 1 (from 4 bits): the neuron run with the kept thresholds and with the
    thresholds renewed step after step as the layer's observers do (v^2 depends on the renewed V^1)."""
    from refsnn.kernels.neuron import neuron_forward
    xb, _ = calibration_batch(batch, seed)
    rows = []
    for name, (layer, I) in layer_inputs(model, xb).items():
        c = layer.config
        T = layer.width_values()[2]
        V0 = np.ascontiguousarray(layer.threshold.data.copy())
        sym = c.domain == "bidirectional"
        for bp in (3, 2, 1):
            B = np.full(len(V0), bp, dtype=np.int64)
            Vr = V0.copy()
            for t in range(T):  # Alg. 1 per step, in order, on v^t under the already renewed earlier steps
                _, v = neuron_forward(I, Vr, B, t + 1, domain=c.domain)
                res = renew(v[t].ravel(), bp, 4, symmetric=sym)
                if res.fired:
                    Vr[t] = max(res.step, 1e-5)
            for arm, V in (("kept", V0), ("renewed", Vr)):
                y, v = neuron_forward(I, V, B, T, domain=c.domain)
                for t in range(T):
                    vt = v[t].ravel()
                    row = {"layer": name, "t": t + 1, "domain": c.domain, "bp": bp, "arm": arm, "s": float(V[t]),
                           "mse": quant_mse(vt, float(V[t]), bp, c.domain),
                           "mse_y": float(np.mean((y - I) ** 2))}
                    if arm == "renewed":
                        row["s_best"], row["mse_best"] = best_step_grid(vt, bp, c.domain)
                    rows.append(row)
    # one row per (layer, t, b'): kept next to renewed
    out = []
    for r in rows:
        if r["arm"] != "kept":
            continue
        key = (r["layer"], r["t"], r["bp"])
        n = [q for q in rows if q["arm"] == "renewed" and (q["layer"], q["t"], q["bp"]) == key][0]
        out.append({"layer": r["layer"], "t": r["t"], "domain": r["domain"], "bp": r["bp"], "s_kept": r["s"],
                    "mse_kept": r["mse"], "s_renewed": n["s"], "mse_renewed": n["mse"], "s_best": n["s_best"],
                    "mse_best": n["mse_best"], "mse_y_kept": r["mse_y"], "mse_y_renewed": n["mse_y"]})
    return out


def network_after_drop(model, seed: int, batch: int = 64):
    """Test accuracy / CE right after every spike width drops 4 -> b', kept vs renewed thresholds."""
    from refsnn.autograd.tensor import Tensor, no_grad
    sd = model.state_dict()
    xb, _ = calibration_batch(batch, seed)
    out = {"before": evaluate(model)}
    for bp in (3, 2, 1):
        model.load_state_dict(sd)
        for _, layer in spiking(model):
            layer.spike_width.data[...] = bp
        out[(bp, "kept")] = evaluate(model)
        model.train()
        with no_grad():
            model(Tensor(xb))  # the observers fire (Alg. 1): thresholds renewed layer by layer
        renewed = {n: l.threshold.data.copy() for n, l in spiking(model)}
        model.load_state_dict(sd)  # BN running statistics and observers back
        for n, layer in spiking(model):
            layer.spike_width.data[...] = bp
            layer.threshold.data[...] = renewed[n]
        out[(bp, "renewed")] = evaluate(model)
    model.load_state_dict(sd)
    return out


# --------------------------------------------------------------------------- #
# (c) training through a drop, renewal on / off
# --------------------------------------------------------------------------- #
def drop_run(pre_steps: int, post_steps: int, seed: int, bp: int, batch: int = 64):
    out = {}
    for arm in ("on", "off"):
        model, opt, info = pretrained(pre_steps, seed, batch)
        for _, layer in spiking(model):
            layer.spike_width.data[...] = bp
            layer.renew_spike[...] = arm == "on"
        with single_thread():
            losses = sgd_steps(model, opt, post_steps, np.random.default_rng(5000 + seed), batch)
            acc, ce = evaluate(model)
        out[arm] = {"losses": losses, "acc": acc, "ce": ce}
    out["pre"] = {"acc": info["acc"], "ce": info["ce"], "losses": info["losses"]}
    return out


def training(sz: dict, seed: int):
    seeds = [seed + k for k in range(sz["seeds"])]
    runs = {bp: [drop_run(sz["pre"], sz["post"], s, bp, sz["batch"]) for s in seeds] for bp in sz["drops"]}
    return {"seeds": seeds, "pre": sz["pre"], "post": sz["post"], "batch": sz["batch"], "runs": runs}
