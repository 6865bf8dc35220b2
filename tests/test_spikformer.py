"""Spikformer (docs/method.md §13): layout and parameter counts, the neuron-only layer, SSA gradients, costs, bad input."""
import numpy as np
import pytest

import refsnn
import refsnn.functional as F
from refsnn.autograd.tensor import Tensor
from refsnn.method.conventions import get_convention
from refsnn.method.neuron import spiking_neuron
from refsnn.models import get_model, model_costs, spikformer, spikformer_4_384, tiny_spikformer
from refsnn.nn import SpikingConfig, SpikingNeuron, shared_time, spiking_layers
from verify.forward_reading import neuron_point, neuron_surrogate


# --------------------------------------------------------------------------- hand counts
def hand_counts(L, D, C, classes, mlp_ratio=4):
    """(conv/linear weights + head bias, BN channels) of Spikformer-L-D (docs/method.md §13)."""
    sps = 9 * (C * D // 8 + D // 8 * D // 4 + D // 4 * D // 2 + D // 2 * D) + 9 * D * D  # four convs + RPE
    block = D * 3 * D + D * D + 2 * D * mlp_ratio * D  # qkv, proj, fc1, fc2 (no bias: BN follows)
    head = D * classes + classes
    bn_sps = D // 8 + D // 4 + D // 2 + D + D
    bn_block = 3 * D + D + mlp_ratio * D + D
    return sps + L * block + head, bn_sps + L * bn_block


def count(model, kinds):
    return sum(p.size for p in model.parameters() if p.kind in kinds)


@pytest.mark.parametrize("name,L,D,C,classes", [("spikformer_4_384", 4, 384, 3, 10),
                                                 ("spikformer_8_512", 8, 512, 3, 1000),
                                                 ("spikformer_dvs", 2, 256, 2, 10),
                                                 ("tiny_spikformer", 1, 32, 1, 10)])
def test_parameter_counts_match_hand_formulas(name, L, D, C, classes):
    m = get_model(name, dtype=np.float32)
    weights, bn = hand_counts(L, D, C, classes)
    assert count(m, ("weight", "bias")) == weights
    assert count(m, ("bn",)) == 2 * bn
    # per block: 3 + 1 shared T + widths of qkv/proj/fc1/fc2 ...; the shared That is registered once per block
    # (spikformer_dvs: sequential mode by default, T fixed, no T parameter; docs/method.md §14)
    assert sum(1 for n, _ in m.named_parameters() if n.endswith("attn.time")) == (0 if m.sequential else L)
    assert not any(n.endswith("_neuron.time") for n, _ in m.named_parameters())


def test_spikformer_4_384_count_and_tokens():
    m = spikformer_4_384(dtype=np.float32)
    assert count(m, ("weight", "bias")) == 9_281_050  # 2,199,312 SPS + 4 x 1,769,472 blocks + 3,850 head
    assert m.n_tokens == 64 and m.heads == 12
    assert get_model("spikformer_8_512", dtype=np.float32).n_tokens == 196
    assert get_model("spikformer_dvs", dtype=np.float32).n_tokens == 64
    assert get_model("spikformer_dvs", img_size=48, dtype=np.float32).n_tokens == 9


def test_layer_names_and_stem():
    m = tiny_spikformer()
    names = [n for n, _ in spiking_layers(m)]
    assert names == ["sps.conv0", "sps.conv1", "sps.conv2", "sps.conv3", "sps.rpe", "blocks.0.attn.qkv",
                     "blocks.0.attn.q_neuron", "blocks.0.attn.k_neuron", "blocks.0.attn.v_neuron",
                     "blocks.0.attn.proj", "blocks.0.mlp.fc1", "blocks.0.mlp.fc2", "head"]
    layers = dict(spiking_layers(m))
    assert layers["sps.conv0"].config.domain == "bidirectional"
    assert all(layers[n].config.domain == "positive" for n in names[1:])
    m2 = tiny_spikformer(layer_configs={"*.k_neuron": {"spike_bits": 2}})
    assert dict(spiking_layers(m2))["blocks.0.attn.k_neuron"].width_values() == (0, [2, 2], 2)


def test_forward_shapes_and_determinism():
    x = np.random.default_rng(0).standard_normal((4, 1, 8, 8))
    a, b = tiny_spikformer(seed=3), tiny_spikformer(seed=3)
    ya, yb = a(Tensor(x)), b(Tensor(x))
    assert ya.shape == (4, 10)
    np.testing.assert_array_equal(ya.data, yb.data)


# --------------------------------------------------------------------------- the neuron-only layer
def test_spiking_neuron_layer_equals_the_neuron_op_and_initialises():
    n = SpikingNeuron(SpikingConfig(spike_bits=3, time_steps=2))
    x = np.abs(np.random.default_rng(1).standard_normal((4, 5, 6)))
    y = n(Tensor(x))
    assert bool(n.initialized)
    # section 11: V_th^t = 2 mean|a| / sqrt(q_max), q_max = 2^3 - 1
    np.testing.assert_allclose(n.threshold.data, 2 * x.mean() / np.sqrt(7))
    want = spiking_neuron(Tensor(x), n.threshold.data, np.full(3, 3.0), np.array(2.0))
    np.testing.assert_array_equal(y.data, want.data)
    c = n.cost("n")
    assert (c.macs, c.n_w, c.n_f, c.B_s, c.T, c.kind) == (0, 0, 30, [3, 3], 2, "neuron")


def test_shared_time_is_one_parameter_with_summed_gradient():
    cfg = SpikingConfig(time_steps=2.0)
    t = shared_time(cfg)
    a, b = SpikingNeuron(cfg, time=t), SpikingNeuron(cfg, time=t)
    assert a.time is b.time and "time" not in dict(a.named_parameters())
    x = np.abs(np.random.default_rng(2).standard_normal((3, 4)))
    (a(Tensor(x)).sum() + b(Tensor(2 * x)).sum()).backward()
    ga = float(t.grad)
    t.grad = None
    a(Tensor(x)).sum().backward()
    g1 = float(t.grad)
    t.grad = None
    b(Tensor(2 * x)).sum().backward()
    assert ga == pytest.approx(g1 + float(t.grad), rel=1e-12)
    with pytest.raises(ValueError, match="time must be a 0-d 'time' Parameter"):
        SpikingNeuron(cfg, time=np.array(2.0))
    with pytest.raises(ValueError, match="input_neuron must be True"):
        SpikingNeuron(cfg.replace(input_neuron=False))


def test_neuron_layer_renews_its_threshold_when_its_width_changes():
    n = SpikingNeuron(SpikingConfig(spike_bits=4, time_steps=1, renewal="spike"))
    x = np.abs(np.random.default_rng(3).standard_normal((64, 8)))
    n(Tensor(x))
    before = n.threshold.data.copy()
    n.spike_width.data[...] = 2.0  # the rounded width changes 4 -> 2: Alg. 1 fires at the next forward
    n(Tensor(x))
    assert [e[:3] for e in n.renewal_events] == [("spike", 0, 2)]  # (kind, step, new width)
    assert n.threshold.data[0] != before[0]


# --------------------------------------------------------------------------- SSA gradients
def _ssa_core(q, k, v, heads, scale):
    a = F.matmul(F.split_heads(q, heads), F.transpose(F.split_heads(k, heads), axes=(0, 1, 3, 2))) * scale
    return F.merge_heads(F.matmul(a, F.split_heads(v, heads)))


def _ssa_core_np(q, k, v, heads, scale):
    n, L, D = q.shape
    sp = lambda z: z.reshape(n, L, heads, D // heads).transpose(0, 2, 1, 3)  # noqa: E731
    o = (sp(q) @ sp(k).transpose(0, 1, 3, 2) * scale) @ sp(v)
    return o.transpose(0, 2, 1, 3).reshape(n, L, D)


@pytest.mark.parametrize("convention", ["paper", "official"])
@pytest.mark.parametrize("T", [1, 2])
def test_ssa_gradients_through_qkv_neurons_match_the_surrogate(convention, T):
    """Tape gradients of L = sum r * SSA(N_q(a_q), N_k(a_k), N_v(a_v)) with one shared T, against central
    differences of the same SSA built on the neurons' STE/LSQ surrogate (verify/forward_reading.py, docs/method.md §6).
    Threshold and width gradients carry the LSQ scale g = 1/sqrt(N q_max) on top (verify/gradients.py)."""
    rng = np.random.default_rng(T)
    n, L, D, heads, scale = 2, 3, 4, 2, 0.125
    conv = get_convention(convention)
    a = [np.abs(rng.standard_normal((n, L, D))) * 1.5 - 0.2 for _ in range(3)]
    V = [rng.uniform(0.2, 0.6, 3) for _ in range(3)]
    B = [np.array(b, float) for b in ([2, 3, 2], [3, 2, 2], [2, 2, 3])]
    r = rng.standard_normal((n, L, D))
    ta = [refsnn.tensor(x, requires_grad=True) for x in a]
    tV = [refsnn.tensor(x, requires_grad=True) for x in V]
    tB = [refsnn.tensor(x, requires_grad=True) for x in B]
    tT = refsnn.tensor(np.array(float(T)), requires_grad=True)
    ys = [spiking_neuron(ta[i], tV[i], tB[i], tT, convention=conv) for i in range(3)]
    _ssa_core(*ys, heads, scale).backward(r)

    recs = [neuron_point(a[i], V[i], B[i].astype(int), T, "positive", "round", 1.0, conv) for i in range(3)]

    def loss(a_=a, V_=V, B_=B, T_=float(T)):
        y = [neuron_surrogate(a_[i], V_[i], B_[i], T_, recs[i], "positive", 1.0, conv) for i in range(3)]
        return float(np.sum(r * _ssa_core_np(*y, heads, scale)))

    assert loss() == pytest.approx(float(np.sum(r * _ssa_core(*ys, heads, scale).data)), rel=1e-12)
    h = 1e-6

    def fd(which, i, idx):
        def at(delta):
            args = {"a_": [x.copy() for x in a], "V_": [x.copy() for x in V], "B_": [x.copy() for x in B]}
            args[which][i][idx] += delta
            return loss(**args)
        return (at(h) - at(-h)) / (2 * h)

    for i in range(3):
        for idx in [(0, 0, 0), (1, 2, 3), (0, 1, 2)]:
            assert ta[i].grad[idx] == pytest.approx(fd("a_", i, idx), rel=1e-5, abs=1e-7)
        for t in range(T):
            g = 1.0 / np.sqrt(a[i].size * recs[i]["q0"][t])
            gB = g if conv.bit_grad_lsq else 1.0
            assert tV[i].grad[t] == pytest.approx(g * fd("V_", i, t), rel=1e-5, abs=1e-7)
            assert tB[i].grad[t] == pytest.approx(gB * fd("B_", i, t), rel=1e-5, abs=1e-7)
    # the shared T: one parameter, the sum of the three neurons' docs/method.md §6.5 gradients
    gT = (loss(T_=T + h) - loss(T_=T - h)) / (2 * h)
    assert float(tT.grad) == pytest.approx(gT, rel=1e-5, abs=1e-7)


def test_ssa_module_gradients_reach_every_width_and_the_shared_time():
    m = tiny_spikformer()
    x = np.random.default_rng(0).standard_normal((6, 1, 8, 8))
    F.cross_entropy(m(Tensor(x)), np.arange(6)).backward()
    attn = m.blocks[0].attn
    assert attn.time.grad is not None and np.isfinite(attn.time.grad).all()
    for neuron in (attn.q_neuron, attn.k_neuron, attn.v_neuron):
        assert neuron.threshold.grad is not None and np.abs(neuron.threshold.grad).sum() > 0
        assert neuron.spike_width.grad is not None


# --------------------------------------------------------------------------- costs
def test_costs_count_neurons_in_S_and_attention_apart():
    m = tiny_spikformer(layer_configs={"*.q_neuron": {"spike_bits": 2}})
    cost = model_costs(m, (1, 8, 8))
    by = {lc.name: lc for lc in cost.layers}
    q = by["blocks.0.attn.q_neuron"]
    assert (q.macs, q.n_w, q.n_f, q.B_s, q.s_ace) == (0, 0, 4 * 32, [2, 2], 0)
    assert by["blocks.0.mlp.fc1"].macs == 4 * 32 * 128  # a linear on tokens: L * in * out
    spk = [lc for lc in cost.layers if lc.spiking]
    n_f = sum(lc.n_f for lc in spk)
    assert cost.S == pytest.approx(sum(lc.mean_B_s * lc.n_f for lc in spk) / n_f)
    assert cost.W == pytest.approx(4.0)  # neuron-only layers have no weights: W is the weight layers' 4
    (att,) = cost.attention
    assert att.macs == 4 * 4 * 32 and att.B_A == [2 + 4 + 2] * 2
    assert att.bits_qk == 2 * att.macs * 2 * 4 and att.bits_av == 2 * att.macs * 4 * 8
    full = model_costs(m, (1, 8, 8), "16/1/4")
    assert full.attention[0].B_q == [1] * 4 and by["blocks.0.attn.q_neuron"].B_w == 0
    assert all(lc.B_w == (16 if lc.n_w else 0) for lc in full.layers)


def test_summary_cli_shows_the_attention_columns(capsys):
    import json
    from refsnn.models import summary_main
    assert summary_main(["--model", "tiny_spikformer", "--wst", "16/1/4"]) == 0
    out = capsys.readouterr().out
    assert "q_neuron" in out and "MACs*B_q*B_k" in out and "MACs*B_v*B_A" in out
    assert summary_main(["--model", "tiny_spikformer", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["attention"][0]["macs_qk"] == 512 and "attention_bits_av" in d and isinstance(d["attention_bits_av"], int)


# --------------------------------------------------------------------------- bad input
def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="D = 30 is not divisible by heads = 4"):
        spikformer(1, 32 - 2, 4, img_size=8, in_channels=1)
    with pytest.raises(ValueError, match="input size 30 does not give whole patches.*multiple of 4"):
        spikformer(1, 32, 2, img_size=30, in_channels=1)
    with pytest.raises(ValueError, match="multiple of 16"):
        spikformer(1, 32, 2, img_size=40, in_channels=1, sps="imagenet")
    with pytest.raises(ValueError, match="sps must be one of"):
        spikformer(1, 32, 2, img_size=8, in_channels=1, sps="vit")
    m = tiny_spikformer()
    with pytest.raises(ValueError, match=r"expected input \(N, 1, 8, 8\)"):
        m(Tensor(np.zeros((2, 1, 12, 12))))
    with pytest.raises(ValueError, match=r"expected tokens of shape \(N, 4, 32\).*got \(2, 9, 32\)"):
        m.blocks[0](Tensor(np.zeros((2, 9, 32))))
    with pytest.raises(ValueError, match="one time_bound"):
        tiny_spikformer(layer_configs={"*.v_neuron": {"time_bound": 2}})


# --------------------------------------------------------------------------- training
def test_refsnn_train_tiny_spikformer_on_digits(tmp_path):
    """`refsnn train` of tiny_spikformer on the whole embedded digits set, 4 epochs from 4/4/2 towards 2/2/1."""
    import json
    from refsnn.cli import main
    cfg = tmp_path / "tsf.toml"
    cfg.write_text('epochs = 4\ndtype = "float32"\nprogress = "none"\nplots = false\n'
                   '[model]\nname = "tiny_spikformer"\n'
                   '[regulate]\nW = 2.0\nS = 2.0\nT = 1.0\nlam_w = 0.5\nlam_s = 0.5\nlam_T = 0.5\n'
                   '[renewal]\nmode = "both"\nmin_epochs = 1\n'
                   '[optim]\nschedule = "cosine"\nschedule_unit = "step"\n'
                   '[data]\nname = "digits"\nbatch_size = 32\n')
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 0
    hist = json.loads((tmp_path / "run" / "history.json").read_text())
    last = hist["epochs"][-1]
    assert last["test_acc"] > 0.85, last["test_acc"]          # ten classes: chance is 0.1
    assert last["W"] < 3.0 and last["S"] < 3.0 and last["T"] < 2.0, (last["W"], last["S"], last["T"])


def test_torch_yardstick_of_the_benchmark_runs():
    """refsnn.bench.torch_spikformer (the benchmark's PyTorch step) on a small Spikformer: finite losses."""
    torch = pytest.importorskip("torch")
    from refsnn.bench.torch_spikformer import build_step
    rng = np.random.default_rng(0)
    step = build_step(torch, rng.standard_normal((2, 3, 32, 32)).astype(np.float32), rng.integers(0, 10, 2),
                      dim=32, depth=1, heads=2)
    assert all(np.isfinite(step()) for _ in range(2))
    step64 = build_step(torch, rng.standard_normal((2, 3, 32, 32)), rng.integers(0, 10, 2), dim=32, depth=1, heads=2,
                        dtype="float64")
    assert np.isfinite(step64())


def test_bench_against_torch_eager_is_only_for_the_spikformer(capsys):
    """--against torch-eager names the models that have a plain-PyTorch step when given another one."""
    from refsnn.cli import main
    with pytest.raises(SystemExit) as e:
        main(["bench", "train", "--models", "tiny_resnet", "--against", "torch-eager", "--repeats", "1"])
    assert e.value.code == 2
    assert "only ['spikformer_4_384']" in capsys.readouterr().err
