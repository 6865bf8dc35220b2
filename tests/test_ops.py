"""Every op of refsnn.functional against finite differences (float64, several shapes), plus its errors."""
import numpy as np
import pytest

import refsnn
import refsnn.functional as F
from refsnn.autograd import gradcheck


def t(shape, seed=0, positive=False, scale=1.0):
    x = np.random.default_rng(seed).standard_normal(shape) * scale
    if positive:
        x = np.abs(x) + 0.5
    return refsnn.tensor(x, requires_grad=True)


def away_from_zero(shape, seed=0):
    """Values with |x| >= 0.1 so that relu/abs/max are smooth within eps."""
    x = np.random.default_rng(seed).standard_normal(shape)
    x = np.where(np.abs(x) < 0.1, 0.1 * np.sign(x) + 0.1 * (x == 0), x)
    return refsnn.tensor(x, requires_grad=True)


SHAPES = [(3,), (2, 3), (2, 1, 4)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_binary_ops(op, shape):
    fn = getattr(F, op)
    b_shape = shape[-1:]  # broadcast the second operand
    b = t(b_shape, seed=1, positive=(op == "div"))
    assert gradcheck(fn, [t(shape), b])
    assert gradcheck(fn, [t(shape), t(shape, seed=2, positive=(op == "div"))])


@pytest.mark.parametrize("shape", SHAPES)
def test_unary_ops(shape):
    assert gradcheck(F.neg, [t(shape)])
    assert gradcheck(F.exp, [t(shape)])
    assert gradcheck(F.log, [t(shape, positive=True)])
    assert gradcheck(lambda a: F.pow(a, exponent=3), [t(shape)])
    assert gradcheck(lambda a: F.pow(a, exponent=-0.5), [t(shape, positive=True)])
    assert gradcheck(F.relu, [away_from_zero(shape)])
    assert gradcheck(F.abs, [away_from_zero(shape)])


@pytest.mark.parametrize("shape,axis", [((3,), None), ((2, 3), 0), ((2, 3), 1), ((2, 3, 4), (0, 2)), ((2, 3, 4), -1)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions(shape, axis, keepdims):
    assert gradcheck(lambda a: F.sum(a, axis=axis, keepdims=keepdims), [t(shape)])
    assert gradcheck(lambda a: F.mean(a, axis=axis, keepdims=keepdims), [t(shape)])


def test_reduction_values():
    x = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(F.sum(refsnn.tensor(x), axis=(0, 2)).data, x.sum(axis=(0, 2)))
    np.testing.assert_array_equal(F.mean(refsnn.tensor(x), axis=1, keepdims=True).data, x.mean(axis=1, keepdims=True))


def test_shape_ops():
    assert gradcheck(lambda a: F.reshape(a, shape=(4, -1)), [t((2, 3, 2))])
    assert gradcheck(lambda a: F.transpose(a, axes=(2, 0, 1)), [t((2, 3, 4))])
    assert gradcheck(lambda a: F.transpose(a), [t((2, 3))])
    assert gradcheck(lambda a: F.flatten(a), [t((2, 3, 2, 2))])
    assert gradcheck(lambda a, b: F.concatenate(a, b, axis=1), [t((2, 3)), t((2, 1), seed=1)])
    assert gradcheck(lambda a, b, c: F.concatenate(a, b, c, axis=0), [t((1, 2)), t((2, 2), 1), t((3, 2), 2)])
    assert gradcheck(lambda a: a[:, 1:3], [t((2, 4))])
    assert gradcheck(lambda a: a[np.array([0, 0, 2])], [t((3, 2))])  # repeated index accumulates
    assert F.flatten(t((2, 3, 4))).shape == (2, 12)


def test_matmul_and_linear():
    assert gradcheck(F.matmul, [t((2, 3)), t((3, 4), 1)])
    assert gradcheck(F.matmul, [t((5, 2, 3)), t((3, 4), 1)])
    assert gradcheck(F.matmul, [t((3,)), t((3, 4), 1)])
    assert gradcheck(F.matmul, [t((2, 3)), t((3,), 1)])
    assert gradcheck(F.linear, [t((4, 3)), t((5, 3), 1), t((5,), 2)])
    assert gradcheck(F.linear, [t((2, 4, 3)), t((5, 3), 1)])
    x, w, b = np.ones((2, 3)), np.arange(6.0).reshape(2, 3), np.array([1.0, -1.0])
    np.testing.assert_allclose(F.linear(refsnn.tensor(x), refsnn.tensor(w), refsnn.tensor(b)).data,
                               x @ w.T + b)


@pytest.mark.parametrize("xs,ws,stride,padding", [
    ((2, 3, 5, 5), (4, 3, 3, 3), 1, 1),
    ((1, 2, 6, 5), (3, 2, 3, 3), 2, 0),
    ((2, 2, 4, 4), (2, 2, 1, 1), (2, 1), (0, 1)),
    ((1, 1, 7, 7), (2, 1, 7, 7), 1, 3),
])
def test_conv2d_grad(xs, ws, stride, padding):
    assert gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride=stride, padding=padding),
                     [t(xs), t(ws, 1), t((ws[0],), 2)])
    assert gradcheck(lambda x, w: F.conv2d(x, w, stride=stride, padding=padding, impl="numpy"),
                     [t(xs), t(ws, 1)])


@pytest.mark.parametrize("shape", [(6, 3), (4, 2, 3, 3)])
def test_batch_norm_training_grad_and_running_stats(shape):
    c = shape[1]
    rm, rv = np.zeros(c), np.ones(c)
    x = t(shape, scale=2.0)
    assert gradcheck(lambda x, g, b: F.batch_norm(x, g, b, None, None, training=True),
                     [x, t((c,), 1), t((c,), 2)])
    F.batch_norm(x, t((c,), 1), t((c,), 2), rm, rv, training=True, momentum=0.1)
    axes = (0,) if len(shape) == 2 else (0, 2, 3)
    np.testing.assert_allclose(rm, 0.1 * x.data.mean(axis=axes))
    np.testing.assert_allclose(rv, 0.9 + 0.1 * x.data.var(axis=axes, ddof=1))  # unbiased, as PyTorch


def test_batch_norm_eval_grad_and_value():
    x = t((3, 2, 2, 2))
    rm, rv = np.array([0.5, -1.0]), np.array([2.0, 0.5])
    assert gradcheck(lambda x, g, b: F.batch_norm(x, g, b, rm, rv, training=False),
                     [x, t((2,), 1), t((2,), 2)])
    y = F.batch_norm(x, np.ones(2), np.zeros(2), rm, rv, training=False, eps=0.0 + 1e-12)
    np.testing.assert_allclose(y.data, (x.data - rm.reshape(1, 2, 1, 1)) / np.sqrt(rv.reshape(1, 2, 1, 1)), rtol=1e-9)


def distinct(shape, seed=0):
    """A permutation of well-separated values: no ties inside a pooling window."""
    n = int(np.prod(shape))
    v = np.random.default_rng(seed).permutation(n).astype(float) * 0.1
    return refsnn.tensor(v.reshape(shape), requires_grad=True)


@pytest.mark.parametrize("k,s,p", [(2, 2, 0), (3, 2, 1), (3, 1, 1), ((2, 3), (1, 2), (1, 1))])
def test_pools_grad(k, s, p):
    assert gradcheck(lambda x: F.max_pool2d(x, k, s, p), [distinct((2, 2, 5, 6))])
    assert gradcheck(lambda x: F.avg_pool2d(x, k, s, p), [t((2, 2, 5, 6))])
    assert gradcheck(lambda x: F.adaptive_avg_pool2d(x), [t((2, 3, 3, 2))])


def test_log_softmax_and_cross_entropy():
    assert gradcheck(lambda x: F.log_softmax(x, axis=1), [t((3, 5))])
    assert gradcheck(lambda x: F.log_softmax(x, axis=0), [t((4, 2))])
    labels = np.array([0, 4, 2])
    assert gradcheck(lambda x: F.cross_entropy(x, labels), [t((3, 5))])
    x = np.random.default_rng(3).standard_normal((3, 5))
    ref = -np.mean(np.log(np.exp(x) / np.exp(x).sum(1, keepdims=True))[np.arange(3), labels])
    np.testing.assert_allclose(F.cross_entropy(refsnn.tensor(x), labels).data, ref)


# -- errors at the boundary -----------------------------------------------------
def test_op_errors_name_the_argument():
    x4, w = t((1, 3, 5, 5)), t((2, 4, 3, 3))
    with pytest.raises(ValueError, match="3 channels.*expects 4"):
        F.conv2d(x4, w)
    with pytest.raises(TypeError, match="stride must be an int"):
        F.conv2d(x4, t((2, 3, 3, 3)), stride=1.5)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        F.conv2d(x4, t((2, 3, 3, 3)), stride=0)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        F.conv2d(x4, t((2, 3, 3, 3)), padding=-1)
    with pytest.raises(ValueError, match="input must have 4 dimensions"):
        F.conv2d(t((3, 5, 5)), t((2, 3, 3, 3)))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        F.conv2d(t((1, 3, 2, 2)), t((2, 3, 3, 3)))
    with pytest.raises(ValueError, match="input has 3 features.*expects 4"):
        F.linear(t((2, 3)), t((5, 4)))
    with pytest.raises(ValueError, match=r"label 7 is out of range.*\[0, 4\]"):
        F.cross_entropy(t((2, 5)), np.array([1, 7]))
    with pytest.raises(ValueError, match="label -1"):
        F.cross_entropy(t((2, 5)), np.array([-1, 0]))
    with pytest.raises(TypeError, match="labels must be integers"):
        F.cross_entropy(t((2, 5)), np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="NaN"):
        F.cross_entropy(refsnn.tensor(np.full((2, 3), np.nan)), np.array([0, 1]))
    with pytest.raises(ValueError, match="gamma must have shape"):
        F.batch_norm(x4, np.ones(2), np.zeros(3), None, None, training=True)
    with pytest.raises(ValueError, match="cannot reshape"):
        F.reshape(t((2, 3)), shape=(4, 2))
    with pytest.raises(ValueError, match="axis 3 is out of range"):
        F.sum(t((2, 3)), axis=3)
    with pytest.raises(ValueError, match="padding"):
        F.max_pool2d(x4, 2, 2, 2)


def test_float32_ops_stay_float32():
    rng = np.random.default_rng(0)
    x = refsnn.tensor(rng.standard_normal((2, 3, 6, 6)), dtype=np.float32, requires_grad=True)
    w = refsnn.tensor(rng.standard_normal((4, 3, 3, 3)), dtype=np.float32, requires_grad=True)
    y = F.max_pool2d(F.relu(F.conv2d(x, w, padding=1)), 2)
    loss = F.cross_entropy(F.flatten(F.adaptive_avg_pool2d(y)), np.array([0, 3]))
    loss.backward()
    assert loss.dtype == np.float32 and x.grad.dtype == np.float32 and w.grad.dtype == np.float32
