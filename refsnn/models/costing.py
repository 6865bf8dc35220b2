"""The cost model of a whole model (docs/method.md §2, Eq. 7-8, App. A.6) and ``refsnn summary``.

``model_costs`` learns every layer's shapes from one forward pass of a batch of one
zero image (eval mode, no tape), asks each spiking layer for its ``LayerCost``
(``SpikingConv2d.cost``), optionally sets every width by hand (``wst=(W, S, T)``,
``refsnn.method.budget.uniform``) and returns ``refsnn.method.budget.model_cost``:

    BB_l     = B_w,l * sum_t B_s,l^t                                   (Eq. 7, per layer)
    S-ACE    = sum_l MACs_l * BB_l                                     (Eq. 8)
    S-ACE*   = sum_l MACs_l * B_w,l * (max_t B_s,l^t + ceil(log2 T_l))  (refsnn's reading of App. A.6)
    W, S, T  = weight- / feature-map-weighted averages; Bit Budget = W * S * T
    size     = sum_l N_w,l * B_w,l / 8 / 10^6 MB

Units, one rule for every cost refsnn prints (this table, ``refsnn eval``, the epoch lines and the final table
of a run): operation counts (MACs, S-ACE, S-ACE*, per sample) in M = 10^6 (``OPS_UNIT``, ``format_ops``), sizes
in MB = 10^6 bytes (``format_mb``), the unit written in the label.  JSON (``--json``, history.json, checkpoints)
carries raw numbers: counts as integers (``macs``, ``s_ace``, ``s_ace_star``) and ``size_bytes``.

A stem without input neuron (``input_neuron=False``) is left out of S-ACE, S-ACE*
and the S and T averages, and kept in W, size and MACs.  Neuron-only layers
(Spikformer's N_q, N_k, N_v) count in S and T by their input elements and have no
weights or MACs; the products Q K^T and A V of each self-attention block are costed
apart (``AttentionCost``: MACs and the bit products, docs/method.md §13), not in S-ACE.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from ..autograd.tensor import Tensor, no_grad
from ..method.budget import AttentionCost, ModelCost, model_cost, parse_wst, uniform
from ..nn import spiking_layers
from .spikformer import SSA


def parse_input_shape(text) -> tuple:
    """'3x32x32' (or a tuple) -> (3, 32, 32): the per-sample input shape (C, H, W), or (T, C, H, W) for
    event frames in sequential mode (docs/method.md §14)."""
    if isinstance(text, str):
        try:
            shape = tuple(int(p) for p in text.lower().split("x"))
        except ValueError:
            shape = ()
    else:
        try:
            shape = tuple(int(v) for v in text)
        except (TypeError, ValueError):
            shape = ()
    if len(shape) not in (3, 4) or min(shape) < 1:
        raise ValueError(f"input shape must be C x H x W (or T x C x H x W for event frames), integers >= 1 "
                         f"(e.g. '3x32x32'), got {text!r}")
    return shape


def _check_wst(wst) -> tuple:
    if isinstance(wst, str):
        return parse_wst(wst)
    try:
        vals = tuple(wst)
    except TypeError:
        vals = ()
    if len(vals) != 3 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1
                                 for v in vals):
        raise ValueError(f"wst must be (W, S, T), three integers >= 1, or a string like '16/1/4', got {wst!r}")
    return tuple(int(v) for v in vals)


def layer_costs(model, input_shape) -> list:
    """``LayerCost`` of every spiking layer, in definition order, with the model's current widths.

    Runs one forward pass of a batch of one zero image of shape ``input_shape`` in eval
    mode under ``no_grad`` (eval mode skips the LSQ initialisation and the observers,
    so the model's state is untouched); the training flags are restored afterwards.
    """
    shape = parse_input_shape(input_shape)
    layers = spiking_layers(model)
    if not layers:
        raise ValueError(f"layer_costs: {type(model).__name__} has no SpikingConv2d / SpikingLinear layers")
    dtype = layers[0][1].weight.dtype
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with no_grad():
            model(Tensor(np.zeros((1,) + shape, dtype)))
    finally:
        for m, mode in modes:
            object.__setattr__(m, "training", mode)
    return [layer.cost(name) for name, layer in layers]


def model_costs(model, input_shape, wst=None) -> ModelCost:
    """Eq. 7-8 and App. A.6 for a whole model (docs/method.md §2).

    ``wst=(W, S, T)`` (or ``"16/1/4"``) sets every layer to B_w = W, B_s^t = S, T_l = T
    (``budget.uniform``); None keeps the widths the layers have now.
    """
    costs = layer_costs(model, input_shape)
    if wst is not None:
        costs = uniform(costs, *_check_wst(wst))
    return model_cost(costs, attention_costs(model, costs))


def attention_costs(model, costs: list) -> list:
    """``AttentionCost`` of every SSA block, with the Q/K/V widths of the given layer costs (docs/method.md §13)."""
    by_name = {lc.name: lc for lc in costs}
    out = []
    for name, m in model.named_modules():
        if isinstance(m, SSA):
            q, k, v = (by_name[f"{name}.{n}_neuron"] for n in "qkv")
            out.append(AttentionCost(name, m.n_tokens, m.dim, m.heads, q.B_s[:q.T], k.B_s[:k.T], v.B_s[:v.T]))
    return out


def _fmt_int(v) -> str:
    return f"{int(v):,}"


#: the unit of every operation count printed as text (MACs, S-ACE, S-ACE*): (label, scale)
OPS_UNIT = ("M", 1e6)


def format_ops(count) -> str:
    """An operation count (MACs, S-ACE, S-ACE*) in ``OPS_UNIT``, 4 decimals: 17068032 -> ``17.0680``."""
    return f"{count / OPS_UNIT[1]:,.4f}"


def format_mb(size_mb: float) -> str:
    """A size in MB (10^6 bytes), 6 decimals (a byte): 0.009664 -> ``0.009664``."""
    return f"{size_mb:,.6f}"


def format_cost_table(cost: ModelCost) -> str:
    """Per-layer table and totals of a ``ModelCost`` (plain text)."""
    u = OPS_UNIT[0]
    head = ("layer", "kind", f"MACs ({u})", "N_w", "N_f", "B_w", "B_s^t", "T", "BB", f"S-ACE ({u})",
            f"S-ACE* ({u})", "size (MB)")
    rows = []
    for lc in cost.layers:
        spk, w = lc.spiking, lc.n_w > 0
        rows.append((lc.name, lc.kind, format_ops(lc.macs), _fmt_int(lc.n_w), _fmt_int(lc.n_f),
                     str(lc.B_w) if w else "-", ",".join(str(b) for b in lc.B_s[: lc.T]) if spk else "- (no neuron)",
                     str(lc.T) if spk else "-", str(lc.bit_budget) if w else "-", format_ops(lc.s_ace),
                     format_ops(lc.s_ace_star), format_mb(lc.size_mb)))
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    left = {0, 1, 6}

    def line(cells):
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    out = [line(head), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    out += ["",
            f"W = {cost.W:.4g}   S = {cost.S:.4g}   T = {cost.T:.4g}   Bit Budget = W*S*T = {cost.bit_budget:.4g}",
            f"MACs ({u}) = {format_ops(cost.macs)}   S-ACE ({u}) = {format_ops(cost.s_ace)}   "
            f"S-ACE* ({u}) = {format_ops(cost.s_ace_star)}   size (MB) = {format_mb(cost.size_mb)}",
            "S-ACE* = sum MACs * B_w * (max_t B_s^t + ceil(log2 T)): refsnn's reading of App. A.6 "
            "(post-squeezing pipeline), not a formula printed in the paper."]
    if any(lc.sequential for lc in cost.layers):
        out.append("Sequential mode (docs/method.md §14): T is fixed and the weight op runs on every step, so "
                   "S-ACE = sum MACs * B_w * sum_t B_s^t = sum MACs * B_w * B_s * T; nothing is squeezed (S-ACE* = S-ACE).")
    if any(not lc.spiking for lc in cost.layers):
        out.append("Layers marked '(no neuron)' see the analog input: counted in W, size and MACs, "
                   "left out of S-ACE, S-ACE*, S and T.")
    if cost.attention:
        out += ["", format_attention_table(cost.attention)]
    return "\n".join(out)


def format_attention_table(attention: list) -> str:
    """The weightless products of self-attention (docs/method.md §13): MACs and bit products, per block and in total."""
    u = OPS_UNIT[0]
    head = ("attention", "L", "H", "B_q^t", "B_k^t", "B_v^t", "B_A^t", f"MACs QK^T ({u})", f"MACs*B_q*B_k ({u})",
            f"MACs AV ({u})", f"MACs*B_v*B_A ({u})")
    rows = [(a.name, str(a.tokens), str(a.heads), *(",".join(map(str, b)) for b in (a.B_q, a.B_k, a.B_v, a.B_A)),
             format_ops(a.macs), format_ops(a.bits_qk), format_ops(a.macs), format_ops(a.bits_av)) for a in attention]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]

    def line(cells):
        return "  ".join(c.ljust(w) if i in (0, 3, 4, 5, 6) else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))

    out = [line(head), "  ".join("-" * w for w in widths)] + [line(r) for r in rows]
    out += ["", f"attention MACs ({u}) = {format_ops(sum(2 * a.macs for a in attention))}   "
                f"sum MACs*B_q*B_k ({u}) = {format_ops(sum(a.bits_qk for a in attention))}   "
                f"sum MACs*B_v*B_A ({u}) = {format_ops(sum(a.bits_av for a in attention))}",
            "Q K^T and A V have no weights: not in S-ACE (Eq. 8). Bit products summed over the T steps of the shared "
            "T_l; B_A = B_q + B_k + ceil(log2 L) (docs/method.md §13)."]
    return "\n".join(out)


def summary_main(argv=None) -> int:
    """``refsnn summary --model NAME [--wst 16/1/4] [--input 3x32x32] [--no-input-neuron]
    [--temporal-mode sequential --time-steps T] [--json]``."""
    from .registry import MODEL_NAMES, SEQUENTIAL_BY_DEFAULT, default_input_shape, get_model
    ap = argparse.ArgumentParser(prog="refsnn summary",
                                 description="Per-layer and total costs of a model (docs/method.md §2, Eq. 7-8).")
    ap.add_argument("--model", required=True, choices=MODEL_NAMES)
    ap.add_argument("--wst", default=None, help="set every layer to W/S/T, e.g. 16/1/4 (default: the model's "
                                                "initial widths)")
    ap.add_argument("--input", default=None, help="per-sample input shape CxHxW (default: the model's own)")
    ap.add_argument("--no-input-neuron", action="store_true",
                    help="the stem is a plain quantized-weight layer on the analog image (left out of S-ACE)")
    ap.add_argument("--num-classes", type=int, default=None, metavar="N",
                    help="classes of the last layer (default: the model's own, e.g. 10 for resnet20)")
    ap.add_argument("--temporal-mode", choices=("squeeze", "sequential"), default=None,
                    help="sequential: a current per step, no squeeze, T fixed (docs/method.md §14); default: the "
                         "model's own (squeeze; sequential for spikformer_dvs)")
    ap.add_argument("--time-steps", type=int, default=None,
                    help="the fixed T of sequential mode (default 4); with --wst, the T of W/S/T wins")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args(argv)
    try:
        wst = parse_wst(args.wst) if args.wst is not None else None
        shape = parse_input_shape(args.input) if args.input is not None else default_input_shape(args.model)
        kw = {"input_neuron": not args.no_input_neuron, "dtype": np.float32}
        if args.num_classes is not None:
            kw["num_classes"] = args.num_classes
        if args.time_steps is not None and args.temporal_mode != "sequential":
            raise ValueError("--time-steps sets the fixed T of --temporal-mode sequential")
        if args.temporal_mode == "squeeze" and args.model in SEQUENTIAL_BY_DEFAULT:
            kw["temporal_mode"] = "squeeze"
        if args.temporal_mode == "sequential":
            T = wst[2] if wst else (4 if args.time_steps is None else args.time_steps)
            if T < 1:
                raise ValueError(f"--time-steps must be >= 1, got {T}")
            kw["layer_configs"] = {"*": {"temporal_mode": "sequential", "time_steps": float(T),
                                         "time_bound": max(T, 1)}}
        model = get_model(args.model, **kw)
        cost = model_costs(model, shape, wst)
        mode = "sequential" if getattr(model, "sequential", False) else "squeeze"
    except ValueError as e:
        print(f"refsnn summary: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        d = {"model": args.model, "input_shape": list(shape), "input_neuron": not args.no_input_neuron,
             "wst": list(wst) if wst else None, "temporal_mode": mode}
        d.update(cost.as_dict())
        print(json.dumps(d, indent=1))
    else:
        print(f"{args.model}, input {'x'.join(map(str, shape))}, input neuron: {not args.no_input_neuron}, "
              f"temporal mode: {mode}" + (f", W/S/T set to {'/'.join(map(str, wst))}" if wst else ", initial widths"))
        print(format_cost_table(cost))
    return 0
