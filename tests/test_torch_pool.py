"""refsnn.torch.pool: the lean backward of TieMaxPool2d equals the literal one bit for bit (docs/golden.md 6.10)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hypothesis import given, settings, strategies as st  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from refsnn.torch.pool import TIE, TieMaxPool2d, near_max, tie_grad, tie_grad_literal  # noqa: E402


def _geometry(draw):
    k = draw(st.integers(1, 4))
    s = draw(st.integers(1, 3))
    p = draw(st.integers(0, k // 2))
    H = draw(st.integers(max(1, k - 2 * p), 9))
    W = draw(st.integers(max(1, k - 2 * p), 9))
    return k, s, p, H, W


@st.composite
def pool_cases(draw):
    k, s, p, H, W = _geometry(draw)
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    seed = draw(st.integers(0, 2 ** 31 - 1))
    g = np.random.default_rng(seed)
    N, C = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    # values on a small lattice (exact ties), some nudged by less than TIE (ties within the allowance),
    # some by more (no tie), negative values and zeros included
    x = g.integers(-3, 4, size=(N, C, H, W)).astype(np.float64) * 0.75
    nudge = g.choice([0.0, 0.3 * TIE, -0.3 * TIE, 3 * TIE], size=x.shape, p=[0.5, 0.2, 0.2, 0.1])
    x = x * (1 + nudge) + (x == 0) * nudge
    # sometimes -inf inputs: a window of -inf only is near its padding too (its gradient is then dropped)
    x[g.random(x.shape) < draw(st.sampled_from([0.0, 0.0, 0.0, 0.6, 1.0]))] = -np.inf
    x[g.random(x.shape) < draw(st.sampled_from([0.0, 0.0, 0.0, 0.2]))] = np.inf
    gy_shape = F.max_pool2d(torch.zeros(N, C, H, W), k, s, p).shape
    gy = g.standard_normal(gy_shape)
    return torch.tensor(x, dtype=dtype), torch.tensor(gy, dtype=dtype), k, s, p


@settings(max_examples=150, deadline=None)
@given(pool_cases(), st.sampled_from([TIE, 0.0, 0.5]))
def test_lean_backward_equals_the_literal_one_bit_for_bit(case, tie):
    x, gy, k, s, p = case
    y = F.max_pool2d(x, k, s, p)
    lean, literal = tie_grad(x, y, gy, k, s, p, tie), tie_grad_literal(x, y, gy, k, s, p, tie)
    assert lean.shape == x.shape and lean.dtype == x.dtype
    assert torch.equal(lean, literal)
    if torch.isfinite(x).all():
        # every window's gradient arrives somewhere: the total is the total of gy (up to rounding)
        assert torch.allclose(lean.sum(), gy.sum(), rtol=1e-5, atol=1e-4)


@settings(max_examples=60, deadline=None)
@given(pool_cases())
def test_the_gradient_goes_to_the_first_position_near_the_maximum(case):
    x, gy, k, s, p = case
    y = F.max_pool2d(x, k, s, p)
    near = near_max(x, y, k, s, p, TIE)
    first = torch.argmax(near.to(torch.uint8), dim=2)          # (N, C, L)
    # a literal loop over the windows: each adds its gradient at its first near position
    N, C, H, W = x.shape
    Wo = y.shape[3]
    want = torch.zeros(N, C, H + 2 * p, W + 2 * p, dtype=torch.float64)
    for n in range(N):
        for c in range(C):
            for w in range(first.shape[2]):
                i, j = divmod(int(first[n, c, w]), k)
                want[n, c, (w // Wo) * s + i, (w % Wo) * s + j] += float(gy[n, c, w // Wo, w % Wo])
    got = tie_grad(x, y, gy, k, s, p, TIE).double()
    assert torch.allclose(got, want[:, :, p:p + H, p:p + W], rtol=1e-6, atol=1e-6)


def test_module_backward_uses_the_rule_and_equals_torch_without_ties():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64, requires_grad=True)
    gy = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    for tie in (0.0, TIE):
        (gx,) = torch.autograd.grad(TieMaxPool2d(3, 2, 1, tie=tie)(x), x, gy)
        (want,) = torch.autograd.grad(F.max_pool2d(x, 3, 2, 1), x, gy)
        # the same positions; where windows overlap, torch sums in its own order
        assert torch.equal(gx != 0, want != 0) and torch.allclose(gx, want, rtol=1e-15, atol=1e-15)
    # an exact tie: torch may pick either, the module picks the first in row-major order
    t = torch.tensor([[[[1.0, 2.0], [2.0, 0.5]]]], dtype=torch.float64, requires_grad=True)
    (gx,) = torch.autograd.grad(TieMaxPool2d(2)(t).sum(), t)
    assert gx.flatten().tolist() == [0.0, 1.0, 0.0, 0.0]


def test_a_nan_window_sends_its_gradient_to_its_first_position_like_the_literal_rule():
    x = torch.tensor([[[[0.5, float("nan"), 1.0, 2.0], [3.0, 1.0, 2.0, 2.0]]]])
    y = F.max_pool2d(x, 2, 2, 0)
    gy = torch.tensor([[[[5.0, 7.0]]]])
    got = tie_grad(x, y, gy, 2, 2, 0, TIE)
    assert torch.equal(got, tie_grad_literal(x, y, gy, 2, 2, 0, TIE))
    assert got.flatten().tolist() == [5.0, 0.0, 0.0, 7.0, 0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("k,s,p", [(3, 2, 1), (2, 2, 0), (3, 1, 1), (1, 1, 0)])
def test_gradcheck_away_from_ties(k, s, p):
    # distinct values spaced far beyond TIE: the pool is differentiable and its gradient is the finite difference
    g = np.random.default_rng(k * 100 + s * 10 + p)
    x = torch.tensor(g.permutation(2 * 2 * 7 * 7).reshape(2, 2, 7, 7) * 0.1 + 0.05, dtype=torch.float64,
                     requires_grad=True)
    assert torch.autograd.gradcheck(TieMaxPool2d(k, s, p), (x,), eps=1e-6, atol=1e-8)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="kernel_size"):
        TieMaxPool2d(0)
    with pytest.raises(ValueError, match="stride"):
        TieMaxPool2d(3, stride=True)
    with pytest.raises(ValueError, match="tie"):
        TieMaxPool2d(3, tie=1.5)


def test_poolbench_runs_and_reports_the_three_pools(capsys):
    from refsnn.torch.poolbench import main
    assert main(["--shape", "2,2,6,6", "--repeats", "1"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    assert [r[0] for r in rows] == ["lean", "literal", "torch"]
    assert all(float(r[1]) > 0 and float(r[2]) >= 0 for r in rows)
    with pytest.raises(ValueError, match="--shape"):
        main(["--shape", "2,2,6"])
