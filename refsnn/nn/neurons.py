"""The refined neuron as a part of a layer, and the neuron-only spiking layer (docs/method.md §5 and §13).

``NeuronPart`` holds what a refined neuron owns, wherever it sits:

    threshold     "threshold"     V_th^t, (T_bound,) temporal-wise or (1,) shared over time
    spike_width   "spike_width"   Bhat_s^t, (T_bound,) or (1,)                        (Eq. 9)
    time          "time"          That (0-d), its own or shared with other neurons     (Eq. 10)

with the LSQ initialisation of the thresholds (docs/method.md §11) and the
observers of Alg. 1-2 renewing a threshold when its rounded width changes (Eq. 24-25).
``SpikingConv2d`` / ``SpikingLinear`` use it for the neuron at their input;
``SpikingNeuron`` is a neuron with no weight op after it: Spikformer's ``N_q``,
``N_k``, ``N_v`` (docs/method.md §13), which share one temporal length ``T_l``.
"""
from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from ..autograd.tensor import DEFAULT_DTYPE, Tensor, check_float_dtype, no_grad
from ..method import renewal as R
from ..method.budget import LayerCost
from ..method.neuron import membrane_potentials, sequential_membrane, sequential_neuron, spike_grid, spiking_neuron
from ..method.parametrize import check_finite_param, parametrized_width, width_value
from ..method.protocol import LayerWidths
from .layers import Identity
from .module import Module, Parameter


def check_input(x: np.ndarray, owner: str) -> None:
    """The input of a spiking layer: a non-empty batch of finite numbers (NaN or inf would reach the LSQ
    initialisation and the observers and be reported as bad thresholds)."""
    if x.ndim == 0 or x.shape[0] == 0 or x.size == 0:
        raise ValueError(f"{owner}: the input x is empty (shape {x.shape}); a batch needs at least one sample")
    finite = np.isfinite(x)
    if not finite.all():
        first = x[~finite].ravel()[0]
        raise ValueError(f"{owner}: the input x has {int(x.size - finite.sum())} non-finite value(s) of {x.size} "
                         f"(e.g. {first!r}); it must be finite")


def lsq_init(data: np.ndarray, q_max: int) -> float:
    """docs/method.md §11: step = 2 mean|x| / sqrt(q_max) (LSQ initialisation)."""
    return max(2.0 * float(np.mean(np.abs(data))) / math.sqrt(q_max), R.EPS)


def shared_time(config, dtype=DEFAULT_DTYPE) -> Parameter:
    """One temporal length parameter That (Eq. 10) for several neurons (docs/method.md §13: N_q, N_k, N_v)."""
    t = Parameter(np.array(config.time_steps, check_float_dtype(dtype)), "time")
    t.requires_grad = config.learn_time
    return t


class NeuronPart:
    """Parameters, widths, initialisation and observers of one refined neuron (mixed into a Module)."""

    def _build_neuron_params(self, c, dtype, time: Parameter | None = None) -> None:
        n_steps = c.time_bound if c.temporal_wise else 1
        self.threshold = Parameter(np.ones(n_steps, dtype), "threshold")
        self.spike_width = Parameter(np.full(n_steps, c.spike_bits, dtype), "spike_width")
        self.spike_width.requires_grad = c.learn_spike_bits
        if c.neuron == "prior":  # Eq. 3-5: amplitude alpha^t, learnt like a threshold
            self.amplitude = Parameter(np.ones(n_steps, dtype), "threshold")
        if c.sequential:  # docs/method.md §14: T is a constant of the run, no T parameter
            self.time = None
        elif time is None:
            self.time = Parameter(np.array(c.time_steps, dtype), "time")
            self.time.requires_grad = c.learn_time
        else:
            if not isinstance(time, Parameter) or time.kind != "time" or time.shape != () or time.dtype != dtype:
                raise ValueError(f"{type(self).__name__}: time must be a 0-d 'time' Parameter of dtype {dtype} "
                                 f"(from refsnn.nn.shared_time), got {time!r}")
            # shared: registered by its owner only, so the optimizer steps it once
            object.__setattr__(self, "time", time)
        # hook point (Module.register_forward_hook): the neuron's squeezed output y (Eq. 12)
        self.squeezed = Identity()

    def _build_neuron_buffers(self, c) -> None:
        n_steps = c.time_bound if c.temporal_wise else 1
        # C11: the recorded width from abs(Bhat) under the official convention
        self.register_buffer("obs_s_bold", np.full(n_steps, width_value(c.spike_bits, c.spike_bound,
                                                                        c.convention.width_abs), np.int64))
        self.register_buffer("obs_s_vrmin", np.full(n_steps, np.inf))
        self.register_buffer("obs_s_vrmax", np.full(n_steps, -np.inf))

    def _check_neuron_params(self) -> None:
        for p in (self.spike_width, self.time):
            if p is not None:
                check_finite_param(p, f"{type(self).__name__}.{p.kind}")

    # -- widths (Eq. 9-10) ----------------------------------------------------------
    def spike_widths(self, for_loss: bool = False) -> tuple:
        """Tensors (B_s^t for t = 1..T_bound, T) with straight-through gradients (Eq. 9-10); ``for_loss``: as the
        regulating loss sees them (row C11: official gradient through abs(Bhat))."""
        c = self.config
        ab = c.convention.width_abs   # C11: widths from abs(Bhat)
        # Eq. 9: B_s^t = round(clip(Bhat_s^t, 1, B_s,bound))
        B_s = parametrized_width(self.spike_width, c.spike_bound, "spike_width", use_abs=ab, grad_sign=ab and for_loss)
        # Eq. 10: T = round(clip(That, 1, T_bound)); sequential mode: the fixed T (docs/method.md §14)
        T = Tensor(np.array(c.time_steps, B_s.dtype)) if c.sequential else \
            parametrized_width(self.time, c.time_bound, "time")
        if not c.temporal_wise:  # shared over time: one value broadcast to every step
            B_s = B_s * np.ones(c.time_bound, dtype=B_s.dtype)
        return B_s, T

    def spike_width_values(self) -> tuple:
        """Integer ([B_s^t for the T steps in use], T) now, without the tape."""
        c = self.config
        T = self._steps()
        bs = np.broadcast_to(width_value(self.spike_width, c.spike_bound, c.convention.width_abs), (c.time_bound,))
        return [int(b) for b in bs[:T]], T

    def _steps(self) -> int:
        """T now: the rounded That (Eq. 10), or the fixed T of sequential mode (docs/method.md §14)."""
        c = self.config
        return int(c.time_steps) if c.sequential else int(width_value(self.time, c.time_bound))

    def thresholds(self, param=None):
        """V_th^t for t = 1..T_bound (or ``param``'s values, e.g. the amplitudes alpha^t of Eq. 3-5)."""
        c = self.config
        p = self.threshold if param is None else param
        if c.temporal_wise:
            return p
        return p * np.ones(c.time_bound, dtype=p.dtype)

    # -- section 11: LSQ initialisation of the thresholds -----------------------------
    def _init_thresholds(self, x: np.ndarray) -> None:
        c = self.config
        bs = width_value(self.spike_width, c.spike_bound, c.convention.width_abs)
        # section 11: V_th^t = 2 mean|a| / sqrt(q_max)
        self.threshold.data[...] = [lsq_init(x, spike_grid(b, c.domain)[1]) for b in bs]
        if c.neuron == "prior":  # Eq. 3-5: alpha^t starts equal to V_th^t (the refined neuron's amplitude)
            self.amplitude.data[...] = self.threshold.data

    # -- Alg. 1: observers, before quantizing -------------------------------------------
    def _renew_spike_steps(self, x: np.ndarray) -> None:
        c = self.config
        bs = width_value(self.spike_width, c.spike_bound, c.convention.width_abs)
        T = self._steps()
        steps = range(len(bs)) if c.temporal_wise else range(1)
        for t in steps:
            if t >= T:
                break
            B = int(bs[t])
            if B == int(self.obs_s_bold[t]):  # Alg. 1 step 1
                continue
            # the data X of this quantizer: the membrane potential v^t under the current thresholds
            v_th = self.thresholds().data if not c.temporal_wise else self.threshold.data
            bits_all = np.broadcast_to(bs, (c.time_bound,)).astype(np.int64)
            if c.sequential:  # docs/method.md §14: the observer of step t watches v^t of the current I^1..I^t
                alpha = self.thresholds(self.amplitude).data if c.neuron == "prior" else None
                v = sequential_membrane(x[: t + 1], np.ascontiguousarray(v_th), bits_all, domain=c.domain,
                                        rounding=c.rounding, tau=c.tau, convention=c.convention, impl=c.impl,
                                        alpha=None if alpha is None else np.ascontiguousarray(alpha))
            else:
                v = membrane_potentials(x, np.ascontiguousarray(v_th), np.ascontiguousarray(bits_all), t + 1,
                                        domain=c.domain, rounding=c.rounding, tau=c.tau, convention=c.convention,
                                        impl=c.impl)
            q_min, q_max = spike_grid(B, c.domain)
            res = R.observe(v[t], B, int(self.obs_s_bold[t]), float(self.obs_s_vrmin[t]), float(self.obs_s_vrmax[t]),
                            q_min, q_max, K=c.renewal_K, p=c.renewal_p, symmetric=(c.domain == "bidirectional"),
                            formula=c.convention.renewal_formula, one_bit_sign=c.convention.one_bit_grid_sign)
            self.obs_s_bold[t], self.obs_s_vrmin[t], self.obs_s_vrmax[t] = res.b_old, res.v_rmin, res.v_rmax
            if res.fired:
                # Eq. 25: overwrite the step V_th^t
                self.threshold.data[t] = max(res.step, R.EPS)
                self.renewal_events.append(("spike", t, int(res.b_old), res.step))

    def _time_major(self, x):
        """Sequential mode: ``x`` as (T, N, ...) and whether it came flattened as (T*N, ...) (docs/method.md §14).

        ``self.sample_ndim``: the per-sample dims, or None (neuron-only layer built without it): flattened only."""
        T, d = int(self.config.time_steps), self.sample_ndim
        shape = x.shape
        if d is not None and len(shape) == d + 2 and shape[0] == T:
            return x, False
        if (d is None or len(shape) == d + 1) and len(shape) >= 2 and shape[0] % T == 0:
            return F.reshape(x, shape=(T, shape[0] // T) + tuple(shape[1:])), True
        dims = "(T*N, ...)" if d is None else f"(T, N, ...) with {d} per-sample dims, or (T*N, ...)"
        raise ValueError(f"{type(self).__name__} (sequential, T = {T}): input must have shape {dims}, "
                         f"got {tuple(shape)}")

    def _fire(self, x, B_s, T):
        """Eq. 12-15: the neuron over T steps and the temporal squeeze (through the hook point ``squeezed``)."""
        c = self.config
        if c.sequential:
            # docs/method.md §14: Eq. 13-15 per step with I^t, no squeeze: Shat^t = V_th^t S^t (Eq. 3-5: alpha^t S^t)
            alpha = self.thresholds(self.amplitude) if c.neuron == "prior" else None
            return self.squeezed(sequential_neuron(x, self.thresholds(), B_s, domain=c.domain, rounding=c.rounding,
                                                   tau=c.tau, convention=c.convention, impl=c.impl, alpha=alpha))
        return self.squeezed(spiking_neuron(x, self.thresholds(), B_s, T, domain=c.domain, rounding=c.rounding,
                                            tau=c.tau, convention=c.convention, impl=c.impl))


class SpikingNeuron(NeuronPart, Module):
    """A refined neuron with no weight op: ``y = squeeze(neuron(a))`` (Eq. 12-15), docs/method.md §13.

    It has its own thresholds, spike widths, observers and renewal, joins the cost
    model (``cost``: no weights, no MACs; its input elements count in the S and T
    averages) and the regulating loss (Eq. 21) like any spiking layer.  ``time``: a
    parameter from ``shared_time`` to share That with other neurons (Spikformer's
    ``N_q, N_k, N_v``), or None for its own.

    Sequential mode (``temporal_mode="sequential"``, docs/method.md §14): T = ``time_steps`` is fixed (no
    ``time`` parameter; ``time`` must be None); the input is one current per step, flattened time-major
    as (T*N, ...) as a model passes it between layers, or (T, N, ...) when ``sample_ndim`` (the
    per-sample dims, e.g. 2 for tokens (L, D)) is given; the neuron runs step by step without squeezing
    (``sequential_neuron``) and the output has the input's shape; the observers watch ``v^t`` per step.
    """
    kind = "neuron"
    has_weight = False

    def __init__(self, config=None, time: Parameter | None = None, dtype=DEFAULT_DTYPE, sample_ndim: int | None = None):
        super().__init__()
        from .spiking import SpikingConfig
        c = self.config = config or SpikingConfig()
        if not isinstance(c, SpikingConfig):
            raise ValueError(f"SpikingNeuron: config must be a SpikingConfig, got {type(c).__name__}")
        if not c.input_neuron:
            raise ValueError("SpikingNeuron: config.input_neuron must be True (the layer is a neuron)")
        if sample_ndim is not None and (isinstance(sample_ndim, bool) or not isinstance(sample_ndim, int)
                                        or sample_ndim < 1):
            raise ValueError(f"SpikingNeuron: sample_ndim must be None or an integer >= 1, got {sample_ndim!r}")
        if c.sequential and time is not None:
            raise ValueError("SpikingNeuron: in temporal_mode='sequential' T is the fixed time_steps "
                             "(docs/method.md §14); pass time=None, got a shared 'time' Parameter")
        self.sample_ndim = sample_ndim
        dtype = check_float_dtype(dtype)
        self._build_neuron_params(c, dtype, time)
        self.register_buffer("initialized", np.array(False))
        self.register_buffer("renew_spike", np.array(c.renewal in ("spike", "both")))
        self.register_buffer("renew_weight", np.array(False))  # no weights to renew
        self._build_neuron_buffers(c)
        self.renewal_events: list = []
        self.in_shape = None
        self.out_shape = None

    # -- the layer protocol (refsnn.method.protocol) -----------------------------------
    @property
    def has_learnable_width(self) -> bool:
        """B_s^t or T is learnable (docs/method.md §7)."""
        return self.config.learn_spike_bits or self.config.learn_time

    @property
    def has_learnable_bit_width(self) -> bool:
        """B_s^t is learnable (T not counted): read by the release's loss filter (refsnn.method.regulate.counted)."""
        return self.config.learn_spike_bits

    def layer_widths(self) -> LayerWidths:
        """The tape widths, N_w = 0 (no weights: not in W) and N_f (Eq. 9-10, Eq. 21); T may be shared."""
        if self.in_shape is None:
            raise ValueError("SpikingNeuron: run a forward pass first (N_f comes from the input shape)")
        B_s, T = self.spike_widths(for_loss=True)   # C11: as the loss sees them
        n_steps = int(T.data)
        # a fixed T (sequential mode, docs/method.md §14) as a plain number
        return LayerWidths(B_w=None, B_s=B_s[:n_steps], T=n_steps if self.config.sequential else T, n_w=0,
                           n_f=int(np.prod(self.in_shape)), spiking=True)

    def widths(self) -> tuple:
        """(None, B_s^t, T): the weight-width slot of a weight layer is empty."""
        B_s, T = self.spike_widths()
        return None, B_s, T

    def width_values(self) -> tuple:
        """(0, [B_s^t ...], T): no weight width."""
        bs, T = self.spike_width_values()
        return 0, bs, T

    def forward(self, x):
        xd = x.data if isinstance(x, Tensor) else np.asarray(x)
        check_input(xd, type(self).__name__)
        if xd.dtype != self.threshold.dtype:
            raise TypeError(f"SpikingNeuron: input is {xd.dtype}, the layer is {self.threshold.dtype}")
        flat = False
        if self.config.sequential:
            x, flat = self._time_major(x)
            xd = x.data if isinstance(x, Tensor) else np.asarray(x)
        self.renewal_events = []
        self._check_neuron_params()
        if self.training:
            with no_grad():
                if not bool(self.initialized):
                    self._init_thresholds(xd)
                    self.initialized[...] = True
                if bool(self.renew_spike):
                    self._renew_spike_steps(xd)
        B_s, T = self.spike_widths()
        y = self._fire(x, B_s, T)
        if self.config.sequential:
            # docs/method.md §14: per-sample shape without the T and N axes
            self.in_shape = self.out_shape = tuple(xd.shape[2:])
            return F.reshape(y, shape=(xd.shape[0] * xd.shape[1],) + self.in_shape) if flat else y
        self.in_shape = self.out_shape = tuple(xd.shape[1:])
        return y

    def cost(self, name: str = "") -> LayerCost:
        """Cost-model entry: no weights and no MACs; N_f input elements in S and T (docs/method.md §13)."""
        if self.in_shape is None:
            raise ValueError(f"SpikingNeuron {name}: run a forward pass first (the cost model needs the input shape)")
        bs, T = self.spike_width_values()
        return LayerCost(name=name, kind=self.kind, macs=0, n_w=0, n_f=int(np.prod(self.in_shape)), B_w=0, B_s=bs,
                         T=T, spiking=True, sequential=self.config.sequential)

    def extra_repr(self):
        c = self.config
        return f"S/T={c.spike_bits:g}/{c.time_steps:g}, domain={c.domain}"
