"""Models by name: ``get_model``, ``MODEL_NAMES``, ``SEQUENTIAL_BY_DEFAULT``, ``default_input_shape``."""
from __future__ import annotations

from .resnet import resnet18, resnet20, sew_resnet34, tiny_resnet
from .spikformer import spikformer_4_384, spikformer_8_512, spikformer_dvs, tiny_spikformer

_MODELS = {"resnet20": resnet20, "resnet18": resnet18, "sew_resnet34": sew_resnet34, "tiny_resnet": tiny_resnet,
           "spikformer_4_384": spikformer_4_384, "spikformer_8_512": spikformer_8_512,
           "spikformer_dvs": spikformer_dvs, "tiny_spikformer": tiny_spikformer}
_INPUT_SHAPES = {"resnet20": (3, 32, 32), "resnet18": (3, 32, 32), "sew_resnet34": (3, 224, 224),
                 "tiny_resnet": (1, 8, 8), "spikformer_4_384": (3, 32, 32), "spikformer_8_512": (3, 224, 224),
                 "spikformer_dvs": (2, 128, 128), "tiny_spikformer": (1, 8, 8)}
MODEL_NAMES = tuple(_MODELS)
#: Models built in sequential mode unless ``temporal_mode="squeeze"`` is passed (docs/method.md §14).
SEQUENTIAL_BY_DEFAULT = ("spikformer_dvs",)


def _check_name(name) -> str:
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {list(MODEL_NAMES)}")
    return name


def get_model(name: str, **kw):
    """Build a model by name; keyword arguments go to the model function
    (``num_classes``, ``config``, ``layer_configs``, ``input_neuron``, ``seed``, ``dtype``)."""
    return _MODELS[_check_name(name)](**kw)


def default_input_shape(name: str) -> tuple:
    """Per-sample input shape (C, H, W) the model is meant for:
    3x32x32 (CIFAR), 3x224x224 (ImageNet), 2x128x128 (DVS event frames), 1x8x8 (digits)."""
    return _INPUT_SHAPES[_check_name(name)]
