"""Helpers of the port's golden cases (``refsnn.torch.golden``): tensors in and out, one layer run, allowances."""
from __future__ import annotations

import numpy as np
import torch

from .ambiguity import NeuronTaps
from .functions import emit, membrane

TORCH = {np.dtype("float32"): torch.float32, np.dtype("float64"): torch.float64}


def leaf(a) -> torch.Tensor:
    return torch.from_numpy(np.array(a, copy=True)).requires_grad_(True)


def to_np(t):
    return None if t is None else t.detach().cpu().numpy().copy()


def i64(a):
    return np.asarray(a).astype(np.int64)


def spikes(x, V, B, T, domain, shift, tau, reset_decay):
    """(v (T, ...), S (T, ...) int64) of the neuron (Eq. 13-15)."""
    _, v = membrane(x, V, B, T, domain, shift, tau, reset_decay)
    S = torch.stack([emit(v[t] / V[t], B[t], domain, shift) for t in range(T)])
    return to_np(v), i64(to_np(S))


def run_layer(layer, a):
    """Load a case's ``param.*`` into ``layer``, run it in eval mode on ``input.x`` and back from ``grad_output.z``:
    (x leaf, ``{output.z, grad.x, grad.<param>}``)."""
    x = leaf(a["input.x"])
    with torch.no_grad():
        for name, prm in layer.named_parameters():
            prm.copy_(torch.from_numpy(a[f"param.{name}"]))
    layer.eval()
    taps = NeuronTaps([("", layer)])
    z = layer(x)
    z.backward(torch.from_numpy(a["grad_output.z"]))
    out = {"output.z": to_np(z), "grad.x": to_np(x.grad)}
    for name, prm in layer.named_parameters():
        out[f"grad.{name}"] = to_np(prm.grad)
    out.update(allowances(taps, [("", layer)], {"time": layer.time} if layer.time is not None else {}, x.dtype))
    return x, out


def allowances(taps, layers, params: dict, dtype) -> dict:
    """``allowance.grad.<That>`` of every learnable That (refsnn.torch.ambiguity; docs/golden.md "The port")."""
    names = {id(p): n for n, p in params.items()}
    found = taps.time_allowances(layers, lambda n, l: names[id(l.time)], dtype)
    return {f"allowance.{k}": v for k, v in found.items()}
