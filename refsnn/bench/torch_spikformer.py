"""A second yardstick for the Spikformer step, independent of the port: the step in plain PyTorch eager.

``refsnn bench train --against torch`` times the PyTorch port (``refsnn.torch``); this module states the
same Spikformer-4-384 step from scratch, without the port's custom autograd functions, so that a port
slowed by its own code cannot flatter refsnn (issue 13 measured both: refsnn / port 0.54, refsnn / this
0.58 on the same run).

Not part of the library (torch is never a dependency): a compact re-statement of
``refsnn.models.spikformer`` with the method's quantizers written as straight-through
torch expressions, so that the benchmark compares the same work on the same threads:

* refined neuron (Eq. 12-14, positive; Eq. 15 for the stem): T_bound-step IF membrane,
  ``S^t = clip(round(v^t / V_th^t), q_min, q_max(B_s^t))`` with a straight-through round,
  reset by subtraction, squeeze ``y = (1/T) sum_{t<=T} V_th^t S^t``;
* quantized weights (Eq. 6): ``w_q = S_q clip(round(w / S_q), -q, q)``, straight-through;
* widths B = round(clip(Bhat, 1, bound)) straight-through (Eq. 9-11); the regulating loss (Eq. 21);
* the layout of docs/method.md §13 (SPS, SSA with one qkv layer and Q/K/V neurons sharing T, MLP, head),
  cross-entropy, backward, SGD with momentum and weight decay.

The LSQ gradient scales and the conventions' details are left out: they are a few
scalar multiplies and do not change the cost of a step.
"""
from __future__ import annotations


def _quantizers(torch, time_bound: int):
    """(width, Neuron, QLayer): the method's widths, refined neuron and spiking weight layer in torch."""
    nn = torch.nn

    def ste_round(z):
        return z + (torch.round(z) - z).detach()

    def width(p, bound):
        return ste_round(torch.clamp(p, 1.0, float(bound)))

    class Neuron(nn.Module):
        def __init__(self, bidirectional=False, time=None):
            super().__init__()
            self.bi = bidirectional
            self.v_th = nn.Parameter(torch.full((time_bound,), 0.5))
            self.bits = nn.Parameter(torch.full((time_bound,), 4.0))
            self.time = time if time is not None else nn.Parameter(torch.tensor(2.0))

        def forward(self, a):
            B, T = width(self.bits, 6), width(self.time, time_bound)
            v, total = torch.zeros_like(a), 0.0
            for t in range(int(T.item())):
                q = 2.0 ** (B[t] - 1) - 1 if self.bi else 2.0 ** B[t] - 1
                v = v + a
                s = torch.clamp(ste_round(v / self.v_th[t]), -q if self.bi else q * 0.0, q) * self.v_th[t]
                v = v - s
                total = total + s
            return total / T

    class QLayer(nn.Module):
        def __init__(self, op, shape, bidirectional=False, time=None):
            super().__init__()
            self.neuron = Neuron(bidirectional, time)
            self.weight = nn.Parameter(torch.randn(shape) * (2.0 / max(1, shape[1] * (shape[2] * shape[3]
                                                                                     if len(shape) == 4 else 1))) ** 0.5)
            self.step = nn.Parameter(torch.tensor(0.02))
            self.wbits = nn.Parameter(torch.tensor(4.0))
            self.op = op

        def forward(self, a):
            q = 2.0 ** (width(self.wbits, 6) - 1) - 1
            wq = torch.clamp(ste_round(self.weight / self.step), -q, q) * self.step
            return self.op(self.neuron(a), wq)

    return width, Neuron, QLayer


def _network(torch, Neuron, QLayer, dim, depth, heads, classes):
    """Spikformer-``depth``-``dim`` (docs/method.md §13) built from the torch quantizers."""
    nn, Fn = torch.nn, torch.nn.functional

    def conv(cin, cout, bi=False):
        return QLayer(lambda z, w: Fn.conv2d(z, w, padding=1), (cout, cin, 3, 3), bi)

    def linear(cin, cout):
        return QLayer(lambda z, w: Fn.linear(z, w), (cout, cin))

    def tbn(c):
        bn = nn.BatchNorm1d(c)
        return lambda z: bn(z.transpose(1, 2)).transpose(1, 2), bn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.time = nn.Parameter(torch.tensor(2.0))
            self.qkv, self.proj = linear(dim, 3 * dim), linear(dim, dim)
            self.nq, self.nk, self.nv = (Neuron(time=self.time) for _ in range(3))
            self.fc1, self.fc2 = linear(dim, 4 * dim), linear(4 * dim, dim)
            (self.bn_qkv, self.m0), (self.bn_p, self.m1) = tbn(3 * dim), tbn(dim)
            (self.bn1, self.m2), (self.bn2, self.m3) = tbn(4 * dim), tbn(dim)

        def forward(self, z):
            n, L, D = z.shape
            qkv = self.bn_qkv(self.qkv(z))
            split = [f(qkv[:, :, i * D:(i + 1) * D]).reshape(n, L, heads, D // heads).transpose(1, 2)
                     for i, f in enumerate((self.nq, self.nk, self.nv))]
            q, k, v = split
            o = ((q @ k.transpose(-2, -1)) * 0.125) @ v
            z = z + self.bn_p(self.proj(o.transpose(1, 2).reshape(n, L, D)))
            return z + self.bn2(self.fc2(self.bn1(self.fc1(z))))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            w = (3, dim // 8, dim // 4, dim // 2, dim)
            self.convs = nn.ModuleList([conv(w[i], w[i + 1], bi=(i == 0)) for i in range(4)])
            self.bns = nn.ModuleList([nn.BatchNorm2d(w[i + 1]) for i in range(4)])
            self.rpe, self.rpe_bn = conv(dim, dim), nn.BatchNorm2d(dim)
            self.blocks = nn.ModuleList([Block() for _ in range(depth)])
            self.head = QLayer(lambda z, w: Fn.linear(z, w), (classes, dim))

        def forward(self, z):
            for i in range(4):
                z = self.bns[i](self.convs[i](z))
                if i >= 2:
                    z = Fn.max_pool2d(z, 3, 2, 1)
            z = z + self.rpe_bn(self.rpe(z))
            z = z.flatten(2).transpose(1, 2)
            for b in self.blocks:
                z = b(z)
            return self.head(z.mean(1))

    return Net()


def build_step(torch, x, y, dim: int = 384, depth: int = 4, heads: int = 12, classes: int = 10, time_bound: int = 3,
               dtype: str = "float32"):
    """A closure running one training step of Spikformer-``depth``-``dim`` in torch eager on (x, y)."""
    Fn = torch.nn.functional
    width, Neuron, QLayer = _quantizers(torch, time_bound)
    torch.manual_seed(0)
    dt = getattr(torch, dtype)
    model = _network(torch, Neuron, QLayer, dim, depth, heads, classes).to(dt)
    neurons = [m for m in model.modules() if isinstance(m, Neuron)]
    qlayers = [m for m in model.modules() if isinstance(m, QLayer)]
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    xt, yt = torch.from_numpy(x).to(dt), torch.from_numpy(y)

    def step():
        loss = Fn.cross_entropy(model(xt), yt)
        # Eq. 21 on the averages W, S, T (straight-through widths)
        W = sum(width(l.wbits, 6) * l.weight.numel() for l in qlayers) / sum(l.weight.numel() for l in qlayers)
        S = sum(width(n.bits, 6).mean() for n in neurons) / len(neurons)
        T = sum(width(n.time, time_bound) for n in neurons) / len(neurons)
        loss = loss + 4e-2 * (W - 2).abs() + 4e-2 * (S - 2).abs() + 1e-2 * (T - 1).abs()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step
