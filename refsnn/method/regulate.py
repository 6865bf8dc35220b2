"""The regulating loss (Eq. 21).

    L_total = L_task + lam_w |W - W_tar| + lam_T |T - T_tar| + lam_s |S - S_tar|      (21)

W, S, T are the model averages of docs/method.md §2, computed from the
*rounded* widths with a straight-through round (Eq. 9-11), so that the gradient
reaches every Bhat and That in proportion to its layer's element share:

    W = sum_l B_w,l N_w,l / sum_l N_w,l
    S = sum_l mean_t(B_s,l^t) N_f,l / sum_l N_f,l      (mean over the T_l steps in use)
    T = sum_l T_l N_f,l / sum_l N_f,l

(computed once, by ``refsnn.method.protocol.wst_averages``).  In sequential mode (docs/method.md §14) T is
a fixed number, not a tape tensor, and Eq. 21 has no T term.  Layers whose widths are all frozen are left
out (docs/method.md §7); the authors' release also leaves out a layer whose only learnable width is T
(``count_time_only=False``).  |.| is
the L2 norm of a scalar, i.e. the absolute value.
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import functional as F
from ..autograd.tensor import Tensor
from .protocol import wst_averages


@dataclass(frozen=True)
class Targets:
    W: float
    S: float
    T: float


@dataclass(frozen=True)
class Penalties:
    """(lam_w, lam_s, lam_T); defaults: docs/method.md §7 for CIFAR targets below 3 bits."""
    lam_w: float = 4e-2
    lam_s: float = 4e-2
    lam_T: float = 1e-2


def counted(layer, count_time_only: bool = True) -> bool:
    """Whether a layer enters W, S, T (the layer protocol): some width of it is learnable (docs/method.md §7).

    ``count_time_only=False`` (the authors' release) also leaves out a layer whose only learnable
    width is its temporal length T (it reads the layer's ``has_learnable_bit_width``)."""
    return bool(layer.has_learnable_width if count_time_only else layer.has_learnable_bit_width)


def model_averages(layers, count_time_only: bool = True) -> dict:
    """Tensors W, S, T (straight-through in every width parameter) over the given spiking layers.

    Reads each layer through the layer protocol (``refsnn.method.protocol``): layers without a
    learnable width are left out (docs/method.md §7; ``count_time_only``: see :func:`counted`);
    each must have run a forward pass (N_f is its input's size per sample).  Layers without an
    input neuron count in W only.
    """
    layers = [l for l in layers if counted(l, count_time_only)]
    if not layers:
        raise ValueError("regulating loss: no spiking layer has a learnable width")
    return wst_averages([l.layer_widths() for l in layers])


def regulating_loss(layers, targets: Targets, penalties: Penalties = Penalties(),
                    count_time_only: bool = True) -> tuple:
    """Eq. 21 without L_task: ``(loss, averages)``; ``averages`` holds W, S, T as floats.
    ``count_time_only``: see :func:`counted`."""
    avg = model_averages(layers, count_time_only)
    loss = None
    for key, lam in (("W", penalties.lam_w), ("S", penalties.lam_s), ("T", penalties.lam_T)):
        value = avg[key]
        if value is None or lam == 0:
            continue
        if key == "T" and not isinstance(value, Tensor):
            continue  # docs/method.md §14: a fixed T (sequential mode) has no term in Eq. 21
        # Eq. 21: lam * |X - X_tar|
        term = F.abs(value - float(getattr(targets, key))) * float(lam)
        loss = term if loss is None else loss + term
    if loss is None:
        any_t = avg["W"]
        loss = any_t * 0.0
    return loss, {k: (float(v.data) if isinstance(v, Tensor) else None) for k, v in avg.items()}
