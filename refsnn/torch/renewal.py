"""Step-size renewal in torch: Alg. 2 grid search, Alg. 1 observer (Eq. 24-25) and the LSQ
initialisation (docs/method.md §11), reduced over the ranks of a data-parallel run (docs/method.md §16).

A rank sees only its local batch.  So every statistic of the data a discrete choice depends
on is reduced over the default process group before it is used:

    V_min, V_max      all-reduce min / max           (Alg. 1 step 3, Alg. 2's R)
    any(X < 0)        all-reduce max of the flag      (Alg. 2's choice lo = -hi or 0)
    score_k           all-reduce sum of sum |Xq - X|^p and of the element count  (Alg. 2: the mean
                      over the global batch)
    mean|a|           all-reduce sum of sum |a| and of the count     (LSQ initialisation)

Without an initialised process group (one process) every reduction is the identity, and the
results are those of ``refsnn.method.renewal`` (same formulas; the pure scalar parts, Eq. 25
and the switching-off rule, are reused from there).  Scores are computed in float64.
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist

from ..method.renewal import EPS, ObserverResult, check_grid, renewed_step, rescaled_step
from ..method.weight_quant import weight_grid
from .functions import round_half_away


def distributed() -> bool:
    """True inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _reduce(values: list, op) -> list:
    """All-reduce a few float64 scalars (one collective call); the identity in one process."""
    if not distributed():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=_device())
    dist.all_reduce(t, op=op)
    return t.tolist()


def _device():
    """The device collectives run on: the current CUDA device for nccl, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def global_min_max(X: torch.Tensor) -> tuple:
    """(min, max) of X over all ranks, as floats (Alg. 1 step 3)."""
    lo, neg_hi = _reduce([float(X.min()), -float(X.max())], dist.ReduceOp.MIN if distributed() else None)
    return lo, -neg_hi


def global_any(flag: bool) -> bool:
    return bool(_reduce([float(flag)], dist.ReduceOp.MAX if distributed() else None)[0])


def global_sum(values: list) -> list:
    return _reduce([float(v) for v in values], dist.ReduceOp.SUM if distributed() else None)


def global_mean_abs(X: torch.Tensor) -> float:
    """mean|X| over the global batch (docs/method.md §11 and §16: the LSQ initialisation uses the global batch)."""
    s, n = global_sum([float(torch.abs(X.detach()).double().sum()), X.numel()])
    return s / n


def lsq_init(mean_abs: float, q_max: int) -> float:
    """docs/method.md §11: step = 2 mean|x| / sqrt(q_max), kept >= eps."""
    return max(2.0 * mean_abs / math.sqrt(q_max), EPS)


def grid_scores(X: torch.Tensor, q_min: int, q_max: int, K: int, p: float, symmetric,
                one_bit_sign: bool = False) -> tuple:
    """Alg. 2's K scores over the global batch: ``(scores (K,) float64 tensor, lows, highs)``; scores are
    +inf for every k when X has no spread.  ``one_bit_sign``: row C9 (levels sgn(X/s), sgn(0) = -1)."""
    K, p = check_grid(K, p)
    X = X.detach().reshape(-1).double()
    v_min, v_max = global_min_max(X)
    # Alg. 2: R = V_max - V_min
    R = v_max - v_min
    if symmetric is None:
        symmetric = global_any(bool((X < 0).any()))
    n = global_sum([X.numel()])[0]
    scores = torch.full((K,), math.inf, dtype=torch.float64)
    lows, highs = [0.0] * K, [0.0] * K
    if not R > 0:
        return scores, lows, highs
    sums = []
    for k in range(1, K + 1):
        # Alg. 2: hi = k R / K;  lo = -k R / K if any(X < 0) else 0
        hi = k * R / K
        lo = -hi if symmetric else 0.0
        # Alg. 2: s = (hi - lo) / (q_max - q_min)
        s = (hi - lo) / (q_max - q_min)
        if one_bit_sign:
            # C9 (official): Xq = s * sgn(X / s), sgn(0) = -1
            Xq = s * torch.where(X / s > 0, 1.0, -1.0).to(X.dtype)
        else:
            # Alg. 2: Xq = s * clip(round(X / s), q_min, q_max)
            Xq = s * torch.clamp(round_half_away(X / s), q_min, q_max)
        # Alg. 2: score = mean(|Xq - X|^p), the mean over the global batch
        sums.append(float(torch.abs(Xq - X).pow(p).sum()))
        lows[k - 1], highs[k - 1] = lo, hi
    scores = torch.tensor(global_sum(sums), dtype=torch.float64) / n
    return scores, lows, highs


def grid_search(X: torch.Tensor, q_min: int, q_max: int, K: int = 100, p: float = 2.4, symmetric=None,
                one_bit_sign: bool = False) -> tuple:
    """Alg. 2 over the global batch: ``(V'_min, V'_max, best score)``; ``(0, 0, inf)`` when X has no spread.
    The first candidate with the lowest score wins (the listing's strict ``score < best``)."""
    scores, lows, highs = grid_scores(X, q_min, q_max, K, p, symmetric, one_bit_sign)
    if not math.isfinite(float(scores.min())):
        return 0.0, 0.0, math.inf
    k = int(torch.argmin(scores))   # the first minimum, as the strict comparison of Alg. 2
    return lows[k], highs[k], float(scores[k])


def observe(X: torch.Tensor, B: int, b_old: int, v_rmin: float, v_rmax: float, q_min: int, q_max: int, *,
            K: int = 100, p: float = 2.4, symmetric=None, formula: str = "paper",
            one_bit_sign: bool = False) -> ObserverResult:
    """Alg. 1, one observer, one forward pass (see ``refsnn.method.renewal.observe``), over all ranks."""
    # Alg. 1 step 1: if B == B_old, do nothing
    if int(B) == int(b_old):
        return ObserverResult(False, None, int(b_old), v_rmin, v_rmax)
    # C9: at B = 1 on the grid {-1, 1} the official code scores with sgn
    sign_grid = bool(one_bit_sign) and int(B) == 1 and (q_min, q_max) == (-1, 1)
    # Alg. 1 steps 3-4: V_min, V_max of the (global) batch, then the grid search of Alg. 2
    lo, hi, score = grid_search(X, q_min, q_max, K, p, symmetric, sign_grid)
    if not math.isfinite(score):  # X has no spread: nothing to fit, keep the step (refsnn's Decision)
        return ObserverResult(False, None, int(B), v_rmin, v_rmax)
    # Eq. 24: V_rmin = min(V'_min, V_rmin), V_rmax = max(V'_max, V_rmax)
    v_rmin, v_rmax = min(lo, v_rmin), max(hi, v_rmax)
    sym = bool(symmetric) if symmetric is not None else global_any(bool((X < 0).any()))
    # Eq. 25: the renewed step (C5: the convention's formula)
    step = renewed_step(v_rmin, v_rmax, q_min, q_max, formula, symmetric=sym)
    # Alg. 1 step 7: B_old = B
    return ObserverResult(True, step, int(B), v_rmin, v_rmax)


def observe_weight(X: torch.Tensor, B: int, b_old: int, v_rmin: float, v_rmax: float, step: float, *, conv: bool,
                   convention, K: int = 100, p: float = 2.4) -> ObserverResult:
    """Alg. 1 for one weight quantizer under a convention (rows C5, C8, C9, C10), over all ranks; see
    ``refsnn.method.renewal.observe_weight``."""
    c = convention
    if conv and c.conv_weight_rescale:
        # Alg. 1 step 1: if B == B_old, do nothing
        if int(B) == int(b_old):
            return ObserverResult(False, None, int(b_old), v_rmin, v_rmax)
        # C10: rescale by the ratio of the grid spans; the running range is left as it was
        return ObserverResult(True, rescaled_step(step, weight_grid(b_old), weight_grid(B)), int(B), v_rmin, v_rmax)
    q_min, q_max = weight_grid(B)
    # C8: the official weight observer searches lo = -hi always
    return observe(X, B, b_old, v_rmin, v_rmax, q_min, q_max, K=K, p=p,
                   symmetric=True if c.weight_grid_symmetric else None, formula=c.renewal_formula,
                   one_bit_sign=c.one_bit_grid_sign)

