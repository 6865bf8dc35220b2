"""The PyTorch habits refsnn honours: the global generator, registered containers, module helpers,
strict state loading, Python scalars from tensors, NumPy functions refused, and the new ops
(max/argmax, flatten/view/.T, softmax, mse_loss, dropout, adaptive pooling) with their gradients."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refsnn
import refsnn.functional as F
from refsnn import nn
from refsnn.autograd import gradcheck


def t(shape, seed=0):
    return refsnn.tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=True)


# -- the global generator --------------------------------------------------------------------
def test_layers_without_rng_differ_and_manual_seed_repeats_them():
    refsnn.manual_seed(3)
    a, b = nn.Linear(4, 4), nn.Linear(4, 4)
    assert not np.array_equal(a.weight.data, b.weight.data)
    refsnn.manual_seed(3)
    a2, b2 = nn.Linear(4, 4), nn.Linear(4, 4)
    np.testing.assert_array_equal(a.weight.data, a2.weight.data)
    np.testing.assert_array_equal(b.weight.data, b2.weight.data)
    refsnn.manual_seed(4)
    assert not np.array_equal(nn.Linear(4, 4).weight.data, a.weight.data)


def test_spiking_layers_use_the_global_generator_and_rng_leaves_it_alone():
    refsnn.manual_seed(1)
    s1, s2 = nn.SpikingLinear(5, 3), nn.SpikingConv2d(2, 3, 3)
    refsnn.manual_seed(1)
    state = refsnn.get_rng_state()
    explicit = nn.SpikingLinear(5, 3, rng=7)  # an explicit seed: the global stream does not move
    assert refsnn.get_rng_state() == state
    np.testing.assert_array_equal(nn.SpikingLinear(5, 3).weight.data, s1.weight.data)
    np.testing.assert_array_equal(nn.SpikingConv2d(2, 3, 3).weight.data, s2.weight.data)
    np.testing.assert_array_equal(explicit.weight.data, nn.SpikingLinear(5, 3, rng=7).weight.data)


def test_rng_state_round_trip_and_bad_seeds():
    refsnn.manual_seed(5)
    state = refsnn.get_rng_state()
    x = refsnn.default_generator().random(4)
    refsnn.set_rng_state(state)
    np.testing.assert_array_equal(refsnn.default_generator().random(4), x)
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="manual_seed: seed must be an integer >= 0"):
            refsnn.manual_seed(bad)
    with pytest.raises(TypeError, match="rng must be None"):
        nn.Linear(2, 2, rng=1.5)
    with pytest.raises(ValueError, match="set_rng_state"):
        refsnn.set_rng_state({"bit_generator": "MT19937"})


# -- containers and module helpers ---------------------------------------------------------------
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Linear(3, 3, rng=i) for i in range(2)])
        self.heads = nn.ModuleDict({"cls": nn.Linear(3, 2, rng=5), "reg": nn.Linear(3, 1, rng=6)})
        self.plain = [nn.Linear(3, 3)]  # a Python list: not registered, as in torch

    def forward(self, x):
        for b in self.blocks:
            x = F.relu(b(x))
        return self.heads["cls"](x)


def test_containers_register_parameters_state_and_mode():
    net = Net()
    assert len(net.parameters()) == 8
    assert list(net.state_dict())[:3] == ["blocks.0.weight", "blocks.0.bias", "blocks.1.weight"]
    assert "heads.reg.bias" in net.state_dict()
    net.eval()
    assert not any(m.training for m in net.modules())
    assert net(refsnn.tensor(np.ones((4, 3)))).shape == (4, 2)
    with pytest.raises(TypeError, match="no forward"):
        net.blocks(refsnn.tensor(np.ones((1, 3))))


def test_module_list_edits_keep_names_dense():
    ml = nn.ModuleList([nn.Identity(), nn.ReLU()])
    ml.insert(0, nn.Linear(2, 2, rng=0))
    assert [type(m).__name__ for m in ml.append(nn.Flatten())] == ["Linear", "Identity", "ReLU", "Flatten"]
    del ml[3]
    del ml[1]
    assert [n for n, _ in ml.named_children()] == ["0", "1"] and isinstance(ml[-1], nn.ReLU)
    ml[1] = nn.Identity()
    assert isinstance(ml[1], nn.Identity) and len(ml[0:1]) == 1
    assert [n for n, _ in ml.named_parameters()] == ["0.weight", "0.bias"]
    with pytest.raises(IndexError):
        ml[2]
    with pytest.raises(TypeError, match="not a Module"):
        ml.append(np.zeros(2))


def test_module_dict_keys_and_errors():
    md = nn.ModuleDict()
    md["a"] = nn.Linear(2, 2, rng=0)
    md.update([("b", nn.ReLU())])
    assert md.keys() == ["a", "b"] and "a" in md and len(md) == 2
    del md["a"]
    assert list(md) == ["b"] and md.parameters() == []
    for bad in ("x.y", "training", "keys", 3):
        with pytest.raises(KeyError):
            md[bad] = nn.ReLU()
    with pytest.raises(KeyError, match="keys are"):
        md["nope"]


def test_apply_children_requires_grad():
    net = Net()
    seen = []
    net.apply(lambda m: seen.append(type(m).__name__))
    assert seen[-1] == "Net" and seen.count("Linear") == 4
    assert [type(m).__name__ for m in net.children()] == ["ModuleList", "ModuleDict"]
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())
    net.blocks.requires_grad_()
    assert [p.requires_grad for p in net.parameters()] == [True] * 4 + [False] * 4
    with pytest.raises(TypeError):
        net.requires_grad_("yes")


def test_load_state_dict_strict_and_not():
    a, b = Net(), Net()
    for p in b.parameters():
        p.data[...] = 0
    sd = a.state_dict()
    sd.pop("heads.reg.bias")
    sd["extra.weight"] = np.zeros(1)
    with pytest.raises(ValueError, match=r"missing keys \['heads.reg.bias'\].*unexpected keys \['extra.weight'\]"):
        b.load_state_dict(sd)
    assert all((p.data == 0).all() for p in b.parameters())  # nothing loaded
    res = b.load_state_dict(sd, strict=False)
    assert res.missing_keys == ["heads.reg.bias"] and res.unexpected_keys == ["extra.weight"]
    np.testing.assert_array_equal(b.blocks[1].weight.data, a.blocks[1].weight.data)
    assert (b.heads["reg"].bias.data == 0).all()
    bad = a.state_dict()
    bad["heads.cls.weight"] = np.zeros((9, 9))
    with pytest.raises(ValueError, match="heads.cls.weight"):
        b.load_state_dict(bad, strict=False)


# -- Python scalars and NumPy ------------------------------------------------------------------
def test_scalar_conversions():
    x = refsnn.tensor(np.array([[1.5, 2.0]]), requires_grad=True)
    assert float(x.sum()) == 3.5 and int(x[0, 1]) == 2 and bool(x[0, 0])
    assert not bool(refsnn.tensor(np.zeros(1)))
    for conv in (float, int, bool):
        with pytest.raises(TypeError, match="one element"):
            conv(x)


def test_numpy_functions_on_tensors_are_refused_but_operators_work():
    x = t((2, 3))
    for fn in (np.exp, np.sqrt, np.mean, np.concatenate, np.maximum.reduce):
        with pytest.raises(TypeError, match="refsnn.functional"):
            fn([x, x] if fn is np.concatenate else x)
    y = np.full((2, 3), 2.0) * x + np.ones(3)  # ndarray (op) Tensor: Tensor's operators, on the tape
    assert isinstance(y, refsnn.Tensor) and y._node is not None
    np.testing.assert_array_equal((np.ones(2) @ x).data, x.data.sum(0))
    assert np.shape(x) == (2, 3) and np.ndim(x) == 2
    np.testing.assert_array_equal(np.asarray(x), x.data)


# -- the new ops ---------------------------------------------------------------------------------
def test_max_argmax_and_their_gradient():
    x = t((3, 4))
    assert gradcheck(lambda a: a.max(), [x])
    assert gradcheck(lambda a: a.max(axis=1, keepdims=True), [x])
    assert gradcheck(lambda a: F.amax(a, axis=(0, 1)), [x])
    np.testing.assert_array_equal(x.argmax(axis=0).data, x.data.argmax(axis=0))
    assert x.argmax().dtype == np.int64 and int(x.argmax()) == x.data.argmax()
    tie = refsnn.tensor(np.array([1.0, 3.0, 3.0]), requires_grad=True)
    tie.max().backward()
    np.testing.assert_array_equal(tie.grad, [0, 0.5, 0.5])  # ties share the gradient (torch.amax)
    with pytest.raises(ValueError, match="empty"):
        refsnn.tensor(np.zeros((0, 2))).max()


def test_flatten_view_T():
    x = t((2, 3, 4))
    assert x.flatten().shape == (24,) and x.flatten(1).shape == (2, 12) and x.flatten(0, 1).shape == (6, 4)
    assert F.flatten(x).shape == (2, 12)  # the functional keeps the batch axis (as nn.Flatten)
    assert x.view(4, 6).shape == (4, 6) and x.view((-1,)).shape == (24,)
    assert x.T.shape == (4, 3, 2)
    np.testing.assert_array_equal(t((2, 3)).T.data, t((2, 3)).data.T)
    assert gradcheck(lambda a: a.T @ a, [t((2, 3))])
    with pytest.raises(ValueError, match="start_dim"):
        x.flatten(2, 1)


def test_softmax_and_mse_loss_gradients():
    x = t((3, 5))
    np.testing.assert_allclose(F.softmax(x).data.sum(axis=1), 1.0)
    np.testing.assert_allclose(F.softmax(x, axis=0).data, np.exp(F.log_softmax(x, axis=0).data))
    assert gradcheck(F.softmax, [x])
    assert gradcheck(lambda a: F.softmax(a, axis=0), [x])
    target = t((3, 5), seed=1)
    for red in ("mean", "sum", "none"):
        assert gradcheck(lambda a, b: F.mse_loss(a, b, reduction=red), [x, target])
    assert float(F.mse_loss(x, target)) == pytest.approx(np.mean((x.data - target.data) ** 2))
    with pytest.raises(ValueError, match="reduction"):
        F.mse_loss(x, target, reduction="avg")
    with pytest.raises(ValueError, match="shape"):
        F.mse_loss(x, np.zeros(5))


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 7), w=st.integers(1, 7), oh=st.integers(1, 7), ow=st.integers(1, 7))
def test_adaptive_avg_pool_matches_torch_windows(h, w, oh, ow):
    x = np.random.default_rng(h * 10 + w).standard_normal((2, 3, h, w))
    if oh > h or ow > w:
        with pytest.raises(ValueError, match="output_size"):
            nn.AdaptiveAvgPool2d((oh, ow))(refsnn.tensor(x))
        return
    out = nn.AdaptiveAvgPool2d((oh, ow))(refsnn.tensor(x)).data
    for i in range(oh):
        for j in range(ow):
            h0, h1 = (i * h) // oh, -(-(i + 1) * h // oh)
            w0, w1 = (j * w) // ow, -(-(j + 1) * w // ow)
            np.testing.assert_allclose(out[:, :, i, j], x[:, :, h0:h1, w0:w1].mean(axis=(2, 3)), rtol=1e-12)


def test_adaptive_avg_pool_gradient_and_global_case():
    assert gradcheck(lambda a: F.adaptive_avg_pool2d(a, (2, 3)), [t((2, 2, 5, 4))])
    assert gradcheck(lambda a: F.adaptive_avg_pool2d(a, 3), [t((1, 2, 4, 4))])  # overlapping windows
    x = t((2, 3, 4, 4))
    np.testing.assert_array_equal(nn.AdaptiveAvgPool2d(1)(x).data, x.data.mean(axis=(2, 3), keepdims=True))
    np.testing.assert_array_equal(nn.AdaptiveAvgPool2d()(x).data, nn.AdaptiveAvgPool2d((1, 1))(x).data)
    with pytest.raises(ValueError, match="output_size must be >= 1"):
        F.adaptive_avg_pool2d(x, 0)


def test_dropout_seeded_scaled_and_identity_in_eval():
    x = refsnn.tensor(np.ones((200, 50)), requires_grad=True)
    refsnn.manual_seed(11)
    d = nn.Dropout(0.3)
    y = d(x)
    kept = y.data != 0
    assert 0.65 < kept.mean() < 0.75
    np.testing.assert_allclose(y.data[kept], 1 / 0.7)
    refsnn.manual_seed(11)
    np.testing.assert_array_equal(nn.Dropout(0.3)(x).data, y.data)  # same seed, same mask
    assert not np.array_equal(d(x).data, y.data)                      # the next batch, a new mask
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, kept / 0.7)
    assert d.eval()(x) is x and nn.Dropout(0.0)(x) is x
    np.testing.assert_array_equal(nn.Dropout(0.5, rng=3)(x).data, F.dropout(x, 0.5, rng=3).data)
    for bad in (1.0, -0.1, "0.5"):
        with pytest.raises(ValueError, match="p must be a number in"):
            nn.Dropout(bad)


def test_conv2d_has_a_bias_by_default_as_torch():
    assert nn.Conv2d(2, 3, 3).bias is not None and nn.Conv2d(2, 3, 3, bias=False).bias is None
    assert nn.SpikingConv2d(2, 3, 3).bias is None  # the paper's layer: BN follows, no bias
