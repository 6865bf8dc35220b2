"""Tests of the method checks in ``verify/``: renewal (Alg. 1-2), gradients (docs/method.md §6)
and the gradient flow through time (6.6, C3).

Each module's quick run (at reduced sizes) must pass, and the analytic statements the
modules rest on are asserted on small hand-made examples, so that a wrong derivation or a
changed kernel makes these tests fail.
"""
from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from verify import fixture, gradients, renewal_effect, time_flow, time_flow_forms  # noqa: E402

SMALL_RENEWAL = dict(n_fit=4000, n_mc=20_000, pre=24, post=4, seeds=2, drops=(2,), batch=32, mem_batch=8, calib=32)


# ----------------------------------------------------------------------------
# gradients
# ----------------------------------------------------------------------------
def test_gradients_quick_run_passes():
    res = gradients.run(quick=True)
    assert res and all(r.passed for r in res), [(r.claim, r.values) for r in res if not r.passed]
    names = " ".join(r.claim for r in res)
    for sec in ("6.1", "6.2", "6.3", "6.4", "6.5", "6.6"):
        assert sec in names


@pytest.mark.parametrize("T", [1, 3])
def test_gradient_check_detects_a_wrong_convention(monkeypatch, T):
    """The surrogate built for the other convention (C1-C3 swapped) must disagree with the library."""
    from refsnn.method.conventions import OFFICIAL, PAPER
    rng = np.random.default_rng(3)
    ok, _, _ = gradients.neuron_case(rng, "positive", "round", T, 1.0, (2, 3, 1), "paper")
    assert max(ok[k] for k in ("input", "threshold", "width")) < 1e-6
    monkeypatch.setattr(gradients, "_conv", lambda name: OFFICIAL if name == "paper" else PAPER)
    rng = np.random.default_rng(3)
    bad, _, _ = gradients.neuron_case(rng, "positive", "round", T, 1.0, (2, 3, 1), "paper")
    assert bad["width"] > 1e-3  # C1: the factor g
    if T > 1:
        assert bad["threshold"] > 1e-3 and bad["input"] > 1e-3  # C3: the chain through the membrane


def test_weight_surrogate_matches_forward_and_lsq_scale():
    rng = np.random.default_rng(5)
    errs, verr = gradients.weight_case(rng, 3, True, (4, 2, 3, 3), "paper")
    assert verr < 1e-14
    assert max(errs.values()) < 1e-6


# ----------------------------------------------------------------------------
# gradient flow through time
# ----------------------------------------------------------------------------
def _tiny_example():
    """Positive neuron, B = 2 (q_max = 3), V = (1, 0.8, 0.8), T = 3; element 0 in range at every
    step, element 1 saturated at every step, element 2 in range at step 1 (u = 2.9, S = 3) and
    saturated afterwards (v^2 = 2.8, u^2 = 3.5; v^3 = 3.3, u^3 = 4.125)."""
    I = np.array([1.3, 5.0, 2.9])
    V = np.array([1.0, 0.8, 0.8])
    B = np.array([2, 2, 2])
    gy = np.array([0.7, -1.1, 0.5])
    return I, gy, V, B


def test_reset_cancels_carry_paper_bptt():
    I, gy, V, B = _tiny_example()
    T = 3
    gI, gV, gB, v = time_flow_forms.neuron_grads(I, gy, V, B, T, "positive", "paper")
    u = v / V[:, None]
    assert (u[:, 0] <= 3).all() and (u[:, 1] > 3).all() and u[0, 2] <= 3 and (u[1:, 2] > 3).all()
    # in range at the last step -> the straight-through identity; never in range -> 0;
    # in range only at step 1 -> lambda = 1: gy / T
    assert gI[0] == pytest.approx(gy[0], rel=1e-14)
    assert gI[1] == 0.0
    assert gI[2] == pytest.approx(gy[2] / T, rel=1e-14)
    # dL/dV^1: elements 1 and 2 (out of range at steps 2 and 3) only; element 0's rounding term is gone
    g = 1.0 / math.sqrt(3 * 3)
    c2 = 3.0 - u[0, 2]  # residual S - u of element 2 at step 1
    assert gV[0] == pytest.approx(g * (gy[1] / T * 3.0 + gy[2] / T * c2), rel=1e-12)
    # the last step: identical under both conventions
    _, gVo, _, _ = time_flow_forms.neuron_grads(I, gy, V, B, T, "positive", "official")
    assert gV[-1] == gVo[-1]
    # official: every step keeps its rounding term for element 0
    c0 = np.floor(u[0, 0] + 0.5) - u[0, 0]
    assert gVo[0] == pytest.approx(g * (gy[0] / T * c0 + gy[1] / T * 3.0 + gy[2] / T * c2), rel=1e-12)
    assert abs(gVo[0] - gV[0]) > 1e-3


def test_official_input_gradient_counts_in_range_steps():
    I, gy, V, B = _tiny_example()
    gI, _, _, _ = time_flow_forms.neuron_grads(I, gy, V, B, 3, "positive", "official")
    assert gI == pytest.approx(gy * np.array([3, 0, 1]) / 3, rel=1e-14)


def test_lif_cancellation_is_partial():
    I, gy, V, B = _tiny_example()
    _, gV1, _, v1 = time_flow_forms.neuron_grads(I[:1], gy[:1], V, B, 3, "positive", "paper", tau=1.0)
    _, gV2, _, v2 = time_flow_forms.neuron_grads(I[:1], gy[:1], V, B, 3, "positive", "paper", tau=2.0)
    assert gV1[0] == 0.0 and gV1[1] == 0.0  # in range throughout: early thresholds get nothing
    assert gV2[1] == 0.0  # step T-1 still nothing (in range at T)
    assert gV2[0] != 0.0  # step 1 gets the (1 - 1/tau) remainder


def test_closed_forms_on_random_data():
    rng = np.random.default_rng(9)
    for domain in ("positive", "bidirectional"):
        I = rng.standard_normal(3000)
        if domain == "positive":
            I = np.maximum(I, 0)
        gy = rng.standard_normal(3000)
        V = np.array([0.3, 0.4, 0.25])
        res = time_flow_forms.analyse_case(I, gy, V, np.array([2, 3, 2]), 3, domain)
        for conv in ("paper", "official", "detached"):
            assert res[conv]["closed_form_err"] < 1e-12
        assert res["last_equal"]
        assert res["paper"]["reach"][0] < 0.5 < res["official"]["reach"][0] == 1.0


def test_time_flow_quick_run_passes():
    res = time_flow.run(quick=True, sizes={"n": 1024, "batch": 16})
    assert res and all(r.passed for r in res), [(r.claim, r.values) for r in res if not r.passed]


# ----------------------------------------------------------------------------
# renewal
# ----------------------------------------------------------------------------
def test_renewed_step_beats_kept_step_half_normal():
    hn = renewal_effect.half_normal(renewal_effect.sizes_for(True, {"n_fit": 4000, "n_mc": 20_000}), seed=1)
    for r in hn["rows"]:
        assert r["mse_fresh"] < r["mse_kept"], r
        assert r["ok_kept"] and r["ok_fresh"]
        assert r["mse_fresh"] <= 1.1 * r["mse_opt"]
    # a kept step at b bits clips at s (2^b' - 1): the exact MSE formula agrees with a direct sum
    x = np.abs(np.random.default_rng(0).standard_normal(400_000))
    s = 3.0 / 15
    direct = np.mean((x - renewal_effect.quant_pos_round(x, s, 2)) ** 2)
    assert direct == pytest.approx(renewal_effect.mse_exact(s, 2), rel=2e-2)


def test_capture_restores_the_layers():
    model, _, _ = fixture.trained_model(True, 0, SMALL_RENEWAL)
    xb, _ = fixture.calibration_batch(4, 0)
    with fixture.capture(model) as st:
        from refsnn.autograd.tensor import Tensor, no_grad
        with no_grad():
            model.eval()
            model(Tensor(xb))
            model.train()
    assert len(st) == 7 and all(v["x"].shape[0] == 4 for v in st.values())
    assert all("forward" not in l.__dict__ and "_weight_op" not in l.__dict__ for _, l in fixture.spiking(model))
    # the hooks are removed on exit
    assert all(not l._forward_hooks and not l.squeezed._forward_hooks for _, l in fixture.spiking(model))


def test_renewal_quick_run_passes_and_renewal_helps_after_a_drop():
    res = renewal_effect.run(quick=True, sizes=SMALL_RENEWAL)
    assert res and all(r.passed for r in res), [(r.claim, r.values) for r in res if not r.passed]
    drop = [r for r in res if "runs" in r.data][0]
    on = [np.mean(run["on"]["losses"][:3]) for run in drop.data["runs"]]
    off = [np.mean(run["off"]["losses"][:3]) for run in drop.data["runs"]]
    assert all(a < b for a, b in zip(on, off)), (on, off)
