"""How a model builds its spiking layers: one resolved ``SpikingConfig`` per layer, one Generator.

Every conv and linear layer of a refsnn model is a ``SpikingConv2d`` / ``SpikingLinear``
(docs/method.md §5.3).  Their options come from three places, applied in this order:

1. ``config``: the model-wide ``SpikingConfig``;
2. the stem (the first layer, which encodes the image, docs/method.md §5.3) gets
   ``domain="bidirectional"`` (Eq. 15) and ``input_neuron=<the model's input_neuron>``;
3. ``layer_configs``: ``{layer_name_or_glob: {option: value}}``, entries applied in
   the order of the dict (a later entry wins where two set the same option).  A key is
   a dotted module name (``"stem"``, ``"layer1.0.conv1"``, ``"fc"``) or an ``fnmatch``
   pattern (``"layer3.*"``, ``"*.shortcut.conv"``).  Unknown options, bad values and
   keys that match no spiking layer raise ``ValueError`` naming them.

All layers draw their initial weights from one ``numpy.random.Generator`` seeded
by ``seed``, in definition order, so a seed fixes every bit of the model.
"""
from __future__ import annotations

from fnmatch import fnmatchcase

import numpy as np

from .. import functional as F
from ..autograd.tensor import Tensor, check_float_dtype
from ..nn import SpikingConfig, SpikingConv2d, SpikingLinear, SpikingNeuron, spiking_layers


def _check_layer_configs(layer_configs) -> list:
    """Validate the form of ``layer_configs`` and its option names; return [(pattern, options)]."""
    if layer_configs is None:
        return []
    if not isinstance(layer_configs, dict):
        raise ValueError(f"layer_configs must be a dict {{layer_name_or_glob: {{option: value}}}}, "
                         f"got {type(layer_configs).__name__}")
    valid = SpikingConfig.field_names()
    out = []
    for key, opts in layer_configs.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"layer_configs: keys must be non-empty layer names or globs, got {key!r}")
        if not isinstance(opts, dict):
            raise ValueError(f"layer_configs[{key!r}] must be a dict of SpikingConfig options, "
                             f"got {type(opts).__name__}")
        unknown = sorted(set(opts) - set(valid))
        if unknown:
            raise ValueError(f"layer_configs[{key!r}]: unknown option(s) {unknown}; valid options: {list(valid)}")
        out.append((key, dict(opts)))
    return out


def _matches(pattern: str, name: str) -> bool:
    return pattern == name or fnmatchcase(name, pattern)


class LayerBuilder:
    """Makes the spiking layers of one model (see the module docstring for the rules)."""

    def __init__(self, model_name: str, config: SpikingConfig, layer_configs, input_neuron: bool, seed, dtype,
                 stem_name: str = "stem"):
        if not isinstance(config, SpikingConfig):
            raise ValueError(f"{model_name}: config must be a SpikingConfig or None, got {type(config).__name__}")
        if not isinstance(input_neuron, (bool, np.bool_)):
            raise ValueError(f"{model_name}: input_neuron must be True or False, got {input_neuron!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"{model_name}: seed must be an integer >= 0, got {seed!r}")
        self.model_name = model_name
        self.config = config
        self.overrides = _check_layer_configs(layer_configs)
        self.input_neuron = bool(input_neuron)
        self.stem_name = stem_name
        self.rng = np.random.default_rng(int(seed))
        self.dtype = check_float_dtype(dtype)
        self.names: list = []

    def config_for(self, name: str) -> SpikingConfig:
        """The resolved options of layer ``name``."""
        c = self.config
        if name == self.stem_name:
            # docs/method.md §5.3: the first layer encodes the image with the bidirectional neuron (Eq. 15)
            c = c.replace(domain="bidirectional", input_neuron=self.input_neuron)
        for pattern, opts in self.overrides:
            if _matches(pattern, name):
                try:
                    c = c.replace(**opts)
                except (ValueError, TypeError) as e:
                    raise ValueError(f"{self.model_name}: layer_configs[{pattern!r}] on layer {name!r}: {e}") from None
        return c

    def conv(self, name: str, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
             padding: int = 0) -> SpikingConv2d:
        self.names.append(name)
        return SpikingConv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False,
                             config=self.config_for(name), rng=self.rng, dtype=self.dtype)

    def linear(self, name: str, in_features: int, out_features: int, bias: bool = True,
               sample_ndim: int = 1) -> SpikingLinear:
        """A spiking linear layer; ``sample_ndim=2`` for token inputs (L, F) (read in sequential mode)."""
        self.names.append(name)
        return SpikingLinear(in_features, out_features, bias=bias, config=self.config_for(name), rng=self.rng,
                             dtype=self.dtype, sample_ndim=sample_ndim)

    def neuron(self, name: str, time=None, sample_ndim: int | None = None) -> SpikingNeuron:
        """A neuron-only layer (docs/method.md §13); ``time``: a shared That (``refsnn.nn.shared_time``) or None;
        ``sample_ndim``: its per-sample input dims (read in sequential mode)."""
        self.names.append(name)
        return SpikingNeuron(self.config_for(name), time=time, dtype=self.dtype, sample_ndim=sample_ndim)

    def temporal_mode(self) -> tuple:
        """``(sequential, T)`` shared by every layer built (docs/method.md §14: the mode and the fixed T are
        model-wide); different settings across layers raise ValueError."""
        modes = set()
        for n in self.names:
            c = self.config_for(n)
            modes.add((c.sequential, int(c.time_steps) if c.sequential else 0))
        if len(modes) != 1:
            raise ValueError(f"{self.model_name}: temporal_mode and, in sequential mode, time_steps must be the same "
                             f"for every layer (model-wide), got {sorted(modes)}")
        return modes.pop()

    def sequential(self, name: str) -> bool:
        """Whether layer ``name`` runs in sequential mode (docs/method.md §14)."""
        return self.config_for(name).sequential

    def finish(self, model):
        """Check that every ``layer_configs`` key matched a layer and that the names used are the module names."""
        actual = [n for n, _ in spiking_layers(model)]
        if actual != self.names:  # a wiring error inside refsnn, not a user error
            raise RuntimeError(f"{self.model_name}: layer names used while building {self.names} differ from the "
                               f"module names {actual}")
        unmatched = [p for p, _ in self.overrides if not any(_matches(p, n) for n in actual)]
        if unmatched:
            raise ValueError(f"{self.model_name}: layer_configs key(s) {unmatched} match no spiking layer; "
                             f"layers are {actual}")
        return model


def time_flat(x, T: int, owner: str, channels: int | None = None):
    """Sequential mode (docs/method.md §14): (N, C, H, W) static images, repeated T times (direct encoding), or
    (N, T, C, H, W) frames as a Dataset holds them -> time-major (T*N, C, H, W), and N.
    ``channels``: the C the model's first layer takes (a frame shape that does not match is a ValueError)."""
    if channels is not None and x.ndim in (4, 5) and x.shape[-3] != channels:
        raise ValueError(f"{owner} (sequential, T = {T}): input x has {x.shape[-3]} channels per frame, the model "
                         f"takes {channels} (shape {tuple(x.shape)}; expected (N, {channels}, H, W) or "
                         f"(N, {T}, {channels}, H, W))")
    if x.ndim == 4:
        N = x.shape[0]
        xs = x if isinstance(x, Tensor) else Tensor(np.asarray(x))
        return F.concatenate(*([xs] * T), axis=0), N
    if x.ndim == 5 and x.shape[1] == T:
        N = x.shape[0]
        xt = F.transpose(x, axes=(1, 0, 2, 3, 4))
        return F.reshape(xt, shape=(T * N,) + tuple(x.shape[2:])), N
    raise ValueError(f"{owner} (sequential, T = {T}): input must be (N, C, H, W) static images or "
                     f"(N, T, C, H, W) frames with T = {T}, got shape {tuple(x.shape)}")


def mean_over_steps(out, T: int, N: int):
    """Sequential mode (docs/method.md §14): the head's (T*N, classes) outputs averaged over the T steps."""
    return F.mean(F.reshape(out, shape=(T, N, out.shape[1])), axis=0)
