"""The two readings of the method: the paper (default) and the authors' released code.

METHOD.md section 10.  Every row is one switch; nothing else differs.

| row | place                               | paper                              | official code                          |
|-----|-------------------------------------|------------------------------------|----------------------------------------|
| C1  | bit-width gradients (6.3, 6.4)      | scaled by the LSQ factor g         | not scaled (g_B = 1)                   |
| C2  | bit gradient at B = 1               | factor (q_max + 1) = 2             | factor 1                               |
| C3  | membrane carry (6.6)                | full chain rule through time       | carry and reset detached               |
| C4  | reset under decay (5.1)             | v = v_prev / tau + I - Shat_prev    | v = (v_prev - Shat_prev) / tau + I     |
| C5  | renewed step (Eq. 25)               | (V_rmax - V_rmin) / (q_max - q_min) | positive: (max(V_rmax,0) - min(V_rmin,0)) / (q_max - q_min); symmetric: max(abs(V_rmin), V_rmax) / ((q_max - q_min)/2); floored at eps |

C5 is a row we added (METHOD.md section 9 names the difference, "same value in
practice"): the two formulas agree whenever the observer's range contains 0 and is
symmetric for a symmetric grid, which the grid search of Alg. 2 always produces;
they differ only for a range that excludes 0 or is asymmetric.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Convention:
    name: str
    bit_grad_lsq: bool        # C1: multiply bit-width gradients by g = 1/sqrt(N q_max)
    one_bit_factor: float     # C2: the factor that replaces (q_max + 1) at B = 1
    bptt: bool                # C3: gradients through the membrane carry and the reset
    reset_decay: bool         # C4: the reset is multiplied by the decay 1/tau too
    renewal_formula: str      # C5: "paper" or "official" form of Eq. 25


PAPER = Convention("paper", bit_grad_lsq=True, one_bit_factor=2.0, bptt=True, reset_decay=False,
                   renewal_formula="paper")
OFFICIAL = Convention("official", bit_grad_lsq=False, one_bit_factor=1.0, bptt=False, reset_decay=True,
                      renewal_formula="official")
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
