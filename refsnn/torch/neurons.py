"""The refined neuron as a part of a torch layer, and the neuron-only layer (docs/method.md §5, §13, §14).

``NeuronPart`` is ``refsnn.nn.neurons.NeuronPart`` in torch: the parameters a neuron owns
(``threshold`` V_th^t, ``spike_width`` Bhat_s^t, ``amplitude`` alpha^t of the prior-art neuron of
Eq. 3-5, ``time`` That, its own, shared or -- sequential mode -- none), its buffers (``obs_s_*``),
the widths (Eq. 9-10), the LSQ initialisation of the thresholds (docs/method.md §11, global batch),
the spike observers (Alg. 1-2, Eq. 24-25) and the firing in squeeze mode (Eq. 12-15) or sequential
mode (docs/method.md §14).  ``SpikingNeuron`` is a neuron with no weight op (Spikformer's N_q, N_k,
N_v), with refsnn's names, so state dicts move unchanged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..method.budget import LayerCost
from ..method.neuron import ROUNDINGS, spike_grid
from ..method.parametrize import width_value
from ..method.protocol import LayerWidths
from ..nn.spiking import SpikingConfig
from . import renewal as R
from .functions import membrane, round_clip, spiking_neuron
from .sequential import seq_membrane, sequential_neuron


@dataclass(frozen=True)
class TorchLayerWidths(LayerWidths):
    """``refsnn.method.protocol.LayerWidths`` holding torch tensors (the mean over steps in torch)."""

    @property
    def mean_B_s(self):
        return self.B_s.mean()


class NeuronPart:
    """Parameters, widths, initialisation, observers and firing of one refined neuron (mixed into an nn.Module)."""

    def _build_neuron_params(self, fk: dict, time: nn.Parameter | None = None) -> None:
        c = self.config
        n_steps = c.time_bound if c.temporal_wise else 1
        self.threshold = nn.Parameter(torch.ones(n_steps, **fk))
        self.spike_width = nn.Parameter(torch.full((n_steps,), float(c.spike_bits), **fk),
                                        requires_grad=c.learn_spike_bits)
        if c.neuron == "prior":  # Eq. 3-5: amplitude alpha^t, learnt like a threshold
            self.amplitude = nn.Parameter(torch.ones(n_steps, **fk))
        if c.sequential:  # docs/method.md §14: T is a constant of the run, no T parameter
            self.time = None
        elif time is None:
            self.time = nn.Parameter(torch.tensor(float(c.time_steps), **fk), requires_grad=c.learn_time)
        else:
            if not isinstance(time, nn.Parameter) or time.shape != () or time.dtype != fk["dtype"]:
                raise ValueError(f"{type(self).__name__}: time must be a 0-d Parameter of dtype {fk['dtype']} "
                                 f"(refsnn.torch.neurons.shared_time), got {time!r}")
            # shared (Spikformer's N_q, N_k, N_v): registered by its owner only, so the optimizer steps it once
            object.__setattr__(self, "time", time)
        # hook point (register_forward_hook): the neuron's output y (Eq. 12) or Shat^t (sequential), as refsnn's
        self.squeezed = nn.Identity()

    def _build_neuron_buffers(self, device) -> None:
        c = self.config
        n_steps = c.time_bound if c.temporal_wise else 1
        i64, f64 = {"dtype": torch.int64, "device": device}, {"dtype": torch.float64, "device": device}
        # C11: the recorded width from abs(Bhat) under the official convention
        bold = int(width_value(c.spike_bits, c.spike_bound, c.convention.width_abs))
        self.register_buffer("obs_s_bold", torch.full((n_steps,), bold, **i64))
        self.register_buffer("obs_s_vrmin", torch.full((n_steps,), math.inf, **f64))
        self.register_buffer("obs_s_vrmax", torch.full((n_steps,), -math.inf, **f64))

    # -- widths (Eq. 9-10) ---------------------------------------------------------------
    def spike_widths(self, for_loss: bool = False) -> tuple:
        """Tensors (B_s^t for t = 1..T_bound, T) with straight-through gradients (Eq. 9-10); ``for_loss``: C11."""
        c = self.config
        ab = c.convention.width_abs   # C11: widths from abs(Bhat)
        # Eq. 9: B_s^t = round(clip(Bhat_s^t, 1, B_s,bound))   (shared over time: one value on every step)
        B_s = round_clip(self.spike_width, c.spike_bound, "spike_width", ab, ab and for_loss).expand(c.time_bound)
        if c.sequential:  # docs/method.md §14: the fixed T
            return B_s, torch.tensor(float(c.time_steps), dtype=B_s.dtype, device=B_s.device)
        # Eq. 10: T = round(clip(That, 1, T_bound))
        return B_s, round_clip(self.time, c.time_bound, "time")

    def steps(self) -> int:
        """T now: the rounded That (Eq. 10), or the fixed T of sequential mode (docs/method.md §14)."""
        c = self.config
        return int(c.time_steps) if c.sequential else int(width_value(float(self.time.detach()), c.time_bound))

    def spike_width_values(self) -> tuple:
        """Integer ([B_s^t for the T steps in use], T) now."""
        c = self.config
        T = self.steps()
        bs = np.broadcast_to(width_value(self.spike_width.detach().cpu().double().numpy(), c.spike_bound,
                                         c.convention.width_abs), (c.time_bound,))
        return [int(b) for b in bs[:T]], T

    def spike_record(self, n_w: int, B_w) -> LayerWidths:
        """The layer protocol's record of a layer with this neuron (``n_w``, ``B_w``: its weights, or 0 and None)."""
        if self.in_shape is None:
            raise ValueError(f"{type(self).__name__}: run a forward pass first (N_f of each layer comes from its "
                             "input shape)")
        B_s, T = self.spike_widths(for_loss=True)   # C11: as the loss sees them
        n = int(T.item())
        # the spike widths of the T_l steps in use; a fixed T (sequential mode, docs/method.md §14) as a number
        return TorchLayerWidths(B_w=B_w, B_s=B_s[:n], T=n if self.config.sequential else T, n_w=n_w,
                           n_f=int(np.prod(self.in_shape)), spiking=True)

    def thresholds(self, param=None) -> torch.Tensor:
        """V_th^t for t = 1..T_bound (a shared threshold repeated); or ``param``'s values (alpha^t of Eq. 3-5)."""
        p = self.threshold if param is None else param
        return p.expand(self.config.time_bound)

    def amplitudes(self):
        """alpha^t of the prior-art neuron (Eq. 3-5), or None for the refined neuron."""
        return self.thresholds(self.amplitude) if self.config.neuron == "prior" else None

    # -- docs/method.md §11: LSQ initialisation of the thresholds (global batch, docs/method.md §16) -------------
    def _init_thresholds(self, x: torch.Tensor) -> None:
        c = self.config
        bs = width_value(self.spike_width.detach().cpu().double().numpy(), c.spike_bound, c.convention.width_abs)
        mean_a = R.global_mean_abs(x)
        # section 11: V_th^t = 2 mean|a| / sqrt(q_max)
        self.threshold.copy_(torch.tensor([R.lsq_init(mean_a, spike_grid(int(b), c.domain)[1])
                                           for b in np.atleast_1d(bs)], dtype=self.threshold.dtype))
        if c.neuron == "prior":  # Eq. 3-5: alpha^t starts equal to V_th^t
            self.amplitude.copy_(self.threshold)

    # -- Alg. 1: observers, before quantizing ------------------------------------------------
    def _renew_spike_steps(self, x: torch.Tensor) -> None:
        c = self.config
        conv = c.convention
        bs = [int(b) for b in np.broadcast_to(width_value(self.spike_width.detach().cpu().double().numpy(),
                                                          c.spike_bound, conv.width_abs), (c.time_bound,))]
        T = self.steps()
        for t in range(min(T, c.time_bound if c.temporal_wise else 1)):
            B = bs[t]
            if B == int(self.obs_s_bold[t]):  # Alg. 1 step 1
                continue
            # the data X of this quantizer: v^t under the current thresholds (earlier steps possibly just renewed)
            V = self.thresholds().detach()
            if c.sequential:  # docs/method.md §14: v^t of the currents I^1..I^t
                alpha = self.amplitudes()
                _, v = seq_membrane(x[:t + 1].detach(), V, V if alpha is None else alpha.detach(), bs, c.domain,
                                    ROUNDINGS[c.rounding], c.tau, conv.reset_decay)
            else:
                _, v = membrane(x.detach(), V, bs, t + 1, c.domain, ROUNDINGS[c.rounding], c.tau, conv.reset_decay)
            q_min, q_max = spike_grid(B, c.domain)
            res = R.observe(v[t], B, int(self.obs_s_bold[t]), float(self.obs_s_vrmin[t]), float(self.obs_s_vrmax[t]),
                            q_min, q_max, K=c.renewal_K, p=c.renewal_p, symmetric=(c.domain == "bidirectional"),
                            formula=conv.renewal_formula, one_bit_sign=conv.one_bit_grid_sign)
            self.obs_s_bold[t], self.obs_s_vrmin[t], self.obs_s_vrmax[t] = res.b_old, res.v_rmin, res.v_rmax
            if res.fired:
                # Eq. 25: overwrite the step V_th^t
                self.threshold[t] = max(res.step, R.EPS)
                self.renewal_events.append(("spike", t, int(res.b_old), res.step))

    # -- firing ------------------------------------------------------------------------------
    def time_major(self, x: torch.Tensor) -> tuple:
        """Sequential mode: ``x`` as (T, N, ...) and whether it came flattened as (T*N, ...) (docs/method.md §14)."""
        T, d = int(self.config.time_steps), self.sample_ndim
        shape = tuple(x.shape)
        if d is not None and len(shape) == d + 2 and shape[0] == T:
            return x, False
        if (d is None or len(shape) == d + 1) and len(shape) >= 2 and shape[0] % T == 0:
            return x.reshape((T, shape[0] // T) + shape[1:]), True
        dims = "(T*N, ...)" if d is None else f"(T, N, ...) with {d} per-sample dims, or (T*N, ...)"
        raise ValueError(f"{type(self).__name__} (sequential, T = {T}): input must have shape {dims}, got {shape}")

    def neuron(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. 12-15: the neuron over T steps and the temporal squeeze; sequential mode (docs/method.md §14): a
        current per step (x time-major), ``Shat^t`` per step (Eq. 3-5 with alpha for the prior-art neuron)."""
        c = self.config
        B_s, T = self.spike_widths()
        if c.sequential:
            return self.squeezed(sequential_neuron(x, self.thresholds(), B_s, domain=c.domain, rounding=c.rounding,
                                                   tau=c.tau, convention=c.convention, alpha=self.amplitudes(),
                                                   ranks=self.ranks))
        return self.squeezed(spiking_neuron(x, self.thresholds(), B_s, T, domain=c.domain, rounding=c.rounding,
                                            tau=c.tau, convention=c.convention, ranks=self.ranks))


def shared_time(config: SpikingConfig, dtype=torch.float64, device=None) -> nn.Parameter:
    """One That (Eq. 10) for several neurons (docs/method.md §13: N_q, N_k, N_v)."""
    return nn.Parameter(torch.tensor(float(config.time_steps), dtype=dtype, device=device),
                        requires_grad=config.learn_time)


class SpikingNeuron(NeuronPart, nn.Module):
    """``refsnn.nn.SpikingNeuron`` in torch: a refined neuron with no weight op (docs/method.md §13)."""
    kind = "neuron"

    def __init__(self, config: SpikingConfig, time: nn.Parameter | None = None, dtype=torch.float64, device=None,
                 sample_ndim: int | None = None):
        super().__init__()
        if not isinstance(config, SpikingConfig):
            raise TypeError(f"SpikingNeuron: config must be a refsnn.nn.SpikingConfig, got {type(config).__name__}")
        if config.sequential and time is not None:
            raise ValueError("SpikingNeuron: in temporal_mode='sequential' T is the fixed time_steps "
                             "(docs/method.md §14); pass time=None")
        self.config, self.sample_ndim = config, sample_ndim
        self._build_neuron_params({"dtype": dtype, "device": device}, time)
        self.register_buffer("initialized", torch.tensor(False, device=device))
        self.register_buffer("renew_spike", torch.tensor(config.renewal in ("spike", "both"), device=device))
        self.register_buffer("renew_weight", torch.tensor(False, device=device))
        self._build_neuron_buffers(device)
        self.ranks = 1
        self.renewal_events: list = []
        self.in_shape = self.out_shape = None

    @property
    def has_learnable_width(self) -> bool:
        return self.config.learn_spike_bits or self.config.learns_time

    @property
    def has_learnable_bit_width(self) -> bool:
        return self.config.learn_spike_bits

    def layer_widths(self) -> LayerWidths:
        return self.spike_record(0, None)

    def widths(self, for_loss: bool = False) -> tuple:
        return (None,) + self.spike_widths(for_loss)

    def width_values(self) -> tuple:
        return (0,) + self.spike_width_values()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != self.threshold.dtype:
            raise TypeError(f"SpikingNeuron: input is {x.dtype}, the layer is {self.threshold.dtype}")
        flat = False
        if self.config.sequential:
            x, flat = self.time_major(x)
        self.renewal_events = []
        if self.training:
            with torch.no_grad():
                if not bool(self.initialized):
                    self._init_thresholds(x)
                    self.initialized.fill_(True)
                if bool(self.renew_spike):
                    self._renew_spike_steps(x)
        y = self.neuron(x)
        if self.config.sequential:
            self.in_shape = self.out_shape = tuple(x.shape[2:])
            return y.reshape((x.shape[0] * x.shape[1],) + self.in_shape) if flat else y
        self.in_shape = self.out_shape = tuple(x.shape[1:])
        return y

    def cost(self, name: str = "") -> LayerCost:
        """No weights and no MACs; N_f input elements in S and T (docs/method.md §13)."""
        if self.in_shape is None:
            raise ValueError(f"SpikingNeuron {name}: run a forward pass first (the cost model needs the input shape)")
        bs, T = self.spike_width_values()
        return LayerCost(name=name, kind=self.kind, macs=0, n_w=0, n_f=int(np.prod(self.in_shape)), B_w=0, B_s=bs,
                         T=T, spiking=True, sequential=self.config.sequential)
