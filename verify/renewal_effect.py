"""Step-size renewal works (Algorithm 1-2, Eq. 24-25): after a bit-width drop
``b -> b'``, the quantization error with the *kept* step against the step the
bit-width observer *renews* (``refsnn.method.renewal.observe``: grid search of
Alg. 2 with K = 100, p = 2.4, then Eq. 24-25), and what that does to training.

**Why renewal is needed.** A step ``s`` fitted at ``b`` bits spreads the data
over ``2^b - 1`` levels, so its clip point is ``s (2^b - 1)``. Keeping ``s`` at
``b' < b`` bits moves the clip point to ``s (2^{b'} - 1)``, a fraction
``(2^{b'} - 1)/(2^b - 1) <= 1/2`` of the old range (Theorem 1 / Lemma 1 count
how often single errors grow); everything above it is clipped. Alg. 1-2 instead
re-fit the range for the new width.

**(a) Half-normal data** ``x = |N(0, sigma^2)|``, sigma = 1, positive grid
``s clip(round(x/s), 0, 2^b - 1)`` (the spike quantizer, Eq. 14). The kept step
is what an observer leaves at ``b`` bits (Alg. 2 on the sample at ``b`` bits;
Theorem 1's ``3 sigma / (2^b - 1)`` is shown as well); the renewed step is the
observer's output at ``b'``, once for a *fresh* observer (range ``+-inf``, as at
the first drop of training) and once for an observer that had already renewed
at ``b`` (Eq. 24 keeps the running range ``V_rmax = max(V'_max(b), V'_max(b'))``,
the case of a second drop). The MSE of each step is exact (sum of truncated
normal moments over the quantizer's cells, ``verify.common.expected_sq_error``),
checked by Monte Carlo on an independent sample (within 5 SE), and set against
the MSE-optimal step for ``b'`` (``scipy.optimize`` on the exact MSE).

**(b) Real membrane potentials.** A ``tiny_resnet`` (the refsnn model for the
embedded 8x8 digits, W/S/T = 4/4/2, widths frozen) is trained briefly with SGD
(fixed seed, one thread). For every spiking layer and step ``t = 1, 2`` the
membrane potentials ``v^t`` of a batch of training images (train-mode
forward, as the observer sees them) are quantized at ``b' = 3, 2, 1`` with the
layer's trained threshold (kept) and with the renewed one (the stem uses the
bidirectional grid of Eq. 15). Then the whole network's widths are dropped to
``b'`` at once and the test accuracy / loss are measured *before any update*,
with the kept thresholds and with the thresholds the layers' own observers
renew on one training batch (BN statistics restored afterwards).

One mismatch shows up there: at ``b' = 1`` on the bidirectional grid (the stem)
Eq. 15 emits ``sgn(u)``, levels ``+-V_th`` only, but the grid search of Alg. 2
scores ``clip(round(X/s), -1, 1)``, which also has the level 0; it therefore
picks a step fitted to a ternary quantizer, too large for the binary one
(for ``N(0, 1)`` data 1.29 instead of the MSE-optimal ``E|X| = 0.80``, MSE 0.61 instead of
0.36).

**(c) Training through a drop.** Per seed: train at 4 spike bits, then drop
every spike width to ``b'`` (2, and 1 in full mode) and continue training the
same state twice, with spike renewal on (the paper's default "Act.-only") and
off. Reported: the training loss on the first batches after the drop and the
test accuracy at the end, mean and spread over seeds, and the paired difference
(same pre-drop state) with its standard error. This forced drop isolates the
effect of renewal from the regulating loss that makes widths fall in a real run.
Training runs single-threaded (numba and BLAS) for reproducibility and speed.
"""

from __future__ import annotations

import math
import os

import numpy as np
from scipy import optimize

from .common import Result, cli_main, consistent, expected_sq_error, levelmap_round, md_table, quant_pos_round
from .fixture import TRAIN, single_thread, trained_model
from .renewal_trained import network_after_drop, real_membranes, renew, training

CLAIM = "Renewal (Alg. 1-2)"
#: sizes of the two modes (``run(..., sizes=...)`` overrides entries, e.g. in the tests)
#: (``pre`` and ``batch``: the training of the shared model, ``verify.fixture.TRAIN``)
SIZES = {
    "quick": dict(TRAIN["quick"], n_fit=10_000, n_mc=50_000, post=8, seeds=2, drops=(2,), mem_batch=16, calib=48),
    "full": dict(TRAIN["full"], n_fit=200_000, n_mc=1_000_000, post=100, seeds=5, drops=(2, 1), mem_batch=64,
                 calib=64),
}


def sizes_for(quick: bool, sizes: dict | None = None) -> dict:
    sz = dict(SIZES["quick" if quick else "full"])
    sz.update(sizes or {})
    return sz


# --------------------------------------------------------------------------- #
# (a) half-normal data
# --------------------------------------------------------------------------- #
def mse_exact(s: float, b: int, sigma: float = 1.0) -> float:
    """E[(x - s clip(round(x/s), 0, 2^b - 1))^2] for x = |N(0, sigma^2)|, exactly."""
    return s * s * expected_sq_error(levelmap_round(2 ** b - 1), sigma / s)


def optimal_step(b: int, sigma: float = 1.0) -> tuple:
    """(s*, MSE(s*)) minimising the exact MSE at b bits (coarse grid, then bounded Brent)."""
    grid = np.geomspace(0.01, 5.0, 120) * sigma
    vals = [mse_exact(s, b, sigma) for s in grid]
    i = int(np.argmin(vals))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    r = optimize.minimize_scalar(lambda s: mse_exact(s, b, sigma), bounds=(lo, hi), method="bounded",
                                 options={"xatol": 1e-10})
    return float(r.x), float(r.fun)


def half_normal(sz: dict, seed: int):
    rng = np.random.default_rng(seed)
    n_fit, n_mc = sz["n_fit"], sz["n_mc"]
    X = np.abs(rng.standard_normal(n_fit))
    Xmc = np.abs(rng.standard_normal(n_mc))
    fitted = {}
    for b in range(1, 7):
        res = renew(X, b, b_old=-1)
        fitted[b] = res
    rows = []
    opt = {b: optimal_step(b) for b in range(1, 6)}
    for b in range(2, 7):
        s_kept = fitted[b].step
        for bp in range(1, b):
            fresh = fitted[bp].step  # a fresh observer at b' sees the same data: the same grid search
            chained = renew(X, bp, b, fitted[b].v_rmin, fitted[b].v_rmax).step
            s_thm = 3.0 / (2 ** b - 1)
            row = {"b": b, "bp": bp, "s_kept": s_kept, "s_fresh": fresh, "s_chained": chained,
                   "s_opt": opt[bp][0], "mse_opt": opt[bp][1], "s_thm": s_thm}
            for key in ("kept", "fresh", "chained", "thm"):
                s = row[f"s_{key}"]
                row[f"mse_{key}"] = mse_exact(s, bp)
                e = (Xmc - quant_pos_round(Xmc, s, bp)) ** 2
                m, se = float(e.mean()), float(e.std(ddof=1) / math.sqrt(e.size))
                row[f"mc_{key}"], row[f"se_{key}"] = m, se
                row[f"ok_{key}"] = consistent(m, row[f"mse_{key}"], se)
            rows.append(row)
    return {"rows": rows, "n_fit": n_fit, "n_mc": n_mc}


def _ms(v):
    v = np.asarray(v, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def _paired(a, b):
    d = np.asarray(a, float) - np.asarray(b, float)
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else 0.0


# --------------------------------------------------------------------------- #
def run(quick: bool, seed: int = 0, sizes: dict | None = None) -> list[Result]:
    sz = sizes_for(quick, sizes)
    hn = half_normal(sz, seed)
    model, _, info = trained_model(quick, seed, sizes)
    with single_thread():
        real = real_membranes(model, seed, sz["mem_batch"])
        net = network_after_drop(model, seed, sz["calib"])
    tr = training(sz, seed)
    return (claims_half_normal(hn) + [claim_membranes(real, sz, info), claim_network(net)]
            + claims_training(tr))


def claims_half_normal(hn) -> list[Result]:
    """(a) half-normal data: the renewed step against the kept one, for a fresh observer and with Eq. 24."""
    rows = hn["rows"]
    out = []
    better = [r for r in rows if r["mse_fresh"] < r["mse_kept"]]
    ratio = [r["mse_kept"] / r["mse_fresh"] for r in rows]
    near = max(r["mse_fresh"] / r["mse_opt"] for r in rows)
    mc_ok = all(r[f"ok_{k}"] for r in rows for k in ("kept", "fresh", "chained", "thm"))
    ok = len(better) == len(rows) and mc_ok
    out.append(Result(
        f"{CLAIM}: half-normal data, fresh observer", f"exact MSE (cell sums) + MC n={hn['n_mc']:,}; Alg. 2 on "
        f"n={hn['n_fit']:,}",
        f"MSE kept / renewed: min {min(ratio):.2f}, median {float(np.median(ratio)):.1f}, max {max(ratio):.0f} over "
        f"{len(rows)} pairs (b=2..6); renewed within x{near:.3f} of the MSE-optimal step; MC consistent: {mc_ok}",
        "holds" if ok else "fails",
        f"After every drop b -> b' the renewed step has a smaller MSE than the kept one ({len(better)}/{len(rows)} "
        f"pairs, by a factor {min(ratio):.2f} to {max(ratio):.0f}), and is close to the MSE-optimal step.",
        ok, {"hn": hn}))
    worse = [r for r in rows if r["mse_chained"] > r["mse_fresh"] * (1 + 1e-9)]
    cr = [r["mse_chained"] / r["mse_fresh"] for r in rows]
    ck = [r["mse_kept"] / r["mse_chained"] for r in rows]
    out.append(Result(
        f"{CLAIM}: half-normal data, running range (Eq. 24)", "exact MSE, observer that renewed at b first",
        f"MSE chained / fresh: max {max(cr):.2f} ({len(worse)}/{len(rows)} pairs worse than fresh); "
        f"kept / chained: min {min(ck):.2f}",
        "holds" if min(ck) > 1 else "partly",
        f"An observer that already renewed at b keeps its larger range (Eq. 24), so at b' it is up to "
        f"x{max(cr):.2f} worse than a fresh one in {len(worse)} of {len(rows)} pairs, yet "
        + ("still better than the kept step in every pair." if min(ck) > 1 else
           f"not always better than the kept step (min ratio {min(ck):.2f})."),
        mc_ok, {}))
    return out


def claim_membranes(real, sz, info) -> Result:
    """(b) the membrane potentials of the trained tiny_resnet: per-step MSE, kept vs renewed thresholds."""
    pre = sz["pre"]
    nb = sum(r["mse_renewed"] < r["mse_kept"] for r in real)
    near_b = float(np.median([r["mse_renewed"] / r["mse_best"] for r in real]))
    by_bp = {bp: float(np.median([r["mse_kept"] / r["mse_renewed"] for r in real if r["bp"] == bp]))
             for bp in (3, 2, 1)}
    ly = {(r["layer"], r["bp"]): r for r in real}
    ny = sum(r["mse_y_renewed"] < r["mse_y_kept"] for r in ly.values())
    return Result(
        f"{CLAIM}: membrane potentials of a trained tiny_resnet",
        f"{len({r['layer'] for r in real})} layers x T=2 steps x b'=3,2,1 from 4 bits, batch of "
        f"{sz['mem_batch']}; model {pre} SGD steps (batch {sz['batch']}), test acc {100 * info['acc']:.1f}%",
        f"per-step MSE renewed < kept in {nb}/{len(real)} (median kept/renewed b'=3: {by_bp[3]:.1f}, 2: "
        f"{by_bp[2]:.1f}, 1: {by_bp[1]:.1f}; median renewed/best-grid {near_b:.2f}); squeezed-output MSE "
        f"(y - I)^2 lower in {ny}/{len(ly)} layer-widths; exceptions (MSE kept/renewed): "
        + (", ".join(f"{r['layer']} t={r['t']} b'={r['bp']}: {r['mse_kept'] / r['mse_renewed']:.2f}"
                     for r in real if r["mse_renewed"] >= r["mse_kept"]) or "none"),
        "holds" if nb == len(real) else "mostly" if nb >= 0.8 * len(real) else "fails",
        f"On real membrane potentials the renewed steps lower the per-step quantization MSE in {nb} of {len(real)} "
        f"layer-steps (median factor {by_bp[2]:.1f} at b'=2) and the error of the squeezed output in {ny} of "
        f"{len(ly)} layer-widths.",
        nb >= 0.8 * len(real), {"real": real})


def claim_network(net) -> Result:
    """(b) the whole network right after every spike width drops, kept vs renewed thresholds."""
    acc0 = net["before"][0]
    cells = ", ".join(f"b'={bp}: kept {100 * net[(bp, 'kept')][0]:.1f}% / renewed {100 * net[(bp, 'renewed')][0]:.1f}%"
                      for bp in (3, 2, 1))
    win = [bp for bp in (3, 2, 1) if net[(bp, "renewed")][1] < net[(bp, "kept")][1]]
    return Result(
        f"{CLAIM}: network right after the drop", "test set, no update after the drop; all layers 4 -> b'",
        f"test acc before {100 * acc0:.1f}%; {cells}",
        "holds" if len(win) == 3 else "mixed",
        "Right after all spike widths drop from 4 bits, the observers' renewed thresholds give a lower test loss "
        "than the kept ones for b' = " + ", ".join(map(str, win) or ["none"])
        + ("" if len(win) == 3 else "; for the other widths the kept thresholds are better (renewal re-fits each "
           "layer's range, which shifts the statistics the following BN layers were trained on)") + ".",
        True, {"net": {str(k): v for k, v in net.items()}})


def claims_training(tr) -> list[Result]:
    """(c) training through a drop, renewal on and off."""
    out = []
    for bp, runs in tr["runs"].items():
        first_on = [r["on"]["losses"][0] for r in runs]
        first_off = [r["off"]["losses"][0] for r in runs]
        k5 = min(5, tr["post"])
        m5_on = [float(np.mean(r["on"]["losses"][:k5])) for r in runs]
        m5_off = [float(np.mean(r["off"]["losses"][:k5])) for r in runs]
        acc_on = [r["on"]["acc"] for r in runs]
        acc_off = [r["off"]["acc"] for r in runs]
        d5 = _paired(m5_off, m5_on)
        dacc = _paired(acc_on, acc_off)
        okc = d5[0] > 0
        out.append(Result(
            f"{CLAIM}: training through a drop 4 -> {bp} bits",
            f"{len(runs)} seeds, {tr['pre']} steps at 4 bits then {tr['post']} steps at {bp} bits, renewal on/off",
            f"first-batch loss on {_ms(first_on)[0]:.3f}±{_ms(first_on)[1]:.3f} vs off {_ms(first_off)[0]:.3f}±"
            f"{_ms(first_off)[1]:.3f}; mean of first {k5}: on {_ms(m5_on)[0]:.3f} vs off {_ms(m5_off)[0]:.3f} "
            f"(paired diff {d5[0]:.3f}±{d5[1]:.3f} SE); final test acc on {100 * _ms(acc_on)[0]:.1f}±"
            f"{100 * _ms(acc_on)[1]:.1f}% vs off {100 * _ms(acc_off)[0]:.1f}±{100 * _ms(acc_off)[1]:.1f}% "
            f"(paired {100 * dacc[0]:+.1f}±{100 * dacc[1]:.1f} pp)",
            "holds" if okc else "not seen",
            f"With renewal the loss right after a drop to {bp} bits is lower ({_ms(m5_on)[0]:.3f} vs "
            f"{_ms(m5_off)[0]:.3f}, mean of {len(runs)} seeds); after {tr['post']} steps the test accuracy differs by "
            f"{100 * dacc[0]:+.1f} pp (SE {100 * dacc[1]:.1f}).",
            True, {"bp": bp, "runs": runs, "pre": tr["pre"], "post": tr["post"]}))
    return out


def report(results) -> str:
    hn = [r.data["hn"] for r in results if "hn" in r.data][0]
    rows = hn["rows"]
    tab = md_table(["b", "b'", "s kept (Alg. 2 at b)", "MSE kept", "s renewed", "MSE renewed", "MSE chained (Eq. 24)",
                    "MSE optimal", "MSE kept, Thm 1 step", "kept / renewed"],
                   [[r["b"], r["bp"], f"{r['s_kept']:.4f}", f"{r['mse_kept']:.5f}", f"{r['s_fresh']:.4f}",
                     f"{r['mse_fresh']:.5f}", f"{r['mse_chained']:.5f}", f"{r['mse_opt']:.5f}", f"{r['mse_thm']:.5f}",
                     f"{r['mse_kept'] / r['mse_fresh']:.1f}"] for r in rows])
    real = [r.data["real"] for r in results if "real" in r.data][0]
    tab2 = md_table(["layer", "t", "grid", "b'", "V_th kept", "MSE kept", "V_th renewed", "MSE renewed",
                     "MSE best step", "(y-I)^2 kept", "(y-I)^2 renewed"],
                    [[r["layer"], r["t"], r["domain"], r["bp"], f"{r['s_kept']:.4f}", f"{r['mse_kept']:.5f}",
                      f"{r['s_renewed']:.4f}", f"{r['mse_renewed']:.5f}", f"{r['mse_best']:.5f}",
                      f"{r['mse_y_kept']:.5f}", f"{r['mse_y_renewed']:.5f}"] for r in real])
    net = [r.data["net"] for r in results if "net" in r.data][0]
    tab3 = md_table(["b'", "test acc kept", "test CE kept", "test acc renewed", "test CE renewed"],
                    [[bp, f"{100 * net[str((bp, 'kept'))][0]:.1f}%", f"{net[str((bp, 'kept'))][1]:.3f}",
                      f"{100 * net[str((bp, 'renewed'))][0]:.1f}%", f"{net[str((bp, 'renewed'))][1]:.3f}"]
                     for bp in (3, 2, 1)])
    parts = [f"(a) Half-normal, sigma = 1 (MSE in units of sigma^2; Monte Carlo n = {hn['n_mc']:,} agrees with "
             "every exact value within 5 SE):", "", tab, "",
             "(b) Membrane potentials of the trained tiny_resnet (one batch of training images; per-step MSE of "
             "v^t - Shat^t, and of the squeezed output y against the input current I):", "", tab2, "",
             f"Whole network, all spike widths 4 -> b' at once (test accuracy before the drop "
             f"{100 * net['before'][0]:.1f}%):", "", tab3, ""]
    for r in results:
        if "runs" in r.data:
            runs = r.data["runs"]
            rws = []
            for k, run_ in enumerate(runs):
                rws.append([k, f"{100 * run_['pre']['acc']:.1f}%", f"{run_['pre']['ce']:.3f}",
                            f"{run_['on']['losses'][0]:.3f}",
                            f"{run_['off']['losses'][0]:.3f}", f"{100 * run_['on']['acc']:.1f}%",
                            f"{100 * run_['off']['acc']:.1f}%"])
            parts += [f"(c) Drop 4 -> {r.data['bp']} bits after {r.data['pre']} steps, then {r.data['post']} steps:",
                      "", md_table(["seed #", "test acc before drop", "test CE before drop", "1st loss on",
                                    "1st loss off", "final acc on", "final acc off"], rws), ""]
    return "\n".join(parts)


def figures(results, fig_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    hn = [r.data["hn"] for r in results if "hn" in r.data][0]
    rows = hn["rows"]
    real = [r.data["real"] for r in results if "real" in r.data][0]
    fig, ax = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, b in enumerate(range(2, 7)):
        rb = [r for r in rows if r["b"] == b]
        ax[0].semilogy([r["bp"] for r in rb], [r["mse_kept"] for r in rb], "--o", color=f"C{i}", ms=4,
                       label=f"kept, b={b}")
    bps = sorted({r["bp"] for r in rows})
    fresh = {bp: [r for r in rows if r["bp"] == bp][0]["mse_fresh"] for bp in bps}
    ax[0].semilogy(bps, [fresh[bp] for bp in bps], "-s", color="k", ms=5, label="renewed (Alg. 1-2)")
    ax[0].semilogy(bps, [[r for r in rows if r["bp"] == bp][0]["mse_opt"] for bp in bps], ":", color="gray",
                   label="MSE-optimal step")
    ax[0].set_xlabel("new bit width b'")
    ax[0].set_ylabel("quantization MSE (units of sigma^2)")
    ax[0].set_title("half-normal data: kept vs renewed step")
    ax[0].legend(fontsize=7, ncol=2)
    layers = sorted({r["layer"] for r in real}, key=lambda n: [r["layer"] for r in real].index(n))
    for j, bp in enumerate((3, 2, 1)):
        for t in (1, 2):
            rs = [r for r in real if r["bp"] == bp and r["t"] == t]
            xs = [layers.index(r["layer"]) + (j - 1) * 0.22 + (t - 1.5) * 0.08 for r in rs]
            ax[1].semilogy(xs, [r["mse_kept"] / r["mse_renewed"] for r in rs], "o" if t == 1 else "^",
                           color=f"C{j}", ms=5, label=f"b'={bp}, t={t}")
    ax[1].axhline(1.0, color="k", lw=0.8)
    ax[1].set_xticks(range(len(layers)))
    ax[1].set_xticklabels(layers, rotation=30, fontsize=7, ha="right")
    ax[1].set_ylabel("MSE kept / MSE renewed (>1: renewal helps)")
    ax[1].set_title("membrane potentials of a trained tiny_resnet, from 4 bits")
    ax[1].legend(fontsize=7, ncol=3)
    fig.tight_layout()
    p1 = os.path.join(fig_dir, "method_renewal_mse.png")
    fig.savefig(p1, dpi=120)
    plt.close(fig)
    figs = [(p1, "Renewal. Left: exact quantization MSE of half-normal data after a drop b -> b' with the step kept "
                 "from b bits (dashed, one colour per b) and with the step renewed by the observer (black); dotted: "
                 "the MSE-optimal step. Right: ratio kept/renewed MSE on the membrane potentials v^1 (circles) and "
                 "v^2 (triangles) of each spiking layer of the trained tiny_resnet, drop from 4 bits (log scale).")]
    tr = [r for r in results if "runs" in r.data]
    if tr:
        fig, axs = plt.subplots(1, len(tr), figsize=(6 * len(tr), 4.2), squeeze=False)
        for a, r in zip(axs[0], tr):
            runs = r.data["runs"]
            pre_l = np.array([run_["pre"]["losses"] for run_ in runs])
            k = min(20, pre_l.shape[1])
            xs_pre = np.arange(-k, 0)
            for arm, c in (("on", "C0"), ("off", "C3")):
                post = np.array([run_[arm]["losses"] for run_ in runs])
                # on a log axis the spread is drawn in log space: geometric mean exp(mean log L), band
                # exp(mean log L +- std log L), always positive (an arithmetic m - s dives below zero)
                logs = np.log(np.maximum(post, np.finfo(float).tiny))
                m, s = logs.mean(0), logs.std(0)
                xs = np.arange(post.shape[1])
                a.plot(xs, np.exp(m), color=c, label=f"renewal {arm} (geometric mean of {len(runs)} seeds)")
                a.fill_between(xs, np.exp(m - s), np.exp(m + s), color=c, alpha=0.2)
            a.plot(xs_pre, np.exp(np.log(np.maximum(pre_l[:, -k:], np.finfo(float).tiny)).mean(0)), color="gray", label="before the drop (4 bits)")
            a.axvline(-0.5, color="k", lw=0.8, ls=":")
            a.set_yscale("log")
            a.set_xlabel(f"SGD step after the drop 4 -> {r.data['bp']} bits")
            a.set_ylabel("training cross-entropy (one batch)")
            a.set_title(f"tiny_resnet on digits: drop to {r.data['bp']} spike bits")
            a.legend(fontsize=8)
        fig.tight_layout()
        p2 = os.path.join(fig_dir, "method_renewal_training.png")
        fig.savefig(p2, dpi=120)
        plt.close(fig)
        figs.append((p2, "Training through a forced drop of every spike width from 4 bits, renewal on (blue) and "
                         "off (red): per-step training loss over seeds, geometric mean with a band of one standard "
                         "deviation of log(loss) either side (log scale); grey: the last steps before the drop."))
    return figs


if __name__ == "__main__":
    cli_main(run)
