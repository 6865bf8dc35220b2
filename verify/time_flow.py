"""Gradient flow through time (docs/method.md §6.6, convention C3): what each step's
threshold ``V_th^t``, each step's width ``B^t`` and the input ``I`` receive,
for T = 2 and 3, under the paper convention (full BPTT through the membrane
carry and the soft reset) and the official one (carry and reset detached).

**Derivation (IF neuron, tau = 1, paper convention).** Write ``A^t = [q_min <=
u^t <= q_max]`` for "in range at step t" and ``gy`` for ``dL/dy``. The backward
recursion of Eq. 12-13 with the straight-through spike (Eq. 20) is, for
t = T..1 with ``gv^{T+1} = 0``,

    gS^t = gy/T - gv^{t+1}          (squeeze; reset path dv^{t+1}/dShat^t = -1)
    gv^t = gS^t A^t + gv^{t+1}      (spike dShat^t/dv^t = A^t; carry dv^{t+1}/dv^t = 1)

Along the membrane the carry (+1) and the reset through the spike (-1 x A^t)
add to ``dv^{t+1}/dv^t = 1 - A^t``: an in-range step passes nothing back to
earlier membranes. By backward induction ``gv^t = gy/T`` if ``A^t = 1``
(``gy/T - gv^{t+1} + gv^{t+1}``) and ``gv^t = gv^{t+1}`` otherwise, so

    gv^t = (gy/T) [A^s = 1 for some s >= t]
    gS^t = (gy/T) [A^s = 0 for every s in t+1..T]           (gS^T = gy/T)
    gI   = sum_t gv^t = (gy/T) lambda,   lambda = max{t : A^t = 1}  (0 if never in range)

So the hint is right with one correction: the gradient reaching ``Shat^t`` for
``t < T`` vanishes for every element that is in range at *some later* step -- its
own range at step t does not matter (an element in range at t and saturated
afterwards still passes ``gy/T``). Consequences, each checked below:

* ``V_th^t``, t < T: ``dL/dV_th^t = g sum_j (gy_j/T) h_j^t [out of range at all s > t]``.
  For the positive neuron with non-negative (post-ReLU) currents and the same
  threshold and width at every step, an element in range at step 1 is in range
  at step 2 as well (``u^2 = u + (u - round(u)) <= q_max`` for ``0 <= u <= q_max``),
  so the rounding term ``g sum gS (S - u)``, which LSQ uses to balance rounding
  against clipping error, is *exactly zero* for ``V_th^1``; later early steps keep
  only a thin band of elements that leave the range afterwards. What remains is
  the clipping term of the elements saturated throughout (``h = q_max``), the
  same under both conventions: early thresholds learn from saturation alone.
* ``B^t``, t < T: ``k`` is non-zero only above the range, under the same mask:
  only saturated-throughout elements move early widths.
* Step T: ``gS^T = gy/T`` under both conventions, so ``V_th^T`` and ``B^T`` get
  *identical* gradients in both.
* Input: ``gI = gy`` for every element in range at the last step, whatever
  happened before; under the official convention (``gS^t = gy/T``, ``gv^t =
  gS^t A^t``) ``gI = (gy/T) sum_t A^t``. The two differ only on elements that
  change regime, so C3 matters little for ``gI`` and a lot for per-step parameters.
* The official convention gives every step the LSQ gradient of a stand-alone
  quantizer of ``v^t`` (``gS^t = gy/T``): not the derivative of the surrogate
  network, but a signal for every step.

This is the exact derivative of the surrogate: with tau = 1, summing Eq. 13 gives
``sum_t Shat^t = (T + 1) I - v^{T+1}``, and an in-range last step makes
``v^{T+1} = I - V_th^T c^T``, so ``y = I + V_th^T c^T / T``: only the last
step's rounding residual is left, and earlier thresholds act only through
elements that are clipped later. **Consequence for learning per-step
parameters:** under the paper's BPTT (tau = 1) the thresholds and widths of steps
1..T-1 get no task gradient from in-range elements; they move only through
saturated elements (and, for widths, the regulating loss of Eq. 21, which only
pushes them towards the target). The temporal-wise parameters of early steps
are therefore nearly frozen at their initial (LSQ or renewed) values unless many
elements saturate; only the last step's threshold is fitted by LSQ. With
``tau > 1`` (LIF) the cancellation is partial: ``gS^{T-1}`` still vanishes for
elements in range at T, earlier steps get ``(1 - 1/tau)``-weighted remainders.

**Measurements.** (1) Random inputs: post-ReLU ``I = max(N(0,1), 0)`` (positive
neuron) and ``N(0,1)`` (bidirectional), B = 2 and 4 at every step, thresholds
by the LSQ rule of docs/method.md §11, ``gy ~ N(0,1)``; the library's kernel
(``refsnn.kernels.neuron``) under both conventions, compared element by element
with the closed forms above. (2) The trained ``tiny_resnet`` of
``verify.fixture``, shared with ``verify.renewal_effect`` (trained at T = 2; for T = 3 the third step keeps its
initial threshold): one training batch, cross-entropy, backward under the
paper convention; for every spiking layer its input ``I`` and the gradient
``dL/dy`` reaching its neuron are captured and the neuron's backward is
evaluated under both conventions on the same pair (per-layer values, then
averages over the 7 layers). A whole-model backward under each convention
(the upstream gradients then differ too) is reported as well.
"""

from __future__ import annotations

import numpy as np

from .common import Result, cli_main, md_table, save_figure
from .fixture import calibration_batch, capture, make_model, single_thread, spiking, trained_model
from .time_flow_forms import analyse_case, random_inputs

CLAIM = "Time flow (6.6, C3)"
SIZES = {"quick": dict(n=4096, batch=48), "full": dict(n=65536, batch=64)}


def model_layers(quick: bool, seed: int, T: int, batch: int):
    """Per spiking layer of the trained tiny_resnet at temporal length T: (name, domain, I, gy, V, B)."""
    import refsnn.functional as F
    from refsnn.autograd.tensor import Tensor
    model, _, info = trained_model(quick, seed)
    for _, layer in spiking(model):
        layer.time.data[...] = T
        layer.spike_width.requires_grad = True  # frozen in training; here we want to read dL/dB^t
    xb, yb = calibration_batch(batch, seed + 11)
    sd = model.state_dict()
    model.train()
    with single_thread(), capture(model, grads=True) as st:
        loss = F.cross_entropy(model(Tensor(xb)), yb)
        loss.backward()
    leaf = {n: (l.threshold.grad[:T].copy(), l.spike_width.grad[:T].copy()) for n, l in spiking(model)}
    model.load_state_dict(sd)
    layers = []
    for name, layer in spiking(model):
        c = layer.config
        V = layer.threshold.data.copy()
        B = np.round(np.clip(layer.spike_width.data, 1, c.spike_bound)).astype(np.int64)
        layers.append((name, c.domain, st[name]["x"], st[name]["gy"], V, B))
    # whole-model backward under the official convention (upstream gradients differ too)
    m2 = make_model(seed, "official")
    m2.load_state_dict(sd)
    for _, layer in spiking(m2):
        layer.time.data[...] = T
        layer.spike_width.requires_grad = True
    m2.train()
    with single_thread():
        F.cross_entropy(m2(Tensor(xb)), yb).backward()
    leaf_off = {n: (l.threshold.grad[:T].copy(), l.spike_width.grad[:T].copy()) for n, l in spiking(m2)}
    return layers, {"paper": leaf, "official": leaf_off}, info


def tiny_model(quick: bool, seed: int, batch: int):
    out = {}
    for T in (2, 3):
        layers, leaf, info = model_layers(quick, seed, T, batch)
        per = []
        for name, domain, I, gy, V, B in layers:
            res = analyse_case(I, gy, V, B, T, domain)
            per.append({"layer": name, "domain": domain, **res})
        out[T] = {"layers": per, "leaf": leaf, "info": info}
    return out


def _avg(per, conv, key):
    return np.mean([np.abs(r[conv][key]) for r in per], axis=0)


def run(quick: bool, seed: int = 0, sizes: dict | None = None) -> list[Result]:
    sz = dict(SIZES["quick" if quick else "full"])
    sz.update(sizes or {})
    rows, lif = random_inputs(sz["n"], seed)
    tm = tiny_model(quick, seed, sz["batch"])
    return ([claim_closed_forms(rows, tm), claim_random_inputs(rows, sz), claim_input_gradient(rows),
             claim_lif(lif)] + [claim_trained(tm, T, sz) for T in (2, 3)])


def claim_closed_forms(rows, tm) -> Result:
    """The library kernel against the closed forms (tau = 1), random and tiny_resnet cases, both conventions."""
    allcases = rows + [r for T in tm for r in tm[T]["layers"]]
    cf_err = max(max(r["paper"]["closed_form_err"], r["official"]["closed_form_err"]) for r in allcases)
    last_eq = all(r["last_equal"] for r in allcases)
    ok = cf_err < 1e-10 and last_eq
    return Result(
        f"{CLAIM}: closed forms (tau = 1)", f"library kernel vs derivation, {len(allcases)} cases (random + "
        "tiny_resnet layers), both conventions",
        f"max rel. deviation of gI, dL/dV_th^t, dL/dB^t from the closed forms: {cf_err:.1e}; last step identical "
        f"under both conventions in {sum(r['last_equal'] for r in allcases)}/{len(allcases)} cases",
        "holds" if ok else "fails",
        "Under paper BPTT with tau = 1, gS^t = (gy/T)[out of range at every later step] and gI = (gy/T) x (last "
        "in-range step); officially gS^t = gy/T and gI = (gy/T) x (number of in-range steps); the last step's "
        "threshold and width gradients are identical under both conventions.",
        ok, {"rows": rows})


def claim_random_inputs(rows, sz) -> Result:
    """Random inputs: how little of the gradient reaches the early steps under paper BPTT."""
    pos = [r for r in rows if r["domain"] == "positive"]
    cells = []
    for r in pos:
        p, o = r["paper"], r["official"]
        cells.append(f"B={r['B']},T={r['T']}: reach " + "/".join(f"{x:.2f}" for x in p["reach"])
                     + "; rounding part of dL/dV^t paper " + "/".join(f"{x:+.3f}" for x in p["inside_part"])
                     + " vs official " + "/".join(f"{x:+.3f}" for x in o["inside_part"]))
    early_in = max(x for r in rows for x in r["paper"]["reach_in"][:-1])
    t1_round = max(abs(r["paper"]["inside_part"][0]) for r in pos)
    # "reach": fraction of elements whose gradient reaches Shat^t
    return Result(
        f"{CLAIM}: random inputs", f"post-ReLU N(0,1) (positive) and N(0,1) (bidirectional), n={sz['n']:,}, "
        "B = 2, 4, LSQ-initialised thresholds",
        "; ".join(cells) + f"; in-range elements reaching Shat^t, t < T (paper, all cases): at most "
        f"{100 * early_in:.1f}%; positive neuron, t = 1: rounding part {t1_round:.1e}",
        "holds",
        "For t < T only elements out of range at every later step pass gradient to Shat^t under paper BPTT "
        f"(at most {100 * early_in:.1f}% of the in-range ones), so the rounding (in-range) part of dL/dV_th^t of "
        "early steps is reduced to that thin band (exactly 0 at t = 1 for the positive neuron with equal steps), "
        "while the official convention gives every step its full LSQ gradient.",
        t1_round == 0.0, {})


def claim_input_gradient(rows) -> Result:
    """The input gradient dL/dI under both conventions."""
    gi = ", ".join(f"{r['domain'][:3]} B={r['B']} T={r['T']}: paper {r['paper']['gI_eq_gy']:.3f} / official "
                   f"{r['official']['gI_eq_gy']:.3f}, rel. diff {r['gI_diff']:.1e}" for r in rows)
    return Result(
        f"{CLAIM}: input gradient", "fraction of elements with dL/dI = dL/dy exactly; ||gI_paper - gI_off|| / "
        "||gI_off||", gi, "holds",
        "The input receives the straight-through gy for every element in range at the last step (paper) or at "
        "every step (official); the two conventions differ only on elements that change regime.",
        True, {})


def claim_lif(lif) -> Result:
    """LIF (tau = 2) under the paper convention: the partial cancellation."""
    lif_txt = "; ".join(f"T={x['T']}: reach tau=1 " + "/".join(f"{v:.2f}" for v in x[1.0]["reach"])
                        + ", tau=2 " + "/".join(f"{v:.2f}" for v in x[2.0]["reach"])
                        + "; rounding part of dL/dV^t tau=1 " + "/".join(f"{v:+.4f}" for v in x[1.0]["inside_part"])
                        + ", tau=2 " + "/".join(f"{v:+.4f}" for v in x[2.0]["inside_part"]) for x in lif)
    lif_err = max(x[tau]["err"] for x in lif for tau in (1.0, 2.0))
    return Result(
        f"{CLAIM}: LIF (tau = 2), paper", "positive neuron, B = 2, the same inputs and gy for tau = 1 and 2; "
        "parts from the recursion", lif_txt + f" (recursion vs library {lif_err:.1e})",
        "partial",
        "With tau = 2 the reset no longer cancels the carry: step T-1 still gets nothing from elements in range "
        "at T, but earlier steps get (1 - 1/tau)-weighted remainders, so their rounding part is non-zero again.",
        lif_err < 1e-10, {"lif": lif})


def claim_trained(tm, T, sz) -> Result:
    """The trained tiny_resnet at temporal length T: per-layer and whole-model gradients, both conventions."""
    per = tm[T]["layers"]
    rp, ro = _avg(per, "paper", "g_vth"), _avg(per, "official", "g_vth")
    bp_, bo, bd = _avg(per, "paper", "g_bits"), _avg(per, "official", "g_bits"), _avg(per, "detached", "g_bits")
    reach = np.mean([r["paper"]["reach"] for r in per], axis=0)
    rin_p, rin_o = _avg(per, "paper", "inside_part"), _avg(per, "official", "inside_part")
    cl_p, cl_o = _avg(per, "paper", "clip_part"), _avg(per, "official", "clip_part")
    inr = np.mean([r["paper"]["in_range"] for r in per], axis=0)
    gid = float(np.mean([r["gI_diff"] for r in per]))
    leaf = tm[T]["leaf"]
    lp = np.mean([np.abs(v[0]) for v in leaf["paper"].values()], axis=0)
    lo = np.mean([np.abs(v[0]) for v in leaf["official"].values()], axis=0)
    f = lambda a: "/".join(f"{x:.2e}" for x in a)  # noqa: E731
    return Result(
        f"{CLAIM}: trained tiny_resnet, T = {T}",
        f"7 spiking layers, one batch of {sz['batch']}, same (I, dL/dy) for both conventions; model test acc "
        f"{100 * tm[T]['info']['acc']:.1f}%",
        f"layer mean |dL/dV_th^t| paper {f(rp)} vs official {f(ro)} (rounding part paper {f(rin_p)} vs "
        f"official {f(rin_o)}; clipping part paper {f(cl_p)} vs official {f(cl_o)}); |dL/dB^t| paper "
        f"{f(bp_)} vs C3-only detach {f(bd)} (official, without the factor g of C1: {f(bo)}); in range per "
        f"step {'/'.join(f'{x:.3f}' for x in inr)}; reach (paper) "
        f"{'/'.join(f'{x:.3f}' for x in reach)}; ||gI_paper - gI_off||/||gI_off|| {gid:.1e}; whole-model "
        f"backward |dL/dV_th^t| paper {f(lp)} vs official {f(lo)}",
        "holds",
        f"In the trained model at T = {T} only {100 * reach[0]:.1f}% of the elements pass gradient to Shat^1 "
        f"under paper BPTT, so the rounding part of dL/dV_th^1 drops to {rin_p[0] / max(rin_o[0], 1e-300):.3f}x "
        f"the official one and the step-1 threshold learns from saturated elements (clipping part "
        f"{cl_p[0]:.1e} vs {cl_o[0]:.1e}); the last step's gradients coincide and the input gradients differ "
        f"by {100 * gid:.2g}%.",
        True, {"T": T, "per": per, "leaf": {k: {n: [a.tolist(), b.tolist()] for n, (a, b) in v.items()}
                                            for k, v in leaf.items()}})


def report(results) -> str:
    rows = [r.data["rows"] for r in results if "rows" in r.data][0]
    f = lambda a: " / ".join(f"{x:+.3e}" for x in a)  # noqa: E731
    tab = md_table(["domain", "B", "T", "convention", "dL/dV_th^t (t = 1..T)", "rounding part", "clipping part",
                    "dL/dB^t", "reach Shat^t", "in range at t", "gI = gy"],
                   [[r["domain"], r["B"], r["T"], conv, f(r[conv]["g_vth"]), f(r[conv]["inside_part"]),
                     f(r[conv]["clip_part"]), f(r[conv]["g_bits"]), " / ".join(f"{x:.3f}" for x in r[conv]["reach"]),
                     " / ".join(f"{x:.3f}" for x in r[conv]["in_range"]), f"{r[conv]['gI_eq_gy']:.3f}"]
                    for r in rows for conv in ("paper", "official")])
    parts = ["Random inputs (reach = fraction of elements whose gradient reaches Shat^t; rounding part = the "
             "in-range terms g sum gS (S - u), clipping part = the out-of-range terms):", "", tab, ""]
    for res in results:
        if "per" not in res.data:
            continue
        T = res.data["T"]
        per = res.data["per"]
        parts += [f"Trained tiny_resnet, T = {T}, per layer (same I and dL/dy for both conventions):", "",
                  md_table(["layer", "grid", "dL/dV_th^t paper", "dL/dV_th^t official", "dL/dB^t paper",
                            "dL/dB^t official", "reach (paper)", "in range", "gI rel. diff"],
                           [[r["layer"], r["domain"], f(r["paper"]["g_vth"]), f(r["official"]["g_vth"]),
                             f(r["paper"]["g_bits"]), f(r["official"]["g_bits"]),
                             " / ".join(f"{x:.3f}" for x in r["paper"]["reach"]),
                             " / ".join(f"{x:.3f}" for x in r["paper"]["in_range"]), f"{r['gI_diff']:.1e}"]
                            for r in per]), ""]
    return "\n".join(parts)


def figures(results, fig_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r.data["rows"] for r in results if "rows" in r.data][0]
    fig, ax = plt.subplots(1, 2, figsize=(12, 4.5))
    sel = [r for r in rows if r["domain"] == "positive" and r["T"] == 3]
    w = 0.2
    top = max(float(np.max(np.abs(r[c]["inside_part"]) + np.abs(r[c]["clip_part"]))) for r in sel
              for c in ("paper", "official"))
    # a plain log axis from a positive floor (a symlog axis would show a "0" tick on a log-like scale);
    # a rounding part that is exactly zero gets no solid bar and a "0" at its foot
    floor = 1e-4
    for i, r in enumerate(sel):
        for j, conv in enumerate(("paper", "official")):
            xs = np.arange(3) + (2 * i + j - 1.5) * w
            inside, clip = np.abs(r[conv]["inside_part"]), np.abs(r[conv]["clip_part"])
            ax[0].bar(xs, np.maximum(inside - floor, 0.0), w, bottom=floor, color=f"C{2 * i + j}",
                      label=f"B={r['B']}, {conv}: rounding part")
            base = np.maximum(inside, floor)
            ax[0].bar(xs, np.maximum(inside + clip - base, 0.0), w, bottom=base, color=f"C{2 * i + j}",
                      alpha=0.35, hatch="//")
            for x in xs[inside == 0]:
                ax[0].text(x, 1.4 * floor, "0", ha="center", va="bottom", fontsize=7)
    ax[0].set_yscale("log")
    ax[0].set_ylim(floor, 3 * top)
    ax[0].set_xticks(range(3))
    ax[0].set_xticklabels(["t = 1", "t = 2", "t = 3"])
    ax[0].set_ylabel("|dL/dV_th^t| (solid: rounding part, hatched: clipping part)")
    ax[0].set_title("random post-ReLU input, positive neuron, T = 3")
    ax[0].legend(fontsize=7)
    for res in results:
        if "per" not in res.data:
            continue
        T = res.data["T"]
        per = res.data["per"]
        for conv, ls in (("paper", "-"), ("official", "--")):
            m = np.mean([np.abs(r[conv]["g_vth"]) for r in per], axis=0)
            ax[1].semilogy(np.arange(1, T + 1), np.maximum(m, 1e-12), ls, marker="o", color="C0" if T == 2 else "C3",
                           label=f"T = {T}, {conv}")
    ax[1].set_xlabel("time step t")
    ax[1].set_ylabel("layer mean |dL/dV_th^t| (one batch)")
    ax[1].set_title("trained tiny_resnet, same upstream gradient")
    ax[1].set_xticks([1, 2, 3])
    ax[1].legend(fontsize=8)
    path = save_figure(fig, fig_dir, "method_time_flow.png")
    return [(path, "Gradient flow through time. Left: |dL/dV_th^t| per step for random post-ReLU input (T = 3, "
                   "B = 2 and 4), split into the in-range (rounding) and out-of-range (clipping) terms, paper BPTT vs "
                   "official detach (log scale; a '0' at the foot of a bar: that rounding part is exactly zero). "
                   "Right: layer-averaged |dL/dV_th^t| of the trained tiny_resnet for T = 2 and 3 under both "
                   "conventions (log scale).")]


if __name__ == "__main__":
    cli_main(run)
