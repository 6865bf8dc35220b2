"""refsnn.train and refsnn.config: the loop of Algorithm A.1 on a tiny digits subset.

Kept small (128 training samples, tiny_resnet, float32) so the whole file runs in well under a minute.
"""
import json
from types import SimpleNamespace


import numpy as np
import pytest

from refsnn.config import ConfigError, TrainConfig
from refsnn.train import Trainer


def small_config(tmp_path, **top):
    d = {"epochs": 2, "dtype": "float32", "out_dir": str(tmp_path / "run"), "progress": "none", "plots": False,
         "data": {"batch_size": 32, "train_subset": 128, "test_subset": 64},
         "renewal": {"mode": "both", "min_epochs": 1},
         # strong penalties and fast width parameters: widths change (and observers fire) within 2 epochs
         "regulate": {"W": 2, "S": 2, "T": 1, "lam_w": 2.0, "lam_s": 2.0, "lam_T": 2.0},
         "optim": {"lr": {"time": 0.5, "spike_width": 0.5, "weight_width": 0.5}}}
    for k, v in top.items():
        if isinstance(v, dict):
            d.setdefault(k, {}).update(v)
        else:
            d[k] = v
    return TrainConfig.from_dict(d)


def _all_state(tr):
    state = {f"model/{k}": v for k, v in tr.model.state_dict().items()}
    for k, v in tr.optimizer.state_dict()["state"].items():
        state[f"optim/{k}"] = np.asarray(v)
    return state


def _strip_times(history):
    return [{k: v for k, v in r.items() if k != "time_s"} for r in history]


def test_a_few_steps_reduce_the_loss(tmp_path):
    cfg = small_config(tmp_path, epochs=3, regulate={"enabled": False}, renewal={"mode": "spike"},
                       data={"train_subset": 256})
    tr = Trainer(cfg)
    tr.fit()
    losses = [r["train_ce"] for r in tr.history]
    assert losses[-1] < 0.7 * losses[0], losses
    assert tr.history[-1]["train_acc"] > 0.5


def test_widths_move_towards_the_targets(tmp_path):
    cfg = small_config(tmp_path, epochs=1)
    tr = Trainer(cfg)
    init = tr.initial
    assert (init["W"], init["S"], init["T"]) == (4.0, 4.0, 2.0)
    tr.fit()
    last = tr.history[-1]
    assert last["W"] < 4.0 and last["S"] < 4.0 and last["T"] < 2.0, last
    # every width parameter went down (the regulating loss pulls all of them)
    for name, layer in tr.layers:
        assert layer.weight_width.data < 4.0, name


def test_resume_is_bit_identical(tmp_path):
    straight = Trainer(small_config(tmp_path / "a"))
    straight.fit()
    events = sum(r["renewals_spike"] + r["renewals_weight"] for r in straight.history)
    assert events > 0  # the observers' state matters for this test

    first = Trainer(small_config(tmp_path / "b"))
    first.fit(until=1)
    assert first.epoch == 1
    ckpt = tmp_path / "b" / "run" / "checkpoint.npz"
    assert ckpt.is_file()
    resumed = Trainer.from_checkpoint(ckpt)
    assert resumed.epoch == 1
    resumed.fit()

    a, b = _all_state(straight), _all_state(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k
    assert straight.optimizer.steps == resumed.optimizer.steps
    assert straight.schedule.t == resumed.schedule.t
    assert _strip_times(straight.history) == _strip_times(resumed.history)


def test_same_seed_same_bits(tmp_path):
    runs = []
    for name in ("x", "y"):
        tr = Trainer(small_config(tmp_path / name, epochs=1))
        tr.fit()
        runs.append(_all_state(tr))
    for k in runs[0]:
        assert np.array_equal(runs[0][k], runs[1][k]), k


def test_checkpoint_and_history_files(tmp_path):
    tr = Trainer(small_config(tmp_path, epochs=1, plots=True))
    tr.fit()
    out = tmp_path / "run"
    for name in ("history.json", "history.csv", "checkpoint.npz", "checkpoint.json", "wst_history.png",
                 "layer_allocation.png", "curves.png"):
        assert (out / name).is_file(), name
    with np.load(out / "checkpoint.npz") as z:
        keys = set(z.files)
    assert "model/stem_bn.running_mean" in keys and "model/layer1.0.conv1.obs_s_bold" in keys
    assert "model/fc.renew_spike" in keys and any(k.endswith(".momentum") and k.startswith("optim/") for k in keys)
    meta = json.loads((out / "checkpoint.json").read_text())
    assert meta["epoch"] == 1 and meta["refsnn_version"] and meta["config"]["dtype"] == "float32"
    assert meta["rng"]["seed"] == 0 and meta["rng"]["next_epoch"] == 1
    hist = json.loads((out / "history.json").read_text())
    rec = hist["epochs"][0]
    for key in ("train_loss", "test_acc", "W", "S", "T", "bit_budget", "s_ace", "s_ace_star", "size_bytes",
                "renewal_events", "switched_off", "layers"):
        assert key in rec, key
    header = (out / "history.csv").read_text().splitlines()[0].split(",")
    assert "test_acc" in header and "W" in header


def _fake_cost(W, S):
    return SimpleNamespace(W=W, S=S)


def test_switch_off_rule_per_kind_and_not_before_min_epochs(tmp_path):
    tr = Trainer(small_config(tmp_path, renewal={"mode": "both", "min_epochs": 3}))
    # initial 4/4, targets 2/2: the rule fires once |avg - 2| < 0.24 * 2 = 0.48
    assert tr.renewal_on("renew_weight") and tr.renewal_on("renew_spike")
    tr.epoch = 2  # fewer than min_epochs: nothing, even exactly at the targets
    assert tr.apply_switch_off(_fake_cost(2.0, 2.0)) == []
    assert tr.renewal_on("renew_weight") and tr.renewal_on("renew_spike")
    tr.epoch = 3  # spike average close enough, weight average not
    assert tr.apply_switch_off(_fake_cost(3.0, 2.4)) == ["spike"]
    assert all(not bool(l.renew_spike) for _, l in tr.layers)
    assert all(bool(l.renew_weight) for _, l in tr.layers)
    tr.epoch = 4  # off for good: S drifting away does not switch spike renewal back on
    assert tr.apply_switch_off(_fake_cost(2.47, 3.5)) == ["weight"]
    assert not tr.renewal_on("renew_weight") and not tr.renewal_on("renew_spike")
    assert tr.apply_switch_off(_fake_cost(2.0, 2.0)) == []
    # switch_off = false: never
    tr2 = Trainer(small_config(tmp_path / "2", renewal={"mode": "spike", "min_epochs": 0, "switch_off": False}))
    tr2.epoch = 5
    assert tr2.apply_switch_off(_fake_cost(2.0, 2.0)) == []
    # Act.-only: the weight kind is off from the start and never reported
    tr3 = Trainer(small_config(tmp_path / "3", renewal={"mode": "spike", "min_epochs": 0}))
    tr3.epoch = 1
    assert not tr3.renewal_on("renew_weight")
    assert tr3.apply_switch_off(_fake_cost(2.0, 2.0)) == ["spike"]


# -- configuration --------------------------------------------------------------------------------
def _load(tmp_path, text):
    p = tmp_path / "c.toml"
    p.write_text(text)
    return TrainConfig.from_toml(p)


@pytest.mark.parametrize("text, pattern", [
    ("epoch = 3\n", r"unknown key 'epoch' in the top level"),
    ("[optim]\nmomentun = 0.9\n", r"unknown key 'momentun' in section \[optim\]"),
    ("[optim.lr]\nweights = 0.1\n", r"unknown key 'weights' in section \[optim.lr\]"),
    ("[method]\nweight_bit = 4\n", r"unknown key 'weight_bit' in section \[method\]"),
    ('[method.layers."stem"]\ntau_ = 2\n', r"unknown key 'tau_' in section \[method.layers.\"stem\"\]"),
    ("[method]\nrenewal = 'both'\n", r"renewal.*\[method\].*\[renewal\] mode"),
    ("[data]\nbatchsize = 3\n", r"unknown key 'batchsize' in section \[data\]"),
    ("[dataa]\nname = 'digits'\n", r"unknown key 'dataa' in the top level"),
    ("epochs = 'ten'\n", r"epochs.*'ten'.*integer"),
    ("[optim]\nmomentum = 1.5\n", r"momentum in \[optim\] = 1.5.*\[0, 1\)"),
    ("[regulate]\nW = 0.5\n", r"W in \[regulate\] = 0.5"),
    ("[data]\nname = 'mnist'\n", r"name in \[data\] = 'mnist'.*digits"),
    ("[method]\nweight_bits = 'four'\n", r"weight_bits in \[method\].*number"),
    ("[method]\ndomain = 'negative'\n", r"\[method\].*domain"),
    ("dtype = 'float16'\n", r"dtype = 'float16'.*float32"),
    ("[renewal]\nmode = 'all'\n", r"mode in \[renewal\] = 'all'"),
    ("[data]\nname = 'cifar10'\n", r"root in \[data\].*local copy"),
    ("epochs = [\n", r"not valid TOML"),
])
def test_config_errors_name_the_key_and_section(tmp_path, text, pattern):
    with pytest.raises(ConfigError, match=pattern):
        _load(tmp_path, text)


def test_config_round_trip_and_layer_overrides(tmp_path):
    cfg = _load(tmp_path, 'epochs = 3\n[method]\ntau = 2.0\n[method.layers."fc"]\nlearn_time = false\n'
                          '[optim.lr]\ntime = 0.05\n')
    assert cfg.method.spiking == {"tau": 2.0} and cfg.method.layers == {"fc": {"learn_time": False}}
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again.to_dict() == cfg.to_dict()
    assert again.spiking_config().tau == 2.0 and again.spiking_config().renewal == "spike"


def test_bad_layer_name_is_a_config_error(tmp_path):
    cfg = small_config(tmp_path)
    cfg.method.layers = {"nope": {"learn_time": False}}
    with pytest.raises(ConfigError, match="nope"):
        Trainer(cfg)


def test_bundled_configs_validate():
    from refsnn.config import bundled_config, load_config
    from refsnn.config import bundled_names
    names = bundled_names()
    assert {"demo", "demo_events", "release_cifar10", "spikformer_cifar10dvs", "resnet18_dvsgesture"} <= set(names)
    for name in names:   # every bundled config, so that a new one cannot ship unvalidated
        cfg = load_config(bundled_config(name))
        assert cfg.epochs >= 1
    for name in ("sew_resnet34_imagenet", "spikformer_imagenet"):
        with pytest.raises(ConfigError, match="no ImageNet reader"):
            Trainer(load_config(bundled_config(name)))
    cfg = load_config(bundled_config("spikformer_cifar10"))
    assert (cfg.model.name, cfg.regulate.W, cfg.regulate.S, cfg.regulate.T) == ("spikformer_4_384", 2.0, 2.0, 1.0)


def test_release_preset():
    from refsnn.config import bundled_config, load_config
    cfg = load_config(bundled_config("release_cifar10"))
    spk = cfg.spiking_config()
    assert (spk.convention.name, spk.renewal, spk.renewal_K, spk.renewal_p) == ("official", "both", 50, 2.4)
    assert (spk.weight_bits, spk.spike_bits, spk.time_steps, spk.weight_bound, spk.time_bound) == (4, 4, 2, 6, 3)
    assert (cfg.renewal.rule, cfg.renewal.min_epochs, cfg.regulate.count_time_only) == ("release", 15, False)
    assert (cfg.regulate.W, cfg.regulate.S, cfg.regulate.T) == (3, 4, 1)
    assert cfg.optim.schedule_unit == "epoch" and cfg.optim.lr["time"] == 1e-2
    stem = cfg.method.layers["stem"]
    assert (stem["weight_bits"], stem["spike_bits"], stem["learn_weight_bits"], stem["learn_spike_bits"],
            stem["learn_time"]) == (8, 8, False, False, True)


def test_release_switch_off_rule_and_time_only_layers(tmp_path):
    # spike init 4 == target 4: off after the first epoch whatever min_epochs says; weight: signed rule
    cfg = small_config(tmp_path, renewal={"mode": "both", "min_epochs": 3, "rule": "release"},
                       regulate={"W": 2, "S": 4, "T": 1})
    tr = Trainer(cfg)
    tr.epoch = 1
    assert tr.apply_switch_off(None) == ["spike"]

    def set_w(value):
        for _, l in tr.layers:
            l.weight_width.data[...] = value
    set_w(1.0)     # far below the target: |1 - 2| > 0.48, but 1 - 2 < 0.48 (signed), and min_epochs not reached
    assert tr.apply_switch_off(None) == []
    tr.epoch = 3
    assert tr.apply_switch_off(None) == ["weight"]
    assert not tr.renewal_on("renew_weight") and not tr.renewal_on("renew_spike")
    # paper rule at the same point: the absolute distance 1 is not below 0.48
    tr2 = Trainer(small_config(tmp_path / "2", renewal={"mode": "both", "min_epochs": 3}))
    tr2.epoch = 3
    assert tr2.apply_switch_off(_fake_cost(1.0, 4.0)) == []
    # a layer whose only learnable width is T: counted by the paper, left out by the release
    from refsnn.method.regulate import counted
    layer = tr.layers[0][1]
    layer.weight_width.requires_grad = layer.spike_width.requires_grad = False
    layer.config = layer.config.replace(learn_weight_bits=False, learn_spike_bits=False, learn_time=True)
    assert counted(layer) and not counted(layer, count_time_only=False)

