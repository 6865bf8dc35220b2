"""The ablation tables of the paper (docs/method.md §15) as data: rows x columns of variants.

A ``Table`` has rows (``Row``: a target W/S/T) and columns (``Variant``: how a run is set up); each
cell is one training run per seed, built from the table's base configuration by ``Variant.apply``
(``refsnn.ablate.cells``).  Tables 4, 5 and 6-7 plug in by adding ``Variant`` s (their ``kind`` and
``method`` changes: the prior neuron, sequential mode, the Spikformer model) and a ``Table`` to ``TABLES``.

The paper's own numbers (CIFAR-10, ResNet20, 200 epochs) sit beside each table; they are read from the
LaTeX source of the paper in the authors' release (``sec/my_experiments.tex``, table
``exp:ablation on learnable bit``), reached with refsnn's search tools.  Table 8's numbers were not
available there (its table is commented out in that source): ``paper`` is None and the report says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field

#: the eight targets of Tables 3 and 8 (W, S, T)
TARGETS = ((1, 1, 1), (1, 2, 1), (2, 2, 1), (2, 3, 1), (3, 3, 1), (3, 4, 1), (4, 4, 1), (4, 4, 2))
#: initial widths of every learnable-width model (the paper: "LBW models are initial to W/S/T=4/4/2")
INITIAL = (4.0, 4.0, 2.0)


@dataclass(frozen=True)
class Variant:
    """One column: ``kind`` "snn" (refsnn.train.Trainer) or "ann" (refsnn.ablate.ann); ``learn``: the widths
    are learnable (Eq. 9-11, 16-21) from INITIAL, else frozen at the target with no Eq. 21 (U-quant.);
    ``renewal``: docs/method.md §9 mode; ``method`` / ``regulate`` / ``lr``: extra [method] / [regulate] /
    [optim.lr] changes, as (key, value) pairs."""
    key: str
    label: str
    kind: str = "snn"
    learn: bool = True
    renewal: str = "none"
    method: tuple = ()
    regulate: tuple = ()
    lr: tuple = ()


U_QUANT = Variant("uquant", "U-quant.", learn=False)
LBW = Variant("lbw", "LBW")
LBW_WEIGHT = Variant("lbw_weight", "LBW + weight-only renew", renewal="weight")
LBW_BOTH = Variant("lbw_both", "LBW + bilateral renew", renewal="both")
LBW_ACT = Variant("lbw_act", "LBW + act.-only renew", renewal="spike")
#: Table 8's ANN: Uhlich et al.'s parametrization.  Its log2 d / log2 q_max get the task gradient summed over
#: every element (no LSQ scale): at lr 0.1 with a penalty of 0.5 the 1/1/1 cell diverged, so lr 0.01 for them
#: and a penalty of 2 (each log2 step moves by ~lr * lam * share per step)
ANN = Variant("ann", "mixed-precision ANN (Uhlich et al.)", kind="ann", regulate=(("lam_w", 2.0), ("lam_s", 2.0)),
              lr=(("weight_width", 0.01), ("spike_width", 0.01)))


@dataclass(frozen=True)
class Row:
    key: str            # "2/2/1"
    target: tuple       # (W, S, T)


@dataclass(frozen=True)
class Table:
    """A paper table: rows x columns; ``paper``: {(row key, column key): (W/S/T text or None, top-1 %)}."""
    number: str
    title: str
    rows: tuple
    columns: tuple
    paper: dict | None = None
    paper_source: str = ""
    orderings: tuple = ()            # (better column key, worse column key): the paper's claims per row
    quick_rows: tuple = ()
    quick_columns: tuple = ()
    notes: tuple = field(default_factory=tuple)

    def column(self, key: str) -> Variant:
        for c in self.columns:
            if c.key == key:
                return c
        raise KeyError(key)


def _rows(targets=TARGETS) -> tuple:
    return tuple(Row(f"{w}/{s}/{t}", (w, s, t)) for w, s, t in targets)


def _paper_table3() -> dict:
    """Table 3 of arXiv:2506.23717 (ResNet20, CIFAR-10): (reached W/S/T, top-1 %) per target and column."""
    cols = ("lbw", "lbw_weight", "lbw_both", "lbw_act")
    data = {
        "1/1/1": (74.82, ("1.60/1.91/1.0", 95.65), ("1.73/1.98/1.0", 93.28), ("1.25/1.36/1.0", 95.84),
                  ("1.38/1.32/1.0", 96.15)),
        "1/2/1": (86.8, ("1.48/2.00/1.0", 95.55), ("1.57/2.12/1.0", 93.52), ("1.25/2.04/1.0", 96.25),
                  ("1.42/2.08/1.0", 96.58)),
        "2/2/1": (88.65, ("1.88/2.06/1.0", 94.62), ("1.99/2.06/1.0", 95.71), ("2.00/1.89/1.0", 96.47),
                  ("2.08/2.08/1.0", 96.51)),
        "2/3/1": (93.64, ("2.10/3.00/1.0", 96.37), ("1.96/3.00/1.0", 96.51), ("2.02/3.06/1.0", 96.97),
                  ("2.24/3.06/1.0", 96.63)),
        "3/3/1": (95.38, ("3.01/2.95/1.0", 96.34), ("3.00/3.06/1.0", 96.66), ("2.87/3.04/1.0", 96.77),
                  ("2.89/2.87/1.0", 96.90)),
        "3/4/1": (96.09, ("2.87/4.10/1.0", 96.72), ("2.90/3.98/1.0", 96.89), ("2.97/3.94/1.0", 97.01),
                  ("3.01/4.00/1.0", 97.02)),
        "4/4/1": (96.35, ("4.04/4.06/1.0", 96.78), ("3.99/4.02/1.0", 97.00), ("3.86/4.00/1.0", 97.03),
                  ("3.99/4.06/1.0", 97.05)),
        "4/4/2": (96.39, ("4.02/3.93/1.92", 96.80), ("3.88/4.04/2.0", 96.57), ("4.01/3.97/2.0", 97.03),
                  ("3.93/4.03/2.08", 96.92)),
    }
    out = {}
    for row, (uq, *rest) in data.items():
        out[(row, "uquant")] = (row, uq)
        for col, cell in zip(cols, rest):
            out[(row, col)] = cell
    return out


TABLE3 = Table(
    number="3", title="Learnable bit widths (LBW) and step-size renewal",
    rows=_rows(), columns=(U_QUANT, LBW, LBW_WEIGHT, LBW_BOTH, LBW_ACT),
    paper=_paper_table3(),
    paper_source="arXiv:2506.23717 Table 3 (ResNet20, CIFAR-10, 200 epochs), as in the LaTeX source of the "
                 "authors' release (sec/my_experiments.tex)",
    orderings=(("lbw", "uquant"), ("lbw_act", "lbw"), ("lbw_both", "lbw"), ("lbw_weight", "lbw")),
    quick_rows=("2/2/1",), quick_columns=("uquant", "lbw", "lbw_act"),
)

TABLE8 = Table(
    number="8", title="Bit-adaptive SNN vs a mixed-precision ANN (Uhlich et al. 2019) at the same targets",
    rows=_rows(), columns=(ANN, LBW_ACT),
    paper=None, paper_source="paper's numbers not available here",
    orderings=(("lbw_act", "ann"),),
    quick_rows=("2/2/1",), quick_columns=("ann", "lbw_act"),
    notes=("The SNN column is the method (LBW + act.-only renew, the paper's default): the same cell as "
           "Table 3's last column, run once.",
           "ANN and SNN alike count W over the weights and S over the input elements of every conv/linear "
           "layer; the ANN has T = 1, so its Bit Budget is W * S."),
)

TABLES = {"3": TABLE3, "8": TABLE8}
