"""The ablation tables of the paper (docs/method.md §15) as data: rows x columns of variants.

A ``Table`` has rows (``Row``: a target W/S/T) and columns (``Variant``: how a run is set up); each
cell is one training run per seed, built from the table's base configuration by ``Variant.apply``
(``refsnn.ablate.cells``).  A table names its base configuration (``base``: a bundled config), its model
and, for the full run, its own epochs and seeds; a variant's ``method`` pairs select the prior neuron
(Eq. 3-5), sequential mode (docs/method.md §14) or tau.

The paper's own numbers (ResNet20 and Spikformer-4-384 on CIFAR-10, Spikformer on CIFAR10-DVS) sit beside
each table; they are read from the LaTeX source of the paper in the authors' release
(``sec/my_experiments.tex``: tables ``exp:ablation on learnable bit``, ``exp:ablation on refined neuron``,
``exp:ablation of spf`` and ``exp:ablations on dvs``), reached with refsnn's search tools.  Table 8's numbers
were not available there (its table is commented out in that source): ``paper`` is None and the report says so.
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
    rows: tuple = ()      # non-empty: the column runs only in these rows (Table 5's original 16/1/4)
    budget: float = 0.0   # > 0 (frozen columns only): W = 1 and S = budget / T, the row's T (Tables 6-7's prior cells)

    @property
    def sequential(self) -> bool:
        """docs/method.md §14: T is the row's constant (``time_steps``), never learnt."""
        return dict(self.method).get("temporal_mode") == "sequential"


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


#: the prior multi-bit LIF neuron (docs/method.md §1, §14): Eq. 3-5, tau = 2, flooring, run step by step
PRIOR = (("neuron", "prior"), ("rounding", "floor"), ("tau", 2.0), ("temporal_mode", "sequential"))
PRIOR_UQUANT = Variant("prior_uquant", "tau = 2 & Eq. 3-5, U-quant.", learn=False, method=PRIOR)
#: the paper's prior cells of Tables 6-7 (Shen et al.'s quantized SNN): a fixed Bit Budget 16, W = 1, S = 16 / T
PRIOR_BUDGET = Variant("prior_budget16", "tau = 2 & Eq. 3-5, U-quant. at Bit Budget 16 (1/(16/T)/T)", learn=False,
                       method=PRIOR, budget=16.0)
PRIOR_LBW = Variant("prior_lbw", "tau = 2 & Eq. 3-5, w/o renew", method=PRIOR)
PRIOR_RENEW = Variant("prior_lbw_act", "tau = 2 & Eq. 3-5, w/ renew", renewal="spike", method=PRIOR)
TAU2_RENEW = Variant("tau2_lbw_act", "tau = 2 & Eq. 12-14, w/ renew", renewal="spike", method=(("tau", 2.0),))
#: the method itself, labelled as in Table 4 (the same run as LBW_ACT: the same settings hash)
METHOD_T4 = Variant("lbw_act", "tau = 1 & Eq. 12-14, w/ renew (the method)", renewal="spike")
LBW_RENEW = Variant("lbw_act", "LBW + renew", renewal="spike")
#: Table 5's "Origin": Spikformer's own precision, frozen (16-bit weights, binary spikes, T = 4)
ORIGINAL = Variant("original", "original Spikformer (16/1/4)", learn=False, rows=("16/1/4",))
#: Tables 6-7: the method in sequential mode (refined neuron, tau = 1, learnable W and S, T the row's constant)
METHOD_SEQ = Variant("method_seq", "the method (Eq. 12-14, LBW + act.-only renew)", renewal="spike",
                     method=(("temporal_mode", "sequential"),))


@dataclass(frozen=True)
class Row:
    key: str            # "2/2/1"
    target: tuple       # (W, S, T)
    only: tuple = ()    # non-empty: only these columns run in this row


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
    base: str = "demo"              # the bundled configuration the cells start from
    model: str | None = None        # None: the base's model
    ours: str = "tiny_resnet on the bundled UCI digits"
    epochs: int | None = None       # the full run's epochs (None: refsnn.ablate.cells.FULL_EPOCHS)
    seeds: int | None = None        # the full run's seeds (None: 3); --seeds overrides
    quick_epochs: int | None = None  # the quick run's epochs (None: cells.QUICK_EPOCHS)
    penalties: bool = True          # lam_w = lam_s = cells.LAM_WS; False: the base's own penalties
    figure: str = "budget"          # "budget": accuracy vs Bit Budget per column; "T": accuracy vs T

    def runs(self, row: Row, col: Variant) -> bool:
        """Whether the cell (row, col) exists (Table 5's original runs in its own row only)."""
        return (not col.rows or row.key in col.rows) and (not row.only or col.key in row.only)

    def column(self, key: str) -> Variant:
        for c in self.columns:
            if c.key == key:
                return c
        raise KeyError(key)


def _rows(targets=TARGETS) -> tuple:
    return tuple(Row(f"{w}/{s}/{t}", (w, s, t)) for w, s, t in targets)


def _paper(data: dict, cols: tuple) -> dict:
    """{(row, col): (W/S/T or None, top-1)} from {row: (U-quant. top-1 or None, cell, cell, ...)} with the
    U-quant. column first (its W/S/T is the target) and ``cols`` naming the rest."""
    out = {}
    for row, (uq, *rest) in data.items():
        if uq is not None:
            out[(row, cols[0])] = (row, uq)
        for col, cell in zip(cols[1:], rest):
            if cell is not None:
                out[(row, col)] = cell
    return out


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
    return _paper(data, ("uquant",) + cols)


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


def _paper_table4() -> dict:
    """Table 4 of arXiv:2506.23717 (ResNet20, CIFAR-10): the refined-neuron ablation, six targets."""
    data = {
        "1/1/1": (74.82, ("1.80/2.14/1.0", 95.12), ("1.80/2.09/1.0", 95.58), ("1.46/1.34/1.0", 95.71),
                  ("1.38/1.32/1.0", 96.15)),
        "1/2/1": (10.02, ("1.77/2.2/1.0", 95.21), ("1.58/2.13/1.0", 96.14), ("1.40/2.05/1.0", 96.48),
                  ("1.42/2.08/1.0", 96.58)),
        "2/2/1": (0.1, ("2.10/2.07/1.0", 95.50), ("2.09/1.97/1.0", 96.04), ("1.88/1.95/1.0", 96.45),
                  ("2.08/2.08/1.0", 96.51)),
        "2/3/1": (89.06, ("2.05/3.01/1.0", 96.51), ("2.13/3.16/1.0", 96.38), ("1.96/3.04/1.0", 96.72),
                  ("2.24/3.06/1.0", 96.63)),
        "3/3/1": (0.1, ("2.98/3.02/1.0", 96.18), ("3.01/3.07/1.0", 96.43), ("3.03/3.01/1.0", 96.82),
                  ("2.89/2.87/1.0", 96.90)),
        "3/4/1": (96.31, ("3.06/3.98/1.0", 96.64), ("2.99/4.02/1.0", 96.80), ("2.95/4.06/1.0", 97.00),
                  ("3.01/4.0/1.0", 97.02)),
    }
    return _paper(data, ("prior_uquant", "prior_lbw", "prior_lbw_act", "tau2_lbw_act", "lbw_act"))


TABLE4 = Table(
    number="4", title="The refined neuron (Eq. 12-14, tau = 1) against the prior multi-bit LIF (Eq. 3-5, tau = 2)",
    rows=_rows(TARGETS[:6]), columns=(PRIOR_UQUANT, PRIOR_LBW, PRIOR_RENEW, TAU2_RENEW, METHOD_T4),
    paper=_paper_table4(),
    paper_source="arXiv:2506.23717 Table 4 (ResNet20, CIFAR-10), from the LaTeX source of the authors' release "
                 "(sec/my_experiments.tex)",
    orderings=(("lbw_act", "prior_lbw_act"), ("prior_lbw_act", "prior_lbw"), ("prior_lbw", "prior_uquant"),
               ("tau2_lbw_act", "prior_lbw_act"), ("lbw_act", "tau2_lbw_act")),
    quick_rows=("2/2/1",), quick_columns=("prior_uquant", "prior_lbw_act"),
    notes=("The prior neuron runs in sequential mode with T fixed at the target's T (1 in every row of the "
           "paper's table): at T = 1 its leak (tau = 2) never acts, so its columns measure flooring (Eq. 5) and "
           "the separate amplitude alpha (Eq. 3-4) against the refined neuron's rounding with V_th = amplitude.",
           "'w/ renew' is the paper's default renewal (Act.-only); the last column is Table 3's LBW + act.-only "
           "renew cell, run once."),
)


def _paper_table5() -> dict:
    """Table 5 of arXiv:2506.23717 (Spikformer-4-384, CIFAR-10) and its "Origin" 16/1/4."""
    data = {
        "1/1/1": (79.53, ("1.44/1.48/1.0", 95.37), ("1.53/1.5/1.0", 95.47)),
        "1/2/1": (89.3, ("1.47/1.99/1.0", 95.68), ("1.47/2.01/1.0", 95.54)),
        "2/2/1": (89.68, ("1.88/2.03/1.0", 95.80), ("2.02/2.01/1.0", 95.84)),
        "2/3/1": (94.11, ("2.00/2.94/1.0", 95.93), ("2.15/2.95/1.0", 96.04)),
        "3/3/1": (94.21, ("2.93/3.01/1.0", 95.87), ("2.89/2.99/1.0", 95.99)),
    }
    out = _paper(data, ("uquant", "lbw", "lbw_act"))
    out[("16/1/4", "original")] = ("16/1/4", 95.19)
    return out


TABLE5 = Table(
    number="5", title="Spikformer: U-quant., LBW, LBW + renew and the original 16/1/4",
    rows=_rows(TARGETS[:5]) + (Row("16/1/4", (16, 1, 4), only=("original",)),),
    columns=(U_QUANT, LBW, LBW_RENEW, ORIGINAL),
    paper=_paper_table5(),
    paper_source="arXiv:2506.23717 Table 5 (Spikformer-4-384, CIFAR-10), from the LaTeX source of the authors' "
                 "release (sec/my_experiments.tex)",
    orderings=(("lbw", "uquant"), ("lbw_act", "lbw"), ("lbw", "original"), ("lbw_act", "original")),
    quick_rows=("2/2/1",), quick_columns=("lbw",), model="tiny_spikformer", quick_epochs=1,
    ours="tiny_spikformer (refsnn.models: 1 block, D = 32, 2 heads) on the bundled UCI digits",
    epochs=15, seeds=2,
    notes=("The original is one frozen cell (weights 16 bits, binary spikes, T = 4 in squeeze mode, no "
           "Eq. 21); the orderings against it compare every row with that one cell.",
           "'LBW + renew' is the paper's default renewal (Act.-only)."),
)


def _paper_table67() -> dict:
    """Table 6-7 of arXiv:2506.23717 (Spikformer, CIFAR10-DVS) at the T of our rows: the quantized Spikformer of
    Shen et al. at a fixed Bit Budget 16 (1/16/1 ... 1/2/8) and the paper's own (no T = 8 row)."""
    return {("2/2/1", "prior_budget16"): ("1/16/1", 35.8), ("2/2/2", "prior_budget16"): ("1/8/2", 43.0),
            ("2/2/4", "prior_budget16"): ("1/4/4", 63.1), ("2/2/8", "prior_budget16"): ("1/2/8", 79.3),
            ("2/2/1", "method_seq"): ("1.31/4.03/1.0", 77.4), ("2/2/2", "method_seq"): ("1.31/4.03/2.0", 78.7),
            ("2/2/4", "method_seq"): ("1.28/2.00/4.0", 80.0)}


TABLE67 = Table(
    number="6", title="The temporal constraint: accuracy against T in sequential mode on event data (Tables 6-7)",
    rows=_rows(tuple((2, 2, t) for t in (1, 2, 4, 8))), columns=(PRIOR_UQUANT, PRIOR_BUDGET, METHOD_SEQ),
    paper=_paper_table67(),
    paper_source="arXiv:2506.23717 Tables 6-7 (Spikformer on CIFAR10-DVS, origin 16/1/16: 80.7 %), from the "
                 "LaTeX source of the authors' release (sec/my_experiments.tex)",
    orderings=(("method_seq", "prior_uquant"), ("method_seq", "prior_budget16")),
    quick_rows=("2/2/2",), quick_columns=("method_seq",), base="demo_events", quick_epochs=1, penalties=False,
    ours="tiny_resnet in sequential mode on the bundled event digits (refsnn/configs/demo_events.toml)",
    epochs=4, seeds=2, figure="T",
    notes=("Every column runs step by step with T the row's constant.  The prior U-quant. (tau = 2, Eq. 3-5, "
           "flooring) is frozen at W/S 2/2 in one column and, as the paper's prior cells (Shen et al.), at a fixed "
           "Bit Budget 16 (W = 1, S = 16/T) in the other; the method learns W and S from 4/4 towards 2/2 (Eq. 21 "
           "with demo_events.toml's penalties) with act.-only renewal.",
           "The paper's claim is that the method's accuracy barely falls as T shrinks while the prior's collapses "
           "at a fixed Bit Budget: compare the trends with T, not the levels.",
           "At 1/16/1 both seeds of the Bit-Budget prior blow up in the first epoch (mean train loss 4.65, seed 0) "
           "and stay at chance (loss 2.30): the 16-bit spike grid (q_max = 65535) lets one step emit outputs "
           "thousands of thresholds large; one of the two 1/8/2 seeds does the same."),
)

TABLES = {"3": TABLE3, "4": TABLE4, "5": TABLE5, "6": TABLE67, "8": TABLE8}
