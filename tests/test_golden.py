"""Golden outputs (docs/golden.md): the tracked set in tests/golden, writing, checking, --against, conventions.

Regenerate the tracked set on purpose (when refsnn's numbers change) with

    refsnn golden write tests/golden          (or: python -m refsnn.golden write tests/golden)
"""
import io
import json
import math
import re
import shutil
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pytest

from refsnn.golden import GoldenError, check_golden, main, write_golden
from refsnn.golden.cases_release import NAMES as RELEASE_NAMES
from refsnn.golden.runner import REVISION
from refsnn.golden.store import SCHEMA, json_text, npz_bytes, read_npz, sha256_file

GOLDEN = Path(__file__).parent / "golden"
SETS = ("paper-float64", "paper-float32", "official-float64", "official-float32")
CROWS = tuple(f"C{i}" for i in range(1, 12))


def manifest(name):
    return json.loads((GOLDEN / name / "manifest.json").read_text())


def load(set_name, case):
    return read_npz(GOLDEN / set_name / f"{case}.npz")


def copy_cases(src: Path, dst: Path, names) -> Path:
    """A new set in ``dst`` with some cases of the set ``src`` (files copied, manifest filtered)."""
    dst.mkdir(parents=True, exist_ok=True)
    man = json.loads((src / "manifest.json").read_text())
    man["cases"] = [c for c in man["cases"] if c["name"] in names]
    assert len(man["cases"]) == len(names)
    for c in man["cases"]:
        shutil.copy(src / c["file"], dst / c["file"])
    (dst / "manifest.json").write_text(json_text(man))
    return dst


def run(argv):
    out = io.StringIO()
    import contextlib
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(argv)
    return code, out.getvalue()


# -------------------------------------------------------------------------------------------- the tracked set
def test_tracked_set_has_every_case_of_issue_5():
    for name in SETS:
        man = manifest(name)
        assert man["schema"] == SCHEMA and man["revision"] == REVISION
        conv, dt = name.split("-")
        assert (man["convention"], man["dtype"]) == (conv, dt)
        kinds = [c["kind"] for c in man["cases"]]
        names = [c["name"] for c in man["cases"]]
        assert kinds.count("weight_quant") == 12 + 3        # + revision 2 (C6, C7)
        assert sum(n.startswith("neuron_pos_") for n in names) == 3 * 3 * 2 * 2 * 2
        assert sum(n.startswith("neuron_bidir_") for n in names) == 3 * 2
        assert kinds.count("spiking_layer") == 2 and kinds.count("regulate") == 1
        assert kinds.count("grid_search") == 2 + 1 and kinds.count("observer") == 2 + 2   # + revision 2
        assert set(RELEASE_NAMES) <= set(names)
        assert {c["params"]["model"] for c in man["cases"] if c["kind"] == "cost"} == \
            {"resnet20", "resnet18", "sew_resnet34", "tiny_resnet"}
        # issue 13 adds ssa_block and train_step_tiny_spikformer (present once the tracked set is regenerated)
        assert kinds.count("train_step") == 1 + ("train_step_tiny_spikformer" in names)
        assert kinds.count("ssa") == ("ssa_block" in names)
        for c in man["cases"]:
            pattern = r"(Eq\. \d+|App\. A\.\d+|Alg\. (A\.)?\d+|METHOD\.md [\d.]+|C([1-9]|1[01]))"
            assert c["equations"] and all(re.fullmatch(pattern, e) for e in c["equations"]), c["equations"]
            assert c["params"]["convention"] == conv
            tol = c["tolerance"]
            assert tol["rtol"] > 0 and tol["atol"] == max(tol["arrays"].values(), default=0.0)


def test_tracked_margins_are_met():
    man = manifest("paper-float64")
    for c in man["cases"]:
        m = c["params"].get("margin_achieved", {})
        if "u" in m:
            assert m["u"] >= man["margin"]["drawn"], c["name"]
        if "grid" in m:
            assert m["grid"] >= man["margin"]["grid"], c["name"]
        if c["kind"] == "train_step":
            assert "spike_ratio" in m and "weight_ratio" in m, c["name"]
            for kind in ("spike", "weight", "relu", "pool", "grid"):  # relu: the ResNets, pool: Spikformer's SPS
                assert m.get(f"{kind}_ratio", math.inf) >= man["margin"]["model_min_ratio"]


BIG_COSTS = ["cost_resnet20_*", "cost_sew_resnet34_*"]


def test_library_matches_tracked_set():
    """Fails when refsnn's numbers change without the tracked set being regenerated (see the module docstring).

    Every case of the four sets except the two largest cost models (next test), with --strict tolerances."""
    names = [c["name"] for c in manifest("paper-float64")["cases"]]
    keep = [n for n in names if not any(fnmatch(n, p) for p in BIG_COSTS)]
    out = io.StringIO()
    ok = check_golden(GOLDEN, strict=True, patterns=keep, verbose=False, out=out)
    assert ok, out.getvalue()[-6000:]
    assert f"{4 * len(keep)} case(s)" in out.getvalue()


def test_library_matches_tracked_costs_of_the_large_models():
    """resnet20 and sew_resnet34 (one forward pass of a 32x32 / 224x224 image each; computed once for all sets)."""
    out = io.StringIO()
    ok = check_golden(GOLDEN, strict=True, patterns=BIG_COSTS, verbose=False, out=out)
    assert ok, out.getvalue()[-6000:]
    assert "8 case(s)" in out.getvalue()


def test_float32_sets_meet_the_tolerance_against_float64():
    """refsnn in float32 is a float32 port: it must pass the tolerance it publishes."""
    for conv in ("paper", "official"):
        out = io.StringIO()
        ok = check_golden(GOLDEN / f"{conv}-float32", against=GOLDEN / f"{conv}-float64", verbose=False, out=out)
        assert ok, out.getvalue()[-4000:]


def test_inputs_are_float32_exact_and_shared_by_all_sets():
    for case in ("neuron_pos_B4_T3_floor_tau2_temporal", "weight_quant_B5_channel", "train_step_tiny_resnet"):
        arrays = {s: load(s, case) for s in SETS}
        for k, v in arrays["paper-float64"].items():
            if k.split(".")[0] in ("input", "param", "grad_output"):
                if v.dtype == np.float64:
                    np.testing.assert_array_equal(v.astype(np.float32).astype(np.float64), v)
                for s in SETS[1:]:
                    np.testing.assert_array_equal(arrays[s][k].astype(v.dtype), v)


# -------------------------------------------------------------------------------------------- conventions
def test_a_case_differs_between_conventions_only_where_method_md_says():
    """docs/method.md §10: every difference is one of the rows C1-C11 the case lists; inputs never differ."""
    paper, official = manifest("paper-float64"), manifest("official-float64")
    assert [c["name"] for c in paper["cases"]] == [c["name"] for c in official["cases"]]
    n_diff = 0
    for c in paper["cases"]:
        a, b = load("paper-float64", c["name"]), load("official-float64", c["name"])
        assert a.keys() == b.keys()
        differ = [k for k in a if not np.array_equal(a[k], b[k])]
        assert not [k for k in differ if k.split(".")[0] in ("input", "param", "grad_output")], c["name"]
        if differ:
            n_diff += 1
            assert any(r in c["equations"] for r in CROWS), (c["name"], differ)
        if not any(r in c["equations"] for r in CROWS):
            assert not differ, (c["name"], differ)
    assert n_diff > 50


def _g(N, q_max):
    return 1 / math.sqrt(N * q_max)


def test_C1_C2_bit_gradients_scaled_by_g_and_the_one_bit_factor():
    # T = 1, tau = 1: no membrane carry (C3) and no decayed reset (C4): only the bit gradient differs
    for B, q_max, F in ((2, 3, 1.0), (1, 1, 2.0)):
        name = f"neuron_pos_B{B}_T1_round_tau1_temporal"
        a, b = load("paper-float64", name), load("official-float64", name)
        for k in a:
            if k != "grad.width_param":
                np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        # paper: g_B = g = 1/sqrt(N q_max) (C1), F = q_max + 1 = 2 at B = 1 where official has 1 (C2)
        np.testing.assert_allclose(a["grad.width_param"][0], _g(30, q_max) * F * b["grad.width_param"][0],
                                   rtol=1e-12)
        assert b["grad.width_param"][0] != 0
    for B, q_max, F in ((3, 3, 1.0), (1, 1, 2.0)):
        name = f"weight_quant_B{B}_layer"
        a, b = load("paper-float64", name), load("official-float64", name)
        for k in a:
            if k not in ("grad.width_param", "grad.step"):   # grad.step: C6, a (4, 2, 3, 3) kernel (revision 2)
                np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        np.testing.assert_allclose(a["grad.width_param"], _g(72, q_max) * F * b["grad.width_param"], rtol=1e-12)


def test_C3_C4_membrane():
    # tau = 1, T = 3: the forward is identical (C4 only acts with decay), the gradients differ (C3).  With
    # tau = 1 the full chain rule telescopes to the detached one for grad.x wherever an element stays inside
    # [q_min, q_max] at every step, so grad.x differs only through elements whose indicator changes over time;
    # dL/dShat^t (hence grad.v_th) differs as soon as T > 1.
    a, b = load("paper-float64", "neuron_pos_B4_T3_round_tau1_temporal"), \
        load("official-float64", "neuron_pos_B4_T3_round_tau1_temporal")
    for k in ("output.y", "output.v", "output.S"):
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["grad.x"], b["grad.x"])
    assert not np.array_equal(a["grad.v_th"], b["grad.v_th"])
    # tau = 2, T = 3: the decayed reset (C4) changes the membrane itself
    a, b = load("paper-float64", "neuron_pos_B2_T3_round_tau2_temporal"), \
        load("official-float64", "neuron_pos_B2_T3_round_tau2_temporal")
    np.testing.assert_array_equal(a["output.v"][0], b["output.v"][0])   # step 1: nothing to reset yet
    assert not np.array_equal(a["output.v"][1:], b["output.v"][1:])


def test_C5_renewed_step():
    a, b = load("paper-float64", "renewal_observer_weight"), load("official-float64", "renewal_observer_weight")
    for k in ("output.fired", "output.b_old"):
        np.testing.assert_array_equal(a[k], b[k])
    fired = a["output.fired"] == 1
    span = (a["output.q_max"] - a["output.q_min"]).astype(float)
    # paper: the first renewal sees non-negative X (lo = 0), a later one mixed-sign X: an asymmetric range, on
    # which Eq. 25 as the paper writes it, (V_rmax - V_rmin) / (q_max - q_min), and the official form differ
    asym = fired & (-a["output.v_rmin"] != a["output.v_rmax"]) & (a["output.v_rmin"] < 0)
    assert asym.any()
    np.testing.assert_allclose(a["output.step"][fired], ((a["output.v_rmax"] - a["output.v_rmin"]) / span)[fired])
    official_form = np.maximum(-a["output.v_rmin"], a["output.v_rmax"]) / (span / 2)
    assert not np.allclose(a["output.step"][asym], official_form[asym])
    # official (C8, revision 2): lo = -hi always, so the range is symmetric and C5's two forms agree
    np.testing.assert_array_equal(b["output.v_rmin"][fired], -b["output.v_rmax"][fired])
    np.testing.assert_allclose(b["output.step"][fired], (b["output.v_rmax"] / (span / 2))[fired], rtol=1e-15)
    np.testing.assert_allclose(b["output.step"][fired],
                               ((b["output.v_rmax"] - b["output.v_rmin"]) / span)[fired], rtol=1e-15)
    # the spike observer's range always contains 0 (lo = 0): the two formulas agree there
    a, b = load("paper-float64", "renewal_observer_spike"), load("official-float64", "renewal_observer_spike")
    np.testing.assert_allclose(a["output.step"], b["output.step"], rtol=1e-15)


def test_revision_2_cases_differ_between_conventions_by_their_rows(tmp_path):
    """The C6-C10 cases of revision 2 (written fresh: they hold whatever refsnn computes now)."""
    write_golden(tmp_path, ["paper", "official"], ["float64"], patterns=list(RELEASE_NAMES), out=io.StringIO())
    rd = lambda conv, name: read_npz(tmp_path / f"{conv}-float64" / f"{name}.npz")   # noqa: E731
    man = json.loads((tmp_path / "official-float64" / "manifest.json").read_text())
    assert man["revision"] == REVISION and man["convention_flags"]["C10_conv_weight_rescale"] is True
    eqs = {c["name"]: c["equations"] for c in man["cases"]}
    expect = {"weight_quant_conv_B2_layer": {"grad.step"}, "weight_quant_conv_B4_channel": {"grad.step"},
              "weight_quant_linear_B3_channel": {"grad.step"},
              "renewal_grid_symmetric_B1": {"output.v_min", "output.v_max", "output.score", "output.scores"},
              "renewal_observer_weight_positive": {"output.step", "output.v_rmin", "output.v_rmax"},
              "renewal_observer_conv_weight": {"output.step", "output.v_rmin", "output.v_rmax"}}
    for name, keys in expect.items():
        a, b = rd("paper", name), rd("official", name)
        # the grad.width_param difference is C1 (and C2), present in every weight_quant case
        assert {k for k in a if not np.array_equal(a[k], b[k])} - {"grad.width_param"} == keys, name
        assert any(r in eqs[name] for r in ("C6", "C7", "C8", "C9", "C10")), name
    # C6 layer-wise: ratio sqrt(C_in k^2 / (C_out q_max)) = sqrt(36 / 8) at B = 2
    a, b = rd("paper", "weight_quant_conv_B2_layer"), rd("official", "weight_quant_conv_B2_layer")
    np.testing.assert_allclose(b["grad.step"] / a["grad.step"], math.sqrt(36 / 8), rtol=1e-12)
    # C6 + C7 per channel: 1 / (C_out q_max) against 1 / sqrt(M_c q_max), q_max = 7 at B = 4
    a, b = rd("paper", "weight_quant_conv_B4_channel"), rd("official", "weight_quant_conv_B4_channel")
    np.testing.assert_allclose(b["grad.step"] / a["grad.step"], math.sqrt(36 * 7) / (8 * 7), rtol=1e-12)
    # C7 alone on a linear weight: sqrt(1 / C_out)
    a, b = rd("paper", "weight_quant_linear_B3_channel"), rd("official", "weight_quant_linear_B3_channel")
    np.testing.assert_allclose(b["grad.step"] / a["grad.step"], math.sqrt(1 / 10), rtol=1e-12)
    # C8: lo = 0 (paper) vs lo = -hi (official) for non-negative weights
    a, b = rd("paper", "renewal_observer_weight_positive"), rd("official", "renewal_observer_weight_positive")
    assert (a["output.v_rmin"] == 0).all() and (b["output.v_rmin"] == -b["output.v_rmax"]).all()
    # C10: the official conv observer keeps no running range and rescales the step by the grid spans
    b = rd("official", "renewal_observer_conv_weight")
    span = (b["output.q_max"] - b["output.q_min"]).astype(float)
    assert np.isinf(b["output.v_rmax"]).all() and (b["output.fired"] == [1, 0, 1, 1, 1]).all()
    np.testing.assert_allclose(b["output.step"][b["output.fired"] == 1],
                               0.03 * span[[0, 2, 3, 4]] / 14, rtol=1e-15)


# -------------------------------------------------------------------------------------------- writing
SUBSET = ["weight_quant_B3_*", "neuron_bidir_B1_T2", "neuron_pos_B1_T2_floor_tau2_shared", "spiking_linear",
          "renewal_grid_positive", "renewal_grid_symmetric", "renewal_observer_spike", "renewal_observer_weight",
          "regulating_loss_tiny_resnet"]


def test_writing_twice_is_byte_identical(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_golden(a, patterns=SUBSET, out=io.StringIO())
    write_golden(b, patterns=SUBSET, out=io.StringIO())
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) == 4 * (10 + 1)   # 10 cases and a manifest per set
    for f in files_a:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    # the same numbers as the tracked set (tolerance of the manifest: other BLAS, same choices)
    out = io.StringIO()
    assert check_golden(a / "paper-float64", against=GOLDEN / "paper-float64", patterns=SUBSET, verbose=False,
                        out=out), out.getvalue()
    # a single (convention, dtype) goes into DIR itself and reads back with numpy
    write_golden(tmp_path / "one", ["official"], ["float32"], patterns=["weight_quant_B1_layer"], out=io.StringIO())
    man = json.loads((tmp_path / "one" / "manifest.json").read_text())
    assert (man["convention"], man["dtype"], len(man["cases"])) == ("official", "float32", 1)
    with np.load(tmp_path / "one" / "weight_quant_B1_layer.npz") as z:
        assert z["output.w_q"].dtype == np.float32 and z["output.level"].dtype == np.int64
    assert sha256_file(tmp_path / "one" / "weight_quant_B1_layer.npz") == man["cases"][0]["sha256"]


def test_npz_is_deterministic_and_readable():
    arrays = {"output.b": np.arange(3.0), "input.a": np.float32(2.5) * np.ones((2, 2), np.float32),
              "output.flag": np.array(True), "output.n": np.array(7, np.int64)}
    blob = npz_bytes(arrays)
    assert blob == npz_bytes(dict(reversed(list(arrays.items()))))
    z = np.load(io.BytesIO(blob))
    assert sorted(z.files) == sorted(arrays) and z["output.n"].shape == ()
    with pytest.raises(GoldenError, match="prefix"):
        npz_bytes({"weights": np.zeros(2)})


# -------------------------------------------------------------------------------------------- checking
CASES = ["neuron_pos_B2_T2_round_tau1_temporal", "weight_quant_B4_channel"]


def test_check_recomputes_and_passes(tmp_path):
    d = copy_cases(GOLDEN / "paper-float32", tmp_path / "set", CASES)
    code, text = run(["check", str(d)])
    assert code == 0, text   # by default: a summary per set and the verdict
    assert text.splitlines()[0].startswith("[.] 2 case(s), 15 array(s): PASS")
    assert "max_abs" not in text and "PASS: 2 case(s)" in text
    code, text = run(["check", str(d), "-v"])
    assert code == 0 and "max_abs" in text and "grad.width_param" in text and "PASS: 2 case(s)" in text


def _perturb(d: Path, case: str, name: str, update_sha: bool) -> tuple:
    path = d / f"{case}.npz"
    arrays = read_npz(path)
    a = arrays[name].copy()
    idx = tuple(i // 2 for i in a.shape)
    a[idx] += a.dtype.type(1e-3) * (1 + abs(a[idx]))
    arrays[name] = a
    path.write_bytes(npz_bytes(arrays))
    if update_sha:
        man = json.loads((d / "manifest.json").read_text())
        for c in man["cases"]:
            if c["name"] == case:
                c["sha256"] = sha256_file(path)
        (d / "manifest.json").write_text(json_text(man))
    return idx


def test_check_detects_a_perturbed_array(tmp_path):
    d = copy_cases(GOLDEN / "official-float64", tmp_path / "set", CASES)
    idx = _perturb(d, CASES[0], "grad.x", update_sha=True)
    code, text = run(["check", str(d), "-q"])
    assert code == 1, text
    line = next(l for l in text.splitlines() if "FAIL" in l and "grad.x" in l)
    assert f"first failing index {idx}" in line
    assert "FAIL: 2 case(s)" in text and "1 array(s) failed" in text
    # --against sees it too, and a set compared with itself passes
    code, text = run(["check", str(d), "--against", str(GOLDEN / "official-float64"), "-q",
                      "--cases", *CASES])
    assert code == 1 and f"first failing index {idx}" in text
    assert run(["check", str(d), "--against", str(d)])[0] == 0


def test_check_detects_a_sha_mismatch(tmp_path):
    d = copy_cases(GOLDEN / "paper-float64", tmp_path / "set", CASES)
    _perturb(d, CASES[1], "output.w_q", update_sha=False)
    code, text = run(["check", str(d), "-q"])
    assert code == 1
    assert "sha256 mismatch" in text and CASES[1] in text
    code, text = run(["check", str(GOLDEN / "paper-float64"), "--against", str(d), "--cases", CASES[1]])
    assert code == 1 and "sha256 mismatch" in text


def test_against_pairs_sets_and_reports_missing_cases(tmp_path):
    d = tmp_path / "port"
    for s in ("paper-float64", "official-float64"):
        copy_cases(GOLDEN / s, d / s, CASES)
    code, text = run(["check", str(d), "--against", str(GOLDEN), "--cases", *CASES, "-q"])
    assert code == 0, text   # the port's two sets are compared with their counterparts
    assert "PASS: 4 case(s)" in text and "are not compared" in text   # the float32 references are noted
    code, text = run(["check", str(d / "paper-float64"), "--against", str(GOLDEN / "paper-float64"), "-q"])
    assert code == 1 and "case missing" in text   # the port computed 2 of the reference's cases
    code, text = run(["check", str(d / "paper-float64"), "--against", str(GOLDEN / "official-float64"), "-q"])
    assert code == 2 and "convention" in text
    (d / "paper-float64").rename(d / "paper-float16")
    code, text = run(["check", str(d), "--against", str(GOLDEN), "-q"])
    assert code == 2 and "has no set" in text


def test_clear_errors(tmp_path):
    code, text = run(["check", str(tmp_path / "missing")])
    assert code == 2 and "does not exist" in text
    (tmp_path / "empty").mkdir()
    code, text = run(["check", str(tmp_path / "empty")])
    assert code == 2 and "not a golden directory" in text
    d = copy_cases(GOLDEN / "paper-float64", tmp_path / "old", CASES[:1])
    man = json.loads((d / "manifest.json").read_text())
    man["schema"] = "refsnn-golden/0"
    (d / "manifest.json").write_text(json.dumps(man))
    code, text = run(["check", str(d)])
    assert code == 2 and "schema" in text and "refsnn-golden/1" in text
    (d / CASES[0]).with_suffix(".npz").unlink()
    man["schema"] = SCHEMA
    (d / "manifest.json").write_text(json.dumps(man))
    code, text = run(["check", str(d)])
    assert code == 1 and "missing" in text
