"""The two readings of the method: the paper (default) and the authors' released code.

docs/method.md §10.  Every row is one switch; nothing else differs.  "Release" below is the
authors' public code (github Ikarosy/Towards-Efficient-and-Accurate-Spiking-Neural-Networks-via-
Adaptive-Bit-Allocation); each official entry names the file that computes it there.

| row | place                               | paper                              | official code                          |
|-----|-------------------------------------|------------------------------------|----------------------------------------|
| C1  | bit-width gradients (6.3, 6.4)      | scaled by the LSQ factor g         | not scaled (g_B = 1)                   |
| C2  | bit gradient at B = 1               | factor (q_max + 1) = 2             | factor 1                               |
| C3  | membrane carry (6.6)                | full chain rule through time       | carry and reset detached               |
| C4  | reset under decay (5.1)             | v = v_prev / tau + I - Shat_prev    | v = (v_prev - Shat_prev) / tau + I     |
| C5  | renewed step (Eq. 25)               | (V_rmax - V_rmin) / (q_max - q_min) | positive: (max(V_rmax,0) - min(V_rmin,0)) / (q_max - q_min); symmetric: max(abs(V_rmin), V_rmax) / ((q_max - q_min)/2); floored at eps |
| C6  | conv weight step gradient (6.4)     | g sum_i dL/dw_q,i m_i               | g (g M_c) sum_i dL/dw_q,i m_i, M_c = C_in k_h k_w (quantization_funcs.py, conv Function) |
| C7  | N in g = 1/sqrt(N q_max), per-channel steps | elements sharing the step   | the whole weight tensor                 |
| C8  | weight observer grid (Alg. 2)       | lo = -hi if any X < 0, else lo = 0   | lo = -hi always (quantization_modules.py) |
| C9  | Alg. 2 score at B = 1, grid {-1, 1} | clip(round(X/s), -1, 1): levels -1, 0, 1 | sgn(X/s): levels -1, 1 (the 1-bit quantizer) |
| C10 | conv weight step on a width change  | Alg. 1-2, Eq. 24-25                 | S' = S (q'_max - q'_min)/(q_max - q_min); no grid search, no running range |
| C11 | widths B_w, B_s (Eq. 9, 11)         | round(clip(Bhat, 1, bound))         | round(clip(abs(Bhat), 1, bound)); T unchanged |

C5 is a row we added (docs/method.md §9 names the difference, "same value in
practice"): the two formulas agree whenever the observer's range contains 0 and is
symmetric for a symmetric grid; they differ only for a range that excludes 0 or is
asymmetric, i.e. only under the paper's C8 (a weight observer that searched lo = 0 once
and lo = -hi later), or where the official floor at eps acts.  With the official C8 every
symmetric running range is symmetric and every positive one starts at 0, so under
``OFFICIAL`` the row changes a step only through that floor (tests/test_conventions.py).

C6 and C7 act on the step gradient only (the bit gradient is governed by C1/C2); C6 applies
to weights of more than two dimensions (convolution kernels), C10 to convolution layers.
C11 acts on the value of B_w and B_s^t; their gradient stays straight through (dL/dBhat = dL/dB)
except in the regulating loss (Eq. 21), where the release differentiates through abs, so
dL/dBhat = sign(Bhat) dL/dB there.
"""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Convention:
    name: str
    bit_grad_lsq: bool        # C1: multiply bit-width gradients by g = 1/sqrt(N q_max)
    one_bit_factor: float     # C2: the factor that replaces (q_max + 1) at B = 1
    bptt: bool                # C3: gradients through the membrane carry and the reset
    reset_decay: bool         # C4: the reset is multiplied by the decay 1/tau too
    renewal_formula: str      # C5: "paper" or "official" form of Eq. 25
    conv_step_spread: bool = False      # C6: conv step gradient g (g M_c) sum instead of g sum
    step_g_whole_tensor: bool = False   # C7: N in g is the whole weight tensor for per-channel steps
    weight_grid_symmetric: bool = False  # C8: the weight observer always searches lo = -hi
    one_bit_grid_sign: bool = False     # C9: Alg. 2 scores the 1-bit symmetric grid with sgn
    conv_weight_rescale: bool = False   # C10: conv weight steps rescaled on a width change, no Alg. 1-2
    width_abs: bool = False             # C11: B_w, B_s^t from abs(Bhat)


#: the rows as (row, field) in the table's order
ROWS = (("C1", "bit_grad_lsq"), ("C2", "one_bit_factor"), ("C3", "bptt"), ("C4", "reset_decay"),
        ("C5", "renewal_formula"), ("C6", "conv_step_spread"), ("C7", "step_g_whole_tensor"),
        ("C8", "weight_grid_symmetric"), ("C9", "one_bit_grid_sign"), ("C10", "conv_weight_rescale"),
        ("C11", "width_abs"))

PAPER = Convention("paper", bit_grad_lsq=True, one_bit_factor=2.0, bptt=True, reset_decay=False,
                   renewal_formula="paper")
OFFICIAL = Convention("official", bit_grad_lsq=False, one_bit_factor=1.0, bptt=False, reset_decay=True,
                      renewal_formula="official", conv_step_spread=True, step_g_whole_tensor=True,
                      weight_grid_symmetric=True, one_bit_grid_sign=True, conv_weight_rescale=True, width_abs=True)
CONVENTIONS = {"paper": PAPER, "official": OFFICIAL}


def get_convention(convention) -> Convention:
    """``"paper"``, ``"official"`` or a ``Convention`` -> the ``Convention``.

    The one place a name is resolved: ``SpikingConfig`` holds the result, and every method function
    takes the object (:func:`check_convention`).
    """
    if isinstance(convention, Convention):
        return convention
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {sorted(CONVENTIONS)}, got {convention!r}")
    return CONVENTIONS[convention]


def check_convention(convention, name: str = "convention") -> Convention:
    """``convention`` itself if it is a ``Convention``, else a TypeError (a name must be resolved first)."""
    if not isinstance(convention, Convention):
        raise TypeError(f"{name} must be a refsnn.method.Convention (PAPER, OFFICIAL, or resolve a name with "
                        f"refsnn.method.get_convention), got {convention!r}")
    return convention


def flip_row(base, row: str) -> Convention:
    """``base`` with the one row ``row`` (``"C1"``..``"C11"``) taken from the other convention."""
    base = get_convention(base)
    fields = dict(ROWS)
    if row not in fields:
        raise ValueError(f"row must be one of {[r for r, _ in ROWS]}, got {row!r}")
    name = fields[row]
    value = getattr(OFFICIAL, name) if getattr(base, name) == getattr(PAPER, name) else getattr(PAPER, name)
    return replace(base, name=f"{base.name}+{row}", **{name: value})
