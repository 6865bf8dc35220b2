"""refsnn.optim: parameter groups per kind, SGD/Adam updates, weight decay on weights only, clamping,
skipping, the cosine schedule and the state dict."""
import math


import numpy as np
import pytest

from refsnn.nn import Module, Parameter
from refsnn.optim import DEFAULT_LR, SGD, Adam, ConstantSchedule, CosineSchedule, param_groups


class Toy(Module):
    """One parameter of every kind (a stand-in for a spiking model)."""

    def __init__(self, dtype=np.float64):
        super().__init__()
        rng = np.random.default_rng(0)
        self.w = Parameter(rng.standard_normal((3, 4)), "weight", dtype=dtype)
        self.b = Parameter(rng.standard_normal(3), "bias", dtype=dtype)
        self.gamma = Parameter(np.ones(3) + 0.5, "bn", dtype=dtype)
        self.vth = Parameter(np.array([0.5, 0.2]), "threshold", dtype=dtype)
        self.sq = Parameter(np.array(0.1), "weight_step", dtype=dtype)
        self.bs = Parameter(np.array([4.0, 4.0]), "spike_width", dtype=dtype)
        self.bw = Parameter(np.array(4.0), "weight_width", dtype=dtype)
        self.that = Parameter(np.array(2.0), "time", dtype=dtype)


def _set_grads(model, seed=1):
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.grad = rng.standard_normal(p.shape).astype(p.dtype)


def test_groups_per_kind_with_paper_learning_rates():
    groups = param_groups(Toy(), weight_decay=1e-4)
    by = {g["name"]: g for g in groups}
    assert set(by) == {"weight", "bias", "bn", "threshold", "weight_step", "spike_width", "weight_width", "time"}
    assert by["time"]["lr"] == 1e-2 and all(by[k]["lr"] == 0.1 for k in by if k != "time")
    assert DEFAULT_LR["time"] == 1e-2
    # weight decay on kind == "weight" only
    assert by["weight"]["weight_decay"] == 1e-4
    assert all(g["weight_decay"] == 0.0 for k, g in by.items() if k != "weight")
    # thresholds and weight steps are clamped at eps
    assert by["threshold"]["min_value"] == 1e-5 and by["weight_step"]["min_value"] == 1e-5
    assert by["weight"]["min_value"] is None
    with pytest.raises(ValueError, match="unknown parameter kind"):
        param_groups(Toy(), lr={"weights": 0.1})


def test_sgd_momentum_and_weight_decay_match_hand_computation():
    m = Toy()
    before = {n: p.data.copy() for n, p in m.named_parameters()}
    opt = SGD(param_groups(m, weight_decay=0.01), momentum=0.9)
    _set_grads(m, 1)
    g1 = {n: p.grad.copy() for n, p in m.named_parameters()}
    opt.step()
    _set_grads(m, 2)
    g2 = {n: p.grad.copy() for n, p in m.named_parameters()}
    mid = {n: p.data.copy() for n, p in m.named_parameters()}
    opt.step()
    for n, p in m.named_parameters():
        lr = 1e-2 if p.kind == "time" else 0.1
        wd = 0.01 if p.kind == "weight" else 0.0
        d1 = g1[n] + wd * before[n]
        x1 = before[n] - lr * d1
        d2 = g2[n] + wd * x1
        buf = 0.9 * d1 + d2
        x2 = x1 - lr * buf
        if p.kind in ("threshold", "weight_step"):
            x1, x2 = np.maximum(x1, 1e-5), None
        np.testing.assert_allclose(mid[n], x1, rtol=1e-12, err_msg=n)
        if x2 is not None:
            np.testing.assert_allclose(p.data, x2, rtol=1e-12, err_msg=n)


def test_weight_decay_touches_weights_only():
    m = Toy()
    opt = SGD(param_groups(m, weight_decay=0.5), momentum=0.0)
    before = {n: p.data.copy() for n, p in m.named_parameters()}
    for p in m.parameters():
        p.grad = np.zeros_like(p.data)
    opt.step()
    for n, p in m.named_parameters():
        if p.kind == "weight":
            np.testing.assert_allclose(p.data, before[n] * (1 - 0.1 * 0.5))
        else:
            assert np.array_equal(p.data, before[n]), n


def test_skips_frozen_and_gradless_parameters_and_clamps_steps():
    m = Toy()
    m.bw.requires_grad = False
    opt = SGD(param_groups(m), momentum=0.9)
    _set_grads(m)
    m.that.grad = None
    m.vth.grad = np.array([100.0, -1.0])   # would push the first threshold far below 0
    m.sq.grad = np.array(50.0)
    bw, that = m.bw.data.copy(), m.that.data.copy()
    opt.step()
    assert np.array_equal(m.bw.data, bw) and np.array_equal(m.that.data, that)
    idx = {id(p): (gi, pi) for gi, g in enumerate(opt.groups) for pi, p in enumerate(g["params"])}
    assert idx[id(m.bw)] not in opt.state and idx[id(m.that)] not in opt.state
    assert m.vth.data[0] == 1e-5 and m.vth.data[1] > 0.2 and m.sq.data == 1e-5


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_precision_is_kept(dtype):
    m = Toy(dtype)
    for cls in (SGD, Adam):
        opt = cls(param_groups(m))
        _set_grads(m)
        opt.step()
        assert all(p.dtype == np.dtype(dtype) for p in m.parameters())


def test_adam_first_step_moves_by_lr_times_sign():
    m = Toy()
    before = {n: p.data.copy() for n, p in m.named_parameters()}
    opt = Adam(param_groups(m, weight_decay=0.0), eps=1e-12)
    _set_grads(m)
    opt.step()
    for n, p in m.named_parameters():
        if p.kind in ("threshold", "weight_step"):
            continue
        lr = 1e-2 if p.kind == "time" else 0.1
        np.testing.assert_allclose(p.data, before[n] - lr * np.sign(p.grad), rtol=1e-9, err_msg=n)


@pytest.mark.parametrize("cls", [SGD, Adam])
def test_state_dict_round_trip_continues_identically(cls):
    a, b = Toy(np.float32), Toy(np.float32)
    oa = cls(param_groups(a))
    for s in range(3):
        _set_grads(a, s)
        oa.step()
    sd = oa.state_dict()
    b.load_state_dict(a.state_dict())
    ob = cls(param_groups(b))
    ob.load_state_dict(sd)
    assert ob.steps == 3
    for s in range(3, 6):
        _set_grads(a, s)
        _set_grads(b, s)
        oa.step()
        ob.step()
    for (n, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert np.array_equal(pa.data, pb.data), n
    with pytest.raises(ValueError, match="state is of a"):
        (Adam if cls is SGD else SGD)(param_groups(b)).load_state_dict(sd)


def test_cosine_schedule():
    m = Toy()
    opt = SGD(param_groups(m))
    sch = CosineSchedule(opt, total=10)
    assert opt.lrs()["weight"] == 0.1 and opt.lrs()["time"] == 1e-2
    for _ in range(5):
        sch.step()
    assert math.isclose(opt.lrs()["weight"], 0.05) and math.isclose(opt.lrs()["time"], 0.005)
    for _ in range(5):
        sch.step()
    assert abs(opt.lrs()["weight"]) < 1e-15
    sch2 = CosineSchedule(SGD(param_groups(Toy())), total=10, min_factor=0.1)
    sch2.load_state_dict({"t": 10})
    assert math.isclose(sch2.optimizer.lrs()["weight"], 0.01)
    warm = CosineSchedule(SGD(param_groups(Toy())), total=10, warmup=4)
    assert math.isclose(warm.factor(0), 0.2) and warm.factor(4) == 1.0
    const = ConstantSchedule(SGD(param_groups(Toy())), total=10)
    const.step()
    assert const.optimizer.lrs()["weight"] == 0.1
    with pytest.raises(ValueError, match="total"):
        CosineSchedule(opt, total=0)


def test_bad_hyper_parameters_are_named():
    with pytest.raises(ValueError, match="momentum"):
        SGD(param_groups(Toy()), momentum=1.0)
    with pytest.raises(ValueError, match="lr"):
        SGD([{"name": "x", "params": Toy().parameters(), "lr": -1.0}])
    with pytest.raises(ValueError, match="two groups"):
        m = Toy()
        SGD([{"params": [m.w], "lr": 0.1}, {"params": [m.w], "lr": 0.1}])


# -- the clamp belongs to the kind; param_groups as torch; NaN is an error -------------------------
def test_clamp_applies_to_thresholds_and_steps_in_any_grouping():
    m = Toy()
    for p in m.parameters():
        p.grad = np.full(p.shape, 100.0, dtype=p.dtype)  # drives every value far below zero
    opt = SGD(m.parameters(), lr=1.0, momentum=0.0)       # one plain group, no min_value
    assert opt.param_groups is opt.groups and opt.param_groups[0]["min_value"] is None
    opt.step()
    np.testing.assert_array_equal(m.vth.data, [1e-5, 1e-5])
    assert float(m.sq.data) == 1e-5
    assert (m.w.data < 0).all() and (m.b.data < 0).all()  # other kinds are not clamped


def test_named_parameters_give_names_and_a_nan_gradient_is_an_error():
    m = Toy()
    _set_grads(m)
    m.vth.grad[1] = np.nan
    before = {n: p.data.copy() for n, p in m.named_parameters()}
    for opt in (SGD(param_groups(m)), SGD(m.named_parameters(), lr=0.1), Adam(m.named_parameters(), lr=0.1)):
        with pytest.raises(FloatingPointError, match=r"gradient of 'vth' has 1 NaN/inf element"):
            opt.step()
    for n, p in m.named_parameters():
        np.testing.assert_array_equal(p.data, before[n])  # nothing was updated
    with pytest.raises(FloatingPointError, match=r"parameter 3 of group 'all'"):
        SGD(m.parameters(), lr=0.1).step()
    m.vth.grad[1] = 0.0
    m.sq.data[...] = np.inf
    with pytest.raises(FloatingPointError, match="value of 'sq'"):
        SGD(param_groups(m)).step()


def test_named_groups_keep_the_checkpoint_format():
    m = Toy()
    opt = SGD(param_groups(m))
    assert opt.param_groups[0]["param_names"] == ["w"]
    assert all("param_names" not in g for g in opt.state_dict()["groups"])
