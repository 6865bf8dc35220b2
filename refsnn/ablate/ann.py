"""Table 8's mixed-precision ANN (docs/method.md §15): the same ResNet without time (T = 1, ReLU), every
conv/linear layer quantizing its input activations and its weights with Uhlich et al.'s (d, q_max)
quantizer (``refsnn.method.mixed_precision``), the widths derived from d and q_max, and a penalty on
the average widths (Eq. 21's form, lam_T = 0: T is 1) that meets the same W/S targets as the SNN.

Parametrization (refsnn's **decision**, as the log option of Uhlich et al.'s code): each layer learns
``log2 d`` and ``log2 q_max`` for its weights and for its input, so that the steps stay positive and
the updates are relative.  Initialisation at the first training batch: ``q_max`` = max |x| (weights:
max |w|), ``d`` = q_max / (2^(b0 - 1) - 1) for a signed grid, q_max / (2^b0 - 1) unsigned (times
1 + 1e-4, off the ceil's edge), with the SNN's initial width b0 = 4.  Costs: W = weight-weighted mean of the weight widths, S = input-element
weighted mean of the activation widths, T = 1 (the layer protocol of ``refsnn.method.protocol``).
The smallest grids are {-d, 0, d} for weights (2 bits: a signed derived width is >= 2) and {0, d} for
activations (1 bit), so the ANN cannot reach W = 1; ``_QuantPair.project`` keeps d <= q_max.
"""
from __future__ import annotations

import math
import time

import numpy as np

from .. import functional as F
from ..autograd.tensor import Tensor, no_grad
from ..config import TrainConfig
from ..data import DataLoader
from ..method.mixed_precision import derived_width, uniform_quantize, width_value
from ..method.protocol import LayerWidths, wst_averages
from ..method.regulate import Penalties, Targets, regulating_loss
from ..models.resnet import ResNet
from ..nn import Module, Parameter
from ..nn.layers import kaiming_normal, positive_int
from ..random import resolve as resolve_rng

LN2 = math.log(2.0)
#: the initial width of every quantizer (the SNN's initial W and S)
INITIAL_BITS = 4
#: the range of log2 d and log2 q_max (project())
LOG_RANGE = (-16.0, 12.0)


class _QuantPair(Module):
    """One quantizer: learnable log2 d and log2 q_max (kinds "weight_width" / "spike_width": no clamp)."""

    def __init__(self, kind: str, signed: bool, dtype):
        super().__init__()
        self.signed = bool(signed)
        self.log_d = Parameter(np.zeros((), dtype), kind)
        self.log_q = Parameter(np.zeros((), dtype), kind)
        self.register_buffer("initialized", np.array(False))

    def initialize(self, data: np.ndarray) -> None:
        q = max(float(np.max(np.abs(data))), 1e-3)
        levels = 2 ** (INITIAL_BITS - 1) - 1 if self.signed else 2 ** INITIAL_BITS - 1
        self.log_q.data[...] = math.log2(q)
        # d a hair above q / levels, so that b = ceil(log2(q/d + 1)) is b0 also after float32 rounding
        self.log_d.data[...] = math.log2(q / levels * (1 + 1e-4))
        self.initialized[...] = True

    def project(self) -> None:
        """Keep the grid a grid: log2 q_max in [-16, 12] and d <= q_max (as d = min(d, q_max) in Uhlich et al.'s
        code).  Without it a target below the smallest grid (W = 1: a signed grid has >= 2 bits, {-d, 0, d})
        drives log2 q_max to -inf under the penalty."""
        self.log_q.data[...] = np.clip(self.log_q.data, LOG_RANGE[0], LOG_RANGE[1])
        self.log_d.data[...] = np.clip(self.log_d.data, LOG_RANGE[0], self.log_q.data)

    def params(self) -> tuple:
        # d = 2^(log2 d), q_max = 2^(log2 q_max)
        return F.exp(self.log_d * LN2), F.exp(self.log_q * LN2)

    def quantize(self, x):
        d, q = self.params()
        return uniform_quantize(x, d, q, signed=self.signed)

    def width(self):
        d, q = self.params()
        return derived_width(d, q, signed=self.signed)

    def width_int(self) -> int:
        return width_value(2.0 ** float(self.log_d.data), 2.0 ** float(self.log_q.data), self.signed)


class _QuantLayer(Module):
    """Input quantizer + quantized-weight op (a conv or a linear); implements the layer protocol."""
    has_learnable_width = True

    def _build(self, w: np.ndarray, out: int, bias: bool, signed_input: bool, dtype):
        self.weight = Parameter(w, "weight")
        self.bias = Parameter(np.zeros(out, dtype), "bias") if bias else None
        self.wq = _QuantPair("weight_width", True, dtype)
        self.aq = _QuantPair("spike_width", signed_input, dtype)
        self.in_shape = None

    def forward(self, x):
        xd = x.data if isinstance(x, Tensor) else np.asarray(x)
        if self.training and not bool(self.aq.initialized):
            self.aq.initialize(xd)
            self.wq.initialize(self.weight.data)
        self.aq.project()
        self.wq.project()
        self.in_shape = tuple(xd.shape[1:])
        return self._op(self.aq.quantize(x), self.wq.quantize(self.weight))

    def layer_widths(self) -> LayerWidths:
        b_a = self.aq.width() * np.ones(1, dtype=self.weight.dtype)
        return LayerWidths(B_w=self.wq.width(), B_s=b_a, T=1.0, n_w=int(self.weight.size),
                           n_f=int(np.prod(self.in_shape)), spiking=True)

    def widths_int(self) -> tuple:
        return self.wq.width_int(), self.aq.width_int()


class QuantConv2d(_QuantLayer):
    def __init__(self, cin, cout, k, stride, padding, signed_input, rng, dtype):
        super().__init__()
        positive_int(cin, "in_channels", "QuantConv2d")
        self.stride, self.padding = stride, padding
        self._build(kaiming_normal((cout, cin, k, k), cin * k * k, rng, dtype), cout, False, signed_input, dtype)

    def _op(self, x, w):
        return F.conv2d(x, w, None, stride=self.stride, padding=self.padding)


class QuantLinear(_QuantLayer):
    def __init__(self, fin, fout, rng, dtype):
        super().__init__()
        self._build(kaiming_normal((fout, fin), fin, rng, dtype), fout, True, False, dtype)

    def _op(self, x, w):
        return F.linear(x, w, self.bias)


class _AnnBuilder:
    """What ``refsnn.models.resnet.ResNet`` asks of a builder, making quantized ANN layers instead."""

    def __init__(self, seed: int, dtype):
        self.model_name = "tiny_resnet_ann"
        self.rng = resolve_rng(np.random.default_rng(int(seed)))
        self.dtype = np.dtype(dtype)

    def conv(self, name, cin, cout, k, stride=1, padding=0):
        # the stem sees the signed image (as the SNN's bidirectional input neuron, Eq. 15)
        return QuantConv2d(cin, cout, k, stride, padding, name == "stem", self.rng, self.dtype)

    def linear(self, name, fin, fout):
        return QuantLinear(fin, fout, self.rng, self.dtype)

    def finish(self, model):
        return model

    def temporal_mode(self) -> tuple:
        """(sequential, fixed T): an ANN has no time, so it runs as one step (the squeeze-mode path)."""
        return False, 0


def quant_layers(model) -> list:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, _QuantLayer)]


def tiny_resnet_ann(num_classes: int = 10, seed: int = 0, dtype=np.float64) -> ResNet:
    """tiny_resnet (refsnn.models.resnet) with every spiking layer replaced by a quantized ANN layer."""
    return ResNet(_AnnBuilder(seed, dtype), in_channels=1, num_classes=num_classes, stem_channels=16,
                  stem_kernel=3, stem_stride=1, stem_maxpool=False, blocks=(1, 1), widths=(16, 32), strides=(1, 2),
                  sew=False)


def ann_costs(model) -> dict:
    """W, S (T = 1), Bit Budget W*S and size of the ANN's current integer widths (docs/method.md §2)."""
    layers = [m for _, m in quant_layers(model)]

    class _Rec:  # the record wst_averages reads
        def __init__(self, l):
            self.B_w, b_a = l.widths_int()
            self.mean_B_s, self.T, self.spiking = float(b_a), 1, True
            self.n_w, self.n_f = int(l.weight.size), int(np.prod(l.in_shape))

    recs = [_Rec(l) for l in layers]
    avg = wst_averages(recs)
    size = sum(r.n_w * r.B_w for r in recs) / 8 / 1e6
    return {"W": float(avg["W"]), "S": float(avg["S"]), "T": 1.0, "bit_budget": float(avg["W"] * avg["S"]),
            "size_mb": size}


def train_ann(cfg: TrainConfig, progress=None) -> dict:
    """Train the mixed-precision ANN with the data, optimizer, schedule and targets of ``cfg``; returns the
    final record (test accuracy and costs)."""
    from ..train import build_datasets, build_optimizer, build_schedule
    train_set, test_set = build_datasets(cfg)
    model = tiny_resnet_ann(train_set.classes, seed=cfg.seed, dtype=cfg.np_dtype)
    layers = [m for _, m in quant_layers(model)]
    opt = build_optimizer(cfg, model)
    loader = DataLoader(train_set, cfg.data.batch_size, shuffle=cfg.data.shuffle, seed=cfg.seed,
                        drop_last=cfg.data.drop_last, augment=False)
    sched = build_schedule(cfg, opt, len(loader))
    r = cfg.regulate
    targets, pens = Targets(r.W, r.S, 1.0), Penalties(r.lam_w, r.lam_s, 0.0)
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        loader.set_epoch(epoch)
        for xb, yb in loader.batches(0):
            logits = model(Tensor(xb))
            # L_total = cross-entropy + lam_w |W - W_tar| + lam_s |S - S_tar|  (Eq. 21's form on the derived widths)
            loss = F.cross_entropy(logits, yb)
            if r.enabled:
                loss = loss + regulating_loss(layers, targets, pens)[0]
            opt.zero_grad()
            loss.backward()
            opt.step()
            if cfg.optim.schedule_unit == "step":
                sched.step()
        if cfg.optim.schedule_unit == "epoch":
            sched.step()
        if progress is not None:
            progress(epoch + 1, cfg.epochs)
    acc = evaluate(model, test_set, cfg.data.test_batch_size)
    return {"test_acc": acc, **ann_costs(model), "epochs": cfg.epochs, "train_s": time.perf_counter() - t0}


def evaluate(model, test_set, batch_size: int) -> float:
    model.eval()
    correct = 0
    with no_grad():
        for xb, yb in DataLoader(test_set, batch_size, shuffle=False, augment=False).batches(0):
            correct += int((np.argmax(model(Tensor(xb)).data, axis=1) == yb).sum())
    model.train()
    return correct / len(test_set)
