"""Spikformer in sequential mode (docs/method.md §13-14): the neuron-only layer per step, the model on T*N
samples (attention per step and per sample), logits averaged over T, T = 1 equal to squeeze mode."""
import json

import numpy as np
import pytest

import refsnn
from refsnn.autograd.tensor import Tensor
from refsnn.method import regulate
from refsnn.method.neuron import sequential_neuron
from refsnn.models import tiny_spikformer
from refsnn.nn import SpikingConfig, SpikingNeuron, shared_time, spiking_layers

SEQ = SpikingConfig(temporal_mode="sequential", time_steps=3.0)


def test_sequential_neuron_layer_runs_the_op_per_step():
    n = SpikingNeuron(SEQ.replace(spike_bits=3), sample_ndim=2)
    assert n.time is None and "time" not in dict(n.named_parameters())
    x = np.abs(np.random.default_rng(1).standard_normal((3 * 2, 4, 5)))   # (T*N, L, D)
    y = n(Tensor(x))
    assert y.shape == x.shape and n.in_shape == (4, 5)
    want = sequential_neuron(Tensor(x.reshape(3, 2, 4, 5)), n.threshold.data, np.full(3, 3.0))
    np.testing.assert_array_equal(y.data, want.data.reshape(x.shape))
    # (T, N, L, D) with sample_ndim = 2: the same numbers, not flattened
    np.testing.assert_array_equal(n(Tensor(x.reshape(3, 2, 4, 5))).data, want.data)
    w = n.layer_widths()
    assert w.T == 3 and isinstance(w.T, int) and w.n_f == 20
    c = n.cost("n")
    assert (c.T, c.B_s, c.n_f, c.sequential) == (3, [3, 3, 3], 20, True)


def test_sequential_neuron_layer_bad_input_and_no_shared_time():
    with pytest.raises(ValueError, match="pass time=None"):
        SpikingNeuron(SEQ, time=shared_time(SpikingConfig()))
    with pytest.raises(ValueError, match="sample_ndim must be None or an integer >= 1"):
        SpikingNeuron(SEQ, sample_ndim=0)
    with pytest.raises(ValueError, match=r"sequential, T = 3\): input must have shape \(T\*N, ...\)"):
        SpikingNeuron(SEQ)(Tensor(np.ones((4, 5))))
    with pytest.raises(ValueError, match=r"\(T, N, ...\) with 2 per-sample dims"):
        SpikingNeuron(SEQ, sample_ndim=2)(Tensor(np.ones((3, 2, 2, 4, 5))))


def test_sequential_neuron_layer_observer_per_step():
    n = SpikingNeuron(SEQ.replace(renewal="spike"))
    x = np.abs(np.random.default_rng(4).standard_normal((3 * 8, 5)))
    n(Tensor(x))
    before = n.threshold.data.copy()
    n.spike_width.data[2] = 2.0
    n(Tensor(x))
    assert [e[:3] for e in n.renewal_events] == [("spike", 2, 2)]
    assert np.array_equal(n.threshold.data[:2], before[:2]) and n.threshold.data[2] != before[2]


def _run(cfg, x, seed=3):
    m = tiny_spikformer(config=cfg, seed=seed)
    m.train()
    y = m(refsnn.tensor(x))
    y.backward(np.cos(np.arange(y.size)).reshape(y.shape))
    return m, y


def test_T1_sequential_spikformer_equals_squeeze_bit_for_bit():
    x = np.random.default_rng(2).standard_normal((4, 1, 8, 8))
    sq, ya = _run(SpikingConfig(time_steps=1.0, learn_time=False), x)
    seq, yb = _run(SpikingConfig(temporal_mode="sequential", time_steps=1.0), x)
    np.testing.assert_array_equal(ya.data, yb.data)
    pa = {k: p for k, p in sq.named_parameters() if p.kind != "time"}
    pb = dict(seq.named_parameters())
    assert set(pa) == set(pb) and not any(p.kind == "time" for p in pb.values())
    for k in pb:
        ga, gb = pa[k].grad, pb[k].grad
        assert (ga is None) == (gb is None), k
        if ga is not None:
            np.testing.assert_array_equal(ga, gb, err_msg=k)


def test_sequential_spikformer_frames_images_and_attention_per_step():
    m, y = _run(SEQ, np.random.default_rng(5).standard_normal((2, 1, 8, 8)))
    assert y.shape == (2, 10) and m.sequential and m.time_steps == 3
    assert m.blocks[0].attn.time is None and all(p.kind != "time" for p in m.parameters())
    assert m.blocks[0].attn.qkv.in_shape == (4, 32) and m.blocks[0].attn.q_neuron.in_shape == (4, 32)
    m.eval()
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 1, 8, 8))
    a = m(refsnn.tensor(x)).data
    # per sample: sample 1 alone gives the same logits (attention mixes no samples and no steps across N)
    np.testing.assert_allclose(m(refsnn.tensor(x[1:])).data[0], a[1], rtol=1e-10, atol=1e-12)
    # static images = the same frame at every step
    img = rng.standard_normal((2, 1, 8, 8))
    np.testing.assert_array_equal(m(refsnn.tensor(img)).data, m(refsnn.tensor(np.repeat(img[:, None], 3, 1))).data)
    layers = [l for _, l in spiking_layers(m)]
    _, avg = regulate.regulating_loss(layers, regulate.Targets(2, 2, 1))
    assert avg["T"] is None
    for bad in ((2, 2, 1, 8, 8), (2, 3, 8, 8), (2, 1, 9, 9)):
        with pytest.raises(ValueError, match=r"sequential, T = 3|SPS: expected input"):
            m(refsnn.tensor(np.zeros(bad)))


def test_sequential_spikformer_train_steps_lower_the_loss():
    from refsnn.optim import SGD
    rng = np.random.default_rng(7)
    x, labels = rng.standard_normal((8, 1, 8, 8)), rng.integers(0, 10, 8)
    m = tiny_spikformer(config=SpikingConfig(temporal_mode="sequential", time_steps=2.0, renewal="none"), seed=1)
    m.train()
    opt = SGD(list(m.parameters()), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(6):
        opt.zero_grad()
        loss = refsnn.functional.cross_entropy(m(refsnn.tensor(x)), labels)
        loss.backward()
        opt.step()
        losses.append(float(loss.data))
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


def test_spikformer_dvs_is_sequential_by_default_and_squeeze_on_request():
    from refsnn.models import DVS_CONFIG, IMAGENET_CONFIG, spikformer_dvs
    m = spikformer_dvs(img_size=48, dtype=np.float32)
    assert m.sequential and m.time_steps == int(DVS_CONFIG.time_steps) == 16
    assert all(p.kind != "time" for p in m.parameters())
    # the config's time_steps is the fixed T; temporal_mode wins over the config's own mode
    m = spikformer_dvs(img_size=48, config=SpikingConfig(time_steps=4.0, time_bound=8), dtype=np.float32)
    assert m.sequential and m.time_steps == 4
    # squeeze mode: the ImageNet settings (learned T, one shared T per block), frames as one 2-channel image
    sq = spikformer_dvs(img_size=48, temporal_mode="squeeze", dtype=np.float32)
    assert not sq.sequential and sq.time_steps == 0
    assert sum(1 for n, _ in sq.named_parameters() if n.endswith("attn.time")) == 2
    assert dict(spiking_layers(sq))["head"].config == IMAGENET_CONFIG
    assert sq(refsnn.tensor(np.zeros((2, 2, 48, 48), np.float32))).shape == (2, 10)
    with pytest.raises(ValueError, match="temporal_mode must be 'sequential' or 'squeeze', got 'seq'"):
        spikformer_dvs(temporal_mode="seq")


def test_summary_sequential_spikformer(capsys):
    from refsnn.cli import main
    assert main(["summary", "--model", "spikformer_dvs", "--temporal-mode", "sequential", "--time-steps", "2",
                 "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["temporal_mode"] == "sequential" and d["model"] == "spikformer_dvs"
    assert main(["summary", "--model", "tiny_spikformer", "--temporal-mode", "sequential", "--time-steps", "2"]) == 0
    assert "Sequential mode" in capsys.readouterr().out
    # without --temporal-mode: the model's own mode (spikformer_dvs: sequential, T = 16)
    for argv, mode in (([], "sequential"), (["--temporal-mode", "squeeze"], "squeeze")):
        assert main(["summary", "--model", "spikformer_dvs", "--json"] + argv) == 0
        d = json.loads(capsys.readouterr().out)
        assert d["temporal_mode"] == mode


def test_spikformer_cifar10dvs_config_builds_a_sequential_model(tmp_path):
    from refsnn.config import ConfigError, bundled_config, load_config
    from refsnn.train import Trainer, build_model
    cfg = load_config(bundled_config("spikformer_cifar10dvs"))
    spk = cfg.spiking_config()
    assert (cfg.model.name, spk.temporal_mode, spk.time_steps, cfg.data.options["size"]) == \
        ("spikformer_dvs", "sequential", 10.0, 48)
    m = build_model(cfg, 10)
    assert m.sequential and m.time_steps == 10 and m.n_tokens == 9
    assert all(p.kind != "time" for p in m.parameters())
    cfg.data.root = str(tmp_path / "missing")
    with pytest.raises((ConfigError, ValueError), match="missing"):   # refsnn downloads nothing
        Trainer(cfg)


def test_spikformer_dvsgesture_config_builds_a_sequential_model(tmp_path):
    from refsnn.config import ConfigError, bundled_config, load_config
    from refsnn.train import Trainer, build_model
    cfg = load_config(bundled_config("spikformer_dvsgesture"))
    spk = cfg.spiking_config()
    assert (cfg.model.name, spk.temporal_mode, spk.time_steps, cfg.data.options["size"], cfg.data.options["T"]) == \
        ("spikformer_dvs", "sequential", 16.0, 64, 16)
    m = build_model(cfg, 11)
    assert m.sequential and m.time_steps == 16 and m.n_tokens == 16
    assert all(p.kind != "time" for p in m.parameters())
    cfg.data.root = str(tmp_path / "missing")
    with pytest.raises((ConfigError, ValueError), match="missing"):   # refsnn downloads nothing
        Trainer(cfg)
