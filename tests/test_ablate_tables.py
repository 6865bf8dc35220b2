"""refsnn ablate, Tables 4, 5 and 6-7 (refsnn.ablate): each variant kind builds the configuration it claims
(the prior neuron in sequential mode, frozen widths, the Spikformer model, event data with T frames), the
orderings against a one-row column (Table 5's original) compare with that cell, and the quick run of each
table writes a table of its shape."""
from __future__ import annotations

import io
import math

import pytest

from refsnn.ablate import TABLES
from refsnn.ablate import cells as C
from refsnn.ablate.report import orderings
from refsnn.ablate.run import main

T3, T4, T5, T6 = TABLES["3"], TABLES["4"], TABLES["5"], TABLES["6"]


def cfg_of(table, row_key, col_key, quick=True):
    row = next(r for r in table.rows if r.key == row_key)
    return C.cell_config(table, row, table.column(col_key), 0, quick)


def table_rows(text: str, number: str) -> list:
    block = text.split(f"## Table {number}:")[1].split("## Table")[0]
    return [line for line in block.splitlines() if line.startswith("|")]


def test_registry_has_the_papers_rows_columns_and_numbers():
    assert [r.key for r in T4.rows] == ["1/1/1", "1/2/1", "2/2/1", "2/3/1", "3/3/1", "3/4/1"]
    assert [c.key for c in T4.columns] == ["prior_uquant", "prior_lbw", "prior_lbw_act", "tau2_lbw_act", "lbw_act"]
    assert len(T4.paper) == 6 * 5 and T4.paper[("1/2/1", "prior_uquant")] == ("1/2/1", 10.02)
    assert T4.paper[("3/3/1", "tau2_lbw_act")] == ("3.03/3.01/1.0", 96.82)
    assert [r.key for r in T5.rows] == ["1/1/1", "1/2/1", "2/2/1", "2/3/1", "3/3/1", "16/1/4"]
    assert T5.paper[("16/1/4", "original")] == ("16/1/4", 95.19) and T5.paper[("2/2/1", "lbw_act")][1] == 95.84
    assert len(T5.paper) == 5 * 3 + 1
    assert [r.target[2] for r in T6.rows] == [1, 2, 4, 8] and T6.paper[("2/2/1", "prior_budget16")][1] == 35.8
    assert ("2/2/8", "method_seq") not in T6.paper   # the paper has no T = 8 row for its own Spikformer


def test_prior_neuron_variants_run_step_by_step_with_flooring():
    for key, learn, renewal in (("prior_uquant", False, "none"), ("prior_lbw", True, "none"),
                                ("prior_lbw_act", True, "spike")):
        cfg = cfg_of(T4, "1/2/1", key)
        sc = cfg.spiking_config()
        assert (sc.neuron, sc.rounding, sc.tau, sc.temporal_mode) == ("prior", "floor", 2.0, "sequential")
        assert sc.time_steps == 1.0 and not sc.learns_time   # T = the target's T, a constant
        assert sc.learn_weight_bits is learn and sc.learn_spike_bits is learn
        assert cfg.renewal.mode == renewal and cfg.regulate.enabled is learn
        if not learn:
            assert (sc.weight_bits, sc.spike_bits) == (1.0, 2.0)
        else:
            assert (sc.weight_bits, sc.spike_bits) == (4.0, 4.0) and (cfg.regulate.W, cfg.regulate.S) == (1.0, 2.0)


def test_refined_neuron_variants_and_the_method_shared_with_table_3():
    sc = cfg_of(T4, "2/2/1", "tau2_lbw_act").spiking_config()
    assert (sc.neuron, sc.rounding, sc.tau, sc.temporal_mode) == ("refined", "round", 2.0, "squeeze")
    assert sc.learns_time and sc.time_steps == 2.0
    row = T4.rows[2]
    a = C.Cell(T4, row, T4.column("lbw_act"), 1, C.cell_config(T4, row, T4.column("lbw_act"), 1, False))
    b = C.Cell(T3, row, T3.column("lbw_act"), 1, C.cell_config(T3, row, T3.column("lbw_act"), 1, False))
    assert a.hash == b.hash and a.config.spiking_config().tau == 1.0   # Table 4's method = Table 3's cell


def test_spikformer_table_uses_the_model_and_freezes_the_original():
    cfg = cfg_of(T5, "2/3/1", "lbw")
    assert cfg.model.name == "tiny_spikformer" and cfg.spiking_config().learns_time
    orig = cfg_of(T5, "16/1/4", "original", quick=False)
    sc = orig.spiking_config()
    assert (sc.weight_bits, sc.spike_bits, sc.time_steps) == (16.0, 1.0, 4.0) and sc.weight_bound == 16
    assert sc.time_bound == 4 and not (sc.learn_weight_bits or sc.learn_spike_bits or sc.learns_time)
    assert not orig.regulate.enabled and orig.renewal.mode == "none" and orig.epochs == 15
    cells = C.table_cells(T5, None, quick=False)
    assert len(cells) == 2 * (5 * 3 + 1)   # 2 seeds; the original only in its row, no other column there
    assert {c.variant.key for c in cells if c.row.key == "16/1/4"} == {"original"}
    assert all(c.row.key == "16/1/4" for c in cells if c.variant.key == "original")


def test_event_table_fixes_T_and_frames_per_row():
    for T in (1, 2, 4, 8):
        for key in ("prior_uquant", "prior_budget16", "method_seq"):
            cfg = cfg_of(T6, f"2/2/{T}", key, quick=False)
            sc = cfg.spiking_config()
            assert cfg.data.name == "event_digits" and cfg.data.options["T"] == T
            assert sc.temporal_mode == "sequential" and sc.time_steps == T and sc.time_bound >= T
            assert not sc.learns_time and cfg.epochs == 4
        prior = cfg_of(T6, f"2/2/{T}", "prior_uquant").spiking_config()
        assert (prior.neuron, prior.weight_bits, prior.spike_bits, prior.learn_spike_bits) == ("prior", 2.0, 2.0, False)
        budget = cfg_of(T6, f"2/2/{T}", "prior_budget16").spiking_config()
        # the paper's prior cells: Bit Budget 16 = W * S * T with W = 1, frozen, the spike bound raised to S
        assert (budget.neuron, budget.weight_bits, budget.spike_bits, budget.time_steps) == ("prior", 1.0, 16 / T, T)
        assert not budget.learn_spike_bits and budget.spike_bound >= 16 / T
        method = cfg_of(T6, f"2/2/{T}", "method_seq")
        assert method.spiking_config().neuron == "refined" and method.spiking_config().learn_weight_bits
        assert (method.regulate.lam_w, method.regulate.lam_s) == (0.3, 0.5)   # demo_events.toml's, kept
    assert C.table_seeds(T6, False) == 2 and C.table_seeds(T5, False) == 2 and C.table_seeds(T5, True) == 1
    assert C.cell_epochs(T6, True) == 1 and C.cell_epochs(T3, True) == 2 and C.cell_epochs(T6, False, 5) == 5


def test_orderings_compare_every_row_with_a_one_row_column():
    summ = {(r, c): {"mean": m} for (r, c), m in {
        ("1/1/1", "lbw"): 90.0, ("2/2/1", "lbw"): 96.0, ("16/1/4", "original"): 95.0,
        ("1/1/1", "uquant"): 91.0, ("2/2/1", "uquant"): 80.0}.items()}
    got = {name: (k, n, gain, pk, pn) for name, k, n, gain, pk, pn in orderings(T5, summ)}
    k, n, gain, pk, pn = got["LBW > original Spikformer (16/1/4)"]
    assert (k, n) == (1, 2) and math.isclose(gain, ((90 - 95) + (96 - 95)) / 2)
    assert (pk, pn) == (5, 5)   # the paper: LBW beats the original's 95.19 % in all five rows
    k, n, gain, _, _ = got["LBW > U-quant."]
    assert (k, n) == (1, 2) and math.isclose(gain, (-1 + 16) / 2)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ablate_tables")
    err = io.StringIO()
    assert main("4,5,6", quick=True, out=str(out), stream=err) == 0
    return out, (out / "ABLATIONS.md").read_text(), err.getvalue()


def test_quick_table4_has_its_shape(quick_run):
    _, text, _ = quick_run
    rows = table_rows(text, "4")
    assert len(rows) == 2 + len(T4.quick_rows) and rows[0].count("|") == 2 + len(T4.quick_columns)
    assert "tau = 2 & Eq. 3-5, U-quant." in rows[0] and "paper: 1.88/1.95/1.0" not in text
    assert "paper: 2/2/1, 0.10" in rows[2]


def test_quick_table5_is_one_spikformer_cell(quick_run):
    out, text, _ = quick_run
    rows = table_rows(text, "5")
    assert len(rows) == 3 and rows[0].count("|") == 3 and "| LBW |" in rows[0]
    assert "tiny_spikformer" in text.split("## Table 5:")[1].split("## Table")[0]
    assert len(list((out / "cells").glob("t5_*.json"))) == 1


def test_quick_table6_is_one_event_cell_with_its_figure(quick_run):
    out, text, err = quick_run
    rows = table_rows(text, "6")
    assert len(rows) == 3 and rows[2].startswith("| 2/2/2 |") and "paper: 1.31/4.03/2.0, 78.70" in rows[2]
    assert "1 epoch, 1 seed per cell" in text.split("## Table 6:")[1]
    assert (out / "figures" / "ablation_table6.png").stat().st_size > 1000
    assert "accuracy against T" in text and "4 to run" in err


def test_temporal_drops_compare_the_largest_and_smallest_T():
    from refsnn.ablate.report import temporal_drops
    summ = {("2/2/1", "prior_budget16"): {"mean": 40.0}, ("2/2/8", "prior_budget16"): {"mean": 90.0},
            ("2/2/2", "prior_budget16"): {"mean": 99.0}, ("2/2/1", "method_seq"): {"mean": 85.0}}
    lines = temporal_drops(T6, summ)
    assert len(lines) == 1   # the method ran at one T only, the W/S 2/2 prior at none: no drop to report
    assert lines[0].startswith("tau = 2 & Eq. 3-5, U-quant. at Bit Budget 16 (1/(16/T)/T): accuracy at T = 1 minus "
                               "at T = 8: -50.00 pp")
    assert "(paper: -43.50 pp, T = 1 minus T = 8)" in lines[0]
