"""Step-size renewal: the bit-width observer (Alg. 1), its grid search (Alg. 2),
the running range (Eq. 24), the renewed step (Eq. 25) and the switching-off rule.

docs/method.md §9.  An observer sits on every quantizer (each time step of
each spike quantizer, each weight quantizer).  Its state is three numbers:
the recorded width ``B_old``, and the running range ``V_rmin``, ``V_rmax``.
The layers keep that state in buffers (saved and restored with the layer);
the functions here are pure.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..kernels.quant import EPS  # the floor of every step size (docs/method.md §3), one home
from .conventions import check_convention
from .weight_quant import weight_grid

RENEWAL_MODES = ("none", "spike", "weight", "both")
SWITCH_OFF_FRACTION = 0.24


def round_half_away(x: np.ndarray) -> np.ndarray:
    """round(x) of docs/method.md: sign(x) * floor(|x| + 1/2)."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def check_renewal_mode(mode: str) -> str:
    if mode not in RENEWAL_MODES:
        raise ValueError(f"renewal mode must be one of {RENEWAL_MODES}, got {mode!r}")
    return mode


def check_grid(K, p) -> tuple:
    if isinstance(K, bool) or not isinstance(K, (int, np.integer)) or K < 1:
        raise ValueError(f"renewal grid size K must be an integer >= 1, got {K!r}")
    if not (isinstance(p, (int, float, np.integer, np.floating)) and np.isfinite(p) and p > 0):
        raise ValueError(f"renewal score power p must be a finite number > 0, got {p!r}")
    return int(K), float(p)


def grid_search(X: np.ndarray, q_min: int, q_max: int, K: int = 100, p: float = 2.4,
                symmetric: bool | None = None, one_bit_sign: bool = False) -> tuple:
    """Alg. 2: the range (V'_min, V'_max) whose uniform grid quantizes X best.

    ``symmetric=None`` follows the listing: ``lo = -hi`` if any element of X is
    negative, else ``lo = 0``; ``False`` forces ``lo = 0`` (the positive spike
    neuron, as the official code does); ``True`` forces ``lo = -hi``.
    ``one_bit_sign=True`` (convention row C9, official; only for a 1-bit quantizer on the grid
    {-1, 1}): score each candidate with the two levels the quantizer emits,
    ``Xq = s sgn(X/s)`` with sgn(0) = -1, instead of ``s clip(round(X/s), -1, 1)``.
    Returns ``(V'_min, V'_max, best_score)``; ``(0, 0, inf)`` when X has no spread.
    """
    K, p = check_grid(K, p)
    if one_bit_sign and (q_min, q_max) != (-1, 1):
        raise ValueError(f"grid_search: one_bit_sign needs the 1-bit grid (q_min, q_max) = (-1, 1), "
                         f"got ({q_min}, {q_max})")
    X = np.asarray(X, dtype=np.float64).ravel()
    v_min, v_max = float(X.min()), float(X.max())
    # Alg. 2: R = V_max - V_min
    R = v_max - v_min
    if symmetric is None:
        symmetric = bool((X < 0).any())
    # Alg. 2: best score starts at +inf (the listing's "Score = 0" would accept nothing; docs/method.md §9)
    best, best_lo, best_hi = math.inf, 0.0, 0.0
    if not R > 0:
        return best_lo, best_hi, best
    for k in range(1, K + 1):
        # Alg. 2: hi = k R / K;  lo = -k R / K if any(X < 0) else 0
        hi = k * R / K
        lo = -hi if symmetric else 0.0
        # Alg. 2: s = (hi - lo) / (q_max - q_min)
        s = (hi - lo) / (q_max - q_min)
        if one_bit_sign:
            # C9 (official): Xq = s * sgn(X / s), sgn(0) = -1: the 1-bit quantizer's two levels
            Xq = s * np.where(X / s > 0, 1.0, -1.0)
        else:
            # Alg. 2: Xq = s * clip(round(X / s), q_min, q_max)
            Xq = s * np.clip(round_half_away(X / s), q_min, q_max)
        # Alg. 2: score = mean(|Xq - X|^p)
        score = float(np.mean(np.abs(Xq - X) ** p))
        if score < best:
            best, best_lo, best_hi = score, lo, hi
    return best_lo, best_hi, best


def renewed_step(v_rmin: float, v_rmax: float, q_min: int, q_max: int, formula: str = "paper",
                 symmetric: bool = False) -> float:
    """Eq. 25: the step that spreads the running range over the grid.

    ``formula="paper"``: ``(V_rmax - V_rmin) / (q_max - q_min)``.
    ``formula="official"`` (convention row C5): positive domain
    ``(max(V_rmax, 0) - min(V_rmin, 0)) / (q_max - q_min)``, symmetric
    ``max(|V_rmin|, V_rmax) / ((q_max - q_min) / 2)``, floored at eps.
    """
    if formula == "paper":
        # Eq. 25: S = (V_rmax - V_rmin) / (q_max - q_min)
        return (v_rmax - v_rmin) / (q_max - q_min)
    if formula == "official":
        if symmetric:
            step = max(abs(v_rmin), v_rmax) / ((q_max - q_min) / 2)
        else:
            step = (max(v_rmax, 0.0) - min(v_rmin, 0.0)) / (q_max - q_min)
        return max(step, EPS)
    raise ValueError(f"renewal formula must be 'paper' or 'official', got {formula!r}")


@dataclass
class ObserverResult:
    fired: bool
    step: float | None
    b_old: int
    v_rmin: float
    v_rmax: float


def observe(X: np.ndarray, B: int, b_old: int, v_rmin: float, v_rmax: float, q_min: int, q_max: int, *,
            K: int = 100, p: float = 2.4, symmetric: bool | None = None, formula: str = "paper",
            one_bit_sign: bool = False) -> ObserverResult:
    """Alg. 1, one observer, one forward pass: renew the step if the rounded width changed.

    ``B`` is the current width round(clip(Bhat, 1, bound)) (Alg. 1 step 1),
    ``q_min, q_max`` its grid (step 2).  Returns the new observer state and,
    when it fired, the renewed step (Eq. 25) that the quantizer must use now.
    ``one_bit_sign`` (C9) applies when ``B == 1`` on the grid {-1, 1}.
    """
    # Alg. 1 step 1: if B == B_old, do nothing
    if int(B) == int(b_old):
        return ObserverResult(False, None, int(b_old), v_rmin, v_rmax)
    # C9: at B = 1 on the grid {-1, 1} the official code scores with sgn (levels -1, 1)
    sign_grid = bool(one_bit_sign) and int(B) == 1 and (q_min, q_max) == (-1, 1)
    # Alg. 1 steps 3-4: V_min, V_max of the batch, then the grid search of Alg. 2
    lo, hi, score = grid_search(X, q_min, q_max, K, p, symmetric, one_bit_sign=sign_grid)
    if not math.isfinite(score):  # X has no spread: nothing to fit, keep the step (Decision)
        return ObserverResult(False, None, int(B), v_rmin, v_rmax)
    # Eq. 24: V_rmin = min(V'_min, V_rmin), V_rmax = max(V'_max, V_rmax)
    v_rmin, v_rmax = min(lo, v_rmin), max(hi, v_rmax)
    # Eq. 25: the renewed step
    sym = bool(symmetric) if symmetric is not None else bool((np.asarray(X) < 0).any())
    step = renewed_step(v_rmin, v_rmax, q_min, q_max, formula, symmetric=sym)
    # Alg. 1 step 7: B_old = B
    return ObserverResult(True, step, int(B), v_rmin, v_rmax)


def rescaled_step(step: float, old_grid: tuple, new_grid: tuple) -> float:
    """Convention row C10 (official): a convolution's weight step on a width change,
    ``S' = S (q'_max - q'_min) / (q_max - q_min)`` (the release's rule; no grid search, no running range)."""
    # C10: S' = S (q'_max - q'_min) / (q_max - q_min)
    return step * (new_grid[1] - new_grid[0]) / (old_grid[1] - old_grid[0])


def observe_weight(X: np.ndarray, B: int, b_old: int, v_rmin: float, v_rmax: float, step: float, *, conv: bool,
                   convention, K: int = 100, p: float = 2.4) -> ObserverResult:
    """Alg. 1 for one weight quantizer (grid of Eq. 6), under a convention (rows C5, C8, C9, C10).

    ``step`` is the quantizer's current step (used by C10 only); ``conv``: the weights are a convolution's.
    Paper: the grid search of Alg. 2 with ``lo = -hi`` only if X has negative values.  Official: C8
    ``lo = -hi`` always; C9 sgn-scored 1-bit grid; C10 a convolution rescales its step instead.
    """
    c = check_convention(convention)
    if conv and c.conv_weight_rescale:
        # Alg. 1 step 1: if B == B_old, do nothing
        if int(B) == int(b_old):
            return ObserverResult(False, None, int(b_old), v_rmin, v_rmax)
        # C10: rescale by the ratio of the grid spans; the running range is left as it was
        return ObserverResult(True, rescaled_step(step, weight_grid(b_old), weight_grid(B)), int(B), v_rmin, v_rmax)
    q_min, q_max = weight_grid(B)
    # C8: the official weight observer searches lo = -hi always; the paper's follows the sign of X (Alg. 2)
    symmetric = True if c.weight_grid_symmetric else None
    return observe(X, B, b_old, v_rmin, v_rmax, q_min, q_max, K=K, p=p, symmetric=symmetric,
                   formula=c.renewal_formula, one_bit_sign=c.one_bit_grid_sign)


def should_switch_off(epochs_done: int, min_epochs: int, current: float, initial: float, target: float) -> bool:
    """The switching-off rule of docs/method.md §9 for one kind (weight or spike).

    Renewal stays on for at least ``min_epochs`` epochs and goes off for good once
    ``|current - target| < 0.24 * |initial - target|``.
    """
    if epochs_done < min_epochs:
        return False
    return abs(current - target) < SWITCH_OFF_FRACTION * abs(initial - target)


def should_switch_off_release(epochs_done: int, min_epochs: int, current: float, initial: float,
                              target: float) -> bool:
    """The authors' release's switching-off rule for one kind (its training script, adaptive mode).

    Signed: off once ``round(current, 3) - target < 0.24 (initial - target)`` after at least
    ``min_epochs`` finished epochs; ``initial`` is the configured initial width (not a model
    average).  When ``initial == target`` the threshold is 0 and renewal goes off after the
    first epoch whatever ``min_epochs`` says.
    """
    threshold = (initial - target) * SWITCH_OFF_FRACTION
    if threshold == 0:
        return True
    if epochs_done < min_epochs:
        return False
    return round(current, 3) - target < threshold
