"""refsnn.models.costing: MACs, S-ACE, Bit Budget and size of whole models (docs/method.md §2, Eq. 7-8)."""
import json
import math

import numpy as np
import pytest

from refsnn.method.budget import model_cost, uniform
from refsnn.models import (format_cost_table, get_model, layer_costs, model_costs, parse_input_shape, summary_main,
                           tiny_resnet)


# --------------------------------------------------------------------------- hand MACs (docs/method.md §2)
def out_size(h, k, s, p):
    return (h + 2 * p - k) // s + 1


def hand_macs(stem_c, stem_k, stem_s, maxpool, blocks, widths, strides, classes, hw, in_c=3):
    """(total MACs, stem MACs): H_out W_out k^2 C_in C_out per conv, in*out for the classifier."""
    h = out_size(hw, stem_k, stem_s, stem_k // 2)
    stem = h * h * stem_k ** 2 * in_c * stem_c
    total, c = stem, stem_c
    if maxpool:
        h = out_size(h, 3, 2, 1)
    for nb, w, s0 in zip(blocks, widths, strides):
        for j in range(nb):
            s = s0 if j == 0 else 1
            h = out_size(h, 3, s, 1)
            total += h * h * 9 * (c * w + w * w)
            if s != 1 or c != w:
                total += h * h * c * w
            c = w
    return total + c * classes, stem


RESNET18 = hand_macs(64, 3, 1, False, (2, 2, 2, 2), (64, 128, 256, 512), (1, 2, 2, 2), 10, 32)
RESNET20 = hand_macs(128, 3, 1, False, (3, 3, 3), (128, 256, 512), (1, 2, 2), 10, 32)
SEW34 = hand_macs(64, 7, 2, True, (3, 4, 6, 3), (64, 128, 256, 512), (1, 2, 2, 2), 1000, 224)


@pytest.fixture(scope="module")
def base():
    """Per-layer costs (initial widths) of the three paper models, one forward pass each."""
    out = {}
    for name, shape in (("resnet18", (3, 32, 32)), ("sew_resnet34", (3, 224, 224))):
        out[name] = layer_costs(get_model(name, dtype=np.float32), shape)
    return out


def test_hand_formulas_are_the_known_numbers():
    assert RESNET18[0] == 555_422_720            # the usual 0.56 G MACs of CIFAR ResNet18
    assert RESNET20[0] == 2_587_235_328          # wide ResNet20 (checked in test_models after a forward)
    assert abs(SEW34[0] / 1e9 - 3.66) < 0.01     # ResNet34 at 224: ~3.6-3.7 G MACs
    assert SEW34[1] == 112 * 112 * 49 * 3 * 64   # 7x7/2 stem


@pytest.mark.parametrize("name, hand", [("resnet18", RESNET18), ("sew_resnet34", SEW34)])
def test_macs_match_hand_formulas(base, name, hand):
    c = model_cost(base[name])
    assert c.macs == hand[0]
    assert base[name][0].name == "stem" and base[name][0].macs == hand[1]


def test_layer_shapes_recorded(base):
    lc = {l.name: l for l in base["sew_resnet34"]}
    assert lc["stem"].n_f == 3 * 224 * 224
    assert lc["layer1.0.conv1"].n_f == 64 * 56 * 56          # after the 3x3/2 max pool
    assert lc["layer4.0.shortcut.conv"].macs == 7 * 7 * 256 * 512
    assert lc["fc"].n_f == 512 and lc["fc"].macs == 512 * 1000 and lc["fc"].kind == "linear"


def test_initial_widths_give_the_paper_defaults(base):
    c = model_cost(base["resnet18"])       # CIFAR: 4/4/2
    assert (c.W, c.S, c.T, c.bit_budget) == (4, 4, 2, 32)
    assert c.s_ace == c.macs * 32
    c = model_cost(base["sew_resnet34"])   # ImageNet: 4/4/1
    assert (c.W, c.S, c.T, c.bit_budget) == (4, 4, 1, 16)


def test_no_input_neuron_drops_the_stem_from_s_ace():
    with_n = model_costs(tiny_resnet(), (1, 8, 8), wst=(16, 1, 4))
    without = model_costs(tiny_resnet(input_neuron=False), (1, 8, 8), wst=(16, 1, 4))
    macs, stem_macs = 533_824, 8 * 8 * 9 * 1 * 16      # tiny_resnet: stem 3x3 1->16 at 8x8
    assert without.layers[0].spiking is False and with_n.layers[0].spiking is True
    assert with_n.macs == without.macs == macs and with_n.size_mb == without.size_mb
    assert with_n.s_ace == macs * 64 and without.s_ace == (macs - stem_macs) * 64
    assert with_n.s_ace_star - without.s_ace_star == stem_macs * 16 * (1 + 2)
    assert (without.W, without.S, without.T) == (16, 1, 4)
    # the stem's input map (the image) no longer weighs in the S and T averages
    plain = model_costs(tiny_resnet(input_neuron=False, layer_configs={"layer*": {"time_steps": 3}}), (1, 8, 8))
    assert plain.T == (3 * sum(l.n_f for l in plain.layers[1:-1]) + 2 * 32) / sum(l.n_f for l in plain.layers[1:])


def test_uniform_scaling(base):
    ls = base["resnet18"]                  # stem has a neuron: nothing excluded
    c = {w: model_cost(uniform(ls, *w)) for w in [(16, 1, 2), (16, 1, 4), (16, 2, 2), (16, 4, 4), (4, 4, 2),
                                                   (8, 8, 1), (16, 4, 6)]}
    macs = RESNET18[0]
    assert c[(16, 1, 4)].s_ace == 2 * c[(16, 1, 2)].s_ace == macs * 64
    assert c[(16, 2, 2)].s_ace == c[(16, 1, 4)].s_ace
    assert c[(16, 4, 4)].s_ace == 8 * c[(4, 4, 2)].s_ace
    for (W, S, T), cc in c.items():
        assert cc.bit_budget == W * S * T and (cc.W, cc.S, cc.T) == (W, S, T)
        assert cc.s_ace == macs * W * S * T
        # App. A.6 as read by refsnn: B_w * (max_t B_s + ceil(log2 T))
        assert cc.s_ace_star == macs * W * (S + math.ceil(math.log2(T)))
        assert math.isclose(cc.size_mb, 11_164_352 * W / 8e6, rel_tol=1e-12)
    assert c[(16, 1, 2)].size_mb == 4 * c[(4, 4, 2)].size_mb


def test_model_costs_wst_forms_agree_and_leave_state_alone():
    m = tiny_resnet()
    assert m.training
    a = model_costs(m, (1, 8, 8), wst=(16, 1, 4))
    b = model_costs(m, "1x8x8", wst="16/1/4")
    assert a.as_dict() == b.as_dict()
    assert m.training and all(mod.training for mod in m.modules())   # training flags restored
    assert not bool(m.stem.initialized)                              # eval pass: no LSQ initialisation
    assert a.macs == 533_824 and a.s_ace == 533_824 * 64
    with pytest.raises(ValueError, match="16/1"):
        model_costs(m, (1, 8, 8), wst="16/1")
    with pytest.raises(ValueError, match="wst"):
        model_costs(m, (1, 8, 8), wst=(16, 0, 4))
    with pytest.raises(ValueError, match="C x H x W"):
        model_costs(m, (8, 8))


def test_per_layer_widths_show_in_the_costs():
    m = tiny_resnet(layer_configs={"fc": {"weight_bits": 8, "weight_bound": 8},
                                   "layer1.*": {"spike_bits": 2, "time_steps": 3}})
    c = model_costs(m, (1, 8, 8))
    lc = {l.name: l for l in c.layers}
    assert lc["fc"].B_w == 8 and lc["fc"].B_s == [4, 4]
    assert lc["layer1.0.conv2"].B_s == [2, 2, 2] and lc["layer1.0.conv2"].T == 3
    assert lc["layer1.0.conv2"].bit_budget == 4 * 6
    n_w = sum(l.n_w for l in c.layers)
    assert math.isclose(c.W, (4 * (n_w - 320) + 8 * 320) / n_w)
    n_f = sum(l.n_f for l in c.layers)
    nf1 = lc["layer1.0.conv1"].n_f + lc["layer1.0.conv2"].n_f
    assert math.isclose(c.S, (2 * nf1 + 4 * (n_f - nf1)) / n_f)
    assert math.isclose(c.T, (3 * nf1 + 2 * (n_f - nf1)) / n_f)
    assert c.s_ace == sum(l.macs * l.B_w * sum(l.B_s) for l in c.layers)


def test_parse_input_shape():
    assert parse_input_shape("3x224x224") == (3, 224, 224)
    assert parse_input_shape([1, 8, 8]) == (1, 8, 8)
    for bad in ("3x32", "3x0x32", "axbxc", 5):
        with pytest.raises(ValueError):
            parse_input_shape(bad)


def test_format_cost_table():
    c = model_costs(tiny_resnet(input_neuron=False), (1, 8, 8), wst=(16, 1, 4))
    text = format_cost_table(c)
    for s in ("layer2.0.shortcut.conv", "fc", "S-ACE*", "reading of App. A.6", "Bit Budget = W*S*T = 64",
              "no neuron", "MACs (M)", "S-ACE (M)", "size (MB)"):
        assert s in text, s
    assert len(text.splitlines()) >= 2 + 7


def test_summary_main_json(capsys):
    assert summary_main(["--model", "tiny_resnet", "--wst", "16/1/4", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    for k in ("W", "S", "T", "bit_budget", "macs", "s_ace", "s_ace_star", "size_bytes", "layers"):
        assert k in d, k
    assert (d["W"], d["S"], d["T"], d["bit_budget"]) == (16, 1, 4, 64)
    # JSON in raw units: integer counts, bytes
    assert d["macs"] == 533_824 and len(d["layers"]) == 7
    assert d["s_ace"] == sum(lc["s_ace"] for lc in d["layers"]) and isinstance(d["s_ace"], int)
    assert d["size_bytes"] == sum(lc["n_w"] * lc["B_w"] / 8 for lc in d["layers"])
    assert summary_main(["--model", "tiny_resnet", "--json", "--no-input-neuron"]) == 0
    d2 = json.loads(capsys.readouterr().out)
    assert d2["layers"][0]["spiking"] is False and d2["s_ace"] < d["s_ace"]


def test_summary_main_table_and_errors(capsys):
    assert summary_main(["--model", "tiny_resnet", "--input", "1x16x16"]) == 0
    out = capsys.readouterr().out
    assert "tiny_resnet" in out and "1x16x16" in out and "S-ACE*" in out
    assert summary_main(["--model", "tiny_resnet", "--wst", "16/x/4"]) == 2
    assert "16/x/4" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        summary_main(["--model", "vgg16"])
