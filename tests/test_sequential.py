"""Sequential mode (docs/method.md §14): the tape op ``sequential_neuron`` (and the prior-art neuron, Eq. 3-5).

The op's gradients are STE/LSQ gradients, so finite differences of the op itself say nothing.
``gradcheck`` is run on a probe primitive whose forward is the *STE/LSQ surrogate* of the neuron
(every spike ``clip(u, q_min(B), q_max(B)) + r`` with the rounding residual r frozen at the
evaluation point; V_th and B entering as ``V0 + g (V - V0)``, ``B0 + g_B (B - B0)`` so that the LSQ
scales are part of the function; under C3 the carried membrane and the reset frozen) and whose
VJP is the library op's. The surrogate equals the neuron at the evaluation point.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import refsnn
from refsnn.autograd.gradcheck import gradcheck
from refsnn.autograd.tensor import primitive
from refsnn.method.conventions import get_convention
from refsnn.method.neuron import sequential_membrane, sequential_neuron, spike_grid, spiking_neuron


def surrogate(I, V, Bf, alpha, rec, domain, tau, conv):
    """The STE/LSQ surrogate of the sequential neuron (module docstring), real I, V, B (and alpha)."""
    c = get_convention(conv)
    V0, B0, g, gB, F, r, carry = rec["V0"], rec["B0"], rec["g"], rec["gB"], rec["F"], rec["r"], rec["carry"]
    v = np.zeros_like(I[0])
    Shat = np.zeros_like(I[0])
    out = np.empty_like(I)
    for t in range(I.shape[0]):
        if not c.bptt:
            v = carry[t] + I[t]  # C3: carry and reset detached
        elif c.reset_decay:
            v = (v - Shat) / tau + I[t]
        else:
            v = v / tau + I[t] - Shat  # Eq. 13
        Vt = V0[t] + g[t] * (V[t] - V0[t])
        Bt = B0[t] + gB[t] * (Bf[t] - B0[t])
        lo0, hi0 = spike_grid(int(B0[t]), domain)
        q = hi0 + F[t] * (2.0 ** (Bt - B0[t]) - 1.0)  # q_max(B), derivative F ln2 at B0
        lo = 0.0 if domain == "positive" else -q
        S = np.clip(v / Vt, lo, q) + r[t]
        Shat = (Vt if alpha is None else alpha[t]) * S
        out[t] = Shat
    return out


def record(I, V, B, alpha, domain, rounding, tau, conv):
    """Freeze what the surrogate needs at the evaluation point; also the smallest distance to a kink."""
    c = get_convention(conv)
    kw = dict(domain=domain, rounding=rounding, tau=tau, convention=get_convention(conv))
    Shat = sequential_neuron(I, V, B, alpha=alpha, impl="numpy", **kw).data
    v = sequential_membrane(I, V, B, alpha=alpha, impl="numpy", **kw)
    T, n = I.shape[0], I[0].size
    rec = dict(V0=V.copy(), B0=B.copy(), g=[], gB=[], F=[], r=[], carry=[v[t] - I[t] for t in range(T)])
    margin = np.inf
    for t in range(T):
        lo, hi = spike_grid(int(B[t]), domain)
        g = 1.0 / math.sqrt(n * hi)
        rec["g"].append(g)
        rec["gB"].append(g if c.bit_grad_lsq else 1.0)
        rec["F"].append(c.one_bit_factor if B[t] == 1 else hi + 1.0)
        u = v[t] / V[t]
        S = Shat[t] / (V[t] if alpha is None else alpha[t])
        rec["r"].append(S - np.clip(u, lo, hi))
        margin = min(margin, float(np.min(np.minimum(np.abs(u - lo), np.abs(u - hi)))))
    return rec, margin


def make_probe(domain, rounding, tau, conv, rec, prior):
    @primitive
    def probe(ctx, I, V, B, *alpha):
        return surrogate(I, V, B, alpha[0] if prior else None, rec, domain, tau, conv)

    @probe.defvjp
    def probe_vjp(ctx, g):
        ts = [refsnn.tensor(x, requires_grad=True) for x in ctx.inputs]
        out = sequential_neuron(ts[0], ts[1], ts[2], alpha=ts[3] if prior else None, domain=domain,
                                rounding=rounding, tau=tau, convention=get_convention(conv))
        out.backward(g)
        return tuple(t.grad for t in ts)

    return probe


@pytest.mark.parametrize("conv", ["paper", "official"])
@pytest.mark.parametrize("T", [1, 2, 3, 4])
@pytest.mark.parametrize("domain, rounding, tau, prior", [
    ("positive", "round", 1.0, False), ("bidirectional", "round", 2.0, False),
    ("positive", "floor", 2.0, True), ("positive", "floor", 1.0, False)])
def test_gradcheck_against_the_ste_lsq_surrogate(conv, T, domain, rounding, tau, prior):
    for seed in range(200):
        rng = np.random.default_rng(seed)
        V = rng.uniform(0.3, 1.0, 4)
        B = rng.integers(1 if domain == "positive" else 2, 4, 4).astype(float)
        I = rng.uniform(-1.0 if domain == "bidirectional" else -0.2, 2.5, (T, 3, 2))
        alpha = rng.uniform(0.3, 1.0, 4) if prior else None
        rec, margin = record(I, V, B, alpha, domain, rounding, tau, conv)
        if margin > 1e-3:
            break
    probe = make_probe(domain, rounding, tau, conv, rec, prior)
    ins = [refsnn.tensor(I, requires_grad=True), refsnn.tensor(V, requires_grad=True),
           refsnn.tensor(B, requires_grad=True)] + ([refsnn.tensor(alpha, requires_grad=True)] if prior else [])
    # at the evaluation point the surrogate is the neuron
    np.testing.assert_allclose(probe(*[x.data for x in ins]).data,
                               sequential_neuron(*ins[:3], alpha=ins[3] if prior else None, domain=domain,
                                                 rounding=rounding, tau=tau, convention=get_convention(conv)).data,
                               rtol=1e-12, atol=1e-12)
    assert gradcheck(probe, ins, eps=1e-7, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("conv", ["paper", "official"])
@pytest.mark.parametrize("domain", ["positive", "bidirectional"])
def test_T1_equals_the_squeeze_neuron(conv, domain):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 5, 5))
    outs = []
    for seq in (True, False):
        I = refsnn.tensor(x[None] if seq else x, requires_grad=True)
        V = refsnn.tensor([0.4, 0.6, 0.5], requires_grad=True)
        B = refsnn.tensor([3.0, 2.0, 4.0], requires_grad=True)
        if seq:
            y = sequential_neuron(I, V, B, domain=domain, convention=get_convention(conv))[0]
        else:
            y = spiking_neuron(I, V, B, refsnn.tensor(1.0), domain=domain, convention=get_convention(conv))
        y.backward(np.cos(np.arange(y.size)).reshape(y.shape))
        outs.append((y.data, I.grad.reshape(x.shape), V.grad, B.grad))
    for a, b in zip(*outs):
        assert np.array_equal(a, b)


def test_bad_input():
    V, B = refsnn.tensor([0.5, 0.5]), refsnn.tensor([2.0, 2.0])
    with pytest.raises(ValueError, match=r"I must have shape \(T, ...\) with 1 <= T <= 2"):
        sequential_neuron(refsnn.tensor(np.zeros((3, 4))), V, B)
    with pytest.raises(ValueError, match=r"alpha must be finite amplitudes > 0"):
        sequential_neuron(refsnn.tensor(np.zeros((2, 4))), V, B, alpha=refsnn.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match=r"sequential_neuron: rounding must be one of"):
        sequential_neuron(refsnn.tensor(np.zeros((2, 4))), V, B, rounding="ceil")


# -- layers and models in sequential mode (docs/method.md §14) ---------------------------------------------
from refsnn.method import regulate  # noqa: E402
from refsnn.models.resnet import tiny_resnet  # noqa: E402
from refsnn.nn import SpikingConfig, SpikingConv2d, SpikingLinear  # noqa: E402

SEQ = SpikingConfig(temporal_mode="sequential", time_steps=3.0, time_bound=3)


def test_config_checks():
    with pytest.raises(ValueError, match=r"in sequential mode time_steps is the fixed T, an integer in \[1, "
                                          r"time_bound=3\], got 2.5"):
        SpikingConfig(temporal_mode="sequential", time_steps=2.5)
    with pytest.raises(ValueError, match=r"temporal_mode must be one of"):
        SpikingConfig(temporal_mode="both")
    assert not SEQ.learns_time and SpikingConfig().learns_time
    with pytest.raises(ValueError, match=r"temporal_mode and, in sequential mode, time_steps must be the same"):
        tiny_resnet(config=SEQ, layer_configs={"fc": {"time_steps": 2.0}})


def test_layer_steps_are_separate_weight_ops_and_flat_input_is_the_same():
    rng = np.random.default_rng(0)
    layer = SpikingConv2d(2, 4, 3, padding=1, config=SEQ, rng=1)
    x = rng.standard_normal((3, 2, 2, 5, 5))
    layer.train()
    z = layer(refsnn.tensor(x))
    assert z.shape == (3, 2, 4, 5, 5) and getattr(layer, "time", None) is None
    layer.eval()
    z5 = layer(refsnn.tensor(x)).data
    z4 = layer(refsnn.tensor(x.reshape(6, 2, 5, 5))).data
    assert np.array_equal(z5.reshape(6, 4, 5, 5), z4)
    # step t of the output is the conv of step t's spikes only (no squeeze): change I^3, steps 1-2 unchanged
    x2 = x.copy()
    x2[2] += 1.0
    z2 = layer(refsnn.tensor(x2)).data
    assert np.array_equal(z2[:2], z5[:2]) and not np.array_equal(z2[2], z5[2])
    lc = layer.cost("l")
    assert lc.T == 3 and lc.s_ace == lc.macs * lc.B_w * sum(lc.B_s) == lc.s_ace_star
    with pytest.raises(ValueError, match=r"input must have shape \(T, N, ...\)"):
        layer(refsnn.tensor(np.zeros((4, 2, 2, 5, 5))))


def test_T1_sequential_model_equals_squeeze_model():
    """With T = 1 both modes compute the same network, bit for bit, forward and backward."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 1, 8, 8))
    outs = []
    for cfg in (SpikingConfig(time_steps=1.0, learn_time=False),
                SpikingConfig(temporal_mode="sequential", time_steps=1.0)):
        m = tiny_resnet(config=cfg, seed=3)
        m.train()
        y = m(refsnn.tensor(x))
        y.backward(np.cos(np.arange(y.size)).reshape(y.shape))
        outs.append([y.data, m.stem.weight.grad, m.fc.threshold.grad, m.layer1[0].conv1.spike_width.grad])
    for a, b in zip(*outs):
        assert np.array_equal(a, b)


def test_model_repeats_static_images_and_has_no_T_term():
    m = tiny_resnet(config=SEQ, seed=0)
    m.train()
    x = np.random.default_rng(1).standard_normal((4, 1, 8, 8))
    m(refsnn.tensor(x))
    m.eval()
    a = m(refsnn.tensor(x)).data
    b = m(refsnn.tensor(np.repeat(x[:, None], 3, axis=1))).data
    assert np.array_equal(a, b) and a.shape == (4, 10)
    layers = [l for _, l in refsnn.nn.spiking_layers(m)]
    loss, avg = regulate.regulating_loss(layers, regulate.Targets(2, 2, 1))
    # T is the fixed 3 (a number, not a tape tensor: no average on the tape) and Eq. 21 has no T term
    assert avg["T"] is None and avg["W"] == pytest.approx(4.0) and avg["S"] == pytest.approx(4.0)
    assert float(loss.data) == pytest.approx(4e-2 * 2 + 4e-2 * 2)
    with pytest.raises(ValueError, match=r"\(N, T, C, H, W\) frames with T = 3"):
        m(refsnn.tensor(np.zeros((4, 2, 1, 8, 8))))


def test_observer_of_step_t_watches_v_t():
    """Alg. 1 per step: only the step whose width changed renews, from v^t of the current input."""
    layer = SpikingLinear(5, 3, config=SEQ.replace(renewal="spike"), rng=0)
    layer.train()
    x = refsnn.tensor(np.abs(np.random.default_rng(4).standard_normal((3, 8, 5))))
    layer(x)
    before = layer.threshold.data.copy()
    layer.spike_width.data[1] = 2.0
    layer(x)
    assert [e[:3] for e in layer.renewal_events] == [("spike", 1, 2)]
    assert layer.threshold.data[0] == before[0] and layer.threshold.data[2] == before[2]
    assert layer.threshold.data[1] != before[1]


# -- commands ----------------------------------------------------------------------------------------
def test_demo_events_quick_and_summary(tmp_path, capsys, monkeypatch):
    import json

    from refsnn.cli import main
    monkeypatch.setenv("REFSNN_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "demo"
    assert main(["demo", "--events", "--quick", "--out", str(out), "--progress", "none"]) == 0
    text = capsys.readouterr().out
    # the start banner goes to stderr (and not with --progress none); stdout holds the results
    assert "demo_events.toml" in text and "CPU time" in text and "/ 4.000" in text
    assert "test accuracy >= 90 %" in text and "|T -" not in text
    for name in ("history.json", "history.csv", "checkpoint.npz", "wst_history.png", "curves.png"):
        assert (out / name).is_file(), name
    hist = json.loads((out / "history.json").read_text())["epochs"]
    assert len(hist) == 2 and all(e["T"] == 4 for e in hist)
    assert list((tmp_path / "cache").glob("event_digits-*.npz"))
    assert main(["summary", "--model", "tiny_resnet", "--temporal-mode", "sequential", "--time-steps", "3",
                 "--wst", "2/2/3", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["temporal_mode"] == "sequential" and d["T"] == 3
    # S-ACE = sum MACs * B_w * B_s * T with the fixed T
    assert d["s_ace"] == pytest.approx(sum(lc["macs"] for lc in d["layers"]) * 2 * 2 * 3)
    assert main(["summary", "--model", "tiny_resnet", "--time-steps", "3"]) == 2


def test_bench_train_sequential_step(monkeypatch, tmp_path):
    from refsnn.bench.train import run_case
    monkeypatch.setenv("REFSNN_CACHE", str(tmp_path))
    row = run_case("tiny_resnet_seq", "float32", 1, batch=4)
    assert row["model"] == "tiny_resnet_seq" and row["median_s"] > 0


def test_prior_art_layer_eq_3_5():
    """neuron="prior": the layer's neuron is Eq. 3-5 with its own learnable amplitude alpha^t."""
    with pytest.raises(ValueError, match=r"prior multi-bit neuron \(Eq. 3-5\) runs in temporal_mode='sequential'"):
        SpikingConfig(neuron="prior")
    cfg = SEQ.replace(neuron="prior", rounding="floor", tau=2.0, learn_spike_bits=False, learn_weight_bits=False)
    layer = SpikingLinear(6, 3, config=cfg, rng=0)
    layer.train()
    x = refsnn.tensor(np.abs(np.random.default_rng(0).standard_normal((3, 5, 6))))
    z = layer(x)
    assert np.array_equal(layer.amplitude.data, layer.threshold.data)  # alpha starts at the LSQ V_th
    layer.amplitude.data[...] *= 0.5
    z = layer(x)
    z.backward(np.ones(z.shape))
    assert layer.amplitude.grad is not None and layer.amplitude.grad[:3].any()
    with refsnn.no_grad():
        Shat = sequential_neuron(x.data, layer.threshold.data, np.full(3, 4.0), rounding="floor", tau=2.0,
                                 alpha=layer.amplitude.data)
    # every spike value is alpha^t times an integer in 0..2^B - 1
    S = Shat.data / layer.amplitude.data[:, None, None]
    assert np.allclose(S, np.round(S), atol=1e-12) and S.max() <= 15 and S.min() >= 0


def test_frames_that_do_not_match_the_model_are_a_value_error_naming_x():
    from refsnn.models import get_model
    model = get_model("tiny_resnet", config=SpikingConfig(temporal_mode="sequential", time_steps=4, time_bound=4))
    with pytest.raises(ValueError, match=r"input x has 2 channels per frame, the model takes 1"):
        model(refsnn.tensor(np.zeros((2, 4, 2, 8, 8))))
    with pytest.raises(ValueError, match=r"input must be \(N, C, H, W\) static images or \(N, T, C, H, W\) frames"):
        model(refsnn.tensor(np.zeros((2, 3, 1, 8, 8))))
