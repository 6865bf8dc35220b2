"""Golden cases of sequential mode and event data (docs/method.md §14; Eq. 3-5).

``seq_neuron``   the sequential neuron: a current per step, no squeeze (positive / bidirectional,
                 rounding / flooring, tau 1 / 2) and the prior-art neuron of Eq. 3-5 (amplitude alpha)
``seq_spiking_conv``  a SpikingConv2d in sequential mode (T = 3)
``to_frames``    an event stream integrated into frames (both slicings)

Inputs follow the margins of ``draw.py``: every ``u^t = v^t / V_th^t`` keeps ``MARGIN`` from its
quantizer's decision points at every step, under both reset conventions (C4).
"""
from __future__ import annotations

import numpy as np

from ..autograd.tensor import Tensor, no_grad
from ..data.events import make_events, to_frames
from ..method.conventions import get_convention
from ..method.neuron import ROUNDINGS, sequential_membrane, sequential_neuron, spike_grid
from ..method.parametrize import parametrized_width, width_value
from ..method.weight_quant import quantize_weight
from ..nn import SpikingConfig, SpikingConv2d
from . import draw as D
from .cases import Case, i64, leaf
from .op_cases import run_layer

T_SEQ = 3
T_BOUND = 4
B_BOUND = 6
SEQ_SHAPE = (2, 3, 4)
SEQ_BITS = (1, 2, 4, 3)


def seq_u(I, V, bits, domain, shift, tau, reset_decay, alpha=None):
    """``u^t = v^t / V_th^t`` (shape of I) of the sequential neuron, float64, by the kernel's NumPy twin."""
    conv = get_convention("official" if reset_decay else "paper")
    v = sequential_membrane(np.asarray(I, np.float64), np.asarray(V, np.float64), np.asarray(bits, np.int64),
                            domain=domain, rounding="round" if shift else "floor", tau=tau, convention=conv,
                            impl="numpy", alpha=None if alpha is None else np.asarray(alpha, np.float64))
    T = I.shape[0]
    return v / np.asarray(V, np.float64)[:T].reshape((T,) + (1,) * (np.ndim(I) - 1))


def seq_input(rng, shape, V, bits, domain, shift, tau, alpha=None) -> tuple:
    """Currents (T, *shape) whose every u^t keeps MARGIN from a decision point (both C4 readings), and the
    achieved margin. Per element, the whole time series is redrawn until it qualifies."""
    T = shape[0]
    q_min, q_max = spike_grid(int(bits[0]), domain)
    lo = q_min - 1.5 if domain == "bidirectional" else -1.0
    n = int(np.prod(shape[1:]))

    def draw(m):
        return D.f32(rng.uniform(lo, q_max + 1.5, (T, m)) * np.asarray(V[:T])[:, None])

    I = draw(n)
    for _ in range(2000):
        d = np.full(I.shape, np.inf)
        for rd in (False, True):
            d = np.minimum(d, D.spike_distance(seq_u(I, V, bits, domain, shift, tau, rd, alpha), I, bits, domain))
        bad = (d < D.MARGIN).any(axis=0)
        if not bad.any():
            return I.reshape(shape), float(d.min())
        I[:, bad] = draw(int(bad.sum()))
    raise RuntimeError("golden: could not draw sequential neuron inputs with the required margin")


def _seq_neuron_case(seed, name, domain, rounding, tau, prior):
    rng = D.case_rng(seed, name)
    V = D.f32(rng.uniform(0.25, 0.6, T_BOUND))
    bits = np.array(SEQ_BITS, np.int64) if domain == "positive" else np.array((2, 1, 3, 2), np.int64)
    bhat = D.f32([D.width_hat(rng, int(b), B_BOUND) for b in bits])
    alpha = D.f32(rng.uniform(0.3, 0.7, T_BOUND)) if prior else None
    shift = ROUNDINGS[rounding]
    x, margin = seq_input(rng, (T_SEQ,) + SEQ_SHAPE, V, bits, domain, shift, tau, alpha)
    eqs = ["Eq. 9", "Eq. 13", "Eq. 20", "METHOD.md 6.6", "METHOD.md 14", "C1", "C2", "C3"]
    eqs += ["Eq. 14" if rounding == "round" else "Eq. 5"] if domain == "positive" else ["Eq. 15"]
    eqs += ["Eq. 16", "Eq. 17", "App. A.6", "App. A.7"] if domain == "positive" else \
        ["App. A.10", "App. A.11", "App. A.12", "App. A.13"]
    if prior:
        eqs += ["Eq. 3", "Eq. 4", "Eq. 5"]
    if tau != 1:
        eqs.append("C4")
    desc = (f"{'Prior-art (Eq. 3-5, amplitude alpha^t, reset alpha S) ' if prior else ''}"
            f"{'positive' if domain == 'positive' else 'bidirectional'} neuron in sequential mode (METHOD.md 14): "
            f"a current per step, T = {T_SEQ} (T_bound {T_BOUND}), B_s^t = {list(map(int, bits[:T_SEQ]))}, "
            f"{'rounding' if rounding == 'round' else 'flooring'}, tau = {tau}, no squeeze: the per-step output "
            f"Shat^t = {'alpha^t' if prior else 'V_th^t'} S^t, membrane v^t, integer spikes S^t, and the gradients "
            f"to the currents, the thresholds, the width parameters{' and alpha' if prior else ''}.")
    inputs = {"input.x": x, "param.v_th": V, "param.width_param": bhat, "grad_output.Shat": D.gaussian(rng, x.shape)}
    if prior:
        inputs["param.alpha"] = alpha
    return Case(name, "seq_neuron", desc, eqs,
                {"domain": domain, "rounding": rounding, "shift": shift, "tau": tau, "T": T_SEQ, "T_bound": T_BOUND,
                 "bound": B_BOUND, "prior_art": prior, "N_per_step": int(np.prod(SEQ_SHAPE))},
                inputs, margins={"u": margin})


def make_seq_neurons(seed) -> list:
    cases = []
    for domain in ("positive", "bidirectional"):
        for rounding in ("round", "floor"):
            for tau in (1, 2):
                tag = "pos" if domain == "positive" else "bidir"
                cases.append(_seq_neuron_case(seed, f"seq_neuron_{tag}_{rounding}_tau{tau}", domain, rounding, tau,
                                              False))
    cases.append(_seq_neuron_case(seed, "seq_neuron_prior_art_tau2", "positive", "floor", 2, True))
    return cases


def compute_seq_neuron(p, a):
    x, vth, bhat = leaf(a["input.x"]), leaf(a["param.v_th"]), leaf(a["param.width_param"])
    alpha = leaf(a["param.alpha"]) if p["prior_art"] else None
    # Eq. 9: B_s^t = round(clip(Bhat_s^t, 1, bound))
    B = parametrized_width(bhat, p["bound"], "spike_width")
    Shat = sequential_neuron(x, vth, B, domain=p["domain"], rounding=p["rounding"], tau=p["tau"],
                             convention=p["convention"], alpha=alpha)
    Shat.backward(a["grad_output.Shat"])
    Bi = i64(B.data)
    v = sequential_membrane(x.data, vth.data, Bi, domain=p["domain"], rounding=p["rounding"], tau=p["tau"],
                            convention=p["convention"], alpha=None if alpha is None else alpha.data)
    amp = (alpha if alpha is not None else vth).data[: x.shape[0]].reshape((-1,) + (1,) * (x.ndim - 1))
    out = {"output.Shat": Shat.data, "output.v": v, "output.S": i64(np.rint(Shat.data / amp)), "output.B_s": Bi,
           "grad.x": x.grad, "grad.v_th": vth.grad, "grad.width_param": bhat.grad}
    if alpha is not None:
        out["grad.alpha"] = alpha.grad
    return out


# ---------------------------------------------------------------------------------------------
# a SpikingConv2d in sequential mode
# ---------------------------------------------------------------------------------------------
CONV = dict(in_channels=2, out_channels=3, kernel_size=3, stride=1, padding=1, x_shape=(T_SEQ, 2, 2, 4, 4),
            config=dict(temporal_mode="sequential", time_steps=float(T_SEQ), time_bound=T_BOUND, temporal_wise=True,
                        tau=1.0, rounding="round", weight_bound=B_BOUND, spike_bound=B_BOUND, renewal="none"))


def _seq_conv(p, dt):
    cfg = SpikingConfig(**p["config"], convention=p["convention"])
    return SpikingConv2d(p["in_channels"], p["out_channels"], p["kernel_size"], stride=p["stride"],
                         padding=p["padding"], bias=False, config=cfg, rng=0, dtype=dt)


def make_seq_layers(seed) -> list:
    name = "seq_spiking_conv"
    rng = D.case_rng(seed, name)
    p = {k: v for k, v in CONV.items() if k != "x_shape"}
    p["convention"] = "paper"
    layer = _seq_conv(p, np.float64)
    th = D.f32(rng.uniform(0.2, 0.5, T_BOUND))
    bs = D.f32([D.width_hat(rng, b, B_BOUND) for b in (2, 3, 1, 2)])
    bits = np.array([int(width_value(b, B_BOUND)) for b in bs])
    step = np.asarray(D.f32(rng.uniform(0.03, 0.08)))
    w = D.weights(rng, layer.weight.shape, step, 3)
    x, margin = seq_input(rng, CONV["x_shape"], th, bits, "positive", 0.5, 1.0)
    arrays = {"input.x": x, "param.weight": w, "param.weight_step": step,
              "param.weight_width": np.asarray(D.width_hat(rng, 3, B_BOUND)), "param.threshold": th,
              "param.spike_width": bs,
              "grad_output.z": D.gaussian(rng, (T_SEQ, 2, 3, 4, 4))}
    eqs = ["Eq. 6", "Eq. 9", "Eq. 11", "Eq. 13", "Eq. 14", "Eq. 16", "Eq. 17", "Eq. 18", "Eq. 19", "Eq. 20",
           "App. A.6", "App. A.7", "App. A.8", "App. A.9", "METHOD.md 6.6", "METHOD.md 14", "C1", "C3"]
    return [Case(name, "seq_spiking_layer",
                 "A SpikingConv2d in sequential mode (METHOD.md 14; eval mode): input (T, N, C, H, W) = (3, 2, 2, 4, 4), "
                 "the positive neuron step by step with no squeeze, quantized weights, the convolution of every step "
                 "in one call over T*N; forward intermediates and the gradients to the input and every parameter.",
                 eqs, p, arrays, margins={"u": margin})]


def compute_seq_spiking_layer(p, a):
    layer = _seq_conv(p, a["input.x"].dtype)
    x, out = run_layer(layer, a)
    c = layer.config
    with no_grad():
        B_w, B_s, _ = layer.widths()
        Shat = sequential_neuron(Tensor(x.data), layer.thresholds().data, B_s.data, convention=c.convention)
        wq = quantize_weight(layer.weight.data, layer.weight_step.data, B_w.data, convention=c.convention)
    out.update({"output.Shat": Shat.data, "output.w_q": wq.data, "output.B_w": i64(B_w.data),
                "output.B_s": i64(B_s.data)})
    return out


# ---------------------------------------------------------------------------------------------
# event frames
# ---------------------------------------------------------------------------------------------
def make_frames(seed) -> list:
    name = "to_frames"
    rng = D.case_rng(seed, name)
    n, h, w = 157, 5, 6
    t = np.sort(rng.integers(0, 10_000, n))
    arrays = {"input.t": t, "input.x": rng.integers(0, w, n), "input.y": rng.integers(0, h, n),
              "input.p": rng.integers(0, 2, n)}
    return [Case(name, "to_frames",
                 f"An event stream of {n} events on a {h}x{w} sensor integrated into T = 4 frames of 2 channels "
                 "(OFF, ON counts), split by event count (d = n // T, the last slice takes the rest) and by time "
                 "(k = floor((t - t_0) T / (t_last - t_0)), the last slice closed); both are exact integer rules.",
                 ["METHOD.md 14"], {"T": 4, "height": h, "width": w}, arrays)]


def compute_to_frames(p, a):
    ev = make_events(a["input.t"], a["input.x"], a["input.y"], a["input.p"], height=p["height"], width=p["width"])
    return {f"output.frames_{s}": i64(to_frames(ev, p["T"], p["height"], p["width"], split_by=s))
            for s in ("number", "time")}
