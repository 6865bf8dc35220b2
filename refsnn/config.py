"""The configuration of a training run (Algorithm A.1), as dataclasses loadable from TOML.

A run is described by one ``TrainConfig``; a TOML file mirrors it section by section::

    epochs = 200                 # top level: the run
    seed = 0
    dtype = "float32"            # "float32" or "float64"
    out_dir = "runs/resnet20"

    [model]                      # which network (refsnn.models.get_model)
    name = "resnet20"
    input_neuron = true          # the first layer encodes the image with a bidirectional neuron
    [model.options]              # extra keyword arguments of the model builder
    num_classes = 10

    [method]                     # every SpikingConfig field, model-wide ...
    weight_bits = 4              # (except renewal, renewal_K, renewal_p: see [renewal];
    spike_bits = 4               #  and input_neuron: see [model])
    time_steps = 2
    [method.layers."layer1.0.conv1"]   # ... and per-layer overrides, by layer name
    learn_time = false

    [regulate]                   # Eq. 21: targets and penalties
    W = 2
    S = 2
    T = 1
    lam_w = 4e-2
    lam_s = 4e-2
    lam_T = 1e-2

    [renewal]                    # docs/method.md §9
    mode = "spike"               # "none", "spike", "weight", "both"
    K = 100
    p = 2.4
    min_epochs = 14
    switch_off = true            # the 24 % rule

    [optim]
    name = "sgd"
    momentum = 0.9
    weight_decay = 1e-4          # on kind == "weight" only
    schedule = "cosine"
    [optim.lr]                   # per parameter kind; missing kinds: docs/method.md §11
    time = 1e-2

    [data]
    name = "cifar10"
    root = "/data/cifar-10-batches-py"
    batch_size = 128

An unknown key is an error that names the key and its section; a bad value is
an error that names the key, the value and what is allowed.
"""
from __future__ import annotations

import math
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path

import numpy as np

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, published as tomli (a dependency there, pyproject.toml)
    import tomli as tomllib

from .configs import bundled_config, bundled_names, find_config  # noqa: F401  (the bundled TOML files)
from .errors import ConfigError
from .nn.module import PARAMETER_KINDS
from .nn.spiking import SpikingConfig

#: SpikingConfig fields that are set in another section of the file.
MOVED_FIELDS = {"renewal": "[renewal] mode", "renewal_K": "[renewal] K", "renewal_p": "[renewal] p",
                "input_neuron": "[model] input_neuron"}
DATA_NAMES = ("digits", "cifar10", "cifar100", "synthetic", "imagenet", "event_digits", "cifar10_dvs", "dvs_gesture")
PROGRESS_MODES = ("auto", "bar", "line", "none")


def _where(section: str, key: str) -> str:
    return f"{key} in [{section}]" if section else f"top-level key {key}"


def _fail(section: str, key: str, value, allowed: str):
    raise ConfigError(f"{_where(section, key)} = {value!r}: {allowed}")


# ---------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------
@dataclass
class ModelConfig:
    """[model]: the network, built by ``refsnn.models.get_model(name, ..., **options)``."""
    name: str = "tiny_resnet"
    input_neuron: bool = True        # False: the stem sees the analog image (no encoding neuron)
    options: dict = field(default_factory=dict)

    def validate(self, section: str = "model") -> None:
        if not self.name:
            _fail(section, "name", self.name, "must name a model of refsnn.models")


@dataclass
class MethodConfig:
    """[method]: every SpikingConfig field model-wide (``spiking``), plus per-layer overrides (``layers``).

    In TOML the SpikingConfig fields are written directly in [method]; per-layer
    overrides are sub-tables ``[method.layers."<layer name>"]``.
    """
    spiking: dict = field(default_factory=dict)
    layers: dict = field(default_factory=dict)

    def validate(self, section: str = "method") -> None:
        names = SpikingConfig.field_names()
        defaults = SpikingConfig()
        for key, value in self.spiking.items():
            if key in MOVED_FIELDS:
                raise ConfigError(f"key {key!r} in section [{section}]: set it as {MOVED_FIELDS[key]} instead")
            if key not in names:
                raise ConfigError(f"unknown key {key!r} in section [{section}]; valid keys: "
                                  f"{[n for n in names if n not in MOVED_FIELDS] + ['layers']}")
            _check_like(section, key, value, getattr(defaults, key))
        try:
            SpikingConfig(**self.spiking)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"[{section}]: {e}") from None
        if not isinstance(self.layers, dict):
            _fail(section, "layers", self.layers, "must be a table of {layer name: {option: value}}")
        for lname, over in self.layers.items():
            sub = f'{section}.layers."{lname}"'
            if not isinstance(over, dict):
                _fail(f"{section}.layers", lname, over, "must be a table of SpikingConfig options")
            for key, value in over.items():
                if key not in names:
                    raise ConfigError(f"unknown key {key!r} in section [{sub}]; valid keys: {list(names)}")
                _check_like(sub, key, value, getattr(defaults, key))
            try:
                SpikingConfig(**{**self.spiking, **over})
            except (ValueError, TypeError) as e:
                raise ConfigError(f"[{sub}]: {e}") from None


@dataclass
class RegulateConfig:
    """[regulate]: Eq. 21, targets (W, S, T) and penalties (lam_w, lam_s, lam_T)."""
    enabled: bool = True
    W: float = 2.0
    S: float = 2.0
    T: float = 1.0
    lam_w: float = 4e-2
    lam_s: float = 4e-2
    lam_T: float = 1e-2
    count_time_only: bool = True     # false: a layer whose only learnable width is T stays out (the release)

    def validate(self, section: str = "regulate") -> None:
        for key in ("W", "S", "T"):
            v = getattr(self, key)
            if not (math.isfinite(v) and v >= 1):
                _fail(section, key, v, "a target width must be a number >= 1")
        for key in ("lam_w", "lam_s", "lam_T"):
            v = getattr(self, key)
            if not (math.isfinite(v) and v >= 0):
                _fail(section, key, v, "a penalty must be a number >= 0")


@dataclass
class RenewalConfig:
    """[renewal]: docs/method.md §9 (Alg. 1-2 and the switching-off rule)."""
    mode: str = "spike"              # "none", "spike" (Act.-only, paper default), "weight", "both" (Bilateral)
    K: int = 100                     # Alg. 2 candidates
    p: float = 2.4                   # Alg. 2 score power
    min_epochs: int = 14             # renewal stays on at least this many epochs
    switch_off: bool = True          # apply the 24 % rule after min_epochs
    rule: str = "paper"              # "paper": |avg - target| < 0.24 |initial avg - target|; "release": signed,
    #                                  initial = the configured width, avg rounded to 3 decimals, off after the
    #                                  first epoch when initial == target (refsnn.method.renewal)

    def validate(self, section: str = "renewal") -> None:
        if self.mode not in ("none", "spike", "weight", "both"):
            _fail(section, "mode", self.mode, "allowed: 'none', 'spike', 'weight', 'both'")
        if self.rule not in ("paper", "release"):
            _fail(section, "rule", self.rule, "allowed: 'paper', 'release'")
        if self.K < 1:
            _fail(section, "K", self.K, "must be an integer >= 1")
        if not (math.isfinite(self.p) and self.p > 0):
            _fail(section, "p", self.p, "must be a number > 0")
        if self.min_epochs < 0:
            _fail(section, "min_epochs", self.min_epochs, "must be an integer >= 0")


@dataclass
class OptimConfig:
    """[optim]: optimizer and schedule (docs/method.md §11)."""
    name: str = "sgd"                # "sgd" or "adam"
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4       # on kind == "weight" parameters only
    betas: list = field(default_factory=lambda: [0.9, 0.999])   # adam
    eps: float = 1e-8                # adam
    schedule: str = "cosine"         # "cosine" or "constant"
    schedule_unit: str = "step"      # cosine over the total number of "step"s (batches) or "epoch"s
    warmup: int = 0                  # linear warm-up, in schedule units
    min_lr_factor: float = 0.0       # the cosine ends at this fraction of each lr
    lr: dict = field(default_factory=dict)   # {kind: lr}; missing kinds: refsnn.optim.DEFAULT_LR

    def validate(self, section: str = "optim") -> None:
        if self.name not in ("sgd", "adam"):
            _fail(section, "name", self.name, "allowed: 'sgd', 'adam'")
        if not 0 <= self.momentum < 1:
            _fail(section, "momentum", self.momentum, "must be in [0, 1)")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            _fail(section, "weight_decay", self.weight_decay, "must be a number >= 0")
        if len(self.betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in self.betas):
            _fail(section, "betas", self.betas, "must be two numbers in [0, 1)")
        if not self.eps > 0:
            _fail(section, "eps", self.eps, "must be > 0")
        if self.schedule not in ("cosine", "constant"):
            _fail(section, "schedule", self.schedule, "allowed: 'cosine', 'constant'")
        if self.schedule_unit not in ("step", "epoch"):
            _fail(section, "schedule_unit", self.schedule_unit, "allowed: 'step', 'epoch'")
        if self.warmup < 0:
            _fail(section, "warmup", self.warmup, "must be an integer >= 0")
        if not 0 <= self.min_lr_factor <= 1:
            _fail(section, "min_lr_factor", self.min_lr_factor, "must be in [0, 1]")
        for kind, v in self.lr.items():
            if kind not in PARAMETER_KINDS:
                raise ConfigError(f"unknown key {kind!r} in section [{section}.lr]; valid keys (parameter kinds): "
                                  f"{list(PARAMETER_KINDS)}")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v >= 0):
                _fail(f"{section}.lr", kind, v, "a learning rate must be a number >= 0")


@dataclass
class DataConfig:
    """[data]: the dataset (refsnn.data.get_dataset) and the loader."""
    name: str = "digits"             # digits, cifar10, cifar100, synthetic, event_digits, cifar10_dvs, dvs_gesture
                                     # (imagenet: validates, no reader yet)
    root: str = ""                   # directory of a local copy (CIFAR, DVS sets); "" for the bundled/generated sets
    batch_size: int = 64
    test_batch_size: int = 256
    drop_last: bool = False
    shuffle: bool = True
    augment: str = "auto"            # "auto" (the dataset's default), "on" (needs a dataset default), "off"
    train_subset: int = 0            # > 0: use only this many training samples (a fixed subset)
    test_subset: int = 0             # > 0: evaluate on this many test samples
    options: dict = field(default_factory=dict)   # extra keyword arguments of get_dataset

    def validate(self, section: str = "data") -> None:
        if self.name not in DATA_NAMES:
            _fail(section, "name", self.name, f"allowed: {', '.join(DATA_NAMES)}")
        for key in ("batch_size", "test_batch_size"):
            if getattr(self, key) < 1:
                _fail(section, key, getattr(self, key), "must be an integer >= 1")
        for key in ("train_subset", "test_subset"):
            if getattr(self, key) < 0:
                _fail(section, key, getattr(self, key), "must be an integer >= 0 (0 = everything)")
        if self.augment not in ("auto", "on", "off"):
            _fail(section, "augment", self.augment, "allowed: 'auto', 'on', 'off'")
        if self.name in ("cifar10", "cifar100", "imagenet", "cifar10_dvs", "dvs_gesture") and not self.root:
            _fail(section, "root", self.root, f"{self.name} is read from a local copy: give its directory")


@dataclass
class TrainConfig:
    """One training run (Algorithm A.1)."""
    epochs: int = 1
    seed: int = 0
    dtype: str = "float64"           # "float64" (reference) or "float32" (speed)
    out_dir: str = "refsnn-out"
    checkpoint_every: int = 1        # write a checkpoint every this many epochs (and after the last); 0 = last only
    keep_checkpoints: bool = False   # keep one file per epoch besides last.npz
    progress: str = "auto"           # "auto" (a bar on a TTY, else one line per epoch), "bar", "line", "none"
    plots: bool = True               # draw the figures at the end
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    regulate: RegulateConfig = field(default_factory=RegulateConfig)
    renewal: RenewalConfig = field(default_factory=RenewalConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def validate(self, section: str = "") -> None:
        if self.epochs < 1:
            _fail(section, "epochs", self.epochs, "must be an integer >= 1")
        if self.seed < 0:
            _fail(section, "seed", self.seed, "must be an integer >= 0")
        if self.dtype not in ("float32", "float64"):
            _fail(section, "dtype", self.dtype, "allowed: 'float32', 'float64'")
        if self.checkpoint_every < 0:
            _fail(section, "checkpoint_every", self.checkpoint_every, "must be an integer >= 0")
        if self.progress not in PROGRESS_MODES:
            _fail(section, "progress", self.progress, f"allowed: {', '.join(map(repr, PROGRESS_MODES))}")
        for f in fields(self):
            sub = getattr(self, f.name)
            if is_dataclass(sub):
                sub.validate(f.name)
        self._check_targets()

    def _check_targets(self) -> None:
        """[regulate] W/S/T within reach: at most the largest weight/spike/time bound of any layer (a model's
        average width cannot exceed it, so a larger target would pull the widths against their clip forever)."""
        configs = [self.method.spiking] + [{**self.method.spiking, **o} for o in self.method.layers.values()]
        for key, bound in (("W", "weight_bound"), ("S", "spike_bound"), ("T", "time_bound")):
            most = max(SpikingConfig(**c).as_dict()[bound] for c in configs)
            value = getattr(self.regulate, key)
            if value > most:
                _fail("regulate", key, value, f"a target must be in [1, {most}] (the largest {bound} in [method])")

    # -- derived ------------------------------------------------------------------------
    def spiking_config(self) -> SpikingConfig:
        """The model-wide SpikingConfig: [method] plus the renewal settings of [renewal]."""
        r = self.renewal
        return SpikingConfig(**self.method.spiking, renewal=r.mode, renewal_K=r.K, renewal_p=r.p,
                             input_neuron=True)

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    # -- conversions --------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain nested dict (JSON/TOML-able) with [method] written out in full."""
        d = asdict(self)
        full = SpikingConfig(**self.method.spiking).as_dict()
        d["method"] = {k: v for k, v in full.items() if k not in MOVED_FIELDS}
        d["method"]["layers"] = {k: dict(v) for k, v in self.method.layers.items()}
        return d

    def replace(self, **changes) -> "TrainConfig":
        cfg = replace(self, **changes)
        cfg.validate()
        return cfg

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """Build and validate from a nested dict (a parsed TOML file or ``to_dict()`` output)."""
        cfg = _build(cls, data, "")
        cfg.validate()
        return cfg

    @classmethod
    def from_toml(cls, path) -> "TrainConfig":
        path = Path(path)
        try:
            text = path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            raise ConfigError(f"config file {str(path)!r} does not exist") from None
        except IsADirectoryError:
            raise ConfigError(f"config file {str(path)!r} is a directory; give a .toml file") from None
        except OSError as e:
            raise ConfigError(f"config file {str(path)!r} cannot be read: {e.strerror or e}") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"config file {str(path)!r} is not UTF-8 text (byte {e.start}: "
                              f"{e.object[e.start:e.start + 1]!r}); a TOML file is UTF-8") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from None
        try:
            return cls.from_dict(data)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None


# ---------------------------------------------------------------------------------------------
# Building dataclasses from dicts, with type checks that name the key
# ---------------------------------------------------------------------------------------------
def _check_like(section: str, key: str, value, default) -> None:
    """Type check of a SpikingConfig option against the type of its default."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
        what = "a boolean (true/false)"
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
        what = "an integer"
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        what = "a number"
    else:
        ok = isinstance(value, str)
        what = "a string"
    if not ok:
        _fail(section, key, value, f"must be {what}")


def _coerce(tp, value, section: str, key: str):
    if is_dataclass(tp):
        return _build(tp, value, key if not section else f"{section}.{key}")
    if tp is bool:
        if not isinstance(value, bool):
            _fail(section, key, value, "must be a boolean (true/false)")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(section, key, value, "must be an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(section, key, value, "must be a number")
        value = float(value)
        if not math.isfinite(value):
            _fail(section, key, value, "must be a finite number")
        return value
    if tp is str:
        if not isinstance(value, str):
            _fail(section, key, value, "must be a string")
        return value
    if tp is dict or typing.get_origin(tp) is dict:
        if not isinstance(value, dict):
            _fail(section, key, value, "must be a table")
        return dict(value)
    if tp is list or typing.get_origin(tp) is list:
        if not isinstance(value, (list, tuple)):
            _fail(section, key, value, "must be an array")
        return list(value)
    raise TypeError(f"config: no rule for the type {tp!r} of {key}")  # pragma: no cover


def _build(cls, data, section: str):
    if not isinstance(data, dict):
        raise ConfigError(f"section [{section}] must be a table, got {data!r}")
    if cls is MethodConfig:  # SpikingConfig fields sit directly in [method]
        data = dict(data)
        layers = data.pop("layers", {})
        obj = MethodConfig(spiking=data, layers=layers)
        obj.validate(section)
        return obj
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        where = f"section [{section}]" if section else "the top level"
        raise ConfigError(f"unknown key {unknown[0]!r} in {where}; valid keys: {names}")
    kwargs = {k: _coerce(hints[k], v, section, k) for k, v in data.items()}
    return cls(**kwargs)


def load_config(path) -> TrainConfig:
    """``TrainConfig.from_toml(path)``."""
    return TrainConfig.from_toml(path)
