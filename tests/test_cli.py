"""The refsnn command: demo --quick, train --config / --resume, eval, summary --json, bench train, errors."""
import json


import numpy as np

from refsnn.checkpoint import META_KEY
from refsnn.cli import main

SMALL = """
epochs = 2
dtype = "float32"
out_dir = "{out}"
progress = "none"
plots = false

[regulate]
lam_w = 1.0
lam_s = 1.0
lam_T = 1.0

[renewal]
min_epochs = 1

[data]
batch_size = 32
train_subset = 96
test_subset = 64
"""


def _write(tmp_path, text, name="c.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_demo_quick(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--progress", "none"]) == 0
    text = capsys.readouterr().out
    assert "test accuracy" in text and "W / S / T" in text and "per-layer allocation" in text
    assert "demo criteria" in text and "wall time" in text
    for name in ("history.json", "history.csv", "checkpoint.npz", "checkpoint.json", "wst_history.png",
                 "layer_allocation.png", "curves.png"):
        assert (out / name).is_file(), name
    assert len(json.loads((out / "history.json").read_text())["epochs"]) == 2


def test_train_stop_resume_and_eval(tmp_path, capsys):
    out = tmp_path / "run"
    cfg = _write(tmp_path, SMALL.format(out=out))
    assert main(["train", "--config", str(cfg), "--stop-after", "1"]) == 0
    meta = json.loads((out / "checkpoint.json").read_text())
    assert meta["epoch"] == 1
    capsys.readouterr()
    assert main(["train", "--config", str(cfg), "--resume", str(out / "checkpoint.npz"), "--progress", "line"]) == 0
    assert "resuming after epoch 1 of 2" in capsys.readouterr().err  # the banner: stderr
    assert json.loads((out / "checkpoint.json").read_text())["epoch"] == 2
    # the same run without a stop: identical weights
    out2 = tmp_path / "run2"
    assert main(["train", "--config", str(cfg), "--out", str(out2)]) == 0
    with np.load(out / "checkpoint.npz") as a, np.load(out2 / "checkpoint.npz") as b:
        assert a.files == b.files
        assert all(np.array_equal(a[k], b[k]) for k in a.files if k != META_KEY)  # the metadata names out_dir
    capsys.readouterr()
    assert main(["eval", str(out / "checkpoint.npz"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["epoch"] == 2 and 0 <= d["test_acc"] <= 1 and {"W", "S", "T", "s_ace", "size_bytes"} <= set(d)
    assert main(["eval", str(out / "checkpoint.npz")]) == 0
    assert "test accuracy" in capsys.readouterr().out


def test_resume_refuses_a_changed_configuration(tmp_path, capsys):
    out = tmp_path / "run"
    cfg = _write(tmp_path, SMALL.format(out=out).replace("epochs = 2", "epochs = 1"))
    assert main(["train", "--config", str(cfg)]) == 0
    changed = _write(tmp_path, SMALL.format(out=out).replace("lam_w = 1.0", "lam_w = 0.5"), "d.toml")
    capsys.readouterr()
    assert main(["train", "--config", str(changed), "--resume", str(out / "checkpoint.npz")]) == 2
    assert "regulate.lam_w" in capsys.readouterr().err


def test_config_error_exit_code_and_message(tmp_path, capsys):
    bad = _write(tmp_path, "[optim]\nlearning_rate = 0.1\n")
    assert main(["train", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'learning_rate' in section [optim]" in err
    assert main(["train", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["train"]) == 2


def test_check_validates_the_imagenet_config(capsys):
    from refsnn.config import bundled_config
    assert main(["train", "--config", str(bundled_config("sew_resnet34_imagenet")), "--check"]) == 0
    assert "no ImageNet reader" in capsys.readouterr().err  # stdout holds the JSON only


def test_summary_json(capsys):
    assert main(["summary", "--model", "tiny_resnet", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["model"] == "tiny_resnet" and d["W"] == 4 and d["T"] == 2


def test_bench_train_quick(capsys):
    assert main(["bench", "train", "--quick", "--models", "tiny_resnet", "--dtypes", "float32", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["model"] == "tiny_resnet" and rows[0]["median_s"] > 0 and rows[0]["peak_traced_mb"] > 0


def test_bench_unknown_and_help(capsys):
    assert main(["bench", "nothing"]) == 2
    assert main(["bench", "--help"]) == 0
    assert "train" in capsys.readouterr().out


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out
