"""refsnn.checkpoint: the resume-compatibility rule and the configuration diff it rests on."""
from __future__ import annotations

import json

import numpy as np
import pytest

from refsnn.checkpoint import (CHECKPOINT_FORMAT, META_KEY, RESUME_CARRIED_KEYS, RESUME_FREE_KEYS, config_diff,
                               read_meta, resume_changes)
from refsnn.config import ConfigError, bundled_config, load_config
from refsnn.errors import CheckpointError


def _fake_checkpoint(tmp_path, cfg, fmt=CHECKPOINT_FORMAT):
    """A checkpoint before the first epoch: its metadata (inside the .npz) and one array, no .json."""
    path = tmp_path / "ck.npz"
    meta = {"format": fmt, "epoch": 0, "config": cfg.to_dict(), "rng": {"seed": cfg.seed, "next_epoch": 0},
            "optimizer": {}, "schedule": {}, "initial": {}, "history": [], "arrays": ["dummy"]}
    blob = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(path, dummy=np.zeros(1), **{META_KEY: blob})
    return path


def test_config_diff_names_nested_keys():
    a = {"epochs": 2, "optim": {"lr": 0.1, "momentum": 0.9}, "seed": 0}
    b = {"epochs": 2, "optim": {"lr": 0.2, "momentum": 0.9}, "extra": 1}
    assert config_diff(a, b) == ["extra", "optim.lr", "seed"]
    assert config_diff(a, a) == []


def test_resume_takes_the_free_keys_and_refuses_any_other(tmp_path):
    cfg = load_config(bundled_config("demo"))
    path = _fake_checkpoint(tmp_path, cfg)
    free = cfg.replace(epochs=cfg.epochs + 3, out_dir=str(tmp_path / "elsewhere"), description="changed")
    changes = resume_changes(path, free, source="run.toml")
    assert set(changes) == set(RESUME_CARRIED_KEYS) <= RESUME_FREE_KEYS
    assert changes["epochs"] == cfg.epochs + 3 and changes["out_dir"] == str(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match=r"run\.toml differs .*'seed'"):
        resume_changes(path, cfg.replace(seed=cfg.seed + 1), source="run.toml")


def test_a_file_of_another_format_is_refused(tmp_path):
    path = _fake_checkpoint(tmp_path, load_config(bundled_config("demo")), fmt="something-else/1")
    with pytest.raises(CheckpointError, match="not a refsnn checkpoint"):
        read_meta(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_meta(tmp_path / "missing.npz")
