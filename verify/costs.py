"""Cost columns of the paper's tables: Bit Budget, S-ACE (G) and Size (MB) from the
architectures and W/S/T alone (docs/method.md §2, Eq. 7-8; architectures of section 12).

For a model whose layers all run at one setting W/S/T (B_w = W, B_s^t = S for
t <= T, T_l = T), docs/method.md §2 gives

    Bit Budget = W * S * T                                   (Eq. 7; the averages are W, S, T)
    S-ACE      = W * S * T * sum_{l spiking} MACs_l          (Eq. 8)
    S-ACE*     = W * (S + ceil(log2 T)) * sum_{l spiking} MACs_l   (refsnn's reading of App. A.6)
    Size (MB)  = W * sum_l N_w,l / 8 / 10^6                  (conv and linear weights only)

where "spiking" leaves out a stem fed by the analog image (no input neuron), which
still counts in the size. MACs_l = H_out W_out k^2 C_in C_out (conv) or in * out (linear).

Two independent routes give each number:

* **refsnn**: the models of ``refsnn.models`` (built in float32), one forward pass
  of a zero image to learn the shapes, ``refsnn.models.model_costs(model, shape, wst)``;
* **hand**: the per-layer MACs and weight counts re-derived here from the
  architecture description of docs/method.md §12 with plain integer arithmetic
  (output size ``floor((H + 2p - k) / s) + 1``), without ``refsnn``.

*ok* means the two routes agree exactly (integers) on MACs, S-ACE, S-ACE* and size.
The verdict is "computed": these are numbers for the reader to hold against the
Bit Budget / S-ACE / Size columns of the paper's tables. refsnn does not carry the
paper's printed values, so the comparison itself is left to the reader.

Unlike the other ``verify`` modules this one imports ``refsnn`` (inside ``run``),
because what it checks is refsnn's models; the hand route keeps it honest.
"""

from __future__ import annotations

import math

from .common import Result, cli_main, md_table

#: (model, dataset, input shape, input neuron, [W/S/T ...]) of the paper's cost columns.
ROWS = [
    ("resnet20", "CIFAR", (3, 32, 32), True,
     [(16, 1, 2), (16, 1, 4), (16, 2, 2), (16, 2, 4), (16, 4, 1), (16, 4, 4), (16, 4, 6), (4, 4, 1), (4, 4, 2)]),
    ("resnet18", "CIFAR", (3, 32, 32), False, [(16, 1, 2), (16, 1, 4)]),
    ("sew_resnet34", "ImageNet", (3, 224, 224), False,
     [(16, 1, 1), (16, 1, 4), (16, 1, 6), (16, 2, 4), (8, 8, 1)]),
]

#: docs/method.md §12, as plain numbers: stem (C_out, k, stride, max pool), blocks, widths, strides.
ARCH = {
    "resnet20": dict(stem=(128, 3, 1, False), blocks=(3, 3, 3), widths=(128, 256, 512), strides=(1, 2, 2)),
    "resnet18": dict(stem=(64, 3, 1, False), blocks=(2, 2, 2, 2), widths=(64, 128, 256, 512), strides=(1, 2, 2, 2)),
    "sew_resnet34": dict(stem=(64, 7, 2, True), blocks=(3, 4, 6, 3), widths=(64, 128, 256, 512),
                         strides=(1, 2, 2, 2)),
}
NUM_CLASSES = {"resnet20": 10, "resnet18": 10, "sew_resnet34": 1000}


def _out(h: int, k: int, s: int, p: int) -> int:
    return (h + 2 * p - k) // s + 1


def hand_layers(model: str, shape: tuple) -> list:
    """[(name, MACs, N_w)] of every conv / linear layer, by hand (docs/method.md §2 and §12)."""
    a = ARCH[model]
    c_in, h, _ = shape
    c, k, s, pool = a["stem"]
    h = _out(h, k, s, k // 2)
    rows = [("stem", h * h * k * k * c_in * c, k * k * c_in * c)]
    if pool:
        h = _out(h, 3, 2, 1)   # 3x3/2 max pool, padding 1
    for i, (n, w, s0) in enumerate(zip(a["blocks"], a["widths"], a["strides"]), start=1):
        for j in range(n):
            s = s0 if j == 0 else 1
            h_out = _out(h, 3, s, 1)
            rows.append((f"layer{i}.{j}.conv1", h_out * h_out * 9 * c * w, 9 * c * w))
            rows.append((f"layer{i}.{j}.conv2", h_out * h_out * 9 * w * w, 9 * w * w))
            if s != 1 or c != w:
                rows.append((f"layer{i}.{j}.shortcut.conv", h_out * h_out * c * w, c * w))
            c, h = w, h_out
    rows.append(("fc", c * NUM_CLASSES[model], c * NUM_CLASSES[model]))
    return rows


def hand_costs(model: str, shape: tuple, input_neuron: bool, wst: tuple) -> dict:
    W, S, T = wst
    rows = hand_layers(model, shape)
    spk_macs = sum(m for name, m, _ in rows if input_neuron or name != "stem")
    n_w = sum(n for _, _, n in rows)
    return dict(names=[r[0] for r in rows], macs=sum(m for _, m, _ in rows), bit_budget=W * S * T,
                s_ace=spk_macs * W * S * T, s_ace_star=spk_macs * W * (S + math.ceil(math.log2(T))),
                size_bits=n_w * W, n_w=n_w)


def run(quick: bool = True, seed: int = 0) -> list[Result]:
    import numpy as np

    from refsnn.method.budget import model_cost, uniform
    from refsnn.models import get_model, layer_costs

    out = []
    for model, data, shape, neuron, settings in ROWS:
        net = get_model(model, input_neuron=neuron, dtype=np.float32, seed=seed)
        base = layer_costs(net, shape)
        for wst in settings:
            c = model_cost(uniform(base, *wst))
            h = hand_costs(model, shape, neuron, wst)
            size_bits = sum(lc.n_w * lc.B_w for lc in c.layers)
            ok = ([lc.name for lc in c.layers] == h["names"] and c.macs == h["macs"] and c.s_ace == h["s_ace"]
                  and c.s_ace_star == h["s_ace_star"] and size_bits == h["size_bits"]
                  and math.isclose(c.bit_budget, h["bit_budget"], rel_tol=0, abs_tol=1e-9))
            tag = "/".join(map(str, wst))
            out.append(Result(
                f"Costs {model} {tag} ({'in-neuron' if neuron else 'no in-neuron'})",
                "refsnn.models.model_costs vs hand formulas",
                f"Bit Budget {c.bit_budget:g}; S-ACE {c.s_ace / 1e9:.2f} G; S-ACE* {c.s_ace_star / 1e9:.2f} G; "
                f"Size {c.size_mb:.2f} MB; MACs {c.macs / 1e9:.4f} G",
                "computed",
                f"{model} at W/S/T {tag}: Bit Budget {c.bit_budget:g}, S-ACE {c.s_ace / 1e9:.2f} G, "
                f"size {c.size_mb:.2f} MB, from the architecture alone; the comparison with the paper's "
                "table is left to the reader.",
                ok,
                dict(model=model, dataset=data, input_neuron=neuron, W=wst[0], S=wst[1], T=wst[2],
                     bit_budget=c.bit_budget, s_ace_g=c.s_ace / 1e9, s_ace_star_g=c.s_ace_star / 1e9,
                     size_mb=c.size_mb, macs_g=c.macs / 1e9, n_w=h["n_w"],
                     hand_s_ace_g=h["s_ace"] / 1e9, hand_size_mb=h["size_bits"] / 8e6)))
    return out


def report(results) -> str:
    rows = [(r.data["model"], r.data["dataset"], "yes" if r.data["input_neuron"] else "no",
             f"{r.data['W']}/{r.data['S']}/{r.data['T']}", f"{r.data['bit_budget']:g}", f"{r.data['s_ace_g']:.2f}",
             f"{r.data['s_ace_star_g']:.2f}", f"{r.data['size_mb']:.2f}", f"{r.data['macs_g']:.4f}")
            for r in results if "model" in r.data]
    return ("Bit Budget, S-ACE and Size computed from the architecture and W/S/T alone "
            "(S-ACE* is refsnn's reading of App. A.6). The comparison with the paper's tables is left "
            "to the reader.\n\n"
            + md_table(["model", "data", "input neuron", "W/S/T", "Bit Budget", "S-ACE (G)", "S-ACE* (G)",
                        "Size (MB)", "MACs (G)"], rows))


if __name__ == "__main__":
    cli_main(run)
