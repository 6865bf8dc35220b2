"""The contract between the spiking layers and the method (issue 9): the resolved convention,
the layer protocol and its one W/S/T function, the method's membrane function, module hooks."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refsnn
from refsnn.kernels import neuron as kn
from refsnn.method import budget
from refsnn.method.budget import LayerCost
from refsnn.method.conventions import OFFICIAL, PAPER, Convention
from refsnn.method.neuron import emitted_spikes, membrane_potentials, spiking_neuron
from refsnn.method.protocol import LayerWidths, SpikingLayerProtocol, weighted_average, wst_averages
from refsnn.method.regulate import model_averages
from refsnn.method.weight_quant import quantize_weight
from refsnn.nn import Identity, Module, SpikingConfig, SpikingConv2d, SpikingLinear


# -- the convention is resolved once ---------------------------------------------------------------
def test_config_holds_the_resolved_convention_and_writes_its_name():
    c = SpikingConfig(convention="official")
    assert c.convention is OFFICIAL and isinstance(c.convention, Convention)
    assert c.as_dict()["convention"] == "official"
    assert SpikingConfig(convention=PAPER) == SpikingConfig() == SpikingConfig(convention="paper")
    assert c.replace(tau=2.0).convention is OFFICIAL
    with pytest.raises(ValueError, match="convention must be one of"):
        SpikingConfig(convention="pytorch")


def test_method_functions_take_the_object_not_a_name():
    x = refsnn.tensor(np.ones((2, 3)))
    with pytest.raises(TypeError, match="spiking_neuron: convention must be a refsnn.method.Convention"):
        spiking_neuron(x, refsnn.tensor([0.5]), refsnn.tensor([2.0]), refsnn.tensor(1.0), convention="paper")
    with pytest.raises(TypeError, match="quantize_weight: convention must be"):
        quantize_weight(x, refsnn.tensor(0.1), refsnn.tensor(2.0), convention="official")
    with pytest.raises(TypeError, match="convention must be"):
        membrane_potentials(np.ones(3), np.ones(1), np.array([2]), 1, domain="positive", rounding="round", tau=1.0,
                            convention="paper")


@pytest.mark.parametrize("conv", [PAPER, OFFICIAL])
@pytest.mark.parametrize("rounding", ["round", "floor"])
def test_membrane_potentials_are_the_kernels_and_the_spikes_its_levels(conv, rounding):
    rng = np.random.default_rng(0)
    I, V, B = rng.uniform(0, 2, (4, 5)), np.array([0.3, 0.4, 0.2]), np.array([2, 3, 1])
    v = membrane_potentials(I, V, B, 3, domain="positive", rounding=rounding, tau=2.0, convention=conv, impl="numpy")
    _, ref = kn.neuron_forward(I, V, B, 3, domain="positive", shift=0.5 if rounding == "round" else 0.0, tau=2.0,
                               reset_decay=conv.reset_decay, impl="numpy")
    assert np.array_equal(v, ref)
    # Eq. 12: the squeezed output is the mean of V^t S^t over the steps
    S = [emitted_spikes(v[t] / V[t], B[t], domain="positive", rounding=rounding) for t in range(3)]
    y = spiking_neuron(refsnn.tensor(I), refsnn.tensor(V), refsnn.tensor(B.astype(float)), refsnn.tensor(3.0),
                       rounding=rounding, tau=2.0, convention=conv, impl="numpy")
    np.testing.assert_allclose(y.data, sum(V[t] * S[t] for t in range(3)) / 3, rtol=1e-15)


# -- the layer protocol ----------------------------------------------------------------------------
def _layers(**cfg):
    c = SpikingConfig(time_bound=3, **cfg)
    l1 = SpikingConv2d(2, 3, 3, padding=1, config=c.replace(input_neuron=False), rng=1)
    l2 = SpikingConv2d(3, 4, 3, padding=1, config=c, rng=2)
    l3 = SpikingLinear(4 * 16, 5, config=c.replace(time_steps=3.0, spike_bits=2.0), rng=3)
    x = refsnn.tensor(np.abs(np.random.default_rng(0).standard_normal((2, 2, 4, 4))))
    z = l2(l1(x))
    l3(refsnn.functional.flatten(z))
    return [l1, l2, l3]


def test_layers_implement_the_protocol():
    for layer in _layers():
        assert isinstance(layer, SpikingLayerProtocol) and layer.has_learnable_width
        rec = layer.layer_widths()
        assert rec.n_w == layer.weight.size and rec.n_f == int(np.prod(layer.in_shape))
        cost = layer.cost("x")
        assert (cost.n_w, cost.n_f, cost.spiking) == (rec.n_w, rec.n_f, rec.spiking)
        if rec.spiking:
            assert [int(b) for b in rec.B_s.data] == cost.B_s and int(rec.T.data) == cost.T
    frozen = SpikingLinear(3, 2, config=SpikingConfig(learn_weight_bits=False, learn_spike_bits=False,
                                                      learn_time=False))
    assert not frozen.has_learnable_width
    with pytest.raises(ValueError, match="run a forward pass first"):
        frozen.layer_widths()


def test_one_average_for_numbers_and_tape_tensors():
    layers = _layers()
    tape = model_averages(layers)
    costed = budget.model_cost([l.cost() for l in layers])
    for k in ("W", "S", "T"):
        assert float(tape[k].data) == pytest.approx(getattr(costed, k), rel=1e-15)
    # by hand: W over all three layers, S and T over the two with an input neuron
    nw = np.array([l.weight.size for l in layers], float)
    assert costed.W == pytest.approx((4 * nw).sum() / nw.sum())
    nf = np.array([np.prod(l.in_shape) for l in layers[1:]], float)
    assert costed.T == pytest.approx((np.array([2, 3]) * nf).sum() / nf.sum())
    assert costed.S == pytest.approx((np.array([4, 2]) * nf).sum() / nf.sum())


def test_records_of_future_layers_neuron_only_and_fixed_T():
    """A neuron-only layer (N_w = 0: out of W) and a layer with a fixed T (a number) mix with tape records."""
    Bw = refsnn.tensor(3.0, requires_grad=True)
    Bs = refsnn.tensor([2.0, 4.0], requires_grad=True)
    T = refsnn.tensor(2.0, requires_grad=True)
    recs = [LayerWidths(B_w=Bw, B_s=Bs, T=T, n_w=10, n_f=30),
            LayerWidths(B_w=None, B_s=Bs[:1], T=1.0, n_w=0, n_f=10)]      # neuron-only, fixed T = 1
    avg = wst_averages(recs)
    assert float(avg["W"].data) == 3.0
    assert float(avg["S"].data) == pytest.approx((3.0 * 30 + 2.0 * 10) / 40)
    assert float(avg["T"].data) == pytest.approx((2.0 * 30 + 1.0 * 10) / 40)
    avg["T"].backward()
    assert T.grad == pytest.approx(30 / 40)
    costs = [LayerCost("a", "conv", 100, 10, 30, 3, [2, 4], 2), LayerCost("q", "neuron", 0, 0, 10, 0, [2], 1)]
    mc = budget.model_cost(costs)
    assert (mc.W, mc.S, mc.T) == (3.0, (3.0 * 30 + 2.0 * 10) / 40, (2 * 30 + 1 * 10) / 40)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 8), st.integers(1, 10_000)), min_size=1, max_size=6))
def test_weighted_average_numbers_and_tensors_agree(pairs):
    exact = sum(x * n for x, n in pairs) / sum(n for _, n in pairs)
    assert weighted_average([(float(x), n) for x, n in pairs]) == exact
    tape = weighted_average([(refsnn.tensor(float(x)), n) for x, n in pairs])
    assert float(tape.data) == pytest.approx(exact, rel=1e-14)
    assert weighted_average([]) is None


# -- module hooks --------------------------------------------------------------------------------
class _Double(Module):
    def forward(self, x):
        return x * 2


def test_forward_hook_sees_args_and_output_replaces_it_and_is_removed():
    m, seen = _Double(), []
    h1 = m.register_forward_hook(lambda mod, args, out: seen.append((mod, args, out)))
    assert m(3) == 6 and seen == [(m, (3,), 6)]
    h2 = m.register_forward_hook(lambda mod, args, out: out + 1)
    assert m(3) == 7
    h1.remove()
    h1.remove()   # idempotent
    with h2:
        assert m(1) == 3
    assert m(1) == 2 and len(seen) == 2
    with pytest.raises(TypeError, match="hook must be callable"):
        m.register_forward_hook(None)


def test_spiking_layer_exposes_its_squeezed_output_to_hooks():
    layer = _layers()[1]
    assert isinstance(layer.squeezed, Identity)
    got = {}
    with layer.squeezed.register_forward_hook(lambda mod, args, y: got.setdefault("y", y.data.copy())):
        x = refsnn.tensor(np.abs(np.random.default_rng(1).standard_normal((2, 3, 4, 4))))
        layer.eval()
        z = layer(x)
    B_w, B_s, T = layer.widths()
    y = spiking_neuron(x, layer.thresholds(), B_s, T, convention=layer.config.convention)
    assert np.array_equal(got["y"], y.data) and z.shape == (2, 4, 4, 4)
    assert not layer.state_dict().keys() - {n for n, _ in layer.named_parameters()} - {
        n for n, _ in layer.named_buffers()}
