"""Accumulation over a tensor or over T time steps (section 8 of docs/method.md,
after Lemma 1): some element's error grows with probability ``1 - (1 - p)^n``.

**What is checked.**

1. *iid Bernoulli events* with ``p in {0.001, 0.01, 0.05}``: the formula is the
   complement of ``n`` independent misses, an identity; the simulation only
   checks the bookkeeping (and gives small-``p`` cases where ``n = 100`` is not
   saturated).
2. *A tensor of n iid half-normal elements* quantized at ``b`` and ``b'`` bits
   with the kept step (Theorem 1 quantizers, applied to the samples, no use of
   the event characterisation): the fraction of tensors with at least one
   element whose error grew, against ``1 - (1 - p_exact)^n`` (``p_exact`` from
   ``verify.theorem1``) and against ``1 - (1 - p_Eq22)^n``.
3. *T time steps of the refined IF neuron* (Eq. 13-14, ``tau = 1``, constant
   input current ``I = x`` half-normal, threshold ``V_th = s``): two membrane
   trajectories, one with ``b``-bit spikes and one with ``b'``-bit spikes,
   ``v^t = v^{t-1} + I - Shat^{t-1}``; step ``t``'s error is ``(v^t - Shat^t)^2``
   on each trajectory. The event is "at some ``t <= T`` the ``b'`` trajectory's
   error exceeds the ``b`` trajectory's". The time steps are not independent
   draws, so ``1 - (1 - p)^T`` is not expected to apply. What is provable: at
   ``t = 1`` both trajectories see ``v^1 = x``, so the event contains Theorem 1's
   event and ``P_T >= p`` (checked). The simulation shows how far below
   ``1 - (1 - p)^T`` the truth is.
"""

from __future__ import annotations


import numpy as np

from .common import (Result, save_figure, binom_se, cli_main, consistent, md_table, quant_pos_round,
                     round_half_away, zscore)
from .theorem1 import p_exact_closed, p_paper

CLAIM = "Accumulation 1-(1-p)^n"
NS = (1, 2, 3, 10, 100)
TENSOR_PAIRS = ((8, 7), (4, 2), (8, 4))


def _any_growth_tensor(b, bp, n_el, trials, rng, chunk_elems=2_000_000):
    """Fraction of `trials` tensors of n_el half-normal elements with some Err' > Err."""
    s = 3.0 / (2 ** b - 1)
    hits, done = 0, 0
    per = max(1, chunk_elems // n_el)
    while done < trials:
        m = min(per, trials - done)
        x = np.abs(rng.normal(0.0, 1.0, (m, n_el)))
        grow = (x - quant_pos_round(x, s, bp)) ** 2 > (x - quant_pos_round(x, s, b)) ** 2
        hits += int(np.count_nonzero(grow.any(axis=1)))
        done += m
    return hits / trials


def if_neuron_growth(b, bp, T, trials, rng):
    """P(some step t <= T has larger error on the b'-bit trajectory), refined IF neuron."""
    n_max, n_maxp = 2 ** b - 1, 2 ** bp - 1
    s = 3.0 / n_max
    x = np.abs(rng.normal(0.0, 1.0, trials))
    v, vp = x.copy(), x.copy()
    hit = np.zeros(trials, dtype=bool)
    per_t = []
    for _ in range(T):
        # Eq. 14 with V_th = s: Shat = s * clip(round(v / s), 0, 2^B - 1)
        sh = s * np.clip(round_half_away(v / s), 0, n_max)
        shp = s * np.clip(round_half_away(vp / s), 0, n_maxp)
        hit |= (vp - shp) ** 2 > (v - sh) ** 2
        per_t.append(float(hit.mean()))
        # Eq. 13 with tau = 1, I = x
        v, vp = v + x - sh, vp + x - shp
    return per_t


def run(quick: bool, seed: int = 0) -> list[Result]:
    trials = 20_000 if quick else 200_000
    ss = np.random.SeedSequence([seed, 5])
    kids = iter(ss.spawn(64))
    out = []
    # 1. Bernoulli
    for p in (0.001, 0.01, 0.05):
        rng = np.random.default_rng(next(kids))
        rows = []
        for n in NS:
            pred = 1 - (1 - p) ** n
            ph = float(np.mean((rng.random((trials, n)) < p).any(axis=1)))
            se = binom_se(pred, trials)
            rows.append(dict(n=n, pred=pred, mc=ph, se=se, z=zscore(ph, pred, se)))
        ok = all(consistent(r["mc"], r["pred"], r["se"], slack=1.0 / trials) for r in rows)
        out.append(Result(
            CLAIM + f" Bernoulli p={p}", f"MC {trials:,} trials per n",
            "n=" + ", ".join(f"{r['n']}: {r['pred']:.4f}/{r['mc']:.4f}" for r in rows)
            + f" (formula/MC); max|z|={max(abs(r['z']) for r in rows):.2f}",
            "exact" if ok else "fails",
            "For independent events of probability p, P(any of n) = 1-(1-p)^n.", ok,
            {"rows": rows, "p": p, "kind": "bernoulli"}))
    # 2. iid tensor of half-normal elements, actual quantizers
    for b, bp in TENSOR_PAIRS:
        pe, pp = p_exact_closed(b, bp), p_paper(b, bp)
        rng = np.random.default_rng(next(kids))
        rows = []
        for n in NS:
            pred, pred_p = 1 - (1 - pe) ** n, 1 - (1 - pp) ** n
            ph = _any_growth_tensor(b, bp, n, trials, rng)
            se = binom_se(pred, trials)
            rows.append(dict(n=n, pred=pred, pred_paper=pred_p, mc=ph, se=se,
                             z=zscore(ph, pred, se),
                             z_paper=zscore(ph, pred_p, max(binom_se(pred_p, trials), 1e-300))))
        ok = all(consistent(r["mc"], r["pred"], r["se"], slack=1.0 / trials) for r in rows)
        out.append(Result(
            CLAIM + f" tensor ({b},{bp})", f"MC {trials:,} tensors per n",
            f"p={pe:.4f}; n=" + ", ".join(f"{r['n']}: {r['pred']:.4f}/{r['mc']:.4f}" for r in rows)
            + f" (formula/MC); max|z|={max(abs(r['z']) for r in rows):.2f}",
            "holds" if ok else "fails",
            "With iid elements and p the exact Theorem 1 probability, the any-element formula "
            "matches simulation for every n.", ok,
            {"rows": rows, "p": pe, "p_paper": pp, "b": b, "bp": bp, "kind": "tensor"}))
    # 3. T steps of the refined IF neuron
    t_max = 3
    for b, bp in ((8, 7), (3, 2), (4, 2)):
        pe = p_exact_closed(b, bp)
        rng = np.random.default_rng(next(kids))
        n_if = 10 * trials
        per_t = if_neuron_growth(b, bp, t_max, n_if, rng)
        rows = []
        for t, ph in enumerate(per_t, start=1):
            pred = 1 - (1 - pe) ** t
            se = binom_se(max(ph, pe), n_if)
            rows.append(dict(n=t, pred=pred, mc=ph, se=se, z=zscore(ph, pred, se),
                             z_low=zscore(ph, pe, se)))
        # provable: P_1 = p (same v^1 = x) and P_T >= p; observed: P_T < formula for T >= 2
        ok = (consistent(rows[0]["mc"], pe, rows[0]["se"])
              and all(r["mc"] >= pe - 5 * r["se"] for r in rows))
        below = all(r["mc"] < r["pred"] - 5 * r["se"] for r in rows[1:])
        out.append(Result(
            CLAIM + f" IF neuron T ({b},{bp})", f"MC {n_if:,} neurons, T=1..{t_max}",
            f"p={pe:.4f}; T=" + ", ".join(f"{r['n']}: {r['pred']:.4f}/{r['mc']:.4f}" for r in rows)
            + " (formula/MC)",
            "fails" if below else "holds",
            "Over the T steps of one refined IF neuron the events are strongly dependent: "
            "P(any step) stays between p and 1-(1-p)^T, far below the formula"
            + ("." if below else " (not observed here)."),
            ok, {"rows": rows, "p": pe, "b": b, "bp": bp, "kind": "if"}))
    return out


def report(results) -> str:
    tab = []
    for r in results:
        for x in r.data["rows"]:
            tab.append((r.claim.replace(CLAIM + " ", ""), f"{r.data['p']:.4f}", x["n"],
                        f"{x['pred']:.5f}",
                        f"{x['pred_paper']:.5f}" if "pred_paper" in x else "",
                        f"{x['mc']:.5f}±{x['se']:.5f}", f"{x['z']:+.2f}"))
    return ("n = tensor size (or T); formula = 1-(1-p)^n with p exact; 'with Eq. 22 p' uses the "
            "paper's p; z = (MC - formula)/SE.\n\n"
            + md_table(["case", "p", "n or T", "formula", "with Eq. 22 p", "MC ± SE", "z"], tab))


def figures(results, fig_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    nn = np.logspace(0, 2, 100)
    for i, r in enumerate(results):
        c = f"C{i % 10}"
        rows = r.data["rows"]
        ns = [x["n"] for x in rows]
        if r.data["kind"] != "if":
            ax.semilogx(nn, 1 - (1 - r.data["p"]) ** nn, "-", color=c, lw=1)
            ax.errorbar(ns, [x["mc"] for x in rows], yerr=[5 * x["se"] for x in rows], fmt="o",
                        color=c, ms=4, label=r.claim.replace(CLAIM + " ", ""))
        else:
            ax.semilogx(ns, [x["pred"] for x in rows], ":", color=c, lw=1)
            ax.errorbar(ns, [x["mc"] for x in rows], yerr=[5 * x["se"] for x in rows], fmt="s",
                        color=c, ms=5, mfc="none", label=r.claim.replace(CLAIM + " ", ""))
    ax.set_xlabel("tensor size n  (or number of time steps T)")
    ax.set_ylabel("P(some element's error grows)")
    ax.set_title("1 - (1-p)^n: lines = formula, markers = Monte Carlo (±5 SE)")
    ax.legend(fontsize=7)
    path = save_figure(fig, fig_dir, "theory_accumulation.png")
    return [(path, "Accumulation: probability that at least one of n elements has a larger error, "
             "formula 1-(1-p)^n (lines; dotted for the IF neuron's T steps) vs Monte Carlo "
             "(markers, 5-SE bars). iid elements follow the formula; the T steps of one refined "
             "IF neuron (hollow squares) stay far below it.")]


if __name__ == "__main__":
    cli_main(run)
