"""The residual networks of the paper (docs/method.md §12) and a tiny one for the embedded digits.

Every conv and linear layer is a spiking weight layer (neuron + temporal squeeze +
quantized weight, docs/method.md §5.1-5.3).  BN, ReLU, pooling and the residual additions
act on the analog maps between them.  The first layer (``"stem"``) encodes the image
with the bidirectional neuron (Eq. 15); ``input_neuron=False`` turns it into a plain
quantized-weight layer fed by the analog image (and leaves it out of S-ACE).

    resnet20      wide CIFAR ResNet20 (Dspike / Ternary-spike line of work):
                  3x3 stem 3->128, BN, ReLU; 3 stages x 3 BasicBlocks, widths 128/256/512,
                  strides 1/2/2; global average pool; linear.          ~17.3 M weights, 2.59 G MACs at 32x32
    resnet18      CIFAR ResNet18: 3x3 stem 3->64, stages [2,2,2,2], widths 64..512,
                  strides 1/2/2/2.                                      ~11.2 M weights, 0.56 G MACs at 32x32
    sew_resnet34  ImageNet SEW-ResNet34: 7x7/2 stem 3->64, BN, ReLU, 3x3/2 max pool,
                  stages [3,4,6,3] of SEW blocks, widths 64..512.       ~21.8 M weights, 3.67 G MACs at 224x224
    tiny_resnet   for the 8x8 UCI digits (1 channel): 3x3 stem 1->16, BN, ReLU; one
                  BasicBlock 16->16 (stride 1) and one 16->32 (stride 2, 1x1 projection);
                  global average pool; linear 32->classes.               ~19.4 k weights, 0.53 M MACs at 8x8

Blocks (``x`` the analog input map, ``sc`` the shortcut: identity, or a 1x1
conv + BN projection where the shape changes):

    BasicBlock:  out = ReLU( BN(conv2( ReLU(BN(conv1(x))) )) + sc(x) )
    SEW block:   out = ReLU( BN(conv2( ReLU(BN(conv1(x))) )) ) + sc(x)     (sc projection: conv + BN + ReLU)

Layer names are the dotted module names: ``stem``, ``layer{i}.{j}.conv1``,
``layer{i}.{j}.conv2``, ``layer{i}.{j}.shortcut.conv``, ``fc``.

Default ``config``: the paper's CIFAR settings (``SpikingConfig()``: W/S/T = 4/4/2,
T_bound = 3) for the CIFAR models and tiny_resnet; its ImageNet settings for
sew_resnet34 (W/S/T = 4/4/1, T_bound = 2, K = 50; docs/method.md §4 and §9).
"""
from __future__ import annotations

import numpy as np

from ..nn import AdaptiveAvgPool2d, BatchNorm2d, Flatten, Identity, MaxPool2d, Module, ReLU, Sequential, SpikingConfig
from ._builder import LayerBuilder, mean_over_steps, time_flat

#: The paper's CIFAR defaults (docs/method.md §4): initial W/S/T 4/4/2, bounds 6/6/3, K = 100.
CIFAR_CONFIG = SpikingConfig()
#: The paper's ImageNet defaults (docs/method.md §4 and §9): initial W/S/T 4/4/1, T_bound 2, K = 50.
IMAGENET_CONFIG = SpikingConfig(time_steps=1.0, time_bound=2, renewal_K=50)


class Shortcut(Module):
    """Projection shortcut where the shape changes: 1x1 conv (stride s) + BN (+ ReLU in the SEW block)."""

    def __init__(self, builder: LayerBuilder, prefix: str, in_channels: int, out_channels: int, stride: int,
                 relu: bool = False):
        super().__init__()
        self.conv = builder.conv(f"{prefix}.conv", in_channels, out_channels, 1, stride=stride, padding=0)
        self.bn = BatchNorm2d(out_channels, dtype=builder.dtype)
        self.relu = ReLU() if relu else Identity()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class BasicBlock(Module):
    """Two 3x3 spiking convs with BN; the residual addition on the analog maps (docs/method.md §5.3).

    ``sew=False``: ``out = ReLU(BN(conv2(h)) + sc(x))``  (ResNet20 / ResNet18, docs/method.md §12)
    ``sew=True``:  ``out = ReLU(BN(conv2(h))) + sc(x)``  (SEW-ResNet34, docs/method.md §12)
    with ``h = ReLU(BN(conv1(x)))``.
    """

    def __init__(self, builder: LayerBuilder, prefix: str, in_channels: int, out_channels: int, stride: int = 1,
                 sew: bool = False):
        super().__init__()
        self.sew = bool(sew)
        dt = builder.dtype
        self.conv1 = builder.conv(f"{prefix}.conv1", in_channels, out_channels, 3, stride=stride, padding=1)
        self.bn1 = BatchNorm2d(out_channels, dtype=dt)
        self.relu1 = ReLU()
        self.conv2 = builder.conv(f"{prefix}.conv2", out_channels, out_channels, 3, stride=1, padding=1)
        self.bn2 = BatchNorm2d(out_channels, dtype=dt)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = Shortcut(builder, f"{prefix}.shortcut", in_channels, out_channels, stride, relu=self.sew)
        else:
            self.shortcut = Identity()
        self.relu2 = ReLU()

    def forward(self, x):
        h = self.relu1(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        if self.sew:
            return self.relu2(h) + self.shortcut(x)   # SEW: ReLU before the addition
        return self.relu2(h + self.shortcut(x))       # BasicBlock: ReLU after the addition

    def extra_repr(self):
        return "sew" if self.sew else ""


class ResNet(Module):
    """Stem (spiking conv + BN + ReLU [+ max pool]), stages of BasicBlocks, global average pool, spiking linear.

    Keyword arguments: ``in_channels`` and ``num_classes``; the stem conv ``stem_channels``, ``stem_kernel``
    (padding ``stem_kernel // 2``), ``stem_stride`` and ``stem_maxpool`` (a 3x3/2 max pool after it); per stage
    ``blocks`` (how many BasicBlocks), ``widths`` (their output channels) and ``strides`` (the first block's);
    ``sew``: the blocks' SEW residual (see ``BasicBlock``).
    """

    def __init__(self, builder: LayerBuilder, *, in_channels: int, num_classes: int, stem_channels: int,
                 stem_kernel: int, stem_stride: int, stem_maxpool: bool, blocks: tuple, widths: tuple,
                 strides: tuple, sew: bool):
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise ValueError(f"{builder.model_name}: num_classes must be an integer >= 1, got {num_classes!r}")
        dt = builder.dtype
        self.stem = builder.conv("stem", in_channels, stem_channels, stem_kernel, stride=stem_stride,
                                 padding=stem_kernel // 2)
        self.stem_bn = BatchNorm2d(stem_channels, dtype=dt)
        self.stem_relu = ReLU()
        self.maxpool = MaxPool2d(3, stride=2, padding=1) if stem_maxpool else Identity()
        c = stem_channels
        self.stage_names = []
        for i, (n, w, s) in enumerate(zip(blocks, widths, strides), start=1):
            stage = []
            for j in range(n):
                stage.append(BasicBlock(builder, f"layer{i}.{j}", c, w, stride=s if j == 0 else 1, sew=sew))
                c = w
            setattr(self, f"layer{i}", Sequential(*stage))
            self.stage_names.append(f"layer{i}")
        self.avgpool = AdaptiveAvgPool2d()
        self.flatten = Flatten()
        self.fc = builder.linear("fc", c, int(num_classes))
        builder.finish(self)
        # docs/method.md §14: model-wide temporal mode; in sequential mode T is a fixed setting
        self.sequential, self.time_steps = builder.temporal_mode()

    def forward(self, x):
        """Squeeze mode: x (N, C, H, W) -> logits (N, classes). Sequential mode (docs/method.md §14): every layer
        runs on all T steps (maps flattened to (T*N, ...), so BN normalises over (T, N, H, W)) and the
        logits are averaged over T."""
        if self.sequential:
            x, N = time_flat(x, self.time_steps, type(self).__name__, channels=self.stem.weight.shape[1])
        x = self.maxpool(self.stem_relu(self.stem_bn(self.stem(x))))
        for name in self.stage_names:
            x = getattr(self, name)(x)
        out = self.fc(self.flatten(self.avgpool(x)))
        if self.sequential:
            # docs/method.md §14: the head averages the logits over T
            out = mean_over_steps(out, self.time_steps, N)
        return out


def _channels(model: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{model}: in_channels must be an integer >= 1, got {v!r}")
    return int(v)


def _builder(name, config, layer_configs, input_neuron, seed, dtype, default):
    return LayerBuilder(name, default if config is None else config, layer_configs, input_neuron, seed, dtype)


def resnet20(num_classes=10, config=None, layer_configs=None, input_neuron=True, seed=0, dtype=np.float64,
             in_channels: int = 3) -> ResNet:
    """Wide CIFAR ResNet20 (docs/method.md §12): 3x3 stem 3->128, 3x3 BasicBlocks at 128/256/512, strides 1/2/2.
    ``in_channels=2``: event frames (OFF/ON counts, docs/method.md §14)."""
    b = _builder("resnet20", config, layer_configs, input_neuron, seed, dtype, CIFAR_CONFIG)
    return ResNet(b, in_channels=_channels("resnet20", in_channels), num_classes=num_classes, stem_channels=128,
                  stem_kernel=3, stem_stride=1, stem_maxpool=False, blocks=(3, 3, 3), widths=(128, 256, 512),
                  strides=(1, 2, 2), sew=False)


def resnet18(num_classes=10, config=None, layer_configs=None, input_neuron=True, seed=0, dtype=np.float64,
             in_channels: int = 3) -> ResNet:
    """CIFAR ResNet18 (docs/method.md §12): 3x3 stem 3->64, stages [2,2,2,2] at 64..512, strides 1/2/2/2.
    ``in_channels=2``: event frames (OFF/ON counts, docs/method.md §14)."""
    b = _builder("resnet18", config, layer_configs, input_neuron, seed, dtype, CIFAR_CONFIG)
    return ResNet(b, in_channels=_channels("resnet18", in_channels), num_classes=num_classes, stem_channels=64,
                  stem_kernel=3, stem_stride=1, stem_maxpool=False, blocks=(2, 2, 2, 2), widths=(64, 128, 256, 512),
                  strides=(1, 2, 2, 2), sew=False)


def sew_resnet34(num_classes=1000, config=None, layer_configs=None, input_neuron=True, seed=0,
                 dtype=np.float64) -> ResNet:
    """ImageNet SEW-ResNet34 (docs/method.md §12): 7x7/2 stem 3->64, 3x3/2 max pool, SEW stages [3,4,6,3] at 64..512."""
    b = _builder("sew_resnet34", config, layer_configs, input_neuron, seed, dtype, IMAGENET_CONFIG)
    return ResNet(b, in_channels=3, num_classes=num_classes, stem_channels=64, stem_kernel=7, stem_stride=2,
                  stem_maxpool=True, blocks=(3, 4, 6, 3), widths=(64, 128, 256, 512), strides=(1, 2, 2, 2),
                  sew=True)


def tiny_resnet(num_classes=10, config=None, layer_configs=None, input_neuron=True, seed=0,
                dtype=np.float64, in_channels: int = 1, stem_stride: int = 1) -> ResNet:
    """refsnn's small model for the embedded 8x8 digits (not from the paper).

    3x3 stem 1->16 (8x8), BN, ReLU; BasicBlock 16->16 (8x8); BasicBlock 16->32, stride 2
    (4x4, 1x1 projection shortcut); global average pool; linear 32->classes.
    19,408 conv/linear weights; 533,824 MACs per sample.
    ``in_channels=2, stem_stride=2``: the event digits (2 polarity channels, 16x16 -> 8x8 after the stem).
    """
    b = _builder("tiny_resnet", config, layer_configs, input_neuron, seed, dtype, CIFAR_CONFIG)
    return ResNet(b, in_channels=_channels("tiny_resnet", in_channels), num_classes=num_classes, stem_channels=16,
                  stem_kernel=3, stem_stride=_channels("tiny_resnet", stem_stride), stem_maxpool=False, blocks=(1, 1),
                  widths=(16, 32), strides=(1, 2), sew=False)
