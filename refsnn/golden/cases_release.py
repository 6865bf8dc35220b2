"""Golden cases for the convention rows C6-C10 (docs/method.md §10; golden revision 2, docs/golden.md).

They use the kinds of ``cases.py`` (``weight_quant``, ``grid_search``, ``observer``) with the params those
kinds read; each exercises rows that the cases of revision 1 leave untouched:

    weight_quant_conv_B2_layer       C6       a second convolution kernel shape, one step
    weight_quant_conv_B4_channel     C6, C7   per-channel steps on a convolution kernel
    weight_quant_linear_B3_channel   C7       per-channel steps on a linear weight (C6 does not act)
    renewal_grid_symmetric_B1        C9       Alg. 2 on the 1-bit grid {-1, 1} of a 1-bit quantizer
    renewal_observer_weight_positive C5, C8   a linear weight observer that only sees non-negative weights
    renewal_observer_conv_weight     C10      a convolution's weight observer over width changes
"""
from __future__ import annotations

import numpy as np

from ..method.weight_quant import weight_grid
from . import cases as C
from . import draw as D

WEIGHT_QUANT = {
    "weight_quant_conv_B2_layer": dict(shape=(8, 4, 3, 3), B=2, per_channel=False, rows=["C6"]),
    "weight_quant_conv_B4_channel": dict(shape=(8, 4, 3, 3), B=4, per_channel=True, rows=["C6", "C7"]),
    "weight_quant_linear_B3_channel": dict(shape=(10, 16), B=3, per_channel=True, rows=["C7"]),
}
GRIDS = {
    "renewal_grid_symmetric_B1": dict(q_min=-1, q_max=1, K=50, p=2.4, symmetric=True, one_bit=True, n=64),
}
OBSERVERS = {
    # non-negative weights only: the paper's Alg. 2 searches lo = 0, the official one lo = -hi (C8)
    "renewal_observer_weight_positive": dict(quantizer="weight", conv=False, K=100, p=2.4, b0=4, B=(3, 3, 2, 4, 5),
                                             scale=(0.2, 0.25, 0.1, 0.15, 0.3), rows=["C5", "C8"]),
    # a convolution's weights (mixed sign): Alg. 1-2 (paper) or a rescaled step (official, C10)
    "renewal_observer_conv_weight": dict(quantizer="weight", conv=True, K=50, p=2.4, b0=4, B=(3, 3, 2, 4, 6),
                                         scale=(0.2, 0.2, 0.1, 0.1, 0.3), step0=0.03, rows=["C10"]),
}
NAMES = tuple(WEIGHT_QUANT) + tuple(GRIDS) + tuple(OBSERVERS)


def make_weight_quant(seed) -> list:
    cases = []
    for name, w in WEIGHT_QUANT.items():
        rng = D.case_rng(seed, name)
        shape, B = w["shape"], w["B"]
        step = D.f32(rng.uniform(0.02, 0.08, shape[0])) if w["per_channel"] else D.f32(rng.uniform(0.02, 0.08))
        weights = D.weights(rng, shape, step, B)
        q_min, q_max = weight_grid(B)
        n = int(np.prod(shape)) // (shape[0] if w["per_channel"] else 1)
        eqs = ["Eq. 6", "Eq. 11", "Eq. 18", "Eq. 19", "App. A.8", "App. A.9", "METHOD.md 6.4", "C1"] + w["rows"]
        cases.append(C.Case(
            name, "weight_quant",
            f"Weight quantizer on a {'convolution kernel' if len(shape) == 4 else 'linear weight'} of shape "
            f"{list(shape)}, B_w = {B}, {'one step per output channel' if w['per_channel'] else 'one step'}: as "
            "the other weight_quant cases; the official step gradient follows C6 (convolution kernels: "
            "g (g M_c) sum, M_c = C_in k_h k_w) and C7 (per-channel steps: N = the whole tensor in g).",
            eqs,
            {"B_w": B, "bound": C.B_BOUND, "per_channel": w["per_channel"], "q_min": q_min, "q_max": q_max,
             "N_per_step": n, "eps": 1e-5},
            {"param.weight": weights, "param.step": np.asarray(step),
             "param.width_param": np.asarray(D.width_hat(rng, B, C.B_BOUND)),
             "grad_output.w_q": D.gaussian(rng, shape)},
            margins={"u": float(D.crit_distance(D.weight_ratio(weights, step), q_min, q_max).min())}))
    return cases


def make_grids(seed) -> list:
    cases = []
    for name, g in GRIDS.items():
        rng = D.case_rng(seed, name)
        sets = [(g["q_min"], g["q_max"], g["K"], g["p"], g["symmetric"], ob) for ob in (False, True)]
        X, gap = D.grid_input(rng, g["n"], False, 1.0, sets)
        cases.append(C.Case(
            name, "grid_search",
            f"Alg. 2 grid search on the 1-bit grid [{g['q_min']}, {g['q_max']}] (lo = -hi), K = {g['K']}, "
            f"p = {g['p']}: paper scores clip(round(X/s), -1, 1) (levels -1, 0, 1), official scores sgn(X/s) "
            "(levels -1, 1, sgn(0) = -1; C9); the winning range, its score and every candidate's score.",
            ["Alg. 2", "C9"], {k: g[k] for k in ("q_min", "q_max", "K", "p", "symmetric", "one_bit")},
            {"input.X": X},
            float64_arrays=("output.v_min", "output.v_max", "output.score", "output.scores"),
            margins={"grid": gap}))
    return cases


def make_observers(seed) -> list:
    cases = []
    shape = (48,)
    for name, o in OBSERVERS.items():
        rng = D.case_rng(seed, name)
        Xs, gaps = [], []
        for B, scale in zip(o["B"], o["scale"]):
            q_min, q_max = weight_grid(B)
            sym = (None, True) if not o["conv"] else (None,)
            sets = [(q_min, q_max, o["K"], o["p"], s, False) for s in sym]
            X, gap = D.grid_input(rng, shape, not o["conv"], scale, sets)
            Xs.append(X)
            gaps.append(gap)
        inputs = {"input.X": np.stack(Xs), "input.B": np.asarray(o["B"], np.int64),
                  "input.b_old0": np.asarray(o["b0"], np.int64),
                  "input.v_rmin0": np.float64(np.inf), "input.v_rmax0": np.float64(-np.inf)}
        f64 = ["input.v_rmin0", "input.v_rmax0", "output.step", "output.v_rmin", "output.v_rmax"]
        if o["conv"]:
            inputs["input.step0"] = np.float64(o["step0"])
            f64.append("input.step0")
        cases.append(C.Case(
            name, "observer",
            f"One weight observer (Alg. 1) of a {'convolution' if o['conv'] else 'linear layer'} over "
            f"{len(o['B'])} forward passes with widths {list(o['B'])} (recorded width {o['b0']}, empty range"
            f"{', step ' + str(o['step0']) if o['conv'] else ''} at the start"
            f"{'; non-negative weights only' if not o['conv'] else ''}): as renewal_observer_weight. Official: "
            + ("the grid search uses lo = -hi (C8)." if not o["conv"] else
               "no grid search, the step is rescaled by the ratio of the grid spans (C10); 'step' is the "
               "quantizer's step after each pass where the observer fired."),
            ["Alg. 1", "Alg. 2", "Eq. 24", "Eq. 25"] + o["rows"],
            {"quantizer": o["quantizer"], "conv": o["conv"], "symmetric": None, "K": o["K"], "p": o["p"]},
            inputs, float64_arrays=tuple(f64), margins={"grid": float(min(gaps))}))
    return cases
