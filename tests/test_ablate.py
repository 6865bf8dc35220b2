"""refsnn ablate (refsnn.ablate): the quick run's tables have their shape, a cell re-run with its seed gives
the same numbers, and a second run resumes (finished cells are not trained again)."""
from __future__ import annotations

import io
import json
import re

import pytest

from refsnn.ablate import TABLES
from refsnn.ablate import cells as C
from refsnn.ablate.registry import TARGETS
from refsnn.ablate.run import main, parse_tables
from refsnn.cli import main as cli_main


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ablate")
    err = io.StringIO()
    assert main("3,8", quick=True, out=str(out), stream=err) == 0
    return out, err.getvalue()


def table_rows(text: str, number: str) -> list:
    block = text.split(f"## Table {number}:")[1].split("## Table")[0]
    return [l for l in block.splitlines() if l.startswith("|")]


def test_registry_has_the_papers_rows_and_columns():
    t3, t8 = TABLES["3"], TABLES["8"]
    assert [r.target for r in t3.rows] == list(TARGETS) and len(t3.rows) == 8
    assert [c.label for c in t3.columns] == ["U-quant.", "LBW", "LBW + weight-only renew", "LBW + bilateral renew",
                                             "LBW + act.-only renew"]
    assert len(t3.paper) == 8 * 5 and t3.paper[("1/1/1", "lbw_act")] == ("1.38/1.32/1.0", 96.15)
    assert [c.kind for c in t8.columns] == ["ann", "snn"] and t8.paper is None


def test_variants_follow_method_section_15():
    row = TABLES["3"].rows[2]  # 2/2/1
    uq = C.cell_config(TABLES["3"], row, TABLES["3"].column("uquant"), 0, quick=True)
    m = uq.method.spiking
    assert (m["weight_bits"], m["spike_bits"], m["time_steps"]) == (2.0, 2.0, 1.0)
    assert not (m["learn_weight_bits"] or m["learn_spike_bits"] or m["learn_time"])
    assert uq.renewal.mode == "none" and not uq.regulate.enabled
    for key, mode in (("lbw", "none"), ("lbw_weight", "weight"), ("lbw_both", "both"), ("lbw_act", "spike")):
        cfg = C.cell_config(TABLES["3"], row, TABLES["3"].column(key), 0, quick=True)
        m = cfg.method.spiking
        assert (m["weight_bits"], m["spike_bits"], m["time_steps"]) == (4.0, 4.0, 2.0) and m["learn_time"]
        assert cfg.renewal.mode == mode and cfg.regulate.enabled
        assert (cfg.regulate.W, cfg.regulate.S, cfg.regulate.T) == (2.0, 2.0, 1.0)
    a = C.Cell(TABLES["3"], row, TABLES["3"].column("lbw_act"), 0,
               C.cell_config(TABLES["3"], row, TABLES["3"].column("lbw_act"), 0, True))
    b = C.Cell(TABLES["8"], row, TABLES["8"].column("lbw_act"), 0,
               C.cell_config(TABLES["8"], row, TABLES["8"].column("lbw_act"), 0, True))
    assert a.hash == b.hash and a.name != b.name   # Table 8's SNN is Table 3's cell: one run


def test_quick_run_writes_tables_of_the_right_shape(quick_run):
    out, err = quick_run
    text = (out / "ABLATIONS.md").read_text()
    assert "QUICK RUN" in text
    t3 = table_rows(text, "3")
    assert t3[0].count("|") == 1 + 1 + len(TABLES["3"].quick_columns)
    assert len(t3) == 2 + len(TABLES["3"].quick_rows)
    t8 = table_rows(text, "8")
    assert len(t8) == 2 + len(TABLES["8"].quick_rows)
    assert "paper's numbers not available here" in text and "LBW > U-quant.: holds in" in text
    assert re.search(r"\d\.\d\d/\d\.\d\d/\d\.\d\d, \d+\.\d\d ± 0\.00", t3[2])
    assert (out / "figures" / "ablation_table3.png").stat().st_size > 1000
    cells = sorted((out / "cells").glob("*.json"))
    assert len(cells) == 5 and "4 to run" in err and "about" in err   # 5 cells, Table 8's SNN shared


def test_resume_skips_finished_cells_and_a_rerun_gives_the_same_numbers(quick_run):
    out, _ = quick_run
    before = {p.name: p.read_text() for p in (out / "cells").glob("*.json")}
    err = io.StringIO()
    assert main("3,8", quick=True, out=str(out), stream=err) == 0
    assert "5 already stored" in err.getvalue() and "0 to run" in err.getvalue()
    # the header of a resumed run: the stored runs' summed time, not this invocation's (near) zero
    runs = {(r["hash"], r["seed"]): r["result"]["time_s"] for r in map(json.loads, before.values())}
    stored = sum(runs.values())   # 4 runs: Table 8's SNN cell is Table 3's
    text = (out / "ABLATIONS.md").read_text()
    assert f"summed over all runs {stored:.0f} s" in text and "trained 0 of them" in text
    assert "the other 4 were stored by an earlier invocation" in text
    assert {p.name: p.read_text() for p in (out / "cells").glob("*.json")} == before
    # the same seed, trained again from nothing: the same numbers
    rec = json.loads(next(v for k, v in before.items() if "_uquant_" in k))
    again = C.run_cell("snn", rec["config"])
    for k in ("test_acc", "W", "S", "T", "bit_budget"):
        assert again[k] == rec["result"][k]


def test_bad_arguments_name_the_value(tmp_path, capsys):
    with pytest.raises(ValueError, match="--tables .7."):
        parse_tables("7")
    assert cli_main(["ablate", "--tables", "3,7", "--out", str(tmp_path)]) == 2
    assert "choose from 3, 4, 5, 6, 8" in capsys.readouterr().err
    assert cli_main(["ablate", "--seeds", "0", "--out", str(tmp_path)]) == 2
    assert cli_main(["ablate", "--dataset", "cifar10", "--out", str(tmp_path)]) == 2
