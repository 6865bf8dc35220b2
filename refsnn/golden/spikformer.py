"""Golden cases of Spikformer (docs/method.md §13): one SSA block, and a training step of tiny_spikformer.

``ssa_block``: a spiking self-attention block alone (``refsnn.models.SSA``: the shared-input
qkv layer, BN over token features, the Q/K/V neurons with their own widths and one shared
T, the two products per head, the projection and its BN) on drawn tokens, given its whole
state (thresholds and weight steps initialised, renewal off): forward in training mode and
backward.  ``train_step_tiny_spikformer``: one iteration of Alg. A.1 exactly as
``train_step_tiny_resnet`` (``refsnn.golden.train_step``), on tiny_spikformer.

As in the ResNet step, the values that are rounded are computed by the model, so the model
seed was searched for the first one whose every decision is ``MIN_RATIO`` times farther from
its decision point than the float32-vs-float64 deviation, under both conventions, and is
pinned in ``train_step.MODEL_SEEDS``.
"""
from __future__ import annotations

import numpy as np

from ..autograd.tensor import Tensor, no_grad
from ..models import SSA, LayerBuilder
from ..nn import Module, SpikingConfig, spiking_layers
from . import draw as D
from .cases import B_BOUND, T_BOUND, Case
from .train_step import StepSpec, decision_sites, find_seed, make_train_step

SSA_NAME = "ssa_block"
SSA_SHAPE = (2, 4, 8)   # N samples, L tokens, D features
SSA_HEADS = 2
SSA_SCALE = 0.125
#: (Bhat_w or None, (Bhat_s^t ...), That) of the block's layers; Q/K/V share T = 2
SSA_WIDTHS = {"attn.qkv": (3.21, (3.27, 4.22, 4.31), 1.78), "attn.q_neuron": (None, (2.26, 3.18, 4.14), 1.78),
              "attn.k_neuron": (None, (3.24, 2.21, 4.2), 1.78), "attn.v_neuron": (None, (4.13, 1.79, 4.2), 1.78),
              "attn.proj": (4.24, (2.74, 3.78, 4.2), 1.21)}

STEP_SPEC = StepSpec(
    "train_step_tiny_spikformer", "tiny_spikformer", (0, 1),
    {"sps.conv0": (4.21, (3.27, 4.22, 4.31), 1.78),           # T = 2; spike step 1 renews (3 != 4)
     "sps.conv1": (3.79, (4.13, 3.83, 4.24), 1.21),           # T = 1; nothing renews
     "sps.conv2": (2.78, (4.26, 4.18, 4.14), 0.77),           # T = 1; weight renews (3)
     "sps.conv3": (4.27, (4.31, 3.78, 2.74), 1.78),           # T = 2; nothing
     "sps.rpe": (4.14, (4.2, 4.2, 4.2), 0.77),                # T = 1; nothing
     "blocks.0.attn.qkv": (3.21, (4.2, 4.13, 4.2), 1.78),     # T = 2; weight (3)
     "blocks.0.attn.q_neuron": (None, (2.26, 4.18, 4.14), 1.78),  # shared T = 2; spike step 1 (2)
     "blocks.0.attn.k_neuron": (None, (4.24, 3.21, 4.2), 1.78),   # spike step 2 (3)
     "blocks.0.attn.v_neuron": (None, (4.13, 4.31, 4.2), 1.78),   # nothing
     "blocks.0.attn.proj": (4.24, (4.2, 4.2, 4.2), 2.21),    # T = 2; nothing
     "blocks.0.mlp.fc1": (5.23, (4.24, 2.19, 3.77), 2.21),   # T = 2; weight (5), spike step 2 (2)
     "blocks.0.mlp.fc2": (4.2, (4.13, 4.2, 4.2), 1.21),      # T = 1; nothing
     "head": (2.24, (3.21, 3.26, 4.2), 1.78)},                # T = 2; weight (2), spike steps 1-2 (3)
    (("sps.conv0", "obs_s_vrmin", 0, -0.75), ("sps.conv0", "obs_s_vrmax", 0, 2.5),
     ("blocks.0.attn.q_neuron", "obs_s_vrmin", 0, -0.2), ("blocks.0.attn.q_neuron", "obs_s_vrmax", 0, 1.5)))


class _Holder(Module):
    """One SSA block under the name ``attn`` (so its layer names read ``attn.qkv`` ...)."""

    def __init__(self, p, dt, seed):
        super().__init__()
        cfg = SpikingConfig(**p["config"], convention=p["convention"])
        b = LayerBuilder(SSA_NAME, cfg, None, True, seed, dt)
        self.attn = SSA(b, "attn", p["dim"], p["heads"], p["tokens"], p["scale"])
        b.finish(self)

    def forward(self, x):
        return self.attn(x)


def _ssa_params(convention="paper") -> dict:
    n, L, D_ = SSA_SHAPE
    return {"tokens": L, "dim": D_, "heads": SSA_HEADS, "scale": SSA_SCALE, "convention": convention,
            "config": {"weight_bits": 4.0, "spike_bits": 4.0, "time_steps": 2.0, "weight_bound": B_BOUND,
                       "spike_bound": B_BOUND, "time_bound": T_BOUND, "renewal": "none"}}


def _ssa_prepare(p, seed, x, dt=np.float64):
    """The block in its state: widths set, steps and thresholds initialised (LSQ) on ``x``, BN drawn."""
    m = _Holder(p, np.float64, seed)
    for name, l in spiking_layers(m):
        bw, bs, t = SSA_WIDTHS[name]
        if l.has_weight:
            l.weight_width.data[...] = D.f32(bw)
        l.spike_width.data[...] = D.f32(bs)
        l.time.data[...] = D.f32(t)
    m.train()
    with no_grad():
        m(Tensor(x))  # docs/method.md §11: the LSQ initialisation at the first batch
    rng = D.case_rng(seed, SSA_NAME + "/bn")
    for name, prm in m.named_parameters():
        if prm.kind == "bn":
            prm.data[...] = D.f32((1.0 if name.endswith("weight") else 0.0) + 0.2 * rng.standard_normal(prm.shape))
        else:
            prm.data[...] = D.f32(prm.data)
    state = {k: (D.f32(v) if v.dtype == np.float64 and "obs_" not in k else v) for k, v in m.state_dict().items()}
    if dt != np.float64:
        m = _Holder(p, dt, seed)
    m.load_state_dict({k: (v.astype(dt) if v.dtype == np.float64 and "obs_" not in k else v)
                       for k, v in state.items()})
    return m, state


def _ssa_tokens(seed):
    return D.f32(D.case_rng(seed, SSA_NAME).standard_normal(SSA_SHAPE))


def make_ssa(seed) -> list:
    p = _ssa_params()
    x = _ssa_tokens(seed)
    chosen, margins = find_seed(lambda q, s, dt: decision_sites(_ssa_prepare(q, s, x, dt)[0], x.astype(dt)), p,
                                SSA_NAME)
    p["model_seed"] = chosen
    m, state = _ssa_prepare(p, chosen, x)
    params = dict(m.named_parameters())
    arrays = {"input.x": x, "grad_output.y": D.gaussian(D.case_rng(seed, SSA_NAME + "/g"), SSA_SHAPE)}
    for k, v in state.items():
        arrays[("param." if k in params else "input.state.") + k] = v
    f64 = tuple(f"input.state.{k}" for k in state if "obs_" in k and state[k].dtype == np.float64)
    desc = ("One spiking self-attention block (METHOD.md 13) on 2 x 4 tokens of 8 features, 2 heads, scale 0.125, "
            "training mode, renewal off, thresholds and weight steps given: qkv = BN(x W_qkv) (one input neuron "
            "for W_q, W_k, W_v), Q = N_q(q), K = N_k(k), V = N_v(v) with their own widths and one shared T, "
            "A = Q K^T * scale per head, O = A V, y = BN(O W_o). Outputs: Q, K, V (squeezed neuron outputs), y, "
            "the gradients of L = sum(grad_output.y * y) to x and to every parameter (the shared That as "
            "attn.time), and the buffers after the pass (BN running statistics).")
    eqs = ["Eq. 6", "Eq. 9", "Eq. 10", "Eq. 11", "Eq. 12", "Eq. 13", "Eq. 14", "Eq. 16", "Eq. 17", "Eq. 18",
           "Eq. 19", "Eq. 20", "App. A.6", "App. A.7", "App. A.8", "App. A.9", "METHOD.md 6.5", "METHOD.md 6.6",
           "METHOD.md 13", "C1", "C3"]
    return [Case(SSA_NAME, "ssa", desc, eqs, p, arrays, float64_arrays=f64 + tuple(
        k.replace("input.", "output.") for k in f64), margins=margins)]


def compute_ssa(p, a):
    dt = a["input.x"].dtype
    m = _Holder(p, dt, p["model_seed"])
    state = {k.split(".", 1)[1] if k.startswith("param.") else k[len("input.state."):]: v
             for k, v in a.items() if k.startswith(("param.", "input.state."))}
    m.load_state_dict(state)
    outs = {}
    for n in ("q", "k", "v"):
        def keep(module, args, y, _n=n):  # the squeezed output of N_q, N_k, N_v
            outs[_n] = y.data.copy()
        getattr(m.attn, f"{n}_neuron").register_forward_hook(keep)
    m.train()
    x = Tensor(a["input.x"], requires_grad=True)
    y = m(x)
    y.backward(a["grad_output.y"])
    out = {"output.q": outs["q"], "output.k": outs["k"], "output.v": outs["v"], "output.y": y.data,
           "grad.x": x.grad}
    for name, prm in m.named_parameters():
        if prm.grad is not None:
            out[f"grad.{name}"] = prm.grad.copy()
    params = dict(m.named_parameters())
    for k, v in m.state_dict().items():
        if k not in params:
            out[f"output.state.{k}"] = v
    return out


def make_train_step_spikformer(seed) -> list:
    desc = ("One training step (Alg. A.1) of tiny_spikformer (METHOD.md 13) on 2 digits, exactly as "
            "train_step_tiny_resnet: LSQ initialisation of the steps (first batch), observers renewing the steps "
            "whose rounded width changed (spike and weight; the Q/K/V neurons included), forward, cross-entropy + "
            "regulating loss (Eq. 21, the Q/K/V neurons counted in S and T), backward, SGD step. The Q/K/V neurons "
            "share one That (blocks.0.attn.time). Outputs: every spiking layer's analog input, the thresholds (and "
            "weight steps) used by the forward, logits, losses, W/S/T, every gradient, every parameter and buffer "
            "after the step.")
    return make_train_step(seed, STEP_SPEC, description=desc, extra_eqs=("METHOD.md 13",))
