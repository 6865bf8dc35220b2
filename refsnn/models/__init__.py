"""The paper's architectures (docs/method.md §12-13), tiny ResNet/Spikformer for the digits, and the model-level cost model."""
from ._builder import LayerBuilder
from .registry import MODEL_NAMES, SEQUENTIAL_BY_DEFAULT, default_input_shape, get_model
from .resnet import CIFAR_CONFIG, IMAGENET_CONFIG, BasicBlock, ResNet, Shortcut, resnet18, resnet20, sew_resnet34, \
    tiny_resnet
from .spikformer import DVS_CONFIG, SPS, SSA, EncoderBlock, Spikformer, spikformer, spikformer_4_384, \
    spikformer_8_512, spikformer_dvs, tiny_spikformer
from .costing import format_cost_table, layer_costs, model_costs, parse_input_shape, summary_main

__all__ = ["resnet20", "resnet18", "sew_resnet34", "tiny_resnet", "get_model", "MODEL_NAMES", "default_input_shape",
           "ResNet", "BasicBlock", "Shortcut", "CIFAR_CONFIG", "IMAGENET_CONFIG", "model_costs", "layer_costs",
           "format_cost_table", "parse_input_shape", "summary_main",
           "spikformer", "spikformer_4_384", "spikformer_8_512", "spikformer_dvs", "tiny_spikformer", "Spikformer",
           "SPS", "SSA", "EncoderBlock", "LayerBuilder", "DVS_CONFIG", "SEQUENTIAL_BY_DEFAULT"]
