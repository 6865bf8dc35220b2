"""Faults of issue 11 (items 1-4, 7-12), each reproduced: checkpoints under kills and damage, run directories,
resuming, configuration checks, divergence, Ctrl-C, closed pipes, numba's cache, bad inputs.

The record of what each fault now does is docs/reliability.md; every row there names a test here.
Runs are tiny (64 digits, 2 batches an epoch) so the whole file stays well under a minute.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from refsnn import cli, faults
from refsnn.checkpoint import META_KEY, CheckpointWarning, load_checkpoint
from refsnn.config import ConfigError, TrainConfig
from refsnn.errors import CheckpointError, RunDirError, RunInterrupted, TrainingDiverged
from refsnn.files import temp_path
from refsnn.rundir import LOCK_NAME, RunLock
from refsnn.train import Trainer

ROOT = Path(__file__).resolve().parents[1]
TOML = """
epochs = {epochs}
dtype = "float32"
out_dir = "{out}"
progress = "none"
plots = false
{extra}
[data]
batch_size = 32
train_subset = 64
test_subset = 32
"""


def _cfg(tmp_path, name="run", epochs=2, **top):
    d = {"epochs": epochs, "dtype": "float32", "out_dir": str(tmp_path / name), "progress": "none", "plots": False,
         "data": {"batch_size": 32, "train_subset": 64, "test_subset": 32}, **top}
    return TrainConfig.from_dict(d)


def _toml(tmp_path, epochs=2, extra="", name="c.toml", out="run"):
    p = tmp_path / name
    p.write_text(TOML.format(epochs=epochs, out=tmp_path / out, extra=extra))
    return p


def _main(capsys, *argv):
    """``refsnn.cli.main(argv)``: (status, stdout, stderr)."""
    capsys.readouterr()
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def _error(capsys, *argv, match):
    status, _, err = _main(capsys, *argv)
    assert status == 2 and "Traceback" not in err and err.startswith("refsnn: error:"), err
    assert match in err, err
    return err


@pytest.fixture(scope="module")
def run2(tmp_path_factory):
    """A finished 2-epoch run with a checkpoint per epoch: (directory, its Trainer)."""
    tmp = tmp_path_factory.mktemp("run2")
    tr = Trainer(_cfg(tmp, keep_checkpoints=True))
    tr.fit()
    return tmp / "run", tr


def _copy_checkpoint(src: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    for suffix in (".npz", ".json"):
        dest.with_suffix(suffix).write_bytes(src.with_suffix(suffix).read_bytes())
    return dest


def _rewrite_npz(path: Path, edit) -> None:
    """Rewrite the .npz at ``path`` after ``edit(meta, arrays)`` (a hand edit of the self-contained file)."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop(META_KEY).tobytes())
    edit(meta, arrays)
    np.savez(path, **arrays, **{META_KEY: np.frombuffer(json.dumps(meta).encode(), np.uint8)})
    path.with_suffix(".json").unlink()


# ---------------------------------------------------------------------------------------------
# 1. a kill between the two files of a checkpoint
# ---------------------------------------------------------------------------------------------
def test_item1_kill_between_the_two_writes_leaves_a_consistent_checkpoint(tmp_path, monkeypatch):
    tr = Trainer(_cfg(tmp_path, epochs=3))
    tr.fit(until=1)
    ckpt = tmp_path / "run" / "checkpoint.npz"
    real_replace = os.replace

    def killed_before(suffix):
        def replace(src, dst):
            if str(dst).endswith(suffix):
                raise KeyboardInterrupt  # Ctrl-C (or a kill) just before this move
            real_replace(src, dst)
        return replace

    # killed before the .npz moved: the previous checkpoint, whole
    monkeypatch.setattr("refsnn.checkpoint.os.replace", killed_before(".npz"))
    with pytest.raises(RunInterrupted, match="interrupted in epoch 2 of 3; kept .*epoch 1"):
        tr.fit(until=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointWarning)
        assert load_checkpoint(ckpt).epoch == 1
    # killed after the .npz moved, before the .json did
    monkeypatch.setattr("refsnn.checkpoint.os.replace", killed_before(".json"))
    with pytest.raises(RunInterrupted):
        tr.fit()
    monkeypatch.undo()
    ckpt = tmp_path / "run" / "checkpoint.npz"
    assert json.loads(ckpt.with_suffix(".json").read_text())["epoch"] == 1  # the stale .json
    with pytest.warns(CheckpointWarning, match="another save"):
        ck = load_checkpoint(ckpt)
    assert ck.epoch == 3 and len(ck.meta["history"]) == 3  # the metadata inside the .npz: epoch 3, like its weights
    state = tr.model.state_dict()
    assert all(np.array_equal(ck.model_state[k], state[k]) for k in state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CheckpointWarning)
        resumed = Trainer.from_checkpoint(ckpt)
    assert resumed.epoch == 3
    # the next run in the directory removes the temporary file the interrupted save left
    assert list(ckpt.parent.glob(".*.tmp"))
    with RunLock(ckpt.parent):
        assert not list(ckpt.parent.glob(".*.tmp"))


# ---------------------------------------------------------------------------------------------
# 2. one run per output directory; unique temporary names
# ---------------------------------------------------------------------------------------------
def test_item2_a_directory_in_use_is_refused_naming_it_and_the_pid(tmp_path, capsys):
    cfg = _toml(tmp_path, epochs=1)
    with RunLock(tmp_path / "run"):
        err = _error(capsys, "train", "--config", cfg, match="in use by another run")
        assert str(tmp_path / "run") in err and f"process {os.getpid()}" in err
        with pytest.raises(RunDirError):
            RunLock(tmp_path / "run").acquire()
    assert not (tmp_path / "run" / "history.json").exists()  # nothing was written


def test_item2_the_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK_NAME).write_text(f"{dead.pid}\n")
    with RunLock(tmp_path) as lock:
        assert (tmp_path / LOCK_NAME).read_text().split()[0] == str(os.getpid())
        assert lock.path.exists()
    assert not (tmp_path / LOCK_NAME).exists()


def test_item2_temporary_names_are_unique_per_process_and_call(tmp_path):
    a, b = temp_path(tmp_path / "checkpoint.npz"), temp_path(tmp_path / "checkpoint.npz")
    assert a != b and str(os.getpid()) in a.name and a.parent == tmp_path


# ---------------------------------------------------------------------------------------------
# 3. --resume without --out; a later history is not overwritten without --force
# ---------------------------------------------------------------------------------------------
def test_item3_resume_writes_beside_the_checkpoint_and_keeps_a_later_history(tmp_path, capsys, run2):
    run, _ = run2
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    copy = _copy_checkpoint(run / "checkpoint_epoch001.npz", tmp_path / "backup" / "ck.npz")
    status, out, err = _main(capsys, "train", "--resume", copy, "--progress", "line")
    assert status == 0 and "resuming after epoch 1 of 2" in err and f"output: {copy.parent}/" in err
    assert json.loads((copy.parent / "checkpoint.json").read_text())["epoch"] == 2
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before  # the finished run untouched
    # resuming epoch 1 inside the finished run: its history (epoch 2) would be overwritten
    inside = _copy_checkpoint(run / "checkpoint_epoch001.npz", tmp_path / "inside" / "checkpoint_epoch001.npz")
    (inside.parent / "history.json").write_bytes(before["history.json"])
    _error(capsys, "train", "--resume", inside, match="reached epoch 2")
    assert (inside.parent / "history.json").read_bytes() == before["history.json"]
    assert _main(capsys, "train", "--resume", inside, "--force")[0] == 0
    # a fresh run into a directory holding a history: refused too
    _error(capsys, "train", "--config", _toml(tmp_path, out="inside"), match="--force")


# ---------------------------------------------------------------------------------------------
# 4. missing or inconsistent state
# ---------------------------------------------------------------------------------------------
def _edited(tmp_path, run2, edit, name):
    ck = _copy_checkpoint(run2[0] / "checkpoint_epoch001.npz", tmp_path / name / "checkpoint.npz")
    _rewrite_npz(ck, edit)
    return ck


def test_item4_missing_or_inconsistent_state_is_an_error(tmp_path, run2):
    def drop_optim(meta, arrays):
        arrays.pop(next(k for k in arrays if k.startswith("optim/")))

    def seed(meta, arrays):
        meta["config"]["seed"] = 7

    def epoch(meta, arrays):
        meta["epoch"] = 2

    def steps(meta, arrays):
        meta["optimizer"]["steps"] += 1

    for edit, match in ((drop_optim, r"arrays missing \['optim/"), (seed, "rng.seed = 0 but config.seed = 7"),
                        (epoch, "history holds epochs"), (steps, "optimizer counts 3 steps")):
        ck = _edited(tmp_path, run2, edit, edit.__name__)
        with pytest.raises(CheckpointError, match=match):
            Trainer.from_checkpoint(ck)


def test_item4_an_edited_json_is_refused(tmp_path, run2, capsys):
    for key, value in (("epoch", 2), ("seed", 5)):
        ck = _copy_checkpoint(run2[0] / "checkpoint_epoch001.npz", tmp_path / key / "checkpoint.npz")
        doc = json.loads(ck.with_suffix(".json").read_text())
        (doc["config"] if key == "seed" else doc)[key] = value
        ck.with_suffix(".json").write_text(json.dumps(doc))
        _error(capsys, "train", "--resume", ck, match="was changed after saving")


def test_format1_checkpoints_still_load(tmp_path, run2):
    ck = _copy_checkpoint(run2[0] / "checkpoint_epoch001.npz", tmp_path / "old" / "checkpoint.npz")
    with np.load(ck) as z:
        arrays = {k: z[k] for k in z.files if k != META_KEY}
    np.savez(ck, **arrays)
    meta = json.loads(ck.with_suffix(".json").read_text())
    for key in ("arrays", "npz_sha256"):
        meta.pop(key)
    ck.with_suffix(".json").write_text(json.dumps(dict(meta, format="refsnn-checkpoint/1")))
    assert Trainer.from_checkpoint(ck).epoch == 1


# ---------------------------------------------------------------------------------------------
# 7. damaged files, unusable --out, unreadable --config
# ---------------------------------------------------------------------------------------------
def test_item7_every_damaged_checkpoint_is_a_clear_error(tmp_path, capsys, run2):
    src = run2[0] / "checkpoint.npz"
    raw, meta = src.read_bytes(), src.with_suffix(".json").read_bytes()
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0x10
    doc = json.loads(meta)
    doc.pop("npz_sha256")
    damages = {"truncated_npz": (raw[: len(raw) // 2], meta), "empty_npz": (b"", meta),
               "bit_flipped_npz": (bytes(flipped), meta), "truncated_json": (raw, meta[: len(meta) // 2]),
               "array_json": (raw, b"[1, 2]"), "missing_key_json": (raw, json.dumps(doc).encode()),
               "non_utf8_json": (raw, b"\xff\xfe{")}
    for name, (npz, js) in damages.items():
        ck = tmp_path / name / "checkpoint.npz"
        ck.parent.mkdir()
        ck.write_bytes(npz)
        ck.with_suffix(".json").write_bytes(js)
        _error(capsys, "eval", ck, match=str(ck.parent))
        with pytest.raises(CheckpointError):
            load_checkpoint(ck)


def test_item7_out_that_cannot_be_written_fails_before_training(tmp_path, capsys, monkeypatch):
    (tmp_path / "afile").write_text("x")
    for out in ("afile", "afile/sub"):
        _error(capsys, "train", "--config", _toml(tmp_path, epochs=1), "--out", tmp_path / out,
               match="a file is in the way")
    # a read-only directory: root ignores permissions, so the OS refusing the probe file is simulated
    real_open = os.open

    def read_only(path, flags, *a):
        if str(path).startswith(str(tmp_path / "ro")) and flags & os.O_CREAT:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *a)

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr("refsnn.rundir.os.open", read_only)
    monkeypatch.setattr(Trainer, "train_epoch", lambda self: pytest.fail("trained in a read-only directory"))
    _error(capsys, "train", "--config", _toml(tmp_path, epochs=1), "--out", tmp_path / "ro", match="not writable")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_item7_a_really_read_only_directory(tmp_path, capsys):  # pragma: no cover - not run as root
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        _error(capsys, "train", "--config", _toml(tmp_path, epochs=1), "--out", ro, match="not writable")
    finally:
        ro.chmod(0o700)


def test_item7_a_directory_or_non_utf8_file_as_config(tmp_path, capsys):
    _error(capsys, "train", "--config", tmp_path, "--check", match="is a directory")
    bad = tmp_path / "latin1.toml"
    bad.write_bytes('description = "caf\xe9"\n'.encode("latin-1"))
    _error(capsys, "train", "--config", bad, "--check", match="not UTF-8")


# ---------------------------------------------------------------------------------------------
# 8. configurations that used to fail only at run time; divergence
# ---------------------------------------------------------------------------------------------
def test_item8_config_checks_at_read_time(tmp_path, capsys):
    _error(capsys, "train", "--check", "--config", _toml(tmp_path, extra="[method]\nspike_bound = 25\n"),
           match="above the kernels' limit of 24")
    _error(capsys, "train", "--check", "--config", _toml(tmp_path, extra="[regulate]\nT = 4\n"),
           match="T in [regulate] = 4.0: a target must be in [1, 3]")
    # a per-layer override raising a bound lets a target reach it
    cfg = _cfg(tmp_path, regulate={"W": 8}, method={"layers": {"fc": {"weight_bound": 8}}})
    assert cfg.regulate.W == 8
    # 3-channel images into tiny_resnet's 1-channel stem: refused before the first step
    with pytest.raises(ConfigError, match="takes 1-channel images"):
        Trainer(_cfg(tmp_path, data={"name": "synthetic", "options": {"shape": [3, 8, 8], "n": 32}}))


def test_item8_divergence_names_epoch_step_and_last_checkpoint(tmp_path, capsys):
    lrs = {k: 1e8 for k in ("weight", "bias", "bn", "threshold", "weight_step", "spike_width", "weight_width",
                            "time")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the overflow itself
        with pytest.raises(TrainingDiverged, match=r"training diverged at epoch 2, .*last good checkpoint: "
                           r".*checkpoint.npz \(epoch 1\)"):
            Trainer(_cfg(tmp_path, optim={"lr": lrs})).fit()
    # a parameter that turns NaN in the optimizer step: named with its epoch and step
    tr = Trainer(_cfg(tmp_path, name="nan"))
    step = tr.optimizer.step

    def poisoned():
        step()
        tr.layers[0][1].weight.data[0] = np.nan

    tr.optimizer.step = poisoned
    with pytest.raises(TrainingDiverged, match="epoch 1, step 1: parameter stem.weight .*no checkpoint has been"):
        tr.fit()


# ---------------------------------------------------------------------------------------------
# 9. Ctrl-C
# ---------------------------------------------------------------------------------------------
def _interrupt_in_numba():
    """What CPython raises when Ctrl-C arrives inside a numba kernel."""
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt as e:
        raise SystemError("CPUDispatcher(<function _forward_kernel>) returned a result with an exception set") from e


def test_item9_ctrl_c_exits_130_also_from_inside_numba(capsys, monkeypatch):
    for raiser in (_interrupt_in_numba, lambda: (_ for _ in ()).throw(KeyboardInterrupt)):
        monkeypatch.setattr(cli, "cmd_eval", lambda args, r=raiser: r())
        status, _, err = _main(capsys, "eval", "x.npz")
        assert status == 130 and "interrupted" in err and "Traceback" not in err
    # a SystemError of another cause is a bug: its traceback stays
    monkeypatch.setattr(cli, "cmd_eval", lambda args: (_ for _ in ()).throw(SystemError("other")))
    with pytest.raises(SystemError):
        cli.main(["eval", "x.npz"])


def test_item9_demo_interrupted_keeps_the_last_finished_epoch(tmp_path, capsys, monkeypatch):
    train_epoch = Trainer.train_epoch

    def interrupted_in_epoch_2(self):
        if self.epoch == 1:
            _interrupt_in_numba()
        return train_epoch(self)

    monkeypatch.setattr(Trainer, "train_epoch", interrupted_in_epoch_2)
    monkeypatch.setattr(cli, "demo_config", lambda out, *a, **k: (_cfg(tmp_path, epochs=3), "demo.toml"))
    status, _, err = _main(capsys, "demo", "--out", tmp_path / "run")
    ckpt = tmp_path / "run" / "checkpoint.npz"
    assert status == 130, err
    assert f"interrupted in epoch 2 of 3; kept {ckpt} (epoch 1)" in err and "--resume" in err
    assert load_checkpoint(ckpt).epoch == 1
    # the demo run again into that directory would overwrite its history
    _error(capsys, "demo", "--out", tmp_path / "run", match="reached epoch 1")


# ---------------------------------------------------------------------------------------------
# 10. closed pipes; numba's cache
# ---------------------------------------------------------------------------------------------
def _closed_pipe(monkeypatch):
    r, w = os.pipe()
    os.close(r)
    monkeypatch.setattr(sys, "stdout", os.fdopen(w, "w"))


@pytest.mark.parametrize("argv", [["summary", "--model", "tiny_resnet"],
                                  ["train", "--check", "--config", str(ROOT / "refsnn/configs/demo.toml")]])
def test_item10_a_closed_pipe_ends_quietly(argv, capsys, monkeypatch):
    _closed_pipe(monkeypatch)
    assert cli.main(argv) == faults.BROKEN_PIPE_STATUS
    # nothing about the pipe; --check's verdict is a note on stderr, not on the closed stdout
    assert capsys.readouterr().err in ("", f"{argv[-1]}: valid\n")


def test_item10_summary_into_a_closed_pipe_subprocess():
    proc = subprocess.Popen([sys.executable, "-m", "refsnn", "summary", "--model", "resnet20"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # `| head` that has already exited
    err = proc.stderr.read().decode()
    assert proc.wait() == faults.BROKEN_PIPE_STATUS and err == "", err


def test_item10_a_damaged_numba_cache_names_the_directory_to_clear(tmp_path, capsys, monkeypatch):
    src = tmp_path / "cached_kernel.py"
    src.write_text("from numba import njit\n\n@njit(cache=True)\ndef inc(x):\n    return x + 1\n")

    def fresh_module():
        spec = importlib.util.spec_from_file_location("cached_kernel", src)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    assert fresh_module().inc(1) == 2  # compiled and cached
    index = next((tmp_path / "__pycache__").glob("*.nbi"))
    index.write_bytes(index.read_bytes()[:10])  # truncated
    monkeypatch.setattr(cli, "cmd_eval", lambda args: fresh_module().inc(1))
    err = _error(capsys, "eval", "x.npz", match="numba's cache of compiled kernels is damaged")
    assert f"rm {index.parent}/*.nbi" in err


def test_debug_shows_the_traceback(tmp_path, capsys):
    status, _, err = _main(capsys, "--debug", "eval", tmp_path / "missing.npz")
    assert status == 2 and "Traceback" in err and "refsnn: error:" in err


# ---------------------------------------------------------------------------------------------
# 11-12. inputs and values out of range
# ---------------------------------------------------------------------------------------------
def test_item11_bad_layer_input_is_named_and_an_empty_loss_raises():
    from refsnn import functional as F
    from refsnn.autograd.tensor import Tensor
    from refsnn.nn.spiking import SpikingLinear
    layer = SpikingLinear(3, 2)
    for x, match in ((np.full((2, 3), np.nan), "input x has 6 non-finite"), (np.zeros((0, 3)), "input x is empty"),
                     (np.array([[1.0, np.inf, 0.0]]), r"input x has 1 non-finite value\(s\) of 3 \(e.g. .*inf")):
        with pytest.raises(ValueError, match=match):
            layer(Tensor(x))
    with pytest.raises(ValueError, match="the batch is empty"):
        F.cross_entropy(Tensor(np.zeros((0, 4))), np.zeros(0, np.int64))


def test_item12_out_of_range_values_are_refused_at_construction(tmp_path, capsys, run2):
    from refsnn.nn.spiking import SpikingConfig
    for kw, match in ((dict(weight_bits=-3), r"weight_bits = -3 is outside the allowed range \[1, weight_bound = 6"),
                      (dict(weight_bits=0), "weight_bits = 0"), (dict(weight_bits=100), "weight_bits = 100"),
                      (dict(time_steps=5), r"time_steps = 5 .*\[1, time_bound = 3\]"),
                      (dict(spike_bits=9), r"spike_bits = 9 .*\[1, spike_bound = 6\]"),
                      (dict(weight_bound=30), "weight_bound = 30 is above the kernels' limit of 24")):
        with pytest.raises(ValueError, match=match):
            SpikingConfig(**kw)
    assert SpikingConfig(weight_bits=6, spike_bits=1, time_steps=3).time_steps == 3  # the ends are allowed
    _error(capsys, "train", "--check", "--config", _toml(tmp_path, extra="[regulate]\nW = 7\n"),
           match="W in [regulate] = 7.0")
    # resuming after epoch 1 with --stop-after 1 would train nothing
    ck = _copy_checkpoint(run2[0] / "checkpoint_epoch001.npz", tmp_path / "again" / "checkpoint.npz")
    _error(capsys, "train", "--resume", ck, "--stop-after", "1", match="above the 1 epoch(s) already done")
    for n in ("0", "-1"):
        with pytest.raises(SystemExit) as e:
            cli.main(["train", "--config", str(_toml(tmp_path)), "--stop-after", n])
        assert e.value.code == 2 and "must be an integer >= 1" in capsys.readouterr().err
