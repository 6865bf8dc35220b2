"""What the refsnn command writes where: results on stdout, progress and banners on stderr; the heartbeat line off a
terminal; ``train --check`` as pure JSON; help texts; ``--epochs`` and ``--config NAME``; one unit rule for costs."""
import io
import json
import re

import numpy as np
import pytest

import refsnn.report as report
from refsnn.cli import build_parser, main
from refsnn.models import get_model
from refsnn.models.costing import format_cost_table, model_costs, summary_main
from refsnn.report import Progress, final_table, format_duration, format_epoch, upgrade_costs
from test_cli import SMALL  # a two-epoch run of 96 samples (tests/ is on the path: no __init__.py)


def _exit_code(argv):
    """main(argv)'s status, also when argparse leaves through SystemExit."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


# ---------------------------------------------------------------------------------------------
# Progress
# ---------------------------------------------------------------------------------------------
def test_progress_defaults_to_stderr(capsys):
    p = Progress("line")
    p.epoch("epoch 1/1  done")
    p.message("a note")
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err == "epoch 1/1  done\na note\n"


def test_line_mode_heartbeat_every_interval_with_time_left(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(report.time, "perf_counter", clock)
    buf = io.StringIO()
    p = Progress("line", buf, interval=30.0)
    t0 = clock.now
    n = 100
    for k in range(1, n + 1):  # 1 s per batch: a line at 30, 60 and 90 s; none for the last batch
        clock.now = t0 + k
        p.batch(1, 3, k, n, 0.5, (4.0, 4.0, 2.0), t0)
    lines = buf.getvalue().splitlines()
    assert [re.search(r"batch (\d+)/100", ln).group(1) for ln in lines] == ["30", "60", "90"]
    assert "\r" not in buf.getvalue()
    # at batch 30 of 100 after 30 s: 70 s left in the epoch, plus 2 more epochs of 100 s
    assert "left: epoch 1m10s, run ~4m30s" in lines[0] and "W/S/T 4.00/4.00/2.00" in lines[0]


def test_line_mode_every_n_batches_and_new_epoch_restarts_the_interval(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(report.time, "perf_counter", clock)
    buf = io.StringIO()
    p = Progress("line", buf, interval=1e9, every=4)
    t0 = clock.now
    for k in range(1, 11):
        clock.now = t0 + 0.01 * k
        p.batch(2, 2, k, 10, 0.1, (None, None, None), t0)
    assert [re.search(r"batch (\d+)/10", ln).group(1) for ln in buf.getvalue().splitlines()] == ["4", "8"]
    assert "W/S/T -/-/-" in buf.getvalue()
    q = Progress("line", io.StringIO(), interval=30.0)
    q.batch(1, 2, 1, 5, 0.1, (None,) * 3, t0 - 100.0)  # the interval counts from the epoch's start
    clock.now = t0 + 10.0
    q.batch(2, 2, 1, 5, 0.1, (None,) * 3, t0)
    assert q.stream.getvalue().count("\n") == 1  # epoch 1 was 110 s old; epoch 2 only 10 s


def test_bar_mode_and_none():
    buf = io.StringIO()
    Progress("bar", buf).batch(1, 1, 5, 5, 0.2, (2.0, 2.0, 1.0), 0.0)
    assert buf.getvalue().startswith("\repoch 1/1 [")
    silent = io.StringIO()
    p = Progress("none", silent)
    p.batch(1, 1, 5, 5, 0.2, (2.0, 2.0, 1.0), 0.0)
    p.epoch("x")
    assert silent.getvalue() == ""


def test_format_duration():
    assert [format_duration(s) for s in (0, 42.4, 187, 7500, -3)] == ["0s", "42s", "3m07s", "2h05m", "0s"]


# ---------------------------------------------------------------------------------------------
# train, --check, --config NAME, --epochs
# ---------------------------------------------------------------------------------------------
def test_train_results_on_stdout_progress_and_banner_on_stderr(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(SMALL.format(out=tmp_path / "run"))
    assert main(["train", "--config", str(cfg), "--progress", "line"]) == 0
    cap = capsys.readouterr()
    assert "training tiny_resnet on digits (96 train / 64 test samples, input 1x8x8, 10 classes)" in cap.err
    assert "2 epochs of 3 batches" in cap.err and f"output: {tmp_path / 'run'}/" in cap.err
    assert "epoch 1/2" in cap.err and "epoch 2/2" in cap.err
    assert "epoch 1/2" not in cap.out and "training tiny_resnet" not in cap.out and "\r" not in cap.out
    assert "test accuracy" in cap.out and "per-layer allocation" in cap.out


def test_check_prints_only_json_on_stdout(capsys):
    assert main(["train", "--config", "sew_resnet34_imagenet", "--check"]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["model"]["name"] == "sew_resnet34"
    assert "valid" in cap.err and "no ImageNet reader" in cap.err


@pytest.mark.parametrize("name", ["demo", "demo.toml", "resnet20_cifar10"])
def test_config_finds_a_bundled_file_by_name(name, capsys, tmp_path, monkeypatch):
    from refsnn.config import bundled_config, load_config
    monkeypatch.chdir(tmp_path)  # no file of that name here
    assert main(["train", "--config", name, "--check"]) == 0
    want = load_config(bundled_config(name.removesuffix(".toml"))).to_dict()
    assert json.loads(capsys.readouterr().out) == want


def test_config_unknown_name_lists_the_bundled_ones(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--config", "nosuch", "--check"]) == 2
    err = capsys.readouterr().err
    assert "'nosuch' does not exist" in err and "demo, demo_events" in err and "resnet20_cifar10," in err and "sew_resnet34_imagenet" in err
    assert main(["train", "--config", str(tmp_path / "sub" / "demo"), "--check"]) == 2  # a path, not a name


@pytest.mark.parametrize("command", [["demo"], ["train", "--config", "demo"]])
def test_epochs_below_one_names_the_flag(command, capsys):
    assert _exit_code(command + ["--epochs", "0"]) == 2
    err = capsys.readouterr().err
    assert "--epochs: must be an integer >= 1, got 0" in err and "top-level key" not in err
    assert _exit_code(command + ["--epochs", "two"]) == 2
    assert "--epochs: must be an integer >= 1, got 'two'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# help texts
# ---------------------------------------------------------------------------------------------
def test_every_subcommand_has_a_description():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name in ("demo", "train", "eval", "plots", "verify", "figures"):
        assert sub.choices[name].description, name


@pytest.mark.parametrize("bench", ["conv", "neuron", "train"])
def test_bench_help_names_the_refsnn_command(bench, capsys):
    assert _exit_code(["bench", bench, "--help"]) == 0
    assert capsys.readouterr().out.startswith(f"usage: refsnn bench {bench}")


def test_summary_num_classes_has_help(capsys):
    with pytest.raises(SystemExit):
        summary_main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--num-classes N classes of the last layer" in out


# ---------------------------------------------------------------------------------------------
# one unit rule for costs
# ---------------------------------------------------------------------------------------------
def _number(pattern, text):
    m = re.search(pattern, text)
    assert m, (pattern, text)
    return m.group(1)


def test_costs_use_one_unit_in_the_summary_the_table_the_epoch_line_and_json():
    model = get_model("tiny_resnet", dtype=np.float32)
    cost = model_costs(model, (1, 8, 8))
    d = cost.as_dict()
    initial = {k: v for k, v in d.items() if k != "layers"}
    from refsnn.method import Targets
    summary = final_table(cost, 0.5, 10, Targets(2, 2, 1), initial, True, False)
    table = format_cost_table(cost)
    rec = {"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "test_acc": 0.5, "renewals_spike": 0,
           "renewals_weight": 0, "switched_off": "", "time_s": 1.0, **initial}
    line = format_epoch(rec, 1)
    s_ace = _number(r"S-ACE \(M\) = ([\d,.]+)", table)
    assert _number(r"S-ACE \(M\)\s+([\d,.]+)", summary) == s_ace
    assert _number(r"initial S-ACE \(M\) ([\d,.]+)", summary) == s_ace
    assert _number(r"S-ACE \(M\) ([\d,.]+)", line) == s_ace
    assert _number(r"S-ACE\* \(M\) ([\d,.]+)", summary) == _number(r"S-ACE\* \(M\) = ([\d,.]+)", table)
    assert _number(r"size \(MB\)\s+([\d.]+)", summary) == _number(r"size \(MB\) = ([\d.]+)", table)
    # the per-layer columns carry the same unit in their header and add up to the total
    header = table.splitlines()[0]
    assert "MACs (M)" in header and "S-ACE (M)" in header and "S-ACE* (M)" in header and "size (MB)" in header
    assert "(G)" not in table + summary + line and " kB" not in summary
    # JSON: raw units, the text is the same number scaled
    assert isinstance(d["s_ace"], int) and f"{d['s_ace'] / 1e6:,.4f}" == s_ace
    assert d["size_bytes"] == sum(lc.n_w * lc.B_w / 8 for lc in cost.layers)
    assert not any(k.endswith("_g") or k == "size_mb" for k in d)


def test_upgrade_costs_reads_records_of_the_former_units():
    old = {"W": 4.0, "macs_g": 0.000533824, "s_ace_g": 0.017068032, "s_ace_star_g": 0.01, "size_mb": 0.009664}
    new = upgrade_costs(old)
    assert new == {"W": 4.0, "macs": 533824, "s_ace": 17068032, "s_ace_star": 10_000_000, "size_bytes": 9664.0}
    assert upgrade_costs(new) == new
