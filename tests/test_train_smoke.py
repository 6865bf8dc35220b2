"""A tiny MLP and a tiny CNN, trained with a hand-written SGD loop on raw tensors, reduce the loss."""
import numpy as np

import refsnn
import refsnn.functional as F


def _blobs(n=96, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = np.array([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    return centers[y] + 0.5 * rng.standard_normal((n, 2)), y


def _sgd(params, lr):
    with refsnn.no_grad():
        for p in params:
            p.data -= lr * p.grad
            p.grad = None


def test_mlp_learns_blobs():
    x, y = _blobs()
    rng = np.random.default_rng(1)
    w1 = refsnn.tensor(rng.standard_normal((16, 2)) * 0.5, requires_grad=True)
    b1 = refsnn.tensor(np.zeros(16), requires_grad=True)
    w2 = refsnn.tensor(rng.standard_normal((3, 16)) * 0.3, requires_grad=True)
    xt = refsnn.tensor(x)
    losses = []
    for _ in range(60):
        loss = F.cross_entropy(F.linear(F.relu(F.linear(xt, w1, b1)), w2), y)
        loss.backward()
        _sgd([w1, b1, w2], 0.3)
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses[::10]


def test_cnn_learns_bars():
    rng = np.random.default_rng(2)
    n = 64
    y = rng.integers(0, 2, n)
    x = 0.3 * rng.standard_normal((n, 1, 6, 6))
    for i in range(n):  # class 0: a vertical bar, class 1: a horizontal bar
        k = rng.integers(1, 5)
        if y[i] == 0:
            x[i, 0, :, k] += 1.5
        else:
            x[i, 0, k, :] += 1.5
    w = refsnn.tensor(rng.standard_normal((4, 1, 3, 3)) * 0.4, requires_grad=True)
    g, b = refsnn.tensor(np.ones(4), requires_grad=True), refsnn.tensor(np.zeros(4), requires_grad=True)
    wl = refsnn.tensor(rng.standard_normal((2, 4)) * 0.3, requires_grad=True)
    rm, rv = np.zeros(4), np.ones(4)
    xt = refsnn.tensor(x)
    losses = []
    for _ in range(40):
        h = F.relu(F.batch_norm(F.conv2d(xt, w, padding=1), g, b, rm, rv, training=True))
        h = F.flatten(F.adaptive_avg_pool2d(F.max_pool2d(h, 2)))
        loss = F.cross_entropy(F.linear(h, wl), y)
        loss.backward()
        _sgd([w, g, b, wl], 0.5)
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::10]
