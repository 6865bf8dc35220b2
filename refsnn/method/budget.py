"""Cost model: Bit Budget (Eq. 7), S-ACE (Eq. 8), the post-squeezing S-ACE* (App. A.6),
the model averages W/S/T and the model size (docs/method.md §2).

Works on ``LayerCost`` records (the cost half of the layer protocol,
``refsnn.method.protocol``): a spiking layer produces one from its shapes
and widths (``SpikingConv2d.cost()``); ``uniform`` overrides the widths by hand
(e.g. W/S/T = 16/1/4) so that full-precision baselines can be costed.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from .protocol import wst_averages


@dataclass
class LayerCost:
    """One spiking weight layer.

    ``macs``: multiply-accumulates per sample; ``n_w``: weight elements;
    ``n_f``: elements of the layer's input feature map per sample;
    ``B_w``: weight width; ``B_s``: spike width of each of the ``T`` steps used;
    ``spiking``: False for a stem fed by the analog image (no input neuron),
    which is left out of S-ACE and of the S and T averages;
    ``sequential``: the layer runs in sequential mode (docs/method.md §14): its weight op runs T times
    and nothing is squeezed, so S-ACE* (the post-squeezing pipeline) is S-ACE itself.
    """
    name: str
    kind: str
    macs: int
    n_w: int
    n_f: int
    B_w: int
    B_s: list = field(default_factory=list)
    T: int = 1
    spiking: bool = True
    sequential: bool = False

    # Eq. 7 per layer: BB_l = B_w,l * sum_t B_s,l^t
    @property
    def bit_budget(self) -> int:
        return self.B_w * sum(self.B_s[: self.T]) if self.spiking else 0

    # Eq. 8 per layer: S-ACE_l = MACs_l * BB_l
    @property
    def s_ace(self) -> int:
        return self.macs * self.bit_budget

    # App. A.6 (our reading, docs/method.md §2 Decision): MACs * B_w * (max_t B_s^t + ceil(log2 T))
    @property
    def s_ace_star(self) -> int:
        if not self.spiking:
            return 0
        if self.sequential:  # docs/method.md §14: no squeeze; S-ACE = MACs * B_w * sum_t B_s^t (the weight op runs T times)
            return self.s_ace
        return self.macs * self.B_w * (max(self.B_s[: self.T]) + math.ceil(math.log2(self.T)))

    @property
    def size_bytes(self) -> float:
        return self.n_w * self.B_w / 8

    @property
    def size_mb(self) -> float:
        return self.n_w * self.B_w / 8 / 1e6

    @property
    def mean_B_s(self) -> float:
        return sum(self.B_s[: self.T]) / self.T

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(bit_budget=self.bit_budget, s_ace=self.s_ace, s_ace_star=self.s_ace_star, size_bytes=self.size_bytes,
                 mean_B_s=self.mean_B_s)
        return d


@dataclass
class AttentionCost:
    """The two weightless products of one spiking self-attention block (docs/method.md §13, decision).

    ``tokens`` L, ``dim`` D; ``B_q``, ``B_k``, ``B_v``: the spike widths of N_q, N_k, N_v at
    each of the T steps of their shared temporal length.  Per sample:

        MACs(Q K^T) = MACs(A V) = L^2 D                       (L x L scores of d = D/H per head, H heads)
        B_A^t = B_q^t + B_k^t + ceil(log2 L)                   (bit width of A's integer grid)
        bits_qk = sum_t MACs * B_q^t * B_k^t,  bits_av = sum_t MACs * B_v^t * B_A^t

    summed over the steps as Eq. 7 sums the spike widths.  Not part of S-ACE (Eq. 8).
    """
    name: str
    tokens: int
    dim: int
    heads: int
    B_q: list
    B_k: list
    B_v: list

    @property
    def macs(self) -> int:
        # L^2 D multiply-accumulates for each of Q K^T and A V
        return self.tokens * self.tokens * self.dim

    @property
    def B_A(self) -> list:
        # B_A = B_q + B_k + ceil(log2 N_tokens)
        grow = math.ceil(math.log2(self.tokens)) if self.tokens > 1 else 0
        return [q + k + grow for q, k in zip(self.B_q, self.B_k)]

    @property
    def bits_qk(self) -> int:
        return sum(self.macs * q * k for q, k in zip(self.B_q, self.B_k))

    @property
    def bits_av(self) -> int:
        return sum(self.macs * v * a for v, a in zip(self.B_v, self.B_A))

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(macs_qk=self.macs, macs_av=self.macs, B_A=self.B_A, bits_qk=self.bits_qk, bits_av=self.bits_av)
        return d


@dataclass
class ModelCost:
    layers: list
    W: float
    S: float
    T: float
    bit_budget: float
    macs: int
    s_ace: int
    s_ace_star: int
    size_mb: float
    attention: list = field(default_factory=list)  # AttentionCost of each self-attention block (docs/method.md §13)

    @property
    def size_bytes(self) -> float:
        # size in bytes = sum_l N_w,l * B_w,l / 8
        return sum(lc.size_bytes for lc in self.layers)

    def as_dict(self) -> dict:
        """JSON form in raw units: operation counts as integers (per sample), the size in bytes."""
        d = {"W": self.W, "S": self.S, "T": self.T, "bit_budget": self.bit_budget,
             "macs": int(self.macs), "s_ace": int(self.s_ace), "s_ace_star": int(self.s_ace_star),
             "size_bytes": self.size_bytes, "layers": [lc.as_dict() for lc in self.layers],
             "s_ace_star_note": "S-ACE* = sum MACs*B_w*(max_t B_s + ceil(log2 T)): refsnn's reading of App. A.6"}
        if self.attention:
            d["attention"] = [a.as_dict() for a in self.attention]
            d["attention_macs"] = int(sum(2 * a.macs for a in self.attention))
            d["attention_bits_qk"] = int(sum(a.bits_qk for a in self.attention))
            d["attention_bits_av"] = int(sum(a.bits_av for a in self.attention))
        return d


def model_cost(layers: list, attention: list = ()) -> ModelCost:
    """Model averages (docs/method.md §2) and totals (Eq. 7-8, App. A.6); ``attention``: AttentionCost list."""
    if not layers:
        raise ValueError("model_cost: the model has no spiking weight layers")
    # W, S, T of docs/method.md §2 (an average over no spiking layer is 0)
    avg = {k: (0.0 if v is None else v) for k, v in wst_averages(layers).items()}
    W, S, T = avg["W"], avg["S"], avg["T"]
    return ModelCost(
        layers=layers, W=W, S=S, T=T,
        # model Bit Budget = W * S * T (Eq. 7 at model level)
        bit_budget=W * S * T,
        macs=sum(lc.macs for lc in layers),
        # Eq. 8: S-ACE = sum over spiking weight layers of MACs_l * BB_l
        s_ace=sum(lc.s_ace for lc in layers),
        s_ace_star=sum(lc.s_ace_star for lc in layers),
        # size (MB) = sum_l N_w,l * B_w,l / 8 / 10^6
        size_mb=sum(lc.size_mb for lc in layers),
        attention=list(attention),
    )


def uniform(layers: list, W: int, S: int, T: int) -> list:
    """The same layers with every width set by hand: B_w = W, B_s^t = S for t <= T, T_l = T.

    A layer without weights (a neuron-only layer, ``n_w = 0``) keeps B_w = 0."""
    for name, v in (("W", W), ("S", S), ("T", T)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"uniform: {name} must be an integer >= 1, got {v!r}")
    return [replace(lc, B_w=W if lc.n_w else lc.B_w, B_s=[S] * T, T=T) for lc in layers]


def parse_wst(text: str) -> tuple:
    """'16/1/4' -> (16, 1, 4)."""
    parts = str(text).split("/")
    try:
        vals = tuple(int(p) for p in parts)
    except ValueError:
        vals = ()
    if len(vals) != 3 or min(vals) < 1:
        raise ValueError(f"W/S/T must look like '16/1/4' (three integers >= 1), got {text!r}")
    return vals
