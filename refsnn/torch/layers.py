"""SpikingConv2d and SpikingLinear as ``torch.nn.Module``s: neuron + squeeze + quantized weight (docs/method.md §5).

The same parameters, buffers and names as ``refsnn.nn.SpikingConv2d`` / ``SpikingLinear``
(so a state dict moves between the two unchanged) and the same ``refsnn.nn.SpikingConfig``:

    weight, bias, weight_step (S_q), weight_width (Bhat_w), threshold (V_th^t), spike_width (Bhat_s^t),
    time (That);  buffers initialized, renew_spike, renew_weight, obs_w_bold/vrmin/vrmax, obs_s_bold/vrmin/vrmax

A training forward pass first initialises the steps by the LSQ rule (docs/method.md §11, first batch),
then lets the bit-width observers renew the steps whose rounded width changed (Alg. 1-2,
Eq. 24-25); both reduce their statistics over the ranks of a data-parallel run (``renewal``).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..method.budget import LayerCost
from ..method.parametrize import width_value
from ..method.weight_quant import weight_grid
from ..nn.spiking import SpikingConfig
from . import renewal as R
from .functions import quantize_weight, round_clip
from .neurons import NeuronPart, TorchLayerWidths


class SpikingLayer(NeuronPart, nn.Module):
    """What SpikingConv2d and SpikingLinear share (the weight op and its MACs differ).

    Implements refsnn's layer protocol (``refsnn.method.protocol``: ``has_learnable_width``,
    ``layer_widths()``, ``cost()``, ``in_shape``), so refsnn's averages read it as they read refsnn's layers.
    """

    kind = ""

    def _build(self, weight_shape: tuple, out_channels: int, bias: bool, config: SpikingConfig, dtype, device):
        if not isinstance(config, SpikingConfig):
            raise TypeError(f"{type(self).__name__}: config must be a refsnn.nn.SpikingConfig, got {type(config).__name__}")
        c = self.config = config
        fk = {"dtype": dtype, "device": device}
        self.weight = nn.Parameter(torch.empty(weight_shape, **fk))
        nn.init.kaiming_normal_(self.weight, nonlinearity="relu")
        self.bias = nn.Parameter(torch.zeros(out_channels, **fk)) if bias else None
        self.weight_step = nn.Parameter(torch.ones((out_channels,) if c.per_channel_step else (), **fk))
        self.weight_width = nn.Parameter(torch.tensor(float(c.weight_bits), **fk), requires_grad=c.learn_weight_bits)
        if c.input_neuron:
            self._build_neuron_params(fk)
        b = {"device": device}
        self.register_buffer("initialized", torch.tensor(False, **b))
        self.register_buffer("renew_spike", torch.tensor(c.renewal in ("spike", "both") and c.input_neuron, **b))
        self.register_buffer("renew_weight", torch.tensor(c.renewal in ("weight", "both"), **b))
        n_obs_w = out_channels if c.per_channel_step else 1
        i64, f64 = {"dtype": torch.int64, **b}, {"dtype": torch.float64, **b}
        ab = c.convention.width_abs   # C11
        self.register_buffer("obs_w_bold", torch.full((n_obs_w,), int(width_value(c.weight_bits, c.weight_bound, ab)),
                                                      **i64))
        self.register_buffer("obs_w_vrmin", torch.full((n_obs_w,), math.inf, **f64))
        self.register_buffer("obs_w_vrmax", torch.full((n_obs_w,), -math.inf, **f64))
        if c.input_neuron:
            self._build_neuron_buffers(device)
        self._build_state()

    def _build_state(self) -> None:
        #: data-parallel ranks whose equal shards form the global batch (N of the LSQ scale; set by the trainer)
        self.ranks = 1
        self.renewal_events: list = []   # (kind, index, B_new, step) of the last forward pass
        self.in_shape = None             # per-sample input shape seen last (for the cost model)
        self.out_shape = None

    # -- widths (Eq. 9-11) -------------------------------------------------------------
    def widths(self, for_loss: bool = False) -> tuple:
        """Tensors (B_w, B_s^t for t = 1..T_bound, T) with straight-through gradients (Eq. 9-11);
        ``for_loss``: as the regulating loss sees them (row C11)."""
        c = self.config
        ab = c.convention.width_abs   # C11: widths from abs(Bhat)
        sg = ab and for_loss
        # Eq. 11: B_w = round(clip(Bhat_w, 1, B_w,bound))
        B_w = round_clip(self.weight_width, c.weight_bound, "weight_width", ab, sg)
        if not c.input_neuron:
            return B_w, None, None
        # Eq. 9-10: B_s^t and T
        return (B_w,) + self.spike_widths(for_loss)

    @property
    def has_learnable_width(self) -> bool:
        """Some width of the layer is learnable (B_w, or with an input neuron B_s^t or T): docs/method.md §7."""
        c = self.config
        return c.learn_weight_bits or (c.input_neuron and c.learn_spike_bits) or c.learns_time

    @property
    def has_learnable_bit_width(self) -> bool:
        """B_w, or with an input neuron B_s^t, is learnable (T not counted: ``count_time_only = false``)."""
        c = self.config
        return c.learn_weight_bits or (c.input_neuron and c.learn_spike_bits)

    def layer_widths(self) -> TorchLayerWidths:
        """The widths on the tape with the element counts, as the regulating loss reads them (Eq. 9-11, 21)."""
        if self.in_shape is None:
            raise ValueError(f"{type(self).__name__}: run a forward pass first (N_f of each layer comes from its "
                             "input shape)")
        c = self.config
        # C11: the widths as the loss sees them;  Eq. 11: B_w
        B_w = round_clip(self.weight_width, c.weight_bound, "weight_width", c.convention.width_abs,
                         c.convention.width_abs)
        n_w = int(self.weight.numel())
        if not c.input_neuron:
            return TorchLayerWidths(B_w=B_w, B_s=None, T=None, n_w=n_w, n_f=int(np.prod(self.in_shape)), spiking=False)
        return self.spike_record(n_w, B_w)

    def width_values(self) -> tuple:
        """Integer (B_w, [B_s^t for t <= T], T) now."""
        c = self.config
        ab = c.convention.width_abs   # C11
        B_w = int(width_value(float(self.weight_width.detach()), c.weight_bound, ab))
        if not c.input_neuron:
            return B_w, [], 1
        return (B_w,) + self.spike_width_values()

    # -- docs/method.md §11: LSQ initialisation at the first training batch (global batch, docs/method.md §16) --------
    def _initialize(self, x: torch.Tensor) -> None:
        c = self.config
        B_w, _, _ = self.width_values()
        q_w = weight_grid(B_w)[1]
        # section 11: S_q = 2 mean|w| / sqrt(q_max)  (weights are equal on every rank)
        if c.per_channel_step:
            means = torch.abs(self.weight.detach()).double().reshape(self.weight.shape[0], -1).mean(dim=1)
            self.weight_step.copy_(torch.tensor([R.lsq_init(float(m), q_w) for m in means], dtype=self.weight.dtype))
        else:
            self.weight_step.fill_(R.lsq_init(float(torch.abs(self.weight.detach()).double().mean()), q_w))
        if c.input_neuron:
            self._init_thresholds(x)
        self.initialized.fill_(True)

    # -- Alg. 1: observers, before quantizing (the spike steps: NeuronPart._renew_spike_steps) --------
    def _renew_weight_step(self) -> None:
        c = self.config
        B = int(width_value(float(self.weight_width.detach()), c.weight_bound, c.convention.width_abs))
        w = self.weight.detach()
        groups = list(w) if c.per_channel_step else [w]
        steps = self.weight_step.detach().reshape(-1)
        for i, X in enumerate(groups):
            if B == int(self.obs_w_bold[i]):  # Alg. 1 step 1
                continue
            # Alg. 1-2 (C8, C9 choose the grid; C10: a convolution rescales its step instead)
            res = R.observe_weight(X, B, int(self.obs_w_bold[i]), float(self.obs_w_vrmin[i]),
                                   float(self.obs_w_vrmax[i]), float(steps[i]), conv=self.weight.dim() > 2,
                                   convention=c.convention, K=c.renewal_K, p=c.renewal_p)
            self.obs_w_bold[i], self.obs_w_vrmin[i], self.obs_w_vrmax[i] = res.b_old, res.v_rmin, res.v_rmax
            if res.fired:
                # Eq. 25: overwrite the step S_q
                if c.per_channel_step:
                    self.weight_step[i] = max(res.step, R.EPS)
                else:
                    self.weight_step.fill_(max(res.step, R.EPS))
                self.renewal_events.append(("weight", i, int(res.b_old), res.step))

    # -- forward -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Squeeze mode: x (N, ...) -> (N, ...) (Eq. 12-15, Eq. 6). Sequential mode (docs/method.md §14): x (T, N, ...)
        -> (T, N, ...), or the same flattened to (T*N, ...) as a model passes it between layers."""
        c = self.config
        if x.dtype != self.weight.dtype:
            raise TypeError(f"{type(self).__name__}: input is {x.dtype}, the layer is {self.weight.dtype}")
        flat = False
        if c.sequential:
            x, flat = self.time_major(x)
        self.renewal_events = []
        if self.training:
            with torch.no_grad():
                if not bool(self.initialized):
                    self._initialize(x)
                if bool(self.renew_weight):
                    self._renew_weight_step()
                if c.input_neuron and bool(self.renew_spike):
                    self._renew_spike_steps(x)
        # Eq. 12-15 (sequential mode, docs/method.md §14: per step, no squeeze)
        y = self.neuron(x) if c.input_neuron else x
        # Eq. 6: quantized weights;  Eq. 11: B_w = round(clip(Bhat_w, 1, B_w,bound)) (C11: of |Bhat_w|)
        B_w = round_clip(self.weight_width, c.weight_bound, "weight_width", c.convention.width_abs)
        wq = quantize_weight(self.weight, self.weight_step, B_w, convention=c.convention)
        if c.sequential:
            # docs/method.md §14: the weight op runs on every step, one batched call over T*N
            Tn, N = x.shape[:2]
            z = self.weight_op(y.reshape((Tn * N,) + tuple(x.shape[2:])), wq)
            self.in_shape, self.out_shape = tuple(x.shape[2:]), tuple(z.shape[1:])
            return z if flat else z.reshape((Tn, N) + tuple(z.shape[1:]))
        z = self.weight_op(y, wq)
        self.in_shape, self.out_shape = tuple(x.shape[1:]), tuple(z.shape[1:])
        return z

    def weight_op(self, y, wq):  # pragma: no cover - defined by the subclasses
        raise TypeError(f"{type(self).__name__} must define weight_op")

    # -- cost model (Eq. 7-8) ----------------------------------------------------------------------
    def cost(self, name: str = "") -> LayerCost:
        """This layer's entry of the cost model (refsnn.method.budget), from the last forward pass's shapes."""
        if self.in_shape is None:
            raise ValueError(f"{type(self).__name__} {name}: run a forward pass first (the cost model needs the "
                             "input shape)")
        B_w, B_s, T = self.width_values()
        spiking = self.config.input_neuron
        return LayerCost(name=name, kind=self.kind, macs=self.macs(), n_w=int(self.weight.numel()),
                         n_f=int(np.prod(self.in_shape)), B_w=B_w, B_s=B_s if spiking else [], T=T if spiking else 1,
                         spiking=spiking, sequential=self.config.sequential)


class SpikingConv2d(SpikingLayer):
    """Neuron + squeeze + quantized-weight 2-D convolution (docs/method.md §5.1, Eq. 6, Eq. 12-15)."""
    kind = "conv"
    sample_ndim = 3  # (C, H, W)

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, bias: bool = False,
                 config: SpikingConfig | None = None, dtype=torch.float64, device=None):
        super().__init__()
        k = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, k
        self.stride, self.padding = stride, padding
        self._build((out_channels, in_channels) + k, out_channels, bias, config or SpikingConfig(), dtype, device)

    def weight_op(self, y, wq):
        return nn.functional.conv2d(y, wq, self.bias, stride=self.stride, padding=self.padding)

    def macs(self) -> int:
        # docs/method.md §2: H_out * W_out * k_h * k_w * C_in * C_out
        return int(self.out_shape[1] * self.out_shape[2] * self.kernel_size[0] * self.kernel_size[1]
                   * self.in_channels * self.out_channels)


class SpikingLinear(SpikingLayer):
    """Neuron + squeeze + quantized-weight linear layer; ``sample_ndim``: 1 for features (F,), 2 for tokens (L, F)
    (read in sequential mode to tell (T, N, ...) from (T*N, ...))."""
    kind = "linear"

    def __init__(self, in_features: int, out_features: int, bias: bool = True, config: SpikingConfig | None = None,
                 dtype=torch.float64, device=None, sample_ndim: int = 1):
        super().__init__()
        if sample_ndim not in (1, 2) or isinstance(sample_ndim, bool):
            raise ValueError(f"SpikingLinear: sample_ndim must be 1 (features) or 2 (tokens), got {sample_ndim!r}")
        self.sample_ndim = int(sample_ndim)
        self.in_features, self.out_features = in_features, out_features
        self._build((out_features, in_features), out_features, bias, config or SpikingConfig(), dtype, device)

    def weight_op(self, y, wq):
        return nn.functional.linear(y, wq, self.bias)

    def macs(self) -> int:
        # docs/method.md §2: in * out per input vector (per token for (N, L, in) inputs)
        return int(np.prod(self.in_shape[:-1], dtype=np.int64) * self.in_features * self.out_features)


def spiking_layers(model: nn.Module) -> list:
    """(name, layer) of every spiking layer of a torch model (weight layers and neuron-only layers, docs/method.md
    §13), in definition order (DDP's ``module.`` stripped)."""
    inner = getattr(model, "module", model)
    return [(n, m) for n, m in inner.named_modules() if isinstance(m, NeuronPart)]
