"""The drawing of three verify figures, on made-up results: the legend of Theorem 1 covers no point, the bands of the
renewal training stay above zero on their log axis, the time-flow bars sit on a log axis with no "0" tick."""
from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from verify import renewal_effect, theorem1, time_flow  # noqa: E402


@pytest.fixture
def drawn(monkeypatch):
    """The figures a ``figures()`` call closes, kept open for inspection."""
    figs = []
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: figs.append(fig))
    yield figs
    for f in figs:
        close(f)


def _result(**data):
    return SimpleNamespace(claim="x", data=data)


def test_theorem1_legend_covers_no_point(tmp_path, drawn):
    rows = []
    for b in (2, 3, 4, 6, 8):
        for bp in range(1, b):
            p = 1.0 - 0.87 * ((bp - 1) / max(b - 2, 1)) ** 3  # ~1 until late, down to Lemma 1's 0.13 (as Theorem 1)
            rows.append(dict(b=b, bp=bp, p_paper=p, p_exact=p * 0.99, mc=p * 0.99, se=1e-3, gap=0.01 / b))
    res = SimpleNamespace(claim="Theorem 1 (Eq. 22), all 28 pairs", data={"rows": rows})
    theorem1.figures([res], str(tmp_path))
    fig = drawn[0]
    ax = fig.axes[0]
    fig.canvas.draw()
    box = ax.get_legend().get_window_extent(fig.canvas.get_renderer())
    points = np.concatenate([ax.transData.transform(line.get_xydata()) for line in ax.lines])
    inside = (points[:, 0] > box.x0) & (points[:, 0] < box.x1) & (points[:, 1] > box.y0) & (points[:, 1] < box.y1)
    assert not inside.any(), points[inside]


def test_renewal_training_bands_stay_positive(tmp_path, drawn):
    rng = np.random.default_rng(0)
    hn = {"rows": [dict(b=b, bp=bp, mse_kept=0.1 / bp, mse_fresh=0.05 / bp, mse_opt=0.04 / bp)
                   for b in range(2, 7) for bp in range(1, b)]}
    real = [dict(layer=name, bp=bp, t=t, mse_kept=2.0, mse_renewed=1.0)
            for name in ("stem", "fc") for bp in (3, 2, 1) for t in (1, 2)]
    # losses whose spread exceeds their mean: mean - std < 0, the case that made the bands dive
    runs = [{"pre": {"losses": list(rng.uniform(1e-3, 1e-2, 30))},
             "on": {"losses": list(rng.lognormal(-4, 2.0, 40))},
             "off": {"losses": list(rng.lognormal(-1, 1.5, 40))}} for _ in range(5)]
    post = np.array([r["on"]["losses"] for r in runs])
    assert (post.mean(0) - post.std(0) < 0).any()
    renewal_effect.figures([_result(hn=hn), _result(real=real), _result(runs=runs, bp=2)], str(tmp_path))
    ax = drawn[1].axes[0]
    assert ax.get_yscale() == "log"
    bands = [c for c in ax.collections if len(c.get_paths())]
    assert len(bands) == 2
    for band in bands:
        y = np.concatenate([p.vertices[:, 1] for p in band.get_paths()])
        assert np.isfinite(y).all() and y.min() > 0


def test_time_flow_log_axis_without_a_zero_tick(tmp_path, drawn):
    def conv(inside):
        return {"inside_part": np.array(inside), "clip_part": np.full(len(inside), 0.05),
                "g_vth": np.linspace(1e-6, 1e-5, len(inside))}
    rows = [{"domain": "positive", "T": 3, "B": B, "paper": conv([0.0, 0.005, 0.05]),
             "official": conv([0.009, 0.04, 0.05])} for B in (2, 4)]
    per = [{"paper": conv([0.0, 1e-3]), "official": conv([1e-3, 1e-3])}]
    time_flow.figures([_result(rows=rows), _result(T=2, per=per)], str(tmp_path))
    fig = drawn[0]
    ax = fig.axes[0]
    fig.canvas.draw()
    assert ax.get_yscale() == "log" and ax.get_ylim()[0] > 0
    lo, hi = ax.get_ylim()
    labels = [t.get_text() for t in ax.get_yticklabels() if lo <= t.get_position()[1] <= hi]
    assert labels and "0" not in labels and "$\\mathdefault{0}$" not in labels
    # a rounding part that is exactly zero is marked at the foot of its bar, twice per B = 2, 4 (paper, t = 1)
    assert sum(t.get_text() == "0" for t in ax.texts) == 2
