"""refsnn in PyTorch: the method, its layers and models, verified by the golden outputs (docs/method.md §16).

    pip install -e ".[torch]"

    functions   torch.autograd.Functions: weight quantizer (Eq. 6, 18-19), refined neuron (Eq. 12-17, 20)
    sequential  sequential mode (docs/method.md §14): the neuron per step, the prior-art neuron (Eq. 3-5)
    neurons     the neuron part of a layer, SpikingNeuron (Spikformer's N_q, N_k, N_v)
    layers      SpikingConv2d / SpikingLinear with refsnn.nn's parameters, buffers and names
    spikformer  SPS, SSA (shared T), TokenBatchNorm, encoder blocks (docs/method.md §13)
    pool        TieMaxPool2d: the gradient to the first maximum in exact arithmetic (O(input) memory)
    poolbench   python -m refsnn.torch.poolbench: that pool against F.max_pool2d (time, peak memory)
    events      event frames (to_frames) on any device
    renewal     observers and LSQ initialisation, reduced over the ranks of a DDP run (Alg. 1-2)
    regulate    the regulating loss (Eq. 21); costing: the cost table (Eq. 7-8)
    models      tiny_resnet, resnet20, resnet18, sew_resnet34 and the Spikformers, mirrored from refsnn.models
    checkpoint  refsnn checkpoints <-> torch models
    golden      python -m refsnn.torch.golden DIR  (= refsnn golden check DIR --impl torch)
    ambiguity   the allowances of the golden check: sums with cancellation, max-pool ties
    train       python -m refsnn.torch.train --config FILE  (torchrun --nproc_per_node N ... for DDP)

Nothing else in refsnn imports torch; this package needs it.
"""
try:
    import torch  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the installation
    raise ImportError("refsnn.torch needs PyTorch: pip install -e '.[torch]' (or pip install torch)") from e

from .functions import quantize_weight, round_clip, spiking_neuron
from .layers import SpikingConv2d, SpikingLayer, SpikingLinear, spiking_layers
from .models import from_refsnn, get_model, load_numpy_state, state_to_numpy, to_refsnn
from .neurons import SpikingNeuron
from .sequential import sequential_neuron

__all__ = ["quantize_weight", "round_clip", "spiking_neuron", "sequential_neuron", "SpikingConv2d", "SpikingLinear",
           "SpikingLayer", "SpikingNeuron", "spiking_layers", "from_refsnn", "get_model", "load_numpy_state",
           "state_to_numpy", "to_refsnn"]
