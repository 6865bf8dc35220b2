"""Theorem 1 (Eq. 22): probability that the quantization error grows when the
bit width drops from ``b`` to ``b' < b`` and the step ``s`` is kept.

**Setting (docs/method.md §8).** ``x = |N(0, sigma^2)|``,
``N = 2^b - 1``, ``N' = 2^{b'} - 1``, ``s = 3 sigma / N``,
``x_q = s clip(round(x/s), 0, N)``, ``x_q' = s clip(round(x/s), 0, N')`` (same
``s``), ``Err = (x - x_q)^2``, ``Err' = (x - x_q')^2``, round = half away from
zero. The paper states ``P(Err' > Err) ~ P(x > c')`` with the new clip point
``c' = s N' = 3 sigma N'/N``.

**Exact event (derivation).** Put ``u = x/s >= 0`` and ``r = round(u)``. The old
level is ``k = min(r, N)``, the new one ``k' = min(r, N') = min(k, N')``.

* ``r <= N'`` (that is ``u < N' + 1/2``): ``k = k'``, the errors are equal, the
  strict inequality fails. This includes ``x`` slightly above the new clip
  point: for ``u in [N', N' + 1/2)`` the OLD quantizer also rounds to level
  ``N'`` (= ``c'``), so clipping at ``c'`` changes nothing there.
* ``r > N'``: ``k > k' = N'`` and
  ``(u - N')^2 - (u - k)^2 = (k - N') (2u - N' - k)``, positive iff
  ``u > (N' + k)/2``.
  - ``N' < r <= N`` (``k = r``, ``u in [r - 1/2, r + 1/2)``): for ``r >= N' + 2``
    the midpoint ``(N' + r)/2 <= r - 1 < u`` always; for ``r = N' + 1`` the
    midpoint is ``N' + 1/2``, the left end of the cell, where both errors equal
    ``s/2`` (the old quantizer rounds the tie up to ``N' + 1``, the new one
    clips it to ``N'``): the event is the open cell ``(N' + 1/2, N' + 3/2)``.
  - ``r > N`` (``u >= N + 1/2``, ``k = N``): ``u > (N' + N)/2`` always.

How ties are rounded does not matter: at ``u = r + 1/2`` with ``r >= N' + 1``
either neighbour of the old grid is closer than ``N'``, and at ``u = N' + 1/2``
the two errors tie whichever way the old quantizer rounds.

So the event is the union of cell pieces
``(N'+1/2, N'+3/2) U [N'+3/2, N'+5/2) U ... U [N+1/2, inf)``, which is the single
open half-line

    Err' > Err   <=>   x > c' + s/2 = s (N' + 1/2) = 3 sigma (2^{b'} - 1/2) / (2^b - 1),

    P_exact = P(x > s (N' + 1/2)) = 2 [1 - Phi(3 (2^{b'} - 1/2) / (2^b - 1))].

**Relation to Eq. 22.** Eq. 22 is ``P(x > c')``, the probability that ``x`` lies
beyond the new clip point. The exact event starts half a step later, so
``P_paper - P_exact = P(c' < x <= c' + s/2) > 0`` for every ``(b, b')``: Eq. 22 is
never equal to the exact probability, it is a strict upper bound (an
over-estimate by the half-normal mass of ``(c', c' + s/2]``). The gap vanishes
as ``b -> inf`` at fixed ``b - b'`` (``s -> 0``), which is the sense in which
Eq. 22 is a "statistical approximation".

**Three independent routes in this module.** (1) the closed form above; (2) a
generic, case-free computation (``common.growth_event``): on every cell of the
common refinement of the two quantizers both levels are constants and the error
difference is linear in ``u``, so the event is read off cell by cell and its
half-normal mass summed; (3) Monte Carlo with the quantizers applied to samples.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from .common import (Result, save_figure, binom_se, cli_main, consistent, fmt_intervals, growth_event,
                     intervals_mass, levelmap_round, md_table, pairs, quant_pos_round, zscore)

CLAIM = "Theorem 1 (Eq. 22)"
SIGMA = 1.0


def p_paper(b: int, bp: int, sigma: float = 1.0) -> float:
    """Eq. 22: P(x > 3 sigma (2^{b'} - 1)/(2^b - 1)) for x = |N(0, sigma^2)|."""
    return 2.0 * float(stats.norm.sf(3.0 * (2 ** bp - 1) / (2 ** b - 1)))


def p_exact_closed(b: int, bp: int) -> float:
    """Derived exact value: P(x > 3 sigma (2^{b'} - 1/2)/(2^b - 1)) (independent of sigma)."""
    return 2.0 * float(stats.norm.sf(3.0 * (2 ** bp - 0.5) / (2 ** b - 1)))


def event_intervals(b: int, bp: int):
    """Exact event {u = x/s : Err' > Err} from the generic cell computation."""
    return growth_event(levelmap_round(2 ** b - 1), levelmap_round(2 ** bp - 1))


def p_exact_generic(b: int, bp: int) -> float:
    n_max = 2 ** b - 1
    tau = n_max / 3.0            # sigma / s
    return intervals_mass(event_intervals(b, bp), tau)


def mc_growth(b: int, bp: int, n: int, rng, sigma: float = SIGMA):
    """Monte Carlo fraction of samples with Err' > Err, and its standard error."""
    s = 3.0 * sigma / (2 ** b - 1)
    x = np.abs(rng.normal(0.0, sigma, n))
    err = (x - quant_pos_round(x, s, b)) ** 2
    errp = (x - quant_pos_round(x, s, bp)) ** 2
    ph = float(np.mean(errp > err))
    return ph, math.sqrt(ph * (1 - ph) / n)


def analyse(quick: bool, seed: int = 0):
    """Per (b, b') row of all numbers."""
    n = 200_000 if quick else 2_000_000
    ss = np.random.SeedSequence(seed)
    rows = {}
    for (b, bp), child in zip(pairs(), ss.spawn(len(pairs()))):
        rng = np.random.default_rng(child)
        ev = event_intervals(b, bp)
        closed_ev = [((2 ** bp - 1) + 0.5, math.inf, False, False)]
        pe_c, pe_g, pp = p_exact_closed(b, bp), p_exact_generic(b, bp), p_paper(b, bp)
        mc, se_obs = mc_growth(b, bp, n, rng)
        se = binom_se(pe_c, n)          # SE under the exact value (the null being tested)
        rows[(b, bp)] = dict(
            b=b, bp=bp, n=n, event=fmt_intervals(ev), event_matches=(ev == closed_ev),
            clip_new=3.0 * (2 ** bp - 1) / (2 ** b - 1),
            thr_exact=3.0 * (2 ** bp - 0.5) / (2 ** b - 1),
            p_paper=pp, p_exact=pe_c, p_generic=pe_g, mc=mc, se=se, se_obs=se_obs,
            z_exact=zscore(mc, pe_c, se), z_paper=zscore(mc, pp, binom_se(pp, n)),
            gap=pp - pe_c, rel_gap=(pp - pe_c) / pe_c,
            ok=(ev == closed_ev and abs(pe_c - pe_g) <= 1e-13 and consistent(mc, pe_c, se)
                and pp > pe_c))
    return rows


def run(quick: bool, seed: int = 0) -> list[Result]:
    rows = analyse(quick, seed)
    out = []
    for b in range(2, 9):
        rb = [rows[(b, bp)] for bp in range(1, b)]
        worst = max(rb, key=lambda r: r["gap"])
        worst_rel = max(rb, key=lambda r: r["rel_gap"])
        ok = all(r["ok"] for r in rb)
        n_eq = sum(abs(r["gap"]) <= 1e-12 for r in rb)
        out.append(Result(
            CLAIM + f" b={b}", f"closed form + cell sums + MC n={rb[0]['n']:,}/pair",
            f"b'=1..{b - 1}: exact " + ", ".join(f"{r['p_exact']:.4f}" for r in rb) + "; "
            f"Eq.22 - exact: max {worst['gap']:.4f} (b'={worst['bp']}), max rel. "
            f"+{100 * worst_rel['rel_gap']:.1f}% (b'={worst_rel['bp']}); "
            f"max|z(MC vs exact)|={max(abs(r['z_exact']) for r in rb):.2f}",
            "exact" if n_eq == len(rb) else "approximate",
            f"For b={b} the exact event is x > s(2^b'-1/2); Eq. 22 over-estimates P(Err'>Err) "
            f"by P(c' < x <= c'+s/2) for every b' (equal for {n_eq} of {len(rb)}).",
            ok, {"rows": rb}))
    allr = list(rows.values())
    worst = max(allr, key=lambda r: r["gap"])
    worst_rel = max(allr, key=lambda r: r["rel_gap"])
    least = min(allr, key=lambda r: r["gap"])
    ok = all(r["ok"] for r in allr)
    out.append(Result(
        CLAIM + " all 28 pairs", "derivation vs generic cell analysis vs MC",
        f"Eq. 22 equal to exact for 0/28 pairs, upper bound for {sum(r['gap'] > 0 for r in allr)}/28; "
        f"largest gap {worst['gap']:.4f} at (b,b')=({worst['b']},{worst['bp']}) "
        f"[{worst['p_paper']:.4f} vs {worst['p_exact']:.4f}, +{100 * worst_rel['rel_gap']:.0f}%], "
        f"smallest {least['gap']:.5f} at ({least['b']},{least['bp']})",
        "approximate" if ok else "fails",
        "Eq. 22 is the probability of x beyond the new clip point c'; the error actually grows "
        "only beyond c' + s/2, so Eq. 22 is a strict over-estimate for every (b, b').",
        ok, {"rows": allr}))
    return out


def report(results) -> str:
    res = [r for r in results if r.claim.endswith("all 28 pairs")]
    if not res:
        return ""
    rows = res[0].data["rows"]
    tab = [(r["b"], r["bp"], f"{r['clip_new']:.4f}", f"{r['thr_exact']:.4f}", r["event"],
            f"{r['p_paper']:.5f}", f"{r['p_exact']:.5f}", f"{r['mc']:.5f}±{r['se']:.5f}",
            f"{r['z_exact']:+.2f}", f"{r['z_paper']:+.1f}", f"{r['gap']:.5f}",
            f"{100 * r['rel_gap']:.2f}%") for r in rows]
    return ("Per (b, b'), sigma = 1: c'/sigma = new clip point (Eq. 22 threshold), "
            "(c'+s/2)/sigma = exact threshold; event in units of s (generic cell analysis); "
            "MC ± binomial SE at the exact value; z = (MC - value)/SE; gap = paper - exact "
            "(absolute, relative to exact). Eq. 22 equals the exact value for no pair.\n\n"
            + md_table(["b", "b'", "c'/σ", "(c'+s/2)/σ", "event (u=x/s)", "Eq. 22", "exact",
                        "MC ± SE", "z exact", "z Eq.22", "gap", "rel. gap"], tab))


def figures(results, fig_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = {(r["b"], r["bp"]): r for r in
            [r for r in results if r.claim.endswith("all 28 pairs")][0].data["rows"]}
    fig, ax = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, b in enumerate([2, 3, 4, 6, 8]):
        bps = list(range(1, b))
        c = f"C{i}"
        ax[0].plot(bps, [rows[(b, p)]["p_paper"] for p in bps], "--", color=c, marker="^",
                   ms=5, label=f"b={b}, Eq. 22")
        ax[0].plot(bps, [rows[(b, p)]["p_exact"] for p in bps], "-", color=c, marker="s",
                   ms=3, label=f"b={b}, exact")
        ax[0].errorbar(bps, [rows[(b, p)]["mc"] for p in bps],
                       yerr=[5 * rows[(b, p)]["se"] for p in bps], fmt="o", color=c, ms=4,
                       mfc="none")
        ax[1].semilogy(bps, [rows[(b, p)]["gap"] for p in bps], "-o", color=c, ms=4,
                       label=f"b={b}")
    ax[0].axhline(2 * stats.norm.sf(1.5), color="k", lw=0.8, ls=":",
                  label="Lemma 1 bound 0.1336")
    ax[0].set_xlabel("new bit width b'")
    ax[0].set_ylabel("P(Err' > Err)")
    ax[0].set_title("error grows after b -> b' (s kept); circles: Monte Carlo ±5 SE")
    # the curves reach P = 1 at b' = 1: room above them for the legend, so it covers no curve
    ax[0].set_ylim(0.05, 1.5)
    ax[0].set_yticks([0.2, 0.4, 0.6, 0.8, 1.0])
    ax[0].legend(fontsize=7, ncol=3, loc="upper center")
    ax[1].set_xlabel("new bit width b'")
    ax[1].set_ylabel("Eq. 22 - exact  (probability)")
    ax[1].set_title("over-estimate of Eq. 22 = P(c' < x <= c' + s/2)")
    ax[1].legend(fontsize=8)
    path = save_figure(fig, fig_dir, "theory_theorem1_probability.png")
    return [(path, "Theorem 1. Left: probability that the squared error grows when the width "
             "drops from b to b' with the step kept, for half-normal data; dashed = Eq. 22, solid "
             "= exact P(x > c' + s/2), circles = Monte Carlo with 5-SE bars, dotted = Lemma 1's "
             "0.1336. Right: the over-estimate of Eq. 22 (log scale).")]


if __name__ == "__main__":
    cli_main(run)
