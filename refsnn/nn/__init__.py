"""Modules and layers; the paper's SpikingConv2d / SpikingLinear, and the neuron-only SpikingNeuron."""
from .layers import (AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Flatten, Identity,
                     Linear, MaxPool2d, ReLU, TokenBatchNorm)
from .containers import ModuleDict, ModuleList
from .module import PARAMETER_KINDS, IncompatibleKeys, Module, Parameter, Sequential
from .neurons import SpikingNeuron, shared_time
from .spiking import SpikingConfig, SpikingConv2d, SpikingLinear


def spiking_layers(model: Module) -> list:
    """(name, layer) of every SpikingConv2d / SpikingLinear / SpikingNeuron in a model, in definition order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (SpikingConv2d, SpikingLinear, SpikingNeuron))]


__all__ = ["Module", "Parameter", "Sequential", "ModuleList", "ModuleDict", "IncompatibleKeys", "PARAMETER_KINDS",
           "Linear", "Conv2d", "BatchNorm1d", "BatchNorm2d", "TokenBatchNorm", "ReLU", "Identity", "Flatten",
           "Dropout", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "SpikingConfig", "SpikingConv2d",
           "SpikingLinear", "SpikingNeuron", "shared_time", "spiking_layers"]
