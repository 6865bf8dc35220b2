"""The tape engine: accumulation, broadcasting, precision, no_grad, errors, gradcheck itself."""
import numpy as np
import pytest

import refsnn
import refsnn.functional as F
from refsnn.autograd import GradcheckError, gradcheck, primitive


def t(shape, seed=0, dtype=np.float64, rg=True):
    return refsnn.tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=rg, dtype=dtype)


def test_scalar_backward_chain_rule():
    x = t((3,))
    y = ((x * x).sum() + 2.0 * x.sum()) / 3.0
    y.backward()
    np.testing.assert_allclose(x.grad, (2 * x.data + 2.0) / 3.0)


def test_gradients_accumulate_over_calls_and_over_uses():
    x = t((4,))
    (x * 3.0).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad, np.full(4, 6.0))
    x.zero_grad()
    (x + x + x).sum().backward()  # one tensor used three times in one graph
    np.testing.assert_allclose(x.grad, np.full(4, 3.0))


def test_broadcasting_reduces_back_to_input_shape():
    a, b = t((2, 3, 4)), t((3, 1), seed=1)
    (a * b).sum().backward()
    assert b.grad.shape == (3, 1)
    np.testing.assert_allclose(b.grad, a.data.sum(axis=(0, 2))[:, None])


def test_explicit_upstream_gradient():
    x = t((2, 2))
    g = np.arange(4.0).reshape(2, 2)
    (x * 2.0).backward(g)
    np.testing.assert_allclose(x.grad, 2 * g)


def test_nonscalar_backward_without_grad_is_an_error():
    with pytest.raises(ValueError, match=r"shape \(2, 2\).*grad="):
        (t((2, 2)) * 2.0).backward()


def test_nan_loss_is_an_error():
    x = t((2,))
    with pytest.raises(ValueError, match="nan"):
        (x * np.nan).sum().backward()


def test_upstream_gradient_shape_and_dtype_checked():
    y = t((2, 2)) * 1.0
    with pytest.raises(ValueError, match="grad has shape"):
        y.backward(np.ones(3))
    with pytest.raises(TypeError, match="float32"):
        y.backward(np.ones((2, 2), dtype=np.float32))


def test_precision_default_float64_and_float32_on_request():
    assert refsnn.tensor([1, 2]).dtype == np.float64
    assert refsnn.tensor([1, 2], dtype=np.float32).dtype == np.float32
    x = refsnn.tensor([1.0], dtype="float32")
    assert (x * 2.0 + 1).dtype == np.float32  # Python numbers take the tensor's precision
    with pytest.raises(TypeError, match="float16"):
        refsnn.tensor([1.0], dtype=np.float16)


def test_mixing_precisions_is_an_error():
    a = refsnn.tensor([1.0], dtype=np.float32)
    b = refsnn.tensor([1.0], dtype=np.float64)
    with pytest.raises(TypeError, match="mix float32 and float64"):
        a + b
    with pytest.raises(TypeError, match="mix"):
        a * np.ones(1, dtype=np.float64)


def test_no_grad_records_nothing_and_detach_cuts():
    x = t((3,))
    with refsnn.no_grad():
        y = x * 2.0
    assert not y.requires_grad and y.is_leaf
    z = (x * 2.0).detach() * x
    z.sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data)  # only the non-detached path


def test_backward_on_constant_is_an_error():
    with pytest.raises(ValueError, match="does not require a gradient"):
        refsnn.tensor([1.0]).sum().backward()


def test_deep_chain_does_not_recurse():
    x = t((1,))
    y = x
    for _ in range(5000):
        y = y * 1.0
    y.sum().backward()
    assert x.grad[0] == 1.0


def test_gradcheck_catches_a_wrong_vjp():
    @primitive
    def square(ctx, a):
        return a * a

    @square.defvjp
    def square_vjp(ctx, g):
        (a,) = ctx.inputs
        return (g * a,)  # wrong: should be 2 a

    with pytest.raises(GradcheckError, match=r"op 'square', input 0.*index"):
        gradcheck(lambda a: square(a), [t((3,))])


def test_gradcheck_passes_a_right_vjp_and_needs_float64():
    assert gradcheck(lambda a: F.exp(a), [t((2, 3))])
    with pytest.raises(TypeError, match="float64"):
        gradcheck(lambda a: F.exp(a), [t((2,), dtype=np.float32)])
