"""The port's golden cases of sequential mode, event frames (docs/method.md §14) and one SSA block (§13)."""
from __future__ import annotations

import numpy as np
import torch

from ..method.neuron import ROUNDINGS
from ..models import SSA, LayerBuilder
from ..nn.spiking import SpikingConfig
from .ambiguity import NeuronTaps
from .events import to_frames
from .functions import quantize_weight, round_clip
from .golden_util import TORCH, allowances, i64, leaf, run_layer, to_np
from .layers import SpikingConv2d, spiking_layers
from .models import convert_module, load_numpy_state, state_to_numpy
from .sequential import seq_membrane, sequential_neuron


# =============================================================================================
# sequential mode (docs/method.md §14), event frames
# =============================================================================================
def compute_seq_neuron(p, a):
    x, vth, bhat = leaf(a["input.x"]), leaf(a["param.v_th"]), leaf(a["param.width_param"])
    alpha = leaf(a["param.alpha"]) if p["prior_art"] else None
    # Eq. 9: B_s^t = round(clip(Bhat_s^t, 1, bound))
    B = round_clip(bhat, p["bound"], "spike_width")
    Shat = sequential_neuron(x, vth, B, domain=p["domain"], rounding=p["rounding"], tau=float(p["tau"]),
                             convention=p["convention"], alpha=alpha)
    Shat.backward(torch.from_numpy(a["grad_output.Shat"]))
    Bi = [int(b) for b in B.tolist()]
    amp = (alpha if alpha is not None else vth).detach()
    _, v = seq_membrane(x.detach(), vth.detach(), amp, Bi, p["domain"], ROUNDINGS[p["rounding"]], float(p["tau"]),
                        p["convention"].reset_decay)
    S = torch.round(Shat.detach() / amp[:x.shape[0]].reshape((-1,) + (1,) * (x.dim() - 1)))
    out = {"output.Shat": to_np(Shat), "output.v": to_np(v), "output.S": i64(to_np(S)), "output.B_s": i64(Bi),
           "grad.x": to_np(x.grad), "grad.v_th": to_np(vth.grad), "grad.width_param": to_np(bhat.grad)}
    if alpha is not None:
        out["grad.alpha"] = to_np(alpha.grad)
    return out


def compute_seq_spiking_layer(p, a):
    cfg = SpikingConfig(**p["config"], convention=p["convention"])
    layer = SpikingConv2d(p["in_channels"], p["out_channels"], p["kernel_size"], stride=p["stride"],
                          padding=p["padding"], bias=False, config=cfg, dtype=TORCH[a["input.x"].dtype])
    x, out = run_layer(layer, a)
    with torch.no_grad():
        B_w, B_s, _ = layer.widths()
        Shat = sequential_neuron(x, layer.thresholds(), B_s, convention=cfg.convention)
        wq = quantize_weight(layer.weight, layer.weight_step, B_w, convention=cfg.convention)
    out.update({"output.Shat": to_np(Shat), "output.w_q": to_np(wq), "output.B_w": i64(to_np(B_w)),
                "output.B_s": i64(to_np(B_s))})
    return out


def compute_to_frames(p, a):
    ev = [torch.from_numpy(a[f"input.{k}"]) for k in "txyp"]
    return {f"output.frames_{s}": i64(to_np(to_frames(*ev, p["T"], p["height"], p["width"], split_by=s)))
            for s in ("number", "time")}


# =============================================================================================
# Spikformer: one SSA block (docs/method.md §13)
# =============================================================================================
class Holder(torch.nn.Module):
    """One torch SSA block under the name ``attn`` (its layers read ``attn.qkv`` ..., as in the case)."""

    def __init__(self, attn):
        super().__init__()
        self.attn = attn

    def forward(self, x):
        return self.attn(x)


def _ssa_block(p, dtype):
    cfg = SpikingConfig(**p["config"], convention=p["convention"])
    b = LayerBuilder("ssa_block", cfg, None, True, p["model_seed"], np.float64)
    return Holder(convert_module(SSA(b, "attn", p["dim"], p["heads"], p["tokens"], p["scale"]),
                                 {"dtype": dtype, "device": None}))


def compute_ssa(p, a):
    m = _ssa_block(p, TORCH[a["input.x"].dtype])
    state = {k.split(".", 1)[1] if k.startswith("param.") else k[len("input.state."):]: v
             for k, v in a.items() if k.startswith(("param.", "input.state."))}
    load_numpy_state(m, state)
    outs = {}
    for n in ("q", "k", "v"):   # the squeezed outputs of N_q, N_k, N_v
        getattr(m.attn, f"{n}_neuron").register_forward_hook(lambda mod, args, y, _n=n: outs.__setitem__(_n, to_np(y)))
    m.train()
    taps = NeuronTaps(spiking_layers(m))
    x = leaf(a["input.x"])
    y = m(x)
    y.backward(torch.from_numpy(a["grad_output.y"]))
    out = allowances(taps, spiking_layers(m), dict(m.named_parameters()), x.dtype)
    out.update({"output.q": outs["q"], "output.k": outs["k"], "output.v": outs["v"], "output.y": to_np(y), "grad.x": to_np(x.grad)})
    for name, prm in m.named_parameters():
        if prm.grad is not None:
            out[f"grad.{name}"] = to_np(prm.grad)
    params = dict(m.named_parameters())
    for k, v in state_to_numpy(m).items():
        if k not in params:
            out[f"output.state.{k}"] = v
    return out
