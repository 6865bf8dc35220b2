"""The PyTorch port beyond the ResNet half (issue 15): sequential mode, event frames, Spikformer, the trainer's
config keys and divergence check, and the allowances of the golden check (docs/golden.md "The port")."""
import io
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hypothesis import given, settings, strategies as st  # noqa: E402

from refsnn.autograd.tensor import Tensor, no_grad, tensor  # noqa: E402
from refsnn.data.events import make_events, to_frames as np_frames  # noqa: E402
from refsnn.golden import check_golden  # noqa: E402
from refsnn.golden.check import compare_arrays  # noqa: E402
from refsnn.method import get_convention  # noqa: E402
from refsnn.method.neuron import sequential_neuron as np_seq  # noqa: E402
from refsnn.models import get_model as np_model  # noqa: E402
from refsnn.nn import SpikingConfig  # noqa: E402
from refsnn.torch import from_refsnn, get_model, to_refsnn  # noqa: E402
from refsnn.torch import golden as G  # noqa: E402
from refsnn.torch.events import to_frames  # noqa: E402
from refsnn.torch.sequential import sequential_neuron  # noqa: E402

GOLDEN = Path(__file__).parent / "golden"
SETS = ("paper-float64", "paper-float32", "official-float64", "official-float32")


def _t(a, grad=False):
    return torch.from_numpy(np.array(a)).requires_grad_(grad)


# ---------------------------------------------------------------------------------------------
# sequential mode: the neuron (docs/method.md §14, Eq. 3-5), frames
# ---------------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), B=st.integers(1, 5), T=st.integers(1, 3), tau=st.sampled_from([1.0, 2.0]),
       domain=st.sampled_from(["positive", "bidirectional"]), rounding=st.sampled_from(["round", "floor"]),
       conv=st.sampled_from(["paper", "official"]), prior=st.booleans())
def test_sequential_neuron_equals_refsnn_forward_and_backward(seed, B, T, tau, domain, rounding, conv, prior):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, 3, 4, 5))
    vth = rng.uniform(0.2, 0.8, 3)
    alpha = rng.uniform(0.3, 0.7, 3) if prior else None
    bits = np.array([float(B), float(max(1, B - 1)), float(B + 1)])
    g = rng.standard_normal(x.shape)
    kw = dict(domain=domain, rounding=rounding, tau=tau, convention=get_convention(conv))
    a = [tensor(x, requires_grad=True), tensor(vth, requires_grad=True), tensor(bits, requires_grad=True)]
    ra = tensor(alpha, requires_grad=True) if prior else None
    y = np_seq(*a, alpha=ra, **kw)
    y.backward(g)
    b = [_t(x, True), _t(vth, True), _t(bits, True)]
    ta = _t(alpha, True) if prior else None
    yt = sequential_neuron(*b, alpha=ta, **kw)
    yt.backward(_t(g))
    np.testing.assert_allclose(yt.detach().numpy(), y.data, rtol=0, atol=1e-12)
    for r, t in zip(a + ([ra] if prior else []), b + ([ta] if prior else [])):
        np.testing.assert_allclose(t.grad.numpy(), r.grad, rtol=1e-10, atol=1e-12)


def test_sequential_neuron_bad_arguments_raise_value_errors_naming_them():
    x, v, b = _t(np.ones((2, 3))), _t(np.ones(3)), _t(np.full(3, 2.0))
    with pytest.raises(ValueError, match="I must have shape"):
        sequential_neuron(_t(np.ones((4, 3))), v, b)
    with pytest.raises(ValueError, match="alpha"):
        sequential_neuron(x, v, b, alpha=_t(-np.ones(3)))
    with pytest.raises(ValueError, match="ranks"):
        sequential_neuron(x, v, b, ranks=0)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), n=st.integers(0, 60), T=st.integers(1, 6),
       split=st.sampled_from(["number", "time"]))
def test_to_frames_equals_refsnn(seed, n, T, split):
    rng = np.random.default_rng(seed)
    t, x, y, p = np.sort(rng.integers(0, 500, n)), rng.integers(0, 6, n), rng.integers(0, 5, n), rng.integers(0, 2, n)
    ref = np_frames(make_events(t, x, y, p, height=5, width=6), T, 5, 6, split_by=split)
    got = to_frames(*[torch.from_numpy(v) for v in (t, x, y, p)], T, 5, 6, split_by=split)
    np.testing.assert_array_equal(got.numpy(), ref)


# ---------------------------------------------------------------------------------------------
# models: Spikformer and sequential mode, state both ways (float64, 1e-10)
# ---------------------------------------------------------------------------------------------
SEQ = SpikingConfig(temporal_mode="sequential", time_steps=2.0, renewal="both")
PRIOR = SEQ.replace(neuron="prior", rounding="floor", tau=2.0)


@pytest.mark.parametrize("name,config,shape", [("tiny_spikformer", None, (1, 8, 8)),
                                               ("tiny_spikformer", SEQ, (2, 1, 8, 8)),
                                               ("tiny_resnet", PRIOR, (1, 8, 8))])
def test_models_move_both_ways_with_the_same_logits(name, config, shape):
    m = np_model(name, seed=3, config=config)
    x = np.random.default_rng(1).standard_normal((4,) + shape)
    m.train()
    with no_grad():
        m(Tensor(x))                      # LSQ initialisation, observers, BN statistics
    m.eval()
    t = from_refsnn(m)
    t.eval()
    assert [n for n, _ in t.named_parameters()] == [n for n, _ in m.named_parameters()]
    assert set(t.state_dict()) - {k for k in t.state_dict() if k.endswith("num_batches_tracked")} == set(m.state_dict())
    with no_grad():
        ref = m(Tensor(x)).data
    np.testing.assert_allclose(t(torch.from_numpy(x)).detach().numpy(), ref, rtol=0, atol=1e-10)
    with torch.no_grad():
        for p in t.parameters():
            p.mul_(1.01)
    back = np_model(name, seed=0, config=config)
    to_refsnn(t, back)
    back.eval()
    with no_grad():
        np.testing.assert_allclose(back(Tensor(x)).data, t(torch.from_numpy(x)).detach().numpy(), rtol=0, atol=1e-10)


def test_training_step_of_sequential_and_spikformer_models_equals_refsnn():
    """One training forward + backward (LSQ init, observers, BN batch statistics) gives refsnn's gradients."""
    for name, config, shape in (("tiny_spikformer", SEQ, (2, 1, 8, 8)), ("tiny_resnet", PRIOR, (1, 8, 8))):
        m = np_model(name, seed=2, config=config)
        t = from_refsnn(m)
        x = np.random.default_rng(4).standard_normal((3,) + shape)
        m.train()
        t.train()
        out = m(Tensor(x))
        out.backward(np.ones(out.shape))
        ot = t(torch.from_numpy(x))
        ot.backward(torch.ones(ot.shape, dtype=torch.float64))
        np.testing.assert_allclose(ot.detach().numpy(), out.data, rtol=0, atol=1e-10)
        grads = {n: p.grad for n, p in m.named_parameters() if p.grad is not None}
        for n, p in t.named_parameters():
            # below the SPS max pools a tie is broken by rounding (docs/golden.md 6.10): compared from sps.rpe up
            if n in grads and not n.startswith(("sps.conv", "sps.bn")):
                np.testing.assert_allclose(p.grad.numpy(), grads[n], rtol=1e-8, atol=1e-10, err_msg=n)


@pytest.mark.parametrize("name", ["spikformer_4_384", "spikformer_8_512", "spikformer_dvs"])
def test_paper_spikformers_build_with_refsnn_names(name):
    kw = {"img_size": 48} if name == "spikformer_dvs" else {}
    assert [n for n, _ in get_model(name, dtype=torch.float32, **kw).named_parameters()] == \
        [n for n, _ in np_model(name, dtype=np.float32, **kw).named_parameters()]


def test_spikformer_costs_match_refsnn():
    from refsnn.models import model_costs as np_costs
    from refsnn.torch.regulate import model_costs
    t = get_model("tiny_spikformer", dtype=torch.float32)
    assert model_costs(t, (1, 8, 8)).as_dict() == np_costs(np_model("tiny_spikformer", dtype=np.float32),
                                                          (1, 8, 8)).as_dict()


# ---------------------------------------------------------------------------------------------
# the trainer: [regulate] count_time_only, [renewal] rule = "release", divergence
# ---------------------------------------------------------------------------------------------
def _config(out_dir, **sections):
    from refsnn.config import TrainConfig
    d = {"epochs": 1, "seed": 0, "dtype": "float64", "out_dir": str(out_dir), "progress": "none", "plots": False,
         "data": {"name": "digits", "batch_size": 16, "train_subset": 32, "test_subset": 16}}
    d.update(sections)
    return TrainConfig.from_dict(d)


def test_trainer_honours_release_rule_and_count_time_only_like_refsnn(tmp_path):
    from refsnn.method.regulate import model_averages
    from refsnn.torch.train import TorchTrainer
    from refsnn.train import Trainer
    # fc keeps only T learnable: the release's filter (count_time_only = false) leaves it out of W, S, T
    sec = {"regulate": {"count_time_only": False}, "renewal": {"rule": "release", "min_epochs": 0, "mode": "both"},
           "method": {"layers": {"fc": {"learn_weight_bits": False, "learn_spike_bits": False}}}}
    a = Trainer(_config(tmp_path / "a", **sec), progress="none")
    b = TorchTrainer(_config(tmp_path / "b", **sec), progress="none")
    x = a.train_set.x[:8]
    with no_grad():
        a.model(Tensor(x))
    b.model(torch.from_numpy(x))
    for cto in (True, False):
        avg_a = model_averages([l for _, l in a.layers], cto)
        avg_b = model_averages([l for _, l in b.layers], cto)
        assert {k: float(v.data) for k, v in avg_a.items()} == pytest.approx({k: float(v.detach()) for k, v in avg_b.items()})
    assert a.regulate == b.regulate
    # the release's signed switching-off rule on the same widths: the same kinds switched off
    for _, l in a.layers:
        l.weight_width.data[...] = 2.0
    with torch.no_grad():
        for _, l in b.layers:
            l.weight_width.fill_(2.0)
    a.epoch = b.epoch = 3
    assert a.apply_switch_off(a.costs()) == b.apply_switch_off(b.costs()) != []


def test_trainer_raises_training_diverged(tmp_path):
    from refsnn.errors import TrainingDiverged
    from refsnn.torch.train import TorchTrainer
    tr = TorchTrainer(_config(tmp_path), progress="none")
    step = tr.optimizer.step

    def poisoned(*args, **kw):
        step(*args, **kw)
        with torch.no_grad():
            tr.layers[0][1].weight[0] = float("nan")

    tr.optimizer.step = poisoned
    with pytest.raises(TrainingDiverged, match=r"epoch 1, step 1: parameter stem.weight \(weight\) is not finite"):
        tr.fit()


# ---------------------------------------------------------------------------------------------
# the golden check with the port: allowances are bounds, not a free pass
# ---------------------------------------------------------------------------------------------
def test_array_atol_and_bad_allowances_in_compare_arrays():
    ref = np.array([1.0, 2.0])
    assert compare_arrays(ref + [0.0, 0.5], ref, np.array([0.0, 0.6]), 0.0)["ok"]
    assert not compare_arrays(ref + [0.1, 0.0], ref, np.array([0.0, 0.6]), 0.0)["ok"]
    assert "not finite" in compare_arrays(ref, ref, np.array([np.nan, 0.0]), 0.0)["reason"]
    assert "allowance of shape" in compare_arrays(ref, ref, np.zeros(3), 0.0)["reason"]


def _check(compute, case, sets=SETS) -> dict:
    return {s: check_golden(GOLDEN / s, patterns=[case], out=io.StringIO(), compute=compute) for s in sets}


def test_a_sign_error_in_the_time_gradient_fails_despite_the_cancellation_allowance(monkeypatch):
    from refsnn.torch.functions import RefinedNeuron
    backward = RefinedNeuron.backward

    def wrong(ctx, gy):
        g = list(backward(ctx, gy))
        g[3] = -g[3]   # dL/dThat = +sum g y / T: the sign of the one term of docs/method.md §6.5
        return tuple(g)

    monkeypatch.setattr(RefinedNeuron, "backward", staticmethod(wrong))
    for case in ("neuron_pos_B2_T3_round_tau2_temporal", "train_step_tiny_resnet"):
        assert not any(_check(G.COMPUTE, case).values()), case


def _route_to_last_tie(ctx, gy):
    """TieMaxPool2d's backward with the gradient to the LAST tied position of each window (another valid choice)."""
    from torch.nn import functional as F
    x, y = ctx.saved_tensors
    k, s, p, tie = ctx.args
    N, C, H, W = x.shape
    cols = F.unfold(F.pad(x, (p, p, p, p), value=float("-inf")).reshape(N * C, 1, H + 2 * p, W + 2 * p), k,
                    stride=s).reshape(N, C, k * k, -1)
    top = y.reshape(N, C, 1, -1)
    near = (cols >= top - tie * torch.abs(top)).to(torch.uint8)
    last = k * k - 1 - torch.argmax(torch.flip(near, dims=(2,)), dim=2, keepdim=True)
    g = torch.zeros_like(cols).scatter_(2, last, 1.0) * gy.reshape(N, C, 1, -1)
    gx = F.fold(g.reshape(N * C, k * k, -1), (H + 2 * p, W + 2 * p), k, stride=s).reshape(N, C, H + 2 * p, W + 2 * p)
    return gx[:, :, p:p + H, p:p + W], None, None, None, None


def test_max_pool_ties_any_choice_passes_a_wrong_routing_fails(monkeypatch):
    from refsnn.torch import pool
    backward = pool._TieMax.backward
    # the other end of every tie: still within the tie bound, on every set
    monkeypatch.setattr(pool._TieMax, "backward", staticmethod(_route_to_last_tie))
    assert all(_check(G.COMPUTE, "train_step_tiny_spikformer").values())
    # a pool that halves the gradient it routes (a wrong backward below the attention) fails
    monkeypatch.setattr(pool._TieMax, "backward",
                        staticmethod(lambda ctx, gy: tuple(v * 0.5 if v is not None else None
                                                           for v in backward(ctx, gy))))
    assert not any(_check(G.COMPUTE, "train_step_tiny_spikformer").values())


def test_every_case_kind_is_ported():
    from refsnn.golden import load_manifest
    for s in SETS:
        assert all(G.ported(c) for c in load_manifest(GOLDEN / s)["cases"])
    assert G.not_ported(GOLDEN) == []


def test_global_batchnorm_converts_token_batchnorm():
    """--sync-bn on a Spikformer: token BN becomes GlobalTokenBatchNorm (one process: the same numbers)."""
    from refsnn.torch.syncbn import GlobalTokenBatchNorm, convert_global_batchnorm
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((3, 1, 8, 8)))
    a, b = get_model("tiny_spikformer", seed=1), get_model("tiny_spikformer", seed=1)
    convert_global_batchnorm(b)
    assert isinstance(b.blocks[0].attn.qkv_bn, GlobalTokenBatchNorm)
    a.train()
    b.train()
    np.testing.assert_array_equal(a(x).detach().numpy(), b(x).detach().numpy())
