"""The PyTorch port (refsnn.torch, issue 15): golden outputs, agreement with refsnn, checkpoints, DDP."""
import io
import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hypothesis import given, settings, strategies as st  # noqa: E402

from refsnn.autograd.tensor import Tensor, no_grad, tensor  # noqa: E402
from refsnn.golden import main as golden_main  # noqa: E402
from refsnn.method import get_convention  # noqa: E402
from refsnn.method.neuron import spiking_neuron as np_neuron  # noqa: E402
from refsnn.method.weight_quant import quantize_weight as np_quantize  # noqa: E402
from refsnn.models import get_model as np_model  # noqa: E402
from refsnn.torch import from_refsnn, get_model, to_refsnn  # noqa: E402
from refsnn.torch import functions as TF  # noqa: E402
from refsnn.torch.golden import check  # noqa: E402

GOLDEN = Path(__file__).parent / "golden"


def test_every_golden_case_of_every_set_passes_with_the_port():
    """All four tracked sets, every case, nothing skipped: the documented tolerances plus the port's allowances
    (docs/golden.md "The port"; computed from each case's own data, refsnn.torch.ambiguity)."""
    from refsnn.golden import load_manifest
    out = io.StringIO()
    ok = check(GOLDEN, verbose=False, out=out)
    text = out.getvalue()
    assert ok, text[-3000:]
    summary = text.strip().splitlines()[-1]
    cases = [c for d in ("paper-float64", "paper-float32", "official-float64", "official-float32")
             for c in load_manifest(GOLDEN / d)["cases"]]
    assert int(summary.split()[1]) == len(cases) >= 484, summary      # every case of the four sets re-computed
    assert "does not compute" not in text and re.search(r" 0 array\(s\) failed, 0 case\(s\) failed", summary), summary


def test_golden_cli_impl_torch_and_a_failing_case(tmp_path, capsys):
    assert golden_main(["check", str(GOLDEN / "paper-float32"), "--impl", "torch", "-q", "--cases", "neuron_bidir*"]) == 0
    assert "PASS: 6 case(s)" in capsys.readouterr().out
    # a port that is wrong must fail: the torch neuron with the other convention's C3 on a C3 case
    from refsnn.torch import golden as G
    wrong = dict(G.COMPUTE, neuron=lambda p, a: G.compute_neuron(dict(p, convention=get_convention("official")), a))
    from refsnn.golden import check_golden
    assert not check_golden(GOLDEN / "paper-float64", patterns=["neuron_pos_B2_T3_round_tau2_temporal"],
                            verbose=False, out=io.StringIO(), compute=wrong)


def _t(a, grad=False):
    return torch.from_numpy(np.array(a)).requires_grad_(grad)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), B=st.integers(1, 5), T=st.integers(1, 3), tau=st.sampled_from([1.0, 2.0]),
       domain=st.sampled_from(["positive", "bidirectional"]), rounding=st.sampled_from(["round", "floor"]),
       conv=st.sampled_from(["paper", "official"]))
def test_neuron_function_equals_refsnn_forward_and_backward(seed, B, T, tau, domain, rounding, conv):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, 4, 5))
    vth = rng.uniform(0.2, 0.8, 3)
    bits = np.array([float(B), float(max(1, B - 1)), float(B + 1)])
    g = rng.standard_normal(x.shape)
    kw = dict(domain=domain, rounding=rounding, tau=tau, convention=get_convention(conv))
    a = [tensor(x, requires_grad=True), tensor(vth, requires_grad=True), tensor(bits, requires_grad=True),
         tensor(np.array(float(T)), requires_grad=True)]
    y = np_neuron(*a, **kw)
    y.backward(g)
    b = [_t(x, True), _t(vth, True), _t(bits, True), _t(np.array(float(T)), True)]
    yt = TF.spiking_neuron(*b, **kw)
    yt.backward(_t(g))
    np.testing.assert_allclose(yt.detach().numpy(), y.data, rtol=0, atol=1e-12)
    for ra, tb in zip(a, b):
        np.testing.assert_allclose(tb.grad.numpy(), ra.grad, rtol=1e-10, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), B=st.integers(1, 6), per_channel=st.booleans(),
       conv=st.sampled_from(["paper", "official"]))
def test_weight_quant_function_equals_refsnn_forward_and_backward(seed, B, per_channel, conv):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((4, 3, 3, 3)) * 0.1
    step = rng.uniform(0.01, 0.05, 4) if per_channel else np.array(rng.uniform(0.01, 0.05))
    g = rng.standard_normal(w.shape)
    a = [tensor(w, requires_grad=True), tensor(step, requires_grad=True), tensor(np.array(float(B)), requires_grad=True)]
    conv = get_convention(conv)
    wq = np_quantize(*a, convention=conv)
    wq.backward(g)
    b = [_t(w, True), _t(step, True), _t(np.array(float(B)), True)]
    wt = TF.quantize_weight(*b, convention=conv)
    wt.backward(_t(g))
    np.testing.assert_allclose(wt.detach().numpy(), wq.data, rtol=0, atol=1e-15)
    for ra, tb in zip(a, b):
        np.testing.assert_allclose(tb.grad.numpy(), ra.grad, rtol=1e-10, atol=1e-13)


def test_bad_arguments_raise_value_errors_naming_them():
    x, v, b, T = _t(np.ones((2, 3))), _t(np.ones(3)), _t(np.full(3, 2.0)), _t(np.array(2.0))
    with pytest.raises(ValueError, match="domain"):
        TF.spiking_neuron(x, v, b, T, domain="negative")
    with pytest.raises(ValueError, match="T must be"):
        TF.spiking_neuron(x, v, b, _t(np.array(4.0)))
    with pytest.raises(ValueError, match="ranks"):
        TF.spiking_neuron(x, v, b, T, ranks=0)
    with pytest.raises(ValueError, match="step S_q"):
        TF.quantize_weight(_t(np.ones((2, 2))), _t(np.array(-1.0)), _t(np.array(2.0)))
    with pytest.raises(ValueError, match="bound"):
        TF.round_clip(_t(np.array(2.0)), 0)


def _batch(n=6, shape=(1, 8, 8)):
    return np.random.default_rng(1).standard_normal((n,) + shape)


def _np_logits(model, x):
    with no_grad():
        return model(Tensor(x)).data


def test_state_moves_both_ways_with_the_same_logits_float64():
    m = np_model("tiny_resnet", seed=3)
    x = _batch()
    m.train()
    _np_logits(m, x)                    # one training forward: LSQ initialisation, BN statistics, observers
    m.eval()
    t = from_refsnn(m)
    t.eval()
    ref = _np_logits(m, x)
    np.testing.assert_allclose(t(torch.from_numpy(x)).detach().numpy(), ref, rtol=0, atol=1e-10)
    # and back: change the torch model, copy into a fresh refsnn model
    with torch.no_grad():
        for p in t.parameters():
            p.mul_(1.01)
    back = np_model("tiny_resnet", seed=0)
    to_refsnn(t, back)
    back.eval()
    np.testing.assert_allclose(_np_logits(back, x), t(torch.from_numpy(x)).detach().numpy(), rtol=0, atol=1e-10)


def _config(out_dir, epochs=1, model="tiny_resnet"):
    from refsnn.config import TrainConfig
    return TrainConfig.from_dict({"epochs": epochs, "seed": 0, "dtype": "float64", "out_dir": str(out_dir),
                                  "model": {"name": model},
                                  "progress": "none", "plots": False, "renewal": {"mode": "both"},
                                  "data": {"name": "digits", "batch_size": 16, "train_subset": 32,
                                           "test_subset": 16}})


@pytest.mark.parametrize("model", ["tiny_resnet", "tiny_spikformer"])
def test_checkpoints_interchange_with_refsnn_both_ways(tmp_path, model):
    from refsnn.torch.checkpoint import load_model
    from refsnn.torch.train import TorchTrainer
    from refsnn.train import Trainer
    x = _batch(8)
    # refsnn trains and writes; the port loads the model and resumes the run
    tr = Trainer(_config(tmp_path / "a", model=model), progress="none")
    tr.fit()
    tr.model.eval()
    t = load_model(tmp_path / "a" / "checkpoint.npz")
    t.eval()
    np.testing.assert_allclose(t(torch.from_numpy(x)).detach().numpy(), _np_logits(tr.model, x), rtol=0, atol=1e-10)
    tt = TorchTrainer.from_checkpoint(tmp_path / "a" / "checkpoint.npz", epochs=2, out_dir=tmp_path / "b",
                                      progress="none")
    assert tt.epoch == 1 and tt.steps == 2 and len(tt.history) == 1
    tt.fit()
    # the port wrote refsnn's format: refsnn reads it back, same logits
    back = Trainer.from_checkpoint(tmp_path / "b" / "checkpoint.npz", out_dir=tmp_path / "c", progress="none")
    assert back.epoch == 2 and back.optimizer.steps == 4
    back.model.eval()
    tt.model.eval()
    np.testing.assert_allclose(_np_logits(back.model, x), tt.model(torch.from_numpy(x)).detach().numpy(), rtol=0,
                               atol=1e-10)


def test_model_builds_and_costs_match_refsnn():
    from refsnn.models import model_costs as np_costs
    from refsnn.torch.regulate import model_costs
    for name, shape in (("tiny_resnet", (1, 8, 8)),):   # the paper's models: the golden cost cases
        t = get_model(name, dtype=torch.float32)
        assert [n for n, _ in t.named_parameters()] == [n for n, _ in np_model(name, dtype=np.float32)
                                                        .named_parameters()]
        assert model_costs(t, shape).as_dict() == np_costs(np_model(name, dtype=np.float32), shape).as_dict()


def test_data_parallel_two_ranks_identical_and_equal_to_one_process(tmp_path):
    # tiny_resnet (both BN settings), tiny_spikformer (squeeze, shared T, token BN) and tiny_resnet in sequential
    # mode (event digits, T = 4), in one group of 2 gloo processes
    from refsnn.torch import ddpcheck
    res = ddpcheck.run(2, str(tmp_path), cases=tuple(ddpcheck.CASES))
    assert set(res) == {"tiny_resnet", "tiny_spikformer", "tiny_resnet_seq"}
    assert set(res["tiny_resnet"]["ranks"]) == {False, True}
    for case, r in res.items():
        assert ddpcheck.compare(r) == [], case
        events = r["ranks"][True][0]["events"]
        # the forced width changes, one renewal each, on the layers forced
        forced = [name for epoch in (1, 2) for name, *_ in ddpcheck.CASES[case]["forced"][epoch]]
        assert [e["layer"] for e in events] == forced and [e["kind"] for e in events] == ["spike", "weight"] * 2
        assert r["ranks"][True][0]["steps"] == 4
        assert r["ranks"][True][1]["widths"] == r["single"][True]["widths"]
    # the comparison sees a difference of one ulp-sized step between ranks
    r = res["tiny_spikformer"]["ranks"][True][1]["state"]
    r["head.threshold"] = r["head.threshold"] * (1 + 1e-15)
    want = ["sync_bn=True: head.threshold differs between rank 0 and rank 1"]
    assert ddpcheck.compare(res["tiny_spikformer"]) == want


def test_bench_train_against_torch_runs_the_same_step(capsys):
    import json
    from refsnn.cli import main
    assert main(["bench", "train", "--repeats", "1", "--models", "tiny_resnet", "--dtypes", "float64", "--json",
                 "--against", "torch"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["torch_median_s"] > 0 and row["torch_threads"] >= 1
    # the two steps compute the same loss on the same model and batch (float64)
    from refsnn.bench.train import case_batch, refsnn_step
    from refsnn.torch.bench import step_fn
    x, y = case_batch("tiny_resnet", np.dtype("float64"), 8)
    a, b = refsnn_step("tiny_resnet", "float64", 8), step_fn("tiny_resnet", "float64", x, y, 1)
    for _ in range(2):
        assert abs(a() - b()) < 1e-10


def test_resume_is_bit_identical(tmp_path):
    from refsnn.torch.models import state_to_numpy
    from refsnn.torch.train import TorchTrainer
    full = TorchTrainer(_config(tmp_path / "full", epochs=2), progress="none")
    full.fit()
    part = TorchTrainer(_config(tmp_path / "part", epochs=2), progress="none")
    part.fit(until=1)
    resumed = TorchTrainer.from_checkpoint(tmp_path / "part" / "checkpoint.npz", progress="none")
    resumed.fit()
    a, b = state_to_numpy(full.model), state_to_numpy(resumed.model)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert full.history[-1]["train_loss"] == resumed.history[-1]["train_loss"]
