"""Expected error increase after a width drop with the step kept.

Theorem 1's setting (``x = |N(0, sigma^2)|``, ``s = 3 sigma/(2^b - 1)``, both
quantizers on the same step): ``Delta = E[Err'] - E[Err]``. Bidirectional
setting of ``verify.bidirectional`` likewise (``s = 3 sigma / q``).

**Analytic value.** On every cell ``[a, a')`` of the common refinement of the
two quantizers (in ``u = x/s``) both levels are constants ``k, k'`` and
``(u - k')^2 - (u - k)^2 = (k - k')(2u - k - k')``, so

    Delta / s^2 = sum_cells (k - k') (2 M1 - (k + k') M0),

``M0, M1`` the half-normal truncated moments of the cell
(``common.hn_moments``); only cells with ``u >= N' + 1/2`` contribute. The
same sum is evaluated with ``scipy.integrate.quad`` cell by cell, and
``E[Err]``, ``E[Err']`` separately, to cross-check. Monte Carlo uses the paired
difference ``Err' - Err`` per sample and its standard error.

Note that ``Delta > 0`` always, but the error *ratio* ``E[Err']/E[Err]`` is what
says how bad keeping the step is: it grows with ``b - b'`` because the new
clip point ``c' = 3 sigma (2^{b'}-1)/(2^b-1)`` moves into the bulk of the data.
"""

from __future__ import annotations


import numpy as np

from .common import (Result, save_figure, cli_main, consistent, expected_increase, expected_sq_error,
                     levelmap_round, levelmap_sym, md_table, mean_se, pairs, q_sym,
                     quad_over_cells, quant_pos_round, quant_sym, zscore)

CLAIM = "Expected error increase"


def _row(domain, b, bp, n, rng, do_quad):
    if domain == "positive":
        old, new = levelmap_round(2 ** b - 1), levelmap_round(2 ** bp - 1)
        s = 3.0 / (2 ** b - 1)
        x = np.abs(rng.normal(0.0, 1.0, n))
        e, ep = (x - quant_pos_round(x, s, b)) ** 2, (x - quant_pos_round(x, s, bp)) ** 2
    else:
        old, new = levelmap_sym(b), levelmap_sym(bp)
        s = 3.0 / q_sym(b)
        x = rng.normal(0.0, 1.0, n)
        e, ep = (x - quant_sym(x, s, b)) ** 2, (x - quant_sym(x, s, bp)) ** 2
    tau = 1.0 / s
    d_an = expected_increase(old, new, tau) * s * s
    e_old = expected_sq_error(old, tau) * s * s
    e_new = expected_sq_error(new, tau) * s * s
    d_quad = (quad_over_cells([old, new], lambda u, k, kp: (u - kp) ** 2 - (u - k) ** 2, tau)
              * s * s) if do_quad else float("nan")
    m, se = mean_se(ep - e)
    ok = (consistent(m, d_an, se) and abs((e_new - e_old) - d_an) <= 1e-9 * max(d_an, 1e-300)
          and (np.isnan(d_quad) or abs(d_quad - d_an) <= 1e-8 * d_an) and d_an > 0)
    return dict(domain=domain, b=b, bp=bp, n=n, delta=d_an, delta_quad=d_quad, e_old=e_old,
                e_new=e_new, ratio=e_new / e_old, mc=m, se=se, z=zscore(m, d_an, se), ok=ok)


def run(quick: bool, seed: int = 0) -> list[Result]:
    n = 200_000 if quick else 2_000_000
    ss = np.random.SeedSequence([seed, 6])
    kids = iter(ss.spawn(2 * len(pairs())))
    rows = []
    for domain in ("positive", "bidirectional"):
        for b, bp in pairs():
            do_quad = (not quick) or b <= 5
            rows.append(_row(domain, b, bp, n, np.random.default_rng(next(kids)), do_quad))
    out = []
    for b in range(2, 9):
        rb = [r for r in rows if r["b"] == b and r["domain"] == "positive"]
        ok = all(r["ok"] for r in rb)
        out.append(Result(
            CLAIM + f" b={b}", f"cell sums, quad, paired MC n={n:,}",
            "b'=" + ", ".join(f"{r['bp']}: {r['delta']:.3g}" for r in rb)
            + f" σ² (E[Err']/E[Err] {rb[-1]['ratio']:.3g}..{rb[0]['ratio']:.3g}); "
            f"max|z|={max(abs(r['z']) for r in rb):.2f}",
            "exact" if ok else "fails",
            f"For b={b} the error always increases in expectation; analytic and Monte Carlo agree "
            "and the increase grows with b - b'.", ok, {"rows": rb}))
    rbd = [r for r in rows if r["domain"] == "bidirectional"]
    ok = all(r["ok"] for r in rbd)
    worst = max(rbd, key=lambda r: abs(r["z"]))
    out.append(Result(
        CLAIM + " bidirectional", f"cell sums, quad, paired MC n={n:,}, 28 pairs",
        f"Delta from {min(r['delta'] for r in rbd):.3g} to {max(r['delta'] for r in rbd):.3g} σ²;"
        f" max|z|={abs(worst['z']):.2f} at ({worst['b']},{worst['bp']})",
        "exact" if ok else "fails",
        "On the symmetric grid too, the analytic expected increase matches Monte Carlo for all "
        "28 pairs.", ok, {"rows": rbd}))
    return out


def report(results) -> str:
    rows = [x for r in results for x in r.data["rows"]]
    tab = [(x["domain"], x["b"], x["bp"], f"{x['e_old']:.4g}", f"{x['e_new']:.4g}",
            f"{x['ratio']:.3g}", f"{x['delta']:.6g}",
            "" if np.isnan(x["delta_quad"]) else f"{x['delta_quad']:.6g}",
            f"{x['mc']:.6g}±{x['se']:.2g}", f"{x['z']:+.2f}") for x in rows]
    return ("sigma = 1, all errors in σ²: E[Err] (old width), E[Err'] (new width, same step), "
            "ratio, Delta = E[Err'] - E[Err] by cell sums, by quad (blank in quick mode for "
            "b > 5), paired Monte Carlo ± SE, z.\n\n"
            + md_table(["domain", "b", "b'", "E[Err]", "E[Err']", "ratio", "Delta", "Delta (quad)",
                        "MC ± SE", "z"], tab))


def figures(results, fig_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [x for r in results for x in r.data["rows"]]
    fig, ax = plt.subplots(1, 2, figsize=(12, 4.5))
    for j, domain in enumerate(("positive", "bidirectional")):
        for i, b in enumerate([2, 3, 4, 6, 8]):
            rb = [x for x in rows if x["domain"] == domain and x["b"] == b]
            bps = [x["bp"] for x in rb]
            ax[j].semilogy(bps, [x["delta"] for x in rb], "-s", ms=3, color=f"C{i}",
                           label=f"b={b}")
            ax[j].errorbar(bps, [x["mc"] for x in rb], yerr=[5 * x["se"] for x in rb], fmt="o",
                           color=f"C{i}", ms=4, mfc="none")
        ax[j].set_xlabel("new bit width b'")
        ax[j].set_ylabel("E[Err'] - E[Err]  [σ²]")
        ax[j].set_title(f"{domain}: line = analytic, circles = MC ±5 SE", fontsize=10)
        ax[j].legend(fontsize=8)
    path = save_figure(fig, fig_dir, "theory_error_increase.png")
    return [(path, "Expected increase of the squared quantization error (units σ²) when the width "
             "drops from b to b' and the step is kept; left: half-normal data, s = 3σ/(2^b-1); "
             "right: Gaussian data on the symmetric grid, s = 3σ/(2^(b-1)-1). Lines analytic "
             "(cell sums of truncated moments), circles paired Monte Carlo with 5-SE bars.")]


if __name__ == "__main__":
    cli_main(run)
