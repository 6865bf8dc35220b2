"""The spike quantizer of the refined neuron and what its forward and backward kernels share.

    spike_levels(B, domain)   (q_min, q_max) of bit width B (Eq. 14 positive, Eq. 15 bidirectional)
    emit_numpy / emit         the integer spike S for u = v / V_th (Eq. 14, Eq. 15): the NumPy twin and
                              its branch-free numba scalar, the same operations in the same order
    check_common              the argument checks of ``neuron_forward`` and ``neuron_backward``
    step_constants            per-step q_min, q_max in the input dtype
    BLOCK                     the block size of the numba kernels and of the fixed summation order

Symbols and the two implementations: ``refsnn.kernels.neuron`` (forward, Eq. 12-15) and
``refsnn.kernels.neuron_grad`` (gradients, Eq. 16-17, 20, App. A.6-A.13).
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from numba import njit

from refsnn.kernels import checks as chk

__all__ = ["spike_levels", "emit_numpy", "emit", "check_common", "check_finite", "step_constants",
           "count_nonfinite", "LN2", "DOMAINS", "SHIFTS", "MAX_BITS", "BLOCK"]

LN2 = math.log(2.0)
DOMAINS = ("positive", "bidirectional")
SHIFTS = (0.5, 0.0)
MAX_BITS = chk.MAX_BITS

#: The sums over the elements j (in g_vth and g_bits) are taken in one fixed order:
#: blocks of BLOCK consecutive elements (the last one padded with zeros); inside a block,
#: pairwise by halving (x[i] + x[i + BLOCK/2], then the same on the first half, ...);
#: then one NumPy call adds the block sums.
BLOCK = 1024


# ----------------------------------------------------------------------------
# levels and argument checks
# ----------------------------------------------------------------------------


def spike_levels(B: int, domain: str) -> tuple[int, int]:
    """``(q_min, q_max)`` of the spike quantizer with bit width ``B`` (Eq. 14, Eq. 15)."""
    if domain == "positive":
        return 0, 2**B - 1  # Eq. 14
    if B == 1:
        return -1, 1  # Eq. 15, B = 1: S = sgn(u) in {-1, +1}
    q = 2 ** (B - 1) - 1  # Eq. 15, B >= 2
    return -q, q


def _is_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, (bool, np.bool_))


check_finite = chk.check_finite


def check_common(v_th, bits, T, domain, shift, tau, dtype, x_name):
    """Validate the arguments shared by forward and backward; return the python scalars."""
    if not _is_int(T):
        raise TypeError(f"T must be an int, got {T!r}")
    T = int(T)
    v_th = chk.float_array(v_th, "v_th", None, nonempty=True)
    chk.same_dtype(np.empty(0, dtype), x_name, v_th, "v_th")
    if v_th.ndim != 1:
        raise ValueError(f"v_th must be 1-D (one threshold per time step), got shape {v_th.shape}")
    if not isinstance(bits, np.ndarray) or bits.dtype.kind not in "iu":
        raise TypeError(f"bits must be an integer numpy.ndarray, got {getattr(bits, 'dtype', type(bits).__name__)}")
    if bits.ndim != 1:
        raise ValueError(f"bits must be 1-D (one bit width per time step), got shape {bits.shape}")
    if T < 1 or T > len(v_th) or T > len(bits):
        raise ValueError(
            f"T = {T} is out of range: need 1 <= T <= min(len(v_th), len(bits)) = "
            f"{min(len(v_th), len(bits))}"
        )
    for t in range(T):
        th = v_th[t]
        if not (np.isfinite(th) and th > 0):
            raise ValueError(f"v_th[{t}] = {th} is not allowed: thresholds must be finite and > 0")
        b = int(bits[t])
        if not 1 <= b <= MAX_BITS:
            raise ValueError(f"bits[{t}] = {b} is out of range: bit widths must be in 1..{MAX_BITS}")
    if not isinstance(domain, str) or domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    if isinstance(shift, (bool, np.bool_)) or not isinstance(shift, numbers.Real) or float(shift) not in SHIFTS:
        raise ValueError(f"shift must be 0.5 (rounding, Eq. 14) or 0.0 (flooring, Eq. 5), got {shift!r}")
    if isinstance(tau, (bool, np.bool_)) or not isinstance(tau, numbers.Real) or not (math.isfinite(tau) and tau > 0):
        raise ValueError(f"tau must be a finite number > 0 (1 = IF neuron), got {tau!r}")
    return T, [int(b) for b in bits[:T]], float(shift), float(tau)


def step_constants(v_th, B, T, domain, dtype):
    """Per-step q_min, q_max as arrays of the input dtype (exact integers)."""
    levels = [spike_levels(b, domain) for b in B]
    qmin = np.array([lo for lo, _ in levels], dtype=dtype)
    qmax = np.array([hi for _, hi in levels], dtype=dtype)
    return qmin, qmax


# ----------------------------------------------------------------------------
# emission: NumPy twin and numba scalar
# ----------------------------------------------------------------------------


def emit_numpy(u, B, domain, shift):
    """The integer spike S the neuron emits for ``u = v / V_th`` (Eq. 14, Eq. 15), as floats."""
    q_min, q_max = spike_levels(B, domain)
    if domain == "positive":
        # Eq. 14: S = clip(floor(u + 1/2), 0, 2^B - 1)   (shift 0: Eq. 5, S = clip(floor(u), 0, 2^B - 1))
        return np.minimum(np.maximum(np.floor(u + shift), q_min), q_max)
    if B == 1:
        # Eq. 15, B = 1: S = sgn(u), sgn(x) = +1 if x > 0 else -1
        return np.where(u > 0, u.dtype.type(1), u.dtype.type(-1))
    if shift == 0.5:
        # Eq. 15: S = clip(round(u), -q, q), round(x) = sign(x) floor(|x| + 1/2)
        return np.minimum(np.maximum(np.sign(u) * np.floor(np.abs(u) + 0.5), q_min), q_max)
    # Decision (flooring in the bidirectional domain, not in the paper): S = clip(floor(u), -q, q)
    return np.minimum(np.maximum(np.floor(u), q_min), q_max)


@njit(cache=True)
def emit(u, round_away, sgn, shift, q_min, q_max):
    """Scalar twin of :func:`emit_numpy`, written without branches so that loops vectorize.

    ``round_away`` = bidirectional with shift 1/2; ``sgn`` = bidirectional with B = 1.
    Every value has the dtype of ``u``.
    """
    # Eq. 15: round(u) = sign(u) floor(|u| + 1/2)
    a = np.floor(abs(u) + shift)
    r_away = -a if u < 0 else a
    # Eq. 14 (shift 1/2) / Eq. 5 (shift 0): floor(u + shift)
    r_floor = np.floor(u + shift)
    r = min(max(r_away if round_away else r_floor, q_min), q_max)
    # Eq. 15, B = 1: sgn(u) (q_max = 1, q_min = -1)
    s = q_max if u > 0 else q_min
    return s if sgn else r


@njit(cache=True)
def count_nonfinite(a):
    """Number of non-finite entries of a 1-D array."""
    count = 0
    for i in range(a.shape[0]):
        count += 0 if np.isfinite(a[i]) else 1
    return count
