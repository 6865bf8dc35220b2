"""The ops of spiking self-attention (refsnn.ops.attention) and the batched products over heads."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refsnn
import refsnn.functional as F
from refsnn.autograd import gradcheck


def t(shape, seed=0, scale=1.0):
    return refsnn.tensor(np.random.default_rng(seed).standard_normal(shape) * scale, requires_grad=True)


def test_batched_matmul_over_heads_grad():
    # (N, H, L, d) @ (N, H, d, L) and (N, H, L, L) @ (N, H, L, d): the two products of SSA
    assert gradcheck(F.matmul, [t((2, 3, 4, 2)), t((2, 3, 2, 4), 1)])
    assert gradcheck(F.matmul, [t((2, 3, 4, 4)), t((2, 3, 4, 2), 1)])
    q, k = t((2, 2, 5, 3)), t((2, 2, 5, 3), 1)
    assert gradcheck(lambda q, k: F.matmul(q, F.transpose(k, axes=(0, 1, 3, 2))) * 0.125, [q, k])


def test_batched_matmul_value():
    a, b = np.random.default_rng(0).standard_normal((2, 3, 4, 5)), np.random.default_rng(1).standard_normal((2, 3, 5, 4))
    want = np.einsum("nhld,nhdm->nhlm", a, b)
    np.testing.assert_allclose(F.matmul(refsnn.tensor(a), refsnn.tensor(b)).data, want, rtol=1e-12)


def test_head_and_token_reshapes_grad():
    assert gradcheck(lambda x: F.split_heads(x, 3), [t((2, 4, 6))])
    assert gradcheck(F.merge_heads, [t((2, 3, 4, 2))])
    assert gradcheck(F.map_to_tokens, [t((2, 3, 2, 3))])


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), L=st.integers(1, 5), heads=st.integers(1, 4), d=st.integers(1, 4))
def test_split_then_merge_is_identity(n, L, heads, d):
    x = np.random.default_rng(n * 100 + L).standard_normal((n, L, heads * d))
    h = F.split_heads(refsnn.tensor(x), heads)
    assert h.shape == (n, heads, L, d)
    # head h, feature j is token feature h*d + j
    np.testing.assert_array_equal(h.data[:, -1, :, 0], x[:, :, (heads - 1) * d])
    np.testing.assert_array_equal(F.merge_heads(h).data, x)


def test_map_to_tokens_order():
    x = np.arange(2 * 3 * 2 * 2, dtype=float).reshape(2, 3, 2, 2)
    tok = F.map_to_tokens(refsnn.tensor(x)).data
    assert tok.shape == (2, 4, 3)
    np.testing.assert_array_equal(tok[1, 2], x[1, :, 1, 0])  # token 2 = row 1, column 0


def test_token_batch_norm_grad_and_statistics():
    n, L, D = 3, 4, 5
    x = t((n, L, D), scale=2.0)
    assert gradcheck(lambda x, g, b: F.token_batch_norm(x, g, b, None, None, training=True),
                     [x, t((D,), 1), t((D,), 2)])
    rm, rv = np.zeros(D), np.ones(D)
    y = F.token_batch_norm(x, np.ones(D), np.zeros(D), rm, rv, training=True, momentum=0.1)
    flat = x.data.reshape(-1, D)
    # per feature over all N*L tokens, as BatchNorm1d on the (N, D, L) transpose
    np.testing.assert_allclose(y.data.reshape(-1, D).mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(y.data, (x.data - flat.mean(0)) / np.sqrt(flat.var(0) + 1e-5), rtol=1e-10)
    np.testing.assert_allclose(rv, 0.9 + 0.1 * flat.var(axis=0, ddof=1))
    assert gradcheck(lambda x: F.token_batch_norm(x, np.ones(D), np.zeros(D), rm, rv, training=False), [x])


def test_token_batch_norm_matches_torch_batchnorm1d():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(3).standard_normal((2, 6, 4))
    bn = torch.nn.BatchNorm1d(4).double()
    want = bn(torch.from_numpy(x).transpose(1, 2)).transpose(1, 2).detach().numpy()
    rm, rv = np.zeros(4), np.ones(4)
    got = F.token_batch_norm(refsnn.tensor(x), np.ones(4), np.zeros(4), rm, rv, training=True).data
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(rv, bn.running_var.numpy(), rtol=1e-12)


def test_attention_op_errors_name_the_argument():
    with pytest.raises(ValueError, match="D = 6 is not divisible by heads = 4"):
        F.split_heads(t((1, 2, 6)), 4)
    with pytest.raises(ValueError, match="heads must be an integer >= 1"):
        F.split_heads(t((1, 2, 6)), 0)
    with pytest.raises(ValueError, match=r"\(N, L, D\)"):
        F.split_heads(t((2, 6)), 2)
    with pytest.raises(ValueError, match=r"\(N, H, L, d\)"):
        F.merge_heads(t((2, 6, 1)))
    with pytest.raises(ValueError, match=r"\(N, D, h, w\)"):
        F.map_to_tokens(t((2, 6, 1)))
    with pytest.raises(ValueError, match=r"\(N, L, D\)"):
        F.token_batch_norm(t((2, 6)), np.ones(6), np.zeros(6), None, None, training=True)


def test_attention_ops_keep_float32():
    x = refsnn.tensor(np.ones((2, 3, 4)), dtype=np.float32)
    assert F.merge_heads(F.split_heads(x, 2)).dtype == np.float32
    y = F.token_batch_norm(x, np.ones(4, np.float32), np.zeros(4, np.float32), None, None, training=True)
    assert y.dtype == np.float32
