"""The layer protocol: what the method reads from a spiking layer, and the model averages W, S, T.

``regulate`` (Eq. 21), ``budget`` (Eq. 7-8, the cost table), the trainer and the golden cases
read a layer only through these records, never through its attributes.  A layer taking part
in the method implements :class:`SpikingLayerProtocol`:

    has_learnable_width   bool: some width of the layer is learnable (docs/method.md §7);
                          layers with every width frozen are left out of Eq. 21
    layer_widths()        LayerWidths: the widths on the tape (straight-through, Eq. 9-11)
                          and the element counts N_w, N_f, after a forward pass
    cost(name)            LayerCost (refsnn.method.budget): integer widths, N_w, N_f, MACs
    in_shape              the per-sample input shape of the last forward pass (None before)

and, read only by the release's loss filter (``refsnn.method.regulate.counted`` with
``count_time_only=False``, ``[regulate] count_time_only = false``):

    has_learnable_bit_width  bool: B_w or B_s^t is learnable (T not counted)

``SpikingConv2d`` and ``SpikingLinear`` implement it.  The records are made so that other
layers can too:

* a neuron-only layer (Spikformer's Q/K/V neurons: no weights) gives ``n_w = 0`` (it is
  left out of W; give ``B_w = 0`` and ``macs = 0`` in its LayerCost), its own spike widths,
  and may hand the same ``T`` tensor as the layer it shares its time steps with;
* a layer with a fixed temporal length (sequential mode, no T parameter) gives ``T`` as a
  plain number: :func:`wst_averages` mixes numbers and tape tensors.

:func:`wst_averages` is the one implementation of the averages of docs/method.md §2, used
with tape tensors (``LayerWidths``, the regulating loss) and with numbers (``LayerCost``,
the cost model).
"""
from __future__ import annotations

from dataclasses import dataclass
from numbers import Number
from typing import Any, Protocol, runtime_checkable

from .. import functional as F


@dataclass(frozen=True)
class LayerWidths:
    """One layer's widths as the regulating loss reads them.

    ``B_w``: weight width (0-d tensor, Eq. 11); ``B_s``: spike widths of the ``T`` steps in use
    (1-D tensor, Eq. 9), None without an input neuron; ``T``: temporal length (0-d tensor, Eq. 10,
    or a number for a fixed T), None without an input neuron; ``n_w``: weight elements N_w
    (0 for a neuron-only layer); ``n_f``: elements of the layer's input per sample N_f;
    ``spiking``: the layer has an input neuron (it counts in S and T).
    """
    B_w: Any
    B_s: Any
    T: Any
    n_w: int
    n_f: int
    spiking: bool = True

    @property
    def mean_B_s(self):
        """mean_t B_s^t over the steps in use (a tape tensor)."""
        return F.mean(self.B_s)


@runtime_checkable
class SpikingLayerProtocol(Protocol):
    """What the method reads from a layer (see the module docstring)."""
    in_shape: Any

    @property
    def has_learnable_width(self) -> bool: ...

    def layer_widths(self) -> LayerWidths: ...

    def cost(self, name: str = ""): ...


def weighted_average(pairs):
    """sum_l X_l N_l / sum_l N_l over ``(X_l, N_l)`` pairs (X_l a number or a tape tensor); None if empty.

    With a tape tensor among the X_l (anything but a plain number: refsnn's Tensor, or a port's autograd
    tensor) it is summed as sum_l X_l (N_l / N), so that the gradient reaching
    each X_l is its share N_l / N; with numbers only, as (sum_l X_l N_l) / N, one rounding after the
    (exact, for integer widths) numerator.  The two orders are the arithmetic the regulating loss
    and the cost table have always used; they agree up to the last bit.
    """
    pairs = [(x, n) for x, n in pairs]
    if not pairs:
        return None
    if any(not isinstance(x, Number) for x, _ in pairs):   # a tape tensor (refsnn's, or another autograd's)
        total = float(sum(n for _, n in pairs))
        acc = None
        for x, n in pairs:
            term = x * (n / total)
            acc = term if acc is None else acc + term
        return acc
    return sum(x * n for x, n in pairs) / sum(n for _, n in pairs)


def wst_averages(records) -> dict:
    """The model averages of docs/method.md §2 over ``records`` (LayerWidths or LayerCost):

        W = sum_l B_w,l N_w,l / sum_l N_w,l                  (layers with weights, N_w,l > 0)
        S = sum_l mean_t(B_s,l^t) N_f,l / sum_l N_f,l        (spiking layers, mean over the T_l steps)
        T = sum_l T_l N_f,l / sum_l N_f,l                    (spiking layers)

    on numbers (the cost table) and on tape tensors (the regulating loss, Eq. 21), by
    :func:`weighted_average`.  Returns ``{"W", "S", "T"}``; an average over no layer is None.
    """
    records = list(records)
    spk = [r for r in records if r.spiking]
    # W = sum_l B_w,l N_w,l / sum_l N_w,l
    W = weighted_average((r.B_w, r.n_w) for r in records if r.n_w)
    # S = sum_l mean_t(B_s,l^t) N_f,l / sum_l N_f,l  (mean over the T_l steps in use)
    S = weighted_average((r.mean_B_s, r.n_f) for r in spk)
    # T = sum_l T_l N_f,l / sum_l N_f,l
    T = weighted_average((r.T, r.n_f) for r in spk)
    return {"W": W, "S": S, "T": T}
