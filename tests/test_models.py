"""refsnn.models: architectures of docs/method.md §12, naming, per-layer options, determinism."""
import numpy as np
import pytest

import refsnn
from refsnn.nn import BatchNorm2d, SpikingConfig, SpikingConv2d, SpikingLinear, spiking_layers
from refsnn.models import (CIFAR_CONFIG, IMAGENET_CONFIG, MODEL_NAMES, default_input_shape, get_model,
                           resnet20, sew_resnet34, tiny_resnet)


# --------------------------------------------------------------------------- hand counts
def conv_w(cin, cout, k):
    return cin * cout * k * k


def hand_weight_count(stem_c, stem_k, blocks, widths, classes, in_c=3):
    """Conv and linear weight elements of a ResNet with BasicBlocks and 1x1 projections (docs/method.md §12)."""
    n = conv_w(in_c, stem_c, stem_k)
    c = stem_c
    for i, (nb, w) in enumerate(zip(blocks, widths)):
        for j in range(nb):
            n += conv_w(c, w, 3) + conv_w(w, w, 3)
            if c != w or (j == 0 and i > 0):
                n += conv_w(c, w, 1)
            c = w
    return n + c * classes


def hand_bn_count(stem_c, blocks, widths):
    """BN channels (each has a gamma and a beta): stem, two per block, one per projection."""
    n, c = stem_c, stem_c
    for i, (nb, w) in enumerate(zip(blocks, widths)):
        for j in range(nb):
            n += 2 * w + (w if (c != w or (j == 0 and i > 0)) else 0)
            c = w
    return n


def count(model, kinds):
    return sum(p.size for p in model.parameters() if p.kind in kinds)


ARCHS = {  # name: (stem_c, stem_k, blocks, widths, classes, spiking layers)
    "resnet20": (128, 3, (3, 3, 3), (128, 256, 512), 10, 1 + 18 + 2 + 1),
    "resnet18": (64, 3, (2, 2, 2, 2), (64, 128, 256, 512), 10, 1 + 16 + 3 + 1),
    "sew_resnet34": (64, 7, (3, 4, 6, 3), (64, 128, 256, 512), 1000, 1 + 32 + 3 + 1),
}


@pytest.fixture(scope="module")
def big():
    return {n: get_model(n, dtype=np.float32) for n in ARCHS}


@pytest.mark.parametrize("name", list(ARCHS))
def test_parameter_counts_match_hand_formulas(big, name):
    stem_c, stem_k, blocks, widths, classes, n_spiking = ARCHS[name]
    m = big[name]
    n_w = hand_weight_count(stem_c, stem_k, blocks, widths, classes)
    assert count(m, ("weight",)) == n_w
    # conv layers have no bias (BN follows), the classifier has one; BN has gamma and beta
    assert count(m, ("weight", "bias", "bn")) == n_w + classes + 2 * hand_bn_count(stem_c, blocks, widths)
    assert len(spiking_layers(m)) == n_spiking


def test_parameter_counts_match_published_numbers(big):
    # well-known totals (weights + classifier bias + BN affine): the CIFAR ResNet18 of the
    # Dspike / kuangliu line (11,173,962) and ResNet34 / SEW-ResNet34 ADD (21,797,672)
    assert count(big["resnet18"], ("weight", "bias", "bn")) == 11_173_962
    assert count(big["sew_resnet34"], ("weight", "bias", "bn")) == 21_797_672
    # wide ResNet20, by hand: 3*128*9 + 6*128^2*9 + (128*256*9 + 5*256^2*9 + 128*256)
    #                         + (256*512*9 + 5*512^2*9 + 256*512) + 512*10
    assert count(big["resnet20"], ("weight",)) == 17_277_312


def test_tiny_resnet_is_small():
    m = tiny_resnet()
    assert count(m, ("weight",)) == 144 + 2 * 2304 + 4608 + 9216 + 512 + 320 == 19_408
    assert [n for n, _ in spiking_layers(m)] == ["stem", "layer1.0.conv1", "layer1.0.conv2", "layer2.0.conv1",
                                                 "layer2.0.conv2", "layer2.0.shortcut.conv", "fc"]


def test_layer_names_and_kinds(big):
    names = [n for n, _ in spiking_layers(big["resnet20"])]
    assert names[0] == "stem" and names[-1] == "fc"
    assert "layer1.0.conv1" in names and "layer2.0.shortcut.conv" in names and "layer3.2.conv2" in names
    assert "layer1.0.shortcut.conv" not in names   # identity shortcut where the shape is kept
    for name, layer in spiking_layers(big["sew_resnet34"]):
        assert isinstance(layer, SpikingLinear if name == "fc" else SpikingConv2d)
    m = big["sew_resnet34"]
    assert m.stem.kernel_size == (7, 7) and m.stem.stride == 2 and m.stem.padding == 3
    assert m.layer2[0].sew and isinstance(m.layer2[0].shortcut.relu, refsnn.nn.ReLU)
    assert not big["resnet18"].layer2[0].sew
    assert isinstance(big["resnet18"].layer2[0].shortcut.relu, refsnn.nn.Identity)


def test_stem_gets_bidirectional_neuron_others_positive(big):
    for name, m in big.items():
        layers = spiking_layers(m)
        assert layers[0][1].config.domain == "bidirectional" and layers[0][1].config.input_neuron
        assert all(l.config.domain == "positive" and l.config.input_neuron for _, l in layers[1:])


def test_default_configs():
    assert tiny_resnet().stem.config.replace(domain="positive") == CIFAR_CONFIG
    m = sew_resnet34(dtype=np.float32)
    assert m.fc.config == IMAGENET_CONFIG
    assert m.fc.config.time_bound == 2 and m.fc.width_values() == (4, [4], 1)
    assert m.fc.out_features == 1000


def test_input_neuron_false_makes_a_plain_stem():
    m = tiny_resnet(input_neuron=False)
    assert not m.stem.config.input_neuron
    assert not hasattr(m.stem, "threshold") and not hasattr(m.stem, "time")
    assert m.layer1[0].conv1.config.input_neuron and hasattr(m.layer1[0].conv1, "threshold")


def test_model_config_applies_everywhere():
    cfg = SpikingConfig(weight_bits=3, spike_bits=2, time_steps=1, temporal_wise=False)
    m = tiny_resnet(config=cfg)
    for name, l in spiking_layers(m):
        expect = cfg.replace(domain="bidirectional") if name == "stem" else cfg
        assert l.config == expect, name
        assert l.threshold.shape == (1,)


def test_layer_configs_override():
    m = tiny_resnet(layer_configs={"layer2.*": {"weight_bits": 2},
                                   "layer2.0.conv2": {"weight_bits": 5, "spike_bits": 3},
                                   "stem": {"domain": "positive"}, "fc": {"time_steps": 1}})
    assert m.layer2[0].conv1.config.weight_bits == 2
    assert m.layer2[0].shortcut.conv.config.weight_bits == 2
    assert m.layer2[0].conv2.config.weight_bits == 5 and m.layer2[0].conv2.config.spike_bits == 3  # later wins
    assert m.layer1[0].conv1.config.weight_bits == 4
    assert m.stem.config.domain == "positive"
    assert m.fc.width_values()[2] == 1 and m.layer1[0].conv2.width_values()[2] == 2
    # an override can turn the stem's neuron back on when the model-wide switch is off
    m2 = tiny_resnet(input_neuron=False, layer_configs={"stem": {"input_neuron": True}})
    assert m2.stem.config.input_neuron


@pytest.mark.parametrize("bad, match", [
    ({"layer9.0.conv1": {"weight_bits": 2}}, "layer9.0.conv1"),
    ({"layer1.0.bn1": {"weight_bits": 2}}, "layer1.0.bn1"),       # not a spiking layer
    ({"fc": {"wieght_bits": 2}}, "wieght_bits"),
    ({"fc": {"domain": "sideways"}}, "sideways"),
    ({"fc": 3}, "fc"),
    (["fc"], "dict"),
])
def test_layer_configs_errors_name_the_culprit(bad, match):
    with pytest.raises(ValueError, match=match):
        tiny_resnet(layer_configs=bad)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_classes"):
        tiny_resnet(num_classes=0)
    with pytest.raises(ValueError, match="seed"):
        tiny_resnet(seed=-1)
    with pytest.raises(ValueError, match="config"):
        tiny_resnet(config={"weight_bits": 2})
    with pytest.raises(TypeError):
        tiny_resnet(dtype=np.int32)


def test_get_model_and_input_shapes():
    assert set(MODEL_NAMES) == {"resnet20", "resnet18", "sew_resnet34", "tiny_resnet", "spikformer_4_384",
                                "spikformer_8_512", "spikformer_dvs", "tiny_spikformer"}
    assert default_input_shape("resnet20") == default_input_shape("resnet18") == (3, 32, 32)
    assert default_input_shape("sew_resnet34") == (3, 224, 224)
    assert default_input_shape("tiny_resnet") == (1, 8, 8)
    m = get_model("tiny_resnet", num_classes=4, seed=3)
    assert m.fc.out_features == 4
    with pytest.raises(ValueError, match="resnet20.*resnet18.*sew_resnet34.*tiny_resnet"):
        get_model("resnet50")
    with pytest.raises(ValueError, match="valid models"):
        default_input_shape("vgg16")


def test_seed_is_deterministic():
    a, b, c = tiny_resnet(seed=7).state_dict(), tiny_resnet(seed=7).state_dict(), tiny_resnet(seed=8).state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["layer1.0.conv1.weight"], c["layer1.0.conv1.weight"])
    # one generator threaded through the layers: no two layers of the same shape start equal
    m = tiny_resnet(seed=7)
    assert not np.array_equal(m.layer1[0].conv1.weight.data, m.layer1[0].conv2.weight.data)


def test_dtype_everywhere():
    m = tiny_resnet(dtype=np.float32)
    assert {p.dtype for p in m.parameters()} == {np.dtype(np.float32)}


def _digits_batch(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (n, 1, 8, 8)), rng.integers(0, 10, n)


def test_tiny_resnet_forward_backward():
    m = tiny_resnet()
    x, y = _digits_batch(2)
    out = m(refsnn.tensor(x))
    assert out.shape == (2, 10) and np.isfinite(out.data).all()
    assert bool(m.stem.initialized)   # training mode: LSQ initialisation happened
    refsnn.functional.cross_entropy(out, y).backward()
    for name, p in m.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and np.isfinite(p.grad).all(), name
    assert np.abs(m.stem.weight.grad).sum() > 0 and np.abs(m.fc.weight.grad).sum() > 0


def test_resnet20_forward_shape_float32():
    m = resnet20(dtype=np.float32, seed=1)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 32, 32)).astype(np.float32)
    with refsnn.no_grad():
        out = m(refsnn.tensor(x))
    assert out.shape == (2, 10) and out.dtype == np.float32 and np.isfinite(out.data).all()
    assert m.layer3[0].conv1.out_shape == (512, 8, 8) and m.fc.in_shape == (512,)
    # MACs after the forward pass (docs/method.md §2): stem 32^2*27*128, stage 1 6*32^2*9*128^2,
    # stages 2 and 3: (16^2 | 8^2) * (9*C*2C + 5*9*(2C)^2 + C*2C), classifier 512*10
    macs = 1024 * 27 * 128 + 6 * 1024 * 9 * 128 ** 2 + 256 * (9 * 128 * 256 + 5 * 9 * 256 ** 2 + 128 * 256) \
        + 64 * (9 * 256 * 512 + 5 * 9 * 512 ** 2 + 256 * 512) + 5120
    assert sum(layer.macs() for _, layer in spiking_layers(m)) == macs == 2_587_235_328


def _block_by_hand(block, x, sew):
    """The block of docs/method.md §12 composed by hand from its own sub-modules (eval mode)."""
    F = refsnn.functional
    h = F.relu(block.bn1(block.conv1(x)))
    h = block.bn2(block.conv2(h))
    sc = block.shortcut(x)
    return (F.relu(h) + sc) if sew else F.relu(h + sc)


@pytest.mark.parametrize("sew", [False, True])
def test_block_wiring(sew):
    from refsnn.models import BasicBlock
    from refsnn.models._builder import LayerBuilder
    b = LayerBuilder("t", CIFAR_CONFIG, None, True, 0, np.float64)
    blk = BasicBlock(b, "blk", 4, 8, stride=2, sew=sew)
    for bn in (blk.bn1, blk.bn2, blk.shortcut.bn):   # non-trivial BN so that the ReLU placement matters
        bn.bias.data[...] = np.linspace(-1, 1, bn.num_features)
    blk.eval()
    x = refsnn.tensor(np.abs(np.random.default_rng(1).standard_normal((2, 4, 6, 6))))
    with refsnn.no_grad():
        got = blk(x).data
        want = _block_by_hand(blk, x, sew).data
        other = _block_by_hand(blk, x, not sew).data
    assert got.shape == (2, 8, 3, 3)
    np.testing.assert_array_equal(got, want)
    assert not np.array_equal(got, other)
    assert isinstance(blk.shortcut.bn, BatchNorm2d)
    assert isinstance(blk.shortcut.relu, refsnn.nn.ReLU if sew else refsnn.nn.Identity)
