"""The paper's layers: SpikingConv2d and SpikingLinear = neuron + squeeze + quantized-weight conv/linear.

One layer ``l`` of docs/method.md §5:

    y_l = squeeze(neuron(a_l))                 Eq. 12-15 (skipped when ``input_neuron=False``)
    z_l = Q(W_l) (*) y_l (+ bias)               Eq. 6

with learnable widths (Eq. 9-11), thresholds and weight steps initialised by the
LSQ rule at the first training batch (docs/method.md §11), and bit-width
observers renewing the steps when a rounded width changes (Alg. 1-2, Eq. 24-25).

Parameters of one layer and their kinds (for per-kind learning rates):

    weight        "weight"        the full-precision weights W_l
    bias          "bias"          optional
    weight_step   "weight_step"   S_q, 0-d (layer-wise) or (C_out,) (per channel)
    weight_width  "weight_width"  Bhat_w (0-d)
    threshold     "threshold"     V_th^t, (T_bound,) temporal-wise or (1,) shared over time
    spike_width   "spike_width"   Bhat_s^t, (T_bound,) or (1,)
    time          "time"          That (0-d); squeeze mode only (sequential mode: T = time_steps, fixed)
    amplitude     "threshold"     alpha^t of the prior neuron (``neuron="prior"``, Eq. 3-5) only

Sequential mode (``temporal_mode="sequential"``, docs/method.md §14): the layer takes a current per step,
``(T, N, C, H, W)`` / ``(T, N, F)`` (or flattened to ``(T*N, ...)``), runs the neuron step by step
without squeezing (``sequential_neuron``) and the weight op once over ``T*N``.

A width that is not learnable is a Parameter with ``requires_grad=False``.

The layers implement the layer protocol of ``refsnn.method.protocol`` (``has_learnable_width``,
``layer_widths()``, ``cost()``, ``in_shape``) and reach the neuron only through ``refsnn.method``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from .. import functional as F
from ..autograd.tensor import DEFAULT_DTYPE, Tensor, check_float_dtype, no_grad
from ..method import renewal as R
from ..method.budget import LayerCost
from ..method.conventions import Convention, get_convention
from ..method.neuron import DOMAINS, ROUNDINGS
from ..method.parametrize import MAX_BITS, check_bound, check_finite_param, parametrized_width, width_value
from ..method.protocol import LayerWidths
from ..method.weight_quant import quantize_weight, weight_grid
from ..random import resolve as resolve_rng
from .layers import kaiming_normal, positive_int
from .module import Module, Parameter
from .neurons import NeuronPart, check_input, lsq_init


#: "squeeze": the same current at every step, output squeezed (Eq. 12); "sequential": a current per
#: step, no squeeze, T fixed (docs/method.md §14).
TEMPORAL_MODES = ("squeeze", "sequential")
#: "refined": threshold = amplitude (Eq. 12-15); "prior": the prior multi-bit neuron of Eq. 3-5 with its own
#: learnable amplitude alpha^t (reset by alpha S), the baseline of the Table 4 ablation.
NEURONS = ("refined", "prior")


@dataclass(frozen=True)
class SpikingConfig:
    """Every per-layer option of the method (defaults: the paper's CIFAR settings)."""
    weight_bits: float = 4.0        # initial Bhat_w (Eq. 11)
    spike_bits: float = 4.0         # initial Bhat_s^t (Eq. 9)
    time_steps: float = 2.0         # initial That (Eq. 10)
    weight_bound: int = 6           # B_w,bound
    spike_bound: int = 6            # B_s,bound
    time_bound: int = 3             # T_bound
    learn_weight_bits: bool = True
    learn_spike_bits: bool = True
    learn_time: bool = True
    domain: str = "positive"        # "positive" (Eq. 14) or "bidirectional" (Eq. 15)
    rounding: str = "round"         # "round" (shift 1/2) or "floor" (shift 0, Eq. 5)
    tau: float = 1.0                # 1 = IF (refined default), > 1 = LIF ablation
    temporal_wise: bool = True      # one V_th^t and B_s^t per step, or shared over time
    per_channel_step: bool = False  # one weight step per output channel
    renewal: str = "spike"          # "none", "spike" (paper default), "weight", "both"
    renewal_K: int = 100            # Alg. 2 candidates
    renewal_p: float = 2.4          # Alg. 2 score power
    convention: Convention = "paper"  # "paper", "official" or a Convention (docs/method.md §10); held resolved
    input_neuron: bool = True       # False: no neuron, the layer sees the analog input (a plain stem)
    impl: str = "numba"             # kernels: "numba" or "numpy"
    temporal_mode: str = "squeeze"  # "squeeze" (Eq. 12) or "sequential" (docs/method.md §14: T = time_steps fixed)
    neuron: str = "refined"         # "refined" (Eq. 12-15) or "prior" (Eq. 3-5: amplitude alpha^t, sequential, floor)

    def __post_init__(self):
        wb = check_bound(self.weight_bound, "weight_bound")
        sb = check_bound(self.spike_bound, "spike_bound")
        tb = check_bound(self.time_bound, "time_bound (T_bound)")
        for name, b, most in (("weight_bound", wb, MAX_BITS), ("spike_bound", sb, MAX_BITS)):
            if b > most:  # the kernels' limit: 2^B - 1 must be an exact float32 integer
                raise ValueError(f"SpikingConfig: {name} = {b} is above the kernels' limit of {most} bits; "
                                 f"allowed: 1..{most}")
        for name, v, b in (("weight_bits", self.weight_bits, wb), ("spike_bits", self.spike_bits, sb),
                           ("time_steps", self.time_steps, tb)):
            if not (isinstance(v, (int, float, np.integer, np.floating)) and math.isfinite(v)):
                raise ValueError(f"SpikingConfig: {name} must be a finite number, got {v!r}")
            # an initial width outside [1, bound] would be clipped by Eq. 9-11 at once: refuse it here
            if not 1 <= v <= b:
                bound = {"weight_bits": "weight_bound", "spike_bits": "spike_bound"}.get(name, "time_bound")
                raise ValueError(f"SpikingConfig: {name} = {v!r} is outside the allowed range [1, {bound} = {b}]")
        if self.domain not in DOMAINS:
            raise ValueError(f"SpikingConfig: domain must be one of {DOMAINS}, got {self.domain!r}")
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"SpikingConfig: rounding must be one of {tuple(ROUNDINGS)}, got {self.rounding!r}")
        if not (isinstance(self.tau, (int, float)) and math.isfinite(self.tau) and self.tau >= 1):
            raise ValueError(f"SpikingConfig: tau must be a number >= 1 (1 = IF), got {self.tau!r}")
        R.check_renewal_mode(self.renewal)
        R.check_grid(self.renewal_K, self.renewal_p)
        # the one place a convention's name is resolved: the layers and the method functions take the object
        object.__setattr__(self, "convention", get_convention(self.convention))
        if self.impl not in ("numba", "numpy"):
            raise ValueError(f"SpikingConfig: impl must be 'numba' or 'numpy', got {self.impl!r}")
        self._check_temporal(tb)

    def _check_temporal(self, tb: int) -> None:
        if self.temporal_mode not in TEMPORAL_MODES:
            raise ValueError(f"SpikingConfig: temporal_mode must be one of {TEMPORAL_MODES}, got {self.temporal_mode!r}")
        if self.neuron not in NEURONS:
            raise ValueError(f"SpikingConfig: neuron must be one of {NEURONS}, got {self.neuron!r}")
        if self.neuron == "prior" and not (self.sequential and self.rounding == "floor"):
            raise ValueError("SpikingConfig: the prior multi-bit neuron (Eq. 3-5) runs in temporal_mode='sequential' "
                             f"with rounding='floor' (docs/method.md §14), got {self.temporal_mode!r}, {self.rounding!r}")
        if self.sequential and not (float(self.time_steps).is_integer() and 1 <= self.time_steps <= tb):
            raise ValueError(f"SpikingConfig: in sequential mode time_steps is the fixed T, an integer in "
                             f"[1, time_bound={tb}], got {self.time_steps!r}")

    @property
    def sequential(self) -> bool:
        """docs/method.md §14: a current per step, no squeeze, T = time_steps fixed (not learnable)."""
        return self.temporal_mode == "sequential"

    @property
    def learns_time(self) -> bool:
        """True when the layer has a learnable temporal length That (squeeze mode only)."""
        return self.input_neuron and self.learn_time and not self.sequential

    @classmethod
    def field_names(cls) -> tuple:
        return tuple(f.name for f in fields(cls))

    def replace(self, **changes) -> "SpikingConfig":
        unknown = set(changes) - set(self.field_names())
        if unknown:
            raise ValueError(f"SpikingConfig: unknown option(s) {sorted(unknown)}; valid: {list(self.field_names())}")
        return replace(self, **changes)

    def as_dict(self) -> dict:
        """The options as plain values (the convention by its name)."""
        return dict(asdict(self), convention=self.convention.name)


class _SpikingLayer(NeuronPart, Module):
    """Shared machinery of SpikingConv2d and SpikingLinear (the weight op differs)."""
    has_weight = True

    def _build(self, weight: np.ndarray, out_channels: int, bias: bool, config: SpikingConfig, dtype):
        c = self.config = config
        self.weight = Parameter(weight, "weight")
        self.bias = Parameter(np.zeros(out_channels, dtype), "bias") if bias else None
        step_shape = (out_channels,) if c.per_channel_step else ()
        self.weight_step = Parameter(np.ones(step_shape, dtype), "weight_step")
        self.weight_width = Parameter(np.array(c.weight_bits, dtype), "weight_width")
        self.weight_width.requires_grad = c.learn_weight_bits
        if c.input_neuron:
            # threshold, spike_width, time and the hook point `squeezed` (before the weight op)
            self._build_neuron_params(c, dtype)
        # state saved with the layer: LSQ initialisation done, observers (Alg. 1), renewal switches
        self.register_buffer("initialized", np.array(False))
        self.register_buffer("renew_spike", np.array(c.renewal in ("spike", "both") and c.input_neuron))
        self.register_buffer("renew_weight", np.array(c.renewal in ("weight", "both")))
        n_obs_w = out_channels if c.per_channel_step else 1
        ab = c.convention.width_abs   # C11
        self.register_buffer("obs_w_bold", np.full(n_obs_w, width_value(c.weight_bits, c.weight_bound, ab), np.int64))
        self.register_buffer("obs_w_vrmin", np.full(n_obs_w, np.inf))
        self.register_buffer("obs_w_vrmax", np.full(n_obs_w, -np.inf))
        if c.input_neuron:
            self._build_neuron_buffers(c)
        self.renewal_events: list = []   # (kind, index, B_new, step) of every renewal in the last forward pass
        self.in_shape = None              # per-sample input shape seen last (for the cost model)
        self.out_shape = None

    # -- widths (Eq. 9-11) -------------------------------------------------------
    def widths(self, for_loss: bool = False) -> tuple:
        """Tensors (B_w, B_s^t for t = 1..T_bound, T) with straight-through gradients (Eq. 9-11).

        ``for_loss=True``: the widths the regulating loss (Eq. 21) sees; they differ only under row C11,
        whose official gradient there goes through abs(Bhat)."""
        c = self.config
        ab = c.convention.width_abs   # C11: widths from abs(Bhat)
        sg = ab and for_loss
        # Eq. 11: B_w = round(clip(Bhat_w, 1, B_w,bound))
        B_w = parametrized_width(self.weight_width, c.weight_bound, "weight_width", use_abs=ab, grad_sign=sg)
        if not c.input_neuron:
            return B_w, None, None
        # Eq. 9-10: B_s^t and T
        B_s, T = self.spike_widths(for_loss=for_loss)
        return B_w, B_s, T

    def width_values(self) -> tuple:
        """Integer (B_w, [B_s^t ...], T) now, without the tape."""
        c = self.config
        ab = c.convention.width_abs   # C11
        B_w = int(width_value(self.weight_width, c.weight_bound, ab))
        if not c.input_neuron:
            return B_w, [], 1
        bs, T = self.spike_width_values()
        return B_w, bs, T

    # -- the layer protocol (refsnn.method.protocol) ------------------------------------
    @property
    def has_learnable_width(self) -> bool:
        """Some width of the layer is learnable (B_w, or with an input neuron B_s^t or T): docs/method.md §7."""
        c = self.config
        return c.learn_weight_bits or (c.input_neuron and c.learn_spike_bits) or c.learns_time

    @property
    def has_learnable_bit_width(self) -> bool:
        """B_w, or with an input neuron B_s^t, is learnable (T not counted): the authors' release leaves a layer
        whose only learnable width is T out of Eq. 21 (``refsnn.method.regulate.counted``)."""
        c = self.config
        return c.learn_weight_bits or (c.input_neuron and c.learn_spike_bits)

    def layer_widths(self) -> LayerWidths:
        """The tape widths with the element counts, as the regulating loss reads them (Eq. 9-11, Eq. 21)."""
        if self.in_shape is None:
            raise ValueError(f"{type(self).__name__}: run a forward pass first (N_f of each layer comes from its "
                             "input shape)")
        # C11: the widths as the loss sees them (official: its gradient goes through abs(Bhat))
        B_w, B_s, T = self.widths(for_loss=True)
        n_w, n_f = int(self.weight.size), int(np.prod(self.in_shape))
        if not self.config.input_neuron:
            return LayerWidths(B_w=B_w, B_s=None, T=None, n_w=n_w, n_f=n_f, spiking=False)
        # the spike widths of the T_l steps in use; a fixed T (sequential mode, docs/method.md §14) as a plain number
        n_steps = int(T.data)
        return LayerWidths(B_w=B_w, B_s=B_s[:n_steps], T=n_steps if self.config.sequential else T, n_w=n_w,
                           n_f=n_f, spiking=True)

    # -- section 11: LSQ initialisation at the first training batch ------------------
    def _initialize(self, x: np.ndarray) -> None:
        c = self.config
        B_w, B_s, _ = self.width_values()
        # section 11: S_q = 2 mean|w| / sqrt(q_max)
        if c.per_channel_step:
            q_max = weight_grid(B_w)[1]
            self.weight_step.data[...] = [lsq_init(wc, q_max) for wc in self.weight.data]
        else:
            self.weight_step.data[...] = lsq_init(self.weight.data, weight_grid(B_w)[1])
        if c.input_neuron:
            # section 11: V_th^t = 2 mean|a| / sqrt(q_max)
            self._init_thresholds(x)
        self.initialized[...] = True

    # -- Alg. 1: observers, before quantizing (the spike steps: NeuronPart._renew_spike_steps) --------
    def _renew_weight_step(self) -> None:
        c = self.config
        B = int(width_value(self.weight_width, c.weight_bound, c.convention.width_abs))
        groups = list(self.weight.data) if c.per_channel_step else [self.weight.data]
        steps = self.weight_step.data.reshape(-1)
        for i, X in enumerate(groups):
            if B == int(self.obs_w_bold[i]):  # Alg. 1 step 1
                continue
            # Alg. 1-2 (C8, C9 choose the grid; C10: a convolution rescales its step instead)
            res = R.observe_weight(X, B, int(self.obs_w_bold[i]), float(self.obs_w_vrmin[i]),
                                   float(self.obs_w_vrmax[i]), float(steps[i]), conv=self.kind == "conv",
                                   K=c.renewal_K, p=c.renewal_p, convention=c.convention)
            self.obs_w_bold[i], self.obs_w_vrmin[i], self.obs_w_vrmax[i] = res.b_old, res.v_rmin, res.v_rmax
            if res.fired:
                # Eq. 25: overwrite the step S_q
                if c.per_channel_step:
                    self.weight_step.data[i] = max(res.step, R.EPS)
                else:
                    self.weight_step.data[...] = max(res.step, R.EPS)
                self.renewal_events.append(("weight", i, int(res.b_old), res.step))

    # -- forward ------------------------------------------------------------------------
    def _weight_op(self, y, wq):  # pragma: no cover - defined by the subclasses
        raise TypeError(f"{type(self).__name__} must define _weight_op")

    def forward(self, x):
        """Squeeze mode: ``x`` (N, ...) -> (N, ...) (Eq. 12-15, Eq. 6). Sequential mode (docs/method.md §14): ``x``
        (T, N, ...) -> (T, N, ...), or the same flattened to (T*N, ...) as a model passes it between layers."""
        c = self.config
        xd = x.data if isinstance(x, Tensor) else np.asarray(x)
        if xd.dtype != self.weight.dtype:
            raise TypeError(f"{type(self).__name__}: input is {xd.dtype}, the layer is {self.weight.dtype}")
        check_input(xd, type(self).__name__)
        if c.sequential:
            x, flat = self._time_major(x)
            xd = x.data if isinstance(x, Tensor) else np.asarray(x)
        self.renewal_events = []
        for p in (self.weight_width, getattr(self, "spike_width", None), getattr(self, "time", None)):
            if p is not None:
                check_finite_param(p, f"{type(self).__name__}.{'weight_width' if p is self.weight_width else p.kind}")
        if self.training:
            with no_grad():
                if not bool(self.initialized):
                    self._initialize(xd)
                if bool(self.renew_weight):
                    self._renew_weight_step()
                if c.input_neuron and bool(self.renew_spike):
                    self._renew_spike_steps(xd)
        B_w, B_s, T = self.widths()
        if c.input_neuron:
            # Eq. 12-15: neuron over T steps and temporal squeezing (sequential mode, docs/method.md §14: no squeeze)
            y = self._fire(x, B_s, T)
        else:
            y = x
        # Eq. 6: quantized weights
        wq = quantize_weight(self.weight, self.weight_step, B_w, convention=c.convention, impl=c.impl)
        if c.sequential:
            # docs/method.md §14: the weight op runs on every step, one batched call over T*N
            Tn, N = xd.shape[:2]
            z = self._weight_op(F.reshape(y, shape=(Tn * N,) + tuple(xd.shape[2:])), wq)
            self.in_shape, self.out_shape = tuple(xd.shape[2:]), tuple(z.shape[1:])
            return z if flat else F.reshape(z, shape=(Tn, N) + tuple(z.shape[1:]))
        z = self._weight_op(y, wq)
        self.in_shape, self.out_shape = tuple(xd.shape[1:]), tuple(z.shape[1:])
        return z

    # -- cost model (Eq. 7-8) ------------------------------------------------------------
    def macs(self) -> int:  # pragma: no cover - defined by the subclasses
        raise TypeError(f"{type(self).__name__} must define macs")

    def cost(self, name: str = "") -> LayerCost:
        """This layer's entry of the cost model, from the shapes of the last forward pass."""
        if self.in_shape is None:
            raise ValueError(f"{type(self).__name__} {name}: run a forward pass first (the cost model needs the "
                             "input shape); refsnn.method.budget helpers do this for a model")
        B_w, B_s, T = self.width_values()
        spiking = self.config.input_neuron
        return LayerCost(name=name, kind=self.kind, macs=self.macs(), n_w=int(self.weight.size),
                         n_f=int(np.prod(self.in_shape)), B_w=B_w, B_s=B_s if spiking else [], T=T if spiking else 1,
                         spiking=spiking, sequential=self.config.sequential)


class SpikingConv2d(_SpikingLayer):
    """Neuron + squeeze + quantized-weight 2-D convolution (docs/method.md §5.1, Eq. 6, Eq. 12-15)."""
    kind = "conv"
    sample_ndim = 3  # (C, H, W)

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, bias: bool = False,
                 config: SpikingConfig | None = None, rng=None, dtype=DEFAULT_DTYPE):
        super().__init__()
        self.in_channels = positive_int(in_channels, "in_channels", "SpikingConv2d")
        self.out_channels = positive_int(out_channels, "out_channels", "SpikingConv2d")
        k = (kernel_size, kernel_size) if isinstance(kernel_size, (int, np.integer)) else tuple(kernel_size)
        for v in k:
            positive_int(v, "kernel_size", "SpikingConv2d")
        self.kernel_size, self.stride, self.padding = k, stride, padding
        dtype = check_float_dtype(dtype)
        w = kaiming_normal((out_channels, in_channels) + k, in_channels * k[0] * k[1], resolve_rng(rng), dtype)
        self._build(w, out_channels, bias, config or SpikingConfig(), dtype)

    def _weight_op(self, y, wq):
        return F.conv2d(y, wq, self.bias, stride=self.stride, padding=self.padding)

    def macs(self) -> int:
        # docs/method.md §2: H_out * W_out * k_h * k_w * C_in * C_out
        return int(self.out_shape[1] * self.out_shape[2] * self.kernel_size[0] * self.kernel_size[1]
                   * self.in_channels * self.out_channels)

    def extra_repr(self):
        c = self.config
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, W/S/T={c.weight_bits:g}/{c.spike_bits:g}/{c.time_steps:g}, "
                f"domain={c.domain}, input_neuron={c.input_neuron}")


class SpikingLinear(_SpikingLayer):
    """Neuron + squeeze + quantized-weight linear layer.

    ``sample_ndim``: the per-sample input dims, 1 for features (F,), 2 for tokens (L, F); read in sequential
    mode only, to tell (T, N, ...) from the flattened (T*N, ...) (docs/method.md §14)."""
    kind = "linear"

    def __init__(self, in_features: int, out_features: int, bias: bool = True, config: SpikingConfig | None = None,
                 rng=None, dtype=DEFAULT_DTYPE, sample_ndim: int = 1):
        super().__init__()
        if sample_ndim not in (1, 2) or isinstance(sample_ndim, bool):
            raise ValueError(f"SpikingLinear: sample_ndim must be 1 (features) or 2 (tokens), got {sample_ndim!r}")
        self.sample_ndim = int(sample_ndim)
        self.in_features = positive_int(in_features, "in_features", "SpikingLinear")
        self.out_features = positive_int(out_features, "out_features", "SpikingLinear")
        dtype = check_float_dtype(dtype)
        w = kaiming_normal((out_features, in_features), in_features, resolve_rng(rng), dtype)
        self._build(w, out_features, bias, config or SpikingConfig(), dtype)

    def _weight_op(self, y, wq):
        return F.linear(y, wq, self.bias)

    def macs(self) -> int:
        # docs/method.md §2: in * out per input vector (per token for (N, L, in) inputs)
        return int(np.prod(self.in_shape[:-1], dtype=np.int64) * self.in_features * self.out_features)

    def extra_repr(self):
        c = self.config
        return (f"{self.in_features}, {self.out_features}, W/S/T={c.weight_bits:g}/{c.spike_bits:g}/"
                f"{c.time_steps:g}, domain={c.domain}")
