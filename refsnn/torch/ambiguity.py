"""What a golden array may legitimately differ by in another implementation, computed from the case's own data
(docs/golden.md, "The port": allowances).  Two sources, each an elementwise bound added to the manifest's atol:

**Sums with cancellation** (``time_allowance``).  dL/dThat = -sum_j g_j y_j / T (docs/method.md §6.5) sums a
whole layer's map whose terms cancel: the result can be 100x smaller than its terms.  The g_j reach the sum
through a backward pass whose summation order is the implementation's own; each g_j then carries a relative
error of a few units of roundoff, and the sum an error bounded by (condition-number bound)

    |delta dL/dThat| <= CANCEL * eps(dtype) * sum_j |g_j y_j| / T,      CANCEL = 16

(eps: 2^-23 in float32, 2^-52 in float64; summed over the neurons that share one That).  The manifest's own
float32 tolerance of such an array is ten times refsnn's error on it, which measures one summation order only.

**Max-pool ties** (``tie_allowances``).  After a quantized conv the values a max pool sees lie on a lattice; a
window whose two largest values agree to ``refsnn.torch.pool.TIE`` (relative) holds one maximum in exact
arithmetic, and which position receives the gradient is decided by rounding (docs/golden.md 6.10).  Given the
forward pass, the backward pass is linear in the gradient routed through each window, so moving window w's
gradient gy_w from the port's choice c to another tied position j changes every gradient below the pool by
R_w,j = L(gy_w (e_j - e_c)); whatever the reference chose in each window, its result lies within

    sum_w max_j |R_w,j|        (elementwise, over the tie windows of every pool)

of the port's.  The updated parameters of an SGD step (first step: b = g + wd p) move by -lr times that.
Both bounds are exact statements about the data, not fitted to the reference: an error of the port in any term
(a sign, a missing factor) moves the result by far more and fails (tests/test_torch_port.py).
"""
from __future__ import annotations

import torch

from .pool import TieMaxPool2d, near_max

#: the factor of the cancellation bound (a few units of roundoff per gradient element, with margin)
CANCEL = 16.0


def time_allowance(terms: list, dtype) -> float:
    """``CANCEL * eps * sum |g y| / T`` over ``terms`` = [(y, g, T)] of the neurons that share one That."""
    eps = torch.finfo(dtype).eps
    return CANCEL * eps * sum(float((g.detach().double() * y.detach().double()).abs().sum()) / T for y, g, T in terms)


class NeuronTaps:
    """Records the output y (and, after backward, its gradient g) of every neuron of a model: hooks on the
    ``squeezed`` hook point of each spiking layer (``refsnn.torch.neurons.NeuronPart``)."""

    def __init__(self, layers):
        self.records = {}   # layer name -> [y, g, T]
        for name, layer in layers:
            layer.squeezed.register_forward_hook(lambda m, args, y, _n=name, _l=layer: self._keep(_n, _l, y))

    def _keep(self, name, layer, y):
        rec = self.records[name] = [y, None, layer.steps()]
        if y.requires_grad:
            y.register_hook(lambda g: rec.__setitem__(1, g))

    def time_allowances(self, layers, owner_of_time, dtype) -> dict:
        """``{"grad.<That name>": bound}`` for every learnable That (``owner_of_time(name, layer)``: its name)."""
        out: dict = {}
        for name, layer in layers:
            rec = self.records.get(name)
            if rec is None or rec[1] is None or layer.config.sequential or not layer.time.requires_grad:
                continue
            key = f"grad.{owner_of_time(name, layer)}"
            out[key] = out.get(key, 0.0) + time_allowance([rec], dtype)
        return out


class PoolTaps:
    """Records input, output and output gradient of every ``TieMaxPool2d`` of a model."""

    def __init__(self, model):
        self.records = []
        for m in model.modules():
            if isinstance(m, TieMaxPool2d):
                m.register_forward_hook(lambda mod, args, y: self._keep(mod, args[0], y))

    def _keep(self, mod, x, y):
        rec = {"pool": mod, "x": x, "y": y, "g": None}
        self.records.append(rec)
        if y.requires_grad:
            y.register_hook(lambda g: rec.__setitem__("g", g))

    def moves(self):
        """Every alternative routing: (pool input x, delta gradient at x) for each tie window and tied position."""
        for rec in self.records:
            if rec["g"] is None:
                continue
            mod, x, y, gy = rec["pool"], rec["x"].detach(), rec["y"].detach(), rec["g"]
            k, s, p = mod.kernel_size, mod.stride, mod.padding
            near = near_max(x, y, k, s, p, mod.tie)
            first = torch.argmax(near.to(torch.uint8), dim=2)
            Wo = y.shape[3]
            for n, c, w in torch.nonzero(near.sum(dim=2) >= 2).tolist():
                chosen = int(first[n, c, w])
                for j in torch.nonzero(near[n, c, :, w]).flatten().tolist():
                    if j == chosen:
                        continue
                    delta = torch.zeros_like(x)
                    gw = gy[n, c, w // Wo, w % Wo]
                    for pos, sign in ((j, 1.0), (chosen, -1.0)):
                        h, v = (w // Wo) * s - p + pos // k, (w % Wo) * s - p + pos % k
                        delta[n, c, h, v] += sign * gw
                    yield rec["x"], (n, c, w), delta


def tie_allowances(pools: PoolTaps, params: dict) -> dict:
    """``{"grad.<name>": elementwise bound}`` of the gradients that tie windows can move (see the module doc)."""
    names = [n for n, p in params.items() if p.requires_grad]
    per_window: dict = {}
    for x, window, delta in pools.moves():
        grads = torch.autograd.grad(x, [params[n] for n in names], grad_outputs=delta, retain_graph=True,
                                    allow_unused=True)
        best = per_window.setdefault(window + (id(x),), {})
        for n, g in zip(names, grads):
            if g is not None:
                best[n] = torch.maximum(best[n], g.abs()) if n in best else g.abs()
    out: dict = {}
    for best in per_window.values():
        for n, b in best.items():
            out[f"grad.{n}"] = out[f"grad.{n}"] + b if f"grad.{n}" in out else b
    return {k: v.detach().double().cpu().numpy() for k, v in out.items()}
