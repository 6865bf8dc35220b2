"""Flooring vs rounding (App. A.2.1, Eq. A.1-A.4).

**Statement checked.** On the same grid of step ``s``, for ``x`` inside the
range, ``|x - s floor(x/s)| >= |x - s round(x/s)|``; for ``x`` spread uniformly
over one step the expected squared error is ``s^2/3`` for flooring and
``s^2/12`` for rounding; and for ReLU'd Gaussian data over a whole ``b``-bit
range flooring loses too.

**Pointwise, with equality set.** Write ``u = x/s = n + t`` with integer
``n >= 0`` and ``t in [0, 1)``. Flooring errs by ``t s``. Rounding
(half away from zero) picks ``n`` if ``t < 1/2`` and ``n + 1`` if ``t >= 1/2``,
so it errs by ``min(t, 1 - t) s <= t s``. Equality holds exactly when
``t <= 1/2`` (for ``t < 1/2`` both pick ``n``; at the tie ``t = 1/2`` the two
errors are both ``s/2``); the inequality is strict for ``t in (1/2, 1)``. So
equality holds on half of every step. On the clipped grid ``{0, s, ..., N s}``,
``N = 2^b - 1``, both quantizers saturate at ``N s`` for ``x >= N s`` (equal
errors); for ``x in [N s - s/2, N s)`` rounding goes to the top level and
flooring does not, so the statement covers the whole range ``[0, N s]``.

**Uniform within a step.** ``E[t^2] = 1/3`` and
``E[min(t, 1-t)^2] = 2 int_0^{1/2} t^2 dt = 1/12`` (units of ``s^2``).

**Half-normal over a b-bit range.** ``x = |N(0, sigma^2)|``,
``s = 3 sigma / (2^b - 1)``, both quantizers clipped to ``[0, N s]``. Each
expected squared error is a finite sum over the quantizer's cells of truncated
normal moments ``M2 - 2 k M1 + k^2 M0`` (see ``common.hn_moments``),
cross-checked with ``scipy.integrate.quad`` cell by cell and with Monte Carlo.
The ratio flooring/rounding is not 4 here: both quantizers share the clipping
error beyond ``3 sigma``, ``E[(x - 3 sigma)^2; x > 3 sigma] =
2 sigma^2 [10 (1 - Phi(3)) - 3 phi(3)] = 4.07e-4 sigma^2``, which dominates at
large ``b`` (in-range errors shrink like ``s^2``), so the ratio falls towards 1
(1.08 at ``b = 8``); it peaks near 3.6 at ``b = 3-4``. At ``b = 1`` (grid
``{0, 3 sigma}``) the data are far from uniform within the single step, and the
ratio is 1.5.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import integrate, stats

from .common import (Result, save_figure, consistent, expected_sq_error, levelmap_floor,
                     levelmap_round, mean_se, md_table, quad_over_cells,
                     quant_pos_floor, quant_pos_round, round_half_away, zscore, cli_main)

CLAIM = "Flooring vs rounding (App. A.2.1)"
SIGMA = 1.0


def _pointwise(quick: bool, rng) -> Result:
    """Pointwise inequality on a dense grid plus random points, for several (s, b)."""
    n_rand = 200_000 if quick else 2_000_000
    worst_u = -np.inf       # max over points of (err_round - err_floor), step units
    worst_x_rel = -np.inf   # same in x units, relative to s
    eq_frac_in, eq_pred_ok, n_tot = [], True, 0
    for s, b in [(1.0, 3), (0.37, 4), (3.0 / 255.0, 8), (2.5e-3, 6), (11.0, 2)]:
        n_max = 2 ** b - 1
        grid = np.linspace(0.0, n_max * s, 64 * n_max + 1)       # includes ties t = 1/2
        xs = np.concatenate([grid, rng.uniform(0.0, n_max * s, n_rand)])
        u = xs / s
        # step units, exactly representable comparison
        ef_u = np.abs(u - np.clip(np.floor(u), 0, n_max))
        er_u = np.abs(u - np.clip(round_half_away(u), 0, n_max))
        worst_u = max(worst_u, float(np.max(er_u - ef_u)))
        # x units, as written in the paper
        ef_x = np.abs(xs - quant_pos_floor(xs, s, b))
        er_x = np.abs(xs - quant_pos_round(xs, s, b))
        worst_x_rel = max(worst_x_rel, float(np.max(er_x - ef_x)) / s)
        # equality set: frac(u) <= 1/2 (or at the top level)
        t = u - np.floor(u)
        pred_eq = (t <= 0.5) | (u >= n_max)
        eq_pred_ok &= bool(np.all((ef_u == er_u) == pred_eq))
        rand = slice(grid.size, None)
        eq_frac_in.append(float(np.mean((ef_u == er_u)[rand][(u < n_max)[rand]])))
        n_tot += xs.size
    tol_x = 8 * np.finfo(float).eps * (2 ** 8)       # a few ulps of the largest level, in s
    ok = worst_u <= 0.0 and worst_x_rel <= tol_x and eq_pred_ok
    return Result(
        CLAIM + " pointwise", f"{n_tot:,} points (grid + uniform), 5 (s, b)",
        f"max(err_round-err_floor)={worst_u:.1e} s (step units), {worst_x_rel:.1e} s (x units); "
        f"equality fraction {min(eq_frac_in):.4f}..{max(eq_frac_in):.4f} (theory 0.5)",
        "holds" if ok else "violated",
        "|x - s floor(x/s)| >= |x - s round(x/s)| at every point of [0, Ns]; equality exactly "
        "where frac(x/s) <= 1/2 (and at the saturated top), strict on (1/2, 1).",
        ok, {"worst_u": worst_u, "worst_x_rel": worst_x_rel, "eq_pred_ok": eq_pred_ok})


def _uniform(quick: bool, rng):
    n = 400_000 if quick else 4_000_000
    s = 0.37
    k = rng.integers(0, 50, n)
    x = s * (k + rng.uniform(0.0, 1.0, n))
    e_floor = (x - s * np.floor(x / s)) ** 2 / s ** 2
    e_round = (x - s * round_half_away(x / s)) ** 2 / s ** 2
    out = []
    for name, e, exact, g in [("flooring", e_floor, 1 / 3, lambda t: t * t),
                              ("rounding", e_round, 1 / 12, lambda t: min(t, 1 - t) ** 2)]:
        quadv = integrate.quad(g, 0, 1, points=[0.5])[0]
        m, se = mean_se(e)
        ok = consistent(m, exact, se) and abs(quadv - exact) < 1e-12
        out.append(Result(
            CLAIM + f" uniform, {name}", f"closed form, quad, MC n={n:,}",
            f"E[err^2]/s^2: exact {exact:.6f}, quad {quadv:.6f}, MC {m:.6f}±{se:.1e} "
            f"(z={zscore(m, exact, se):+.2f})",
            "exact" if ok else "fails",
            f"For x uniform in a step, E[(x - x_q)^2] = s^2/{3 if name == 'flooring' else 12} "
            f"for {name}.", ok, {"exact": exact, "mc": m, "se": se}))
    return out


def _half_normal(quick: bool, rng):
    n = 200_000 if quick else 2_000_000
    rows, res_ok, data = [], True, {}
    for b in range(1, 9):
        n_max = 2 ** b - 1
        s = 3 * SIGMA / n_max
        tau = SIGMA / s
        x = np.abs(rng.normal(0.0, SIGMA, n))
        vals = {}
        for name, lm, qf in [("floor", levelmap_floor(n_max), quant_pos_floor),
                             ("round", levelmap_round(n_max), quant_pos_round)]:
            an = expected_sq_error(lm, tau) * s * s
            qd = quad_over_cells([lm], lambda u, k: (u - k) ** 2, tau) * s * s \
                if (not quick or b <= 5) else math.nan
            m, se = mean_se((x - qf(x, s, b)) ** 2)
            vals[name] = (an, qd, m, se)
            res_ok &= consistent(m, an, se)
            if not math.isnan(qd):
                res_ok &= abs(qd - an) <= 1e-9 * an
        ratio = vals["floor"][0] / vals["round"][0]
        res_ok &= vals["floor"][0] > vals["round"][0]
        data[b] = {**{f"{k}_{j}": v[i] for k, v in vals.items()
                      for i, j in enumerate(["an", "quad", "mc", "se"])}, "ratio": ratio}
        rows.append((b, f"{vals['floor'][0]:.6g}", f"{vals['floor'][2]:.6g}±{vals['floor'][3]:.1e}",
                     f"{vals['round'][0]:.6g}", f"{vals['round'][2]:.6g}±{vals['round'][3]:.1e}",
                     f"{ratio:.3f}"))
    tail = 2.0 * SIGMA ** 2 * (10.0 * stats.norm.sf(3.0) - 3.0 * stats.norm.pdf(3.0))
    worst = max(data, key=lambda b: data[b]["ratio"])
    best = min(data, key=lambda b: data[b]["ratio"])
    return [Result(
        CLAIM + " half-normal b=1..8", f"cell sums of truncated moments, quad, MC n={n:,} per b",
        f"E_floor/E_round from {data[best]['ratio']:.2f} (b={best}) to "
        f"{data[worst]['ratio']:.2f} (b={worst}); b=8: {data[8]['floor_an']:.3g} vs "
        f"{data[8]['round_an']:.3g} σ² (shared clip tail {tail:.3g} σ²)",
        "holds" if res_ok else "fails",
        "For ReLU'd Gaussian data on the clipped b-bit grid with s = 3 sigma/(2^b-1), flooring has "
        "a larger expected squared error than rounding for every b = 1..8.",
        res_ok, {"table": data, "rows": rows})]


def run(quick: bool, seed: int = 0) -> list[Result]:
    rng = np.random.default_rng(seed)
    return [_pointwise(quick, rng), *_uniform(quick, rng), *_half_normal(quick, rng)]


def report(results) -> str:
    hn = [r for r in results if "half-normal" in r.claim]
    out = []
    if hn:
        out.append("Half-normal data, sigma = 1, s = 3/(2^b-1); expected squared error in sigma^2 "
                   "(analytic = cell sums; MC ± standard error):\n")
        out.append(md_table(["b", "flooring analytic", "flooring MC", "rounding analytic",
                             "rounding MC", "floor/round"], hn[0].data["rows"]))
    return "\n".join(out)


def figures(results, fig_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rng = np.random.default_rng(1)
    b = 3
    n_max = 2 ** b - 1
    s = 3 * SIGMA / n_max
    x = np.abs(rng.normal(0.0, SIGMA, 400_000))
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    bins = np.linspace(-1.0, 1.0, 81)
    ax[0].hist((x - quant_pos_floor(x, s, b)) / s, bins=bins, density=True,
               histtype="step", lw=1.8, label="flooring", color="C3")
    ax[0].hist((x - quant_pos_round(x, s, b)) / s, bins=bins, density=True,
               histtype="step", lw=1.8, ls="--", label="rounding", color="C0")
    ax[0].set_xlabel("signed error (x - x_q) / s  [steps]")
    ax[0].set_ylabel("density")
    ax[0].set_title(f"half-normal x, b = {b}, s = 3σ/{n_max} (clipped tail beyond ±1 not shown)")
    ax[0].legend()
    hn = [r for r in results if "half-normal" in r.claim][0].data["table"]
    bs = sorted(hn)
    for name, c in [("floor", "C3"), ("round", "C0")]:
        ax[1].semilogy(bs, [hn[b_][f"{name}_an"] for b_ in bs], "-", color=c,
                       label=f"{name}ing, analytic")
        ax[1].errorbar(bs, [hn[b_][f"{name}_mc"] for b_ in bs],
                       yerr=[5 * hn[b_][f"{name}_se"] for b_ in bs], fmt="o", color=c, ms=4,
                       label=f"{name}ing, Monte Carlo (±5 SE)")
    ax[1].set_xlabel("bit width b")
    ax[1].set_ylabel("E[(x - x_q)^2]  [σ²]")
    ax[1].set_title("expected squared error, s = 3σ/(2^b - 1)")
    ax[1].legend(fontsize=8)
    path = save_figure(fig, fig_dir, "theory_flooring_vs_rounding.png")
    return [(path, "Flooring vs rounding. Left: distribution of the signed quantization error "
             "(in steps) for half-normal data at b = 3; flooring errs in [0, 1) steps, rounding in "
             "[-1/2, 1/2). Right: expected squared error (σ²) vs bit width, analytic lines and "
             "Monte Carlo points with 5-SE bars.")]


if __name__ == "__main__":
    cli_main(run)
