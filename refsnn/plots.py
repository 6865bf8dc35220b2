"""Figures of a training run (matplotlib, Agg backend, PNG files).

    plot_wst_history      average W, S and T over training against the targets (like the paper's Fig. 3)
    plot_layer_allocation learned per-layer B_w, mean_t B_s and T as bars, with the layer sizes (like Fig. 4)
    plot_curves           accuracy and loss over training
    plot_all              the three, from a history (``refsnn.train``'s records)

Each function takes plain data (the epoch records of ``history.json``) and a
path, draws one figure and returns the path, so a figure can be redrawn from a
saved history without the model.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_COLORS = {"W": "tab:blue", "S": "tab:orange", "T": "tab:green"}


def save_figure(fig, path) -> Path:
    """Write ``fig`` to ``path`` (PNG; the directory is made) and close it; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_wst_history(history: list, initial: dict, targets: dict, path) -> Path:
    """Average W, S, T (docs/method.md §2) per epoch, epoch 0 = initial widths; targets dashed."""
    epochs = [0] + [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), sharex=True)
    names = {"W": "weight bit width W", "S": "spike bit width S", "T": "time steps T"}
    for ax, key in zip(axes, ("W", "S", "T")):
        values = [initial[key]] + [r[key] for r in history]
        ax.plot(epochs, values, marker="o", ms=3, color=_COLORS[key], label=f"average {key}")
        ax.axhline(targets[key], ls="--", color="black", lw=1, label=f"target {key} = {targets[key]:g}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(names[key])
        ax.set_title(f"{key}: {values[0]:.2f} -> {values[-1]:.2f}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Model-average widths during training (Eq. 21 pulls them towards the targets)", fontsize=10)
    return save_figure(fig, path)


def plot_layer_allocation(layers: list, path, title: str = "") -> Path:
    """Per-layer learned B_w, mean_t B_s^t and T_l as bars; layer sizes (N_w, N_f) as a line on a log axis.

    ``layers``: dicts with ``name, B_w, B_s (per step used), T, n_w, n_f, spiking`` (an epoch record's ``layers``).
    """
    names = [l["name"] for l in layers]
    x = list(range(len(layers)))
    mean_bs = [sum(l["B_s"][: l["T"]]) / l["T"] if l.get("spiking", True) and l["B_s"] else 0 for l in layers]
    series = (("B_w", [l["B_w"] for l in layers], "n_w", "weights N_w", "weight bit width B_w"),
              ("S", mean_bs, "n_f", "input elements N_f", "spike bit width (mean over t)"),
              ("T", [l["T"] if l.get("spiking", True) else 0 for l in layers], "n_f", "input elements N_f",
               "time steps T_l"))
    fig, axes = plt.subplots(3, 1, figsize=(max(6, 0.7 * len(layers) + 2), 8), sharex=True)
    for ax, (key, vals, size_key, size_label, ylabel) in zip(axes, series):
        color = _COLORS["W" if key == "B_w" else key]
        ax.bar(x, vals, color=color, alpha=0.8, label=ylabel)
        for xi, v in zip(x, vals):
            ax.text(xi, v, f"{v:.3g}", ha="center", va="bottom", fontsize=7)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_ylim(0, max(max(vals, default=1), 1) * 1.6)  # room for the legend above the bars
        ax2 = ax.twinx()
        ax2.plot(x, [l[size_key] for l in layers], color="black", marker="s", ms=3, lw=1, label=size_label)
        ax2.set_yscale("log")
        sizes = [l[size_key] for l in layers if l[size_key] > 0]
        if sizes:  # keep the line below the legend
            ax2.set_ylim(min(sizes) / 2, max(sizes) * 30)
        ax2.set_ylabel(size_label, fontsize=8)
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper left", ncol=2, framealpha=0.9)
        ax.grid(alpha=0.3, axis="y")
    axes[-1].set_xticks(x)
    axes[-1].set_xticklabels(names, rotation=45, ha="right", fontsize=8)
    axes[-1].set_xlabel("layer")
    axes[0].set_title(title or "Learned per-layer allocation (bars) and layer sizes (line, log scale)", fontsize=10)
    return save_figure(fig, path)


def plot_curves(history: list, path) -> Path:
    """Train/test accuracy and train/test loss per epoch."""
    ep = [r["epoch"] for r in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    a1.plot(ep, [100 * r["train_acc"] for r in history], marker="o", ms=3, label="train")
    a1.plot(ep, [100 * r["test_acc"] for r in history], marker="o", ms=3, label="test")
    a1.set_xlabel("epoch")
    a1.set_ylabel("accuracy (%)")
    a1.set_title("accuracy")
    a1.grid(alpha=0.3)
    a1.legend()
    a2.plot(ep, [r["train_loss"] for r in history], marker="o", ms=3, label="train total (CE + Eq. 21)")
    a2.plot(ep, [r["train_ce"] for r in history], marker="o", ms=3, label="train cross-entropy")
    a2.plot(ep, [r["test_loss"] for r in history], marker="o", ms=3, label="test cross-entropy")
    a2.set_xlabel("epoch")
    a2.set_ylabel("loss")
    a2.set_yscale("log")
    a2.set_title("loss")
    a2.grid(alpha=0.3)
    a2.legend(fontsize=8)
    return save_figure(fig, path)


def plot_all(history: list, initial: dict, targets: dict, out_dir) -> list:
    """The three figures of a run into ``out_dir``: wst_history.png, layer_allocation.png, curves.png."""
    out_dir = Path(out_dir)
    return [plot_wst_history(history, initial, targets, out_dir / "wst_history.png"),
            plot_layer_allocation(history[-1]["layers"], out_dir / "layer_allocation.png",
                                  title=f"Learned allocation after epoch {history[-1]['epoch']}: "
                                        f"W/S/T = {history[-1]['W']:.2f}/{history[-1]['S']:.2f}/"
                                        f"{history[-1]['T']:.2f}"),
            plot_curves(history, out_dir / "curves.png")]


def plots_main(history_json, out_dir=None) -> list:
    """Redraw the figures from a saved ``history.json``."""
    import json
    doc = json.loads(Path(history_json).read_text())
    return plot_all(doc["epochs"], doc["initial"], doc["targets"], out_dir or Path(history_json).parent)
