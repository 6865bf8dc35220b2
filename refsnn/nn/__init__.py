"""Modules and layers; the paper's SpikingConv2d / SpikingLinear."""
from .layers import (AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Flatten, Identity, Linear,
                     MaxPool2d, ReLU)
from .module import PARAMETER_KINDS, Module, Parameter, Sequential
from .spiking import SpikingConfig, SpikingConv2d, SpikingLinear


def spiking_layers(model: Module) -> list:
    """(name, layer) of every SpikingConv2d / SpikingLinear in a model, in definition order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (SpikingConv2d, SpikingLinear))]


__all__ = ["Module", "Parameter", "Sequential", "PARAMETER_KINDS", "Linear", "Conv2d", "BatchNorm1d", "BatchNorm2d",
           "ReLU", "Identity", "Flatten", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "SpikingConfig",
           "SpikingConv2d", "SpikingLinear", "spiking_layers"]
