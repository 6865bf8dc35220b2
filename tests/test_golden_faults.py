"""The golden checker against damaged sets (docs/golden.md, "Damaged sets"; docs/reliability.md, "Golden sets").

Every rule of docs/golden.md is broken once in a copy of a few tracked cases (in tmp_path), and the checker
must say so: exit 2 for a broken set (the manifest is missing, invalid or empty), exit 1 for a case that
fails (a file missing, altered, of the wrong format or dtype, an array out of tolerance).
"""
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from refsnn.golden.check import compare_arrays
from refsnn.golden.store import json_text, npz_bytes, read_npz, sha256_file
from test_golden import GOLDEN, copy_cases, run

CASES = ["neuron_pos_B2_T2_round_tau1_temporal", "weight_quant_B4_channel"]
NEURON = CASES[0]


def _set(tmp_path, name="paper-float64") -> Path:
    return copy_cases(GOLDEN / name, tmp_path / name, CASES)


def _edit_manifest(d: Path, edit, raw: bool = False) -> None:
    man = json.loads((d / "manifest.json").read_text())
    edit(man)
    (d / "manifest.json").write_text(json.dumps(man) if raw else json_text(man))


def _edit_arrays(d: Path, case: str, edit, update_sha: bool = True) -> None:
    path = d / f"{case}.npz"
    arrays = read_npz(path)
    edit(arrays)
    path.write_bytes(npz_bytes(arrays))
    if update_sha:
        _resha(d, case)


def _resha(d: Path, case: str) -> None:
    def fix(man):
        for c in man["cases"]:
            if c["name"] == case:
                c["sha256"] = sha256_file(d / c["file"])
    _edit_manifest(d, fix)


def _case(man, name=NEURON) -> dict:
    return next(c for c in man["cases"] if c["name"] == name)


# ------------------------------------------------------------------- exit 2: the set itself is broken
def _nan_tolerance(man):
    _case(man)["tolerance"]["arrays"]["output.y"] = float("nan")


def _tol(key, value):
    def edit(man):
        _case(man)["tolerance"][key] = value
    return edit


BROKEN_MANIFESTS = {
    "nan tolerance": (_nan_tolerance, "NaN is not allowed"),
    "negative rtol": (_tol("rtol", -1e-5), "finite numbers >= 0"),
    "string atol": (_tol("atol", "1e-3"), "finite numbers >= 0"),
    "atol is not the largest": (_tol("atol", 1e-30), "not the largest per-array atol"),
    "tolerance not an object": (_tol("arrays", []), "must be an object"),
    "cases empty": (lambda m: m.update(cases=[]), "'cases' is empty"),
    "cases not a list": (lambda m: m.update(cases={}), "must be a list"),
    "other schema": (lambda m: m.update(schema="refsnn-golden/2"), "reads 'refsnn-golden/1' only"),
    "missing field": (lambda m: m.pop("seed"), "missing field(s) ['seed']"),
    "bad dtype": (lambda m: m.update(dtype="float16"), "dtype must be"),
    "unknown convention": (lambda m: m.update(convention="torch"), "convention must be one of"),
    "flags of the other convention": (lambda m: m["convention_flags"].update(C3_bptt=False),
                                      "are not those of the 'paper' convention"),
    "case lacks a field": (lambda m: _case(m).pop("sha256"), "lacks field(s) ['sha256']"),
    "case not an object": (lambda m: m["cases"].append("x"), "is not an object"),
    "duplicate name": (lambda m: m["cases"].append(dict(_case(m))), "appears twice"),
    "shared file": (lambda m: m["cases"][1].update(file=m["cases"][0]["file"]), "belongs to another case"),
    "file outside the set": (lambda m: _case(m).update(file="../x.npz"), "plain file name"),
    "sha256 not hex": (lambda m: _case(m).update(sha256="abc"), "64 lower-case hex"),
    "float64_arrays not a list": (lambda m: _case(m)["params"].update(float64_arrays="output.y"),
                                  "float64_arrays must be a list"),
}


@pytest.mark.parametrize("fault", sorted(BROKEN_MANIFESTS))
def test_a_broken_manifest_is_exit_2(tmp_path, fault):
    edit, message = BROKEN_MANIFESTS[fault]
    d = _set(tmp_path)
    _edit_manifest(d, edit, raw=True)
    code, text = run(["check", str(d)])
    assert code == 2, text
    assert message in text and "Traceback" not in text
    # the same set as the reference of --against, or as the port's set
    assert run(["check", str(_set(tmp_path / "good")), "--against", str(d)])[0] == 2
    assert run(["check", str(d), "--against", str(GOLDEN / "paper-float64")])[0] == 2


def test_nan_tolerance_with_a_shifted_output_fails(tmp_path):
    """The issue's case: tolerance NaN and output.y shifted by 5 passed (NaN comparisons are False)."""
    d = _set(tmp_path)
    _edit_arrays(d, NEURON, lambda a: a.update({"output.y": a["output.y"] + 5}))
    _edit_manifest(d, _nan_tolerance, raw=True)
    code, text = run(["check", str(d)])
    assert code == 2 and "NaN" in text
    # and a NaN tolerance that reaches the comparison itself fails it
    res = compare_arrays(np.ones(3) + 5, np.ones(3), float("nan"), 1e-5)
    assert not res["ok"] and "not finite" in res["reason"]


def test_invalid_json_and_non_object_manifest(tmp_path):
    d = _set(tmp_path)
    (d / "manifest.json").write_text('{"schema": ')
    assert run(["check", str(d)])[0] == 2
    (d / "manifest.json").write_text("[]")
    code, text = run(["check", str(d)])
    assert code == 2 and "JSON object" in text
    (d / "manifest.json").write_bytes(b"\xff\xfe")
    assert run(["check", str(d)])[0] == 2


def test_a_deleted_manifest_is_exit_2(tmp_path):
    """A set of a multi-set directory without its manifest was skipped silently (306 of 408 cases checked)."""
    root = tmp_path / "golden"
    for s in ("paper-float64", "official-float64"):
        copy_cases(GOLDEN / s, root / s, CASES)
    assert run(["check", str(root)])[0] == 0
    (root / "official-float64" / "manifest.json").unlink()
    code, text = run(["check", str(root)])
    assert code == 2 and "'official-float64'" in text and "no manifest.json" in text
    code, text = run(["check", str(root / "official-float64")])
    assert code == 2 and "no manifest.json" in text
    code, text = run(["check", str(_set(tmp_path / "port")), "--against", str(root / "official-float64")])
    assert code == 2


def test_no_case_selected_is_exit_2(tmp_path):
    code, text = run(["check", str(_set(tmp_path)), "--cases", "no_such_case*"])
    assert code == 2 and "no case" in text


# ------------------------------------------------------------------- exit 1: a case fails
def _to_float32(name):
    return lambda a: a.update({name: a[name].astype(np.float32)})


def test_changed_dtypes_fail(tmp_path):
    """int64 -> float32 with the same values passed, with and without --against."""
    ref = GOLDEN / "paper-float64"
    d = _set(tmp_path)
    _edit_arrays(d, NEURON, _to_float32("output.S"))
    code, text = run(["check", str(d)])
    assert code == 1 and "output.S: dtype float32, the set's float arrays are float64" in text
    code, text = run(["check", str(d), "--against", str(ref), "--cases", *CASES])
    assert code == 1 and "output.S: dtype float32" in text
    code, text = run(["check", str(_set(tmp_path / "good")), "--against", str(d)])
    assert code == 1 and "output.S: dtype float32" in text
    # in a float32 set the file itself looks right: the kind of the array (integer, not float) decides
    d = _set(tmp_path / "f32", "paper-float32")
    _edit_arrays(d, NEURON, _to_float32("output.S"))
    code, text = run(["check", str(d)])
    assert code == 1 and "output.S" in text and "dtype int64, expected float32" in text
    code, text = run(["check", str(d), "--against", str(GOLDEN / "paper-float32"), "--cases", *CASES])
    assert code == 1 and "dtype float32, expected int64" in text
    # the float arrays of a float64 set stored as float32
    d = _set(tmp_path / "f", "official-float64")
    _edit_arrays(d, CASES[1], _to_float32("grad.weight"))
    code, text = run(["check", str(d)])
    assert code == 1 and "grad.weight: dtype float32, the set's float arrays are float64" in text
    # a float32 port against the float64 reference passes; with an integer array as bool it does not
    port = _set(tmp_path / "port", "paper-float32")
    assert run(["check", str(port), "--against", str(ref), "--cases", *CASES])[0] == 0
    _edit_arrays(port, NEURON, lambda a: a.update({"output.S": a["output.S"] > 0}))
    code, text = run(["check", str(port), "--against", str(ref), "--cases", *CASES])
    assert code == 1 and "dtype bool" in text


def _member(path: Path, name: str, data: bytes, compress=zipfile.ZIP_STORED) -> None:
    """Replace one member of a zip by raw ``data``."""
    members = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            members[info.filename] = zf.read(info)
    members[name] = data
    with zipfile.ZipFile(path, "w", compression=compress) as zf:
        for k, v in members.items():
            zf.writestr(k, v)


def _npy(a, **kw) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, **kw)
    return buf.getvalue()


def _file_faults():
    y = read_npz(GOLDEN / "paper-float64" / f"{NEURON}.npz")["output.v"]   # the same values, another layout
    return {
        "compressed": (lambda p: _member(p, "output.v.npy", _npy(y), zipfile.ZIP_DEFLATED), "compressed"),
        "big-endian": (lambda p: _member(p, "output.v.npy", _npy(y.astype(">f8"))), "little-endian"),
        "Fortran order": (lambda p: _member(p, "output.v.npy", _npy(np.asfortranarray(y))), "Fortran order"),
        "npy format 2.0": (lambda p: _member(p, "output.v.npy", _npy(y, version=(2, 0))), "format (2, 0)"),
        "float16": (lambda p: _member(p, "output.v.npy", _npy(y.astype(np.float16))), "<f2"),
        "pickled object": (lambda p: _member(p, "output.v.npy", _npy(np.array([{}], dtype=object))), "|O"),
        "bad array name": (lambda p: _member(p, "outputs.v.npy", _npy(y)), "must be <prefix>.<name>"),
        "not a zip": (lambda p: p.write_bytes(b"not a zip"), "not a readable .npz"),
        "truncated": (lambda p: p.write_bytes(p.read_bytes()[:300]), "not a readable .npz"),
    }


@pytest.mark.parametrize("fault", sorted(_file_faults()))
def test_a_file_of_the_wrong_format_fails_its_case(tmp_path, fault):
    damage, message = _file_faults()[fault]
    d = _set(tmp_path)
    damage(d / f"{NEURON}.npz")
    _resha(d, NEURON)
    code, text = run(["check", str(d)])
    assert code == 1 and message in text and "Traceback" not in text, text
    assert "PASS" not in text.splitlines()[-1]


ARRAY_FAULTS = {
    "shifted output": (lambda a: a.update({"output.y": a["output.y"] + 5}), "first failing index"),
    "NaN output": (lambda a: a["output.v"].__setitem__((0, 0, 0, 0), np.nan), "first failing index"),
    "inf output": (lambda a: a["grad.x"].__setitem__((0, 0, 0), np.inf), "first failing index"),
    "shape": (lambda a: a.update({"output.y": a["output.y"][:1]}), "output.y"),
    "missing array": (lambda a: a.pop("grad.v_th"), "not in the file"),
    "extra array": (lambda a: a.update({"output.extra": np.zeros(2)}), "not produced by this refsnn"),
    "integer off by one": (lambda a: a["output.S"].__setitem__((0, 0, 0, 0), a["output.S"][0, 0, 0, 0] + 1),
                           "output.S"),
}


@pytest.mark.parametrize("fault", sorted(ARRAY_FAULTS))
def test_a_wrong_array_fails_its_case(tmp_path, fault):
    edit, message = ARRAY_FAULTS[fault]
    d = _set(tmp_path)
    _edit_arrays(d, NEURON, edit)
    code, text = run(["check", str(d)])
    assert code == 1 and message in text, text
    code, text = run(["check", str(d), "--against", str(GOLDEN / "paper-float64"), "--cases", *CASES])
    assert code == 1, text


def test_inputs_must_match_exactly_against_the_reference(tmp_path):
    d = _set(tmp_path)
    _edit_arrays(d, NEURON, lambda a: a.update({"input.x": a["input.x"] * (1 + 1e-15)}))
    code, text = run(["check", str(d), "--against", str(GOLDEN / "paper-float64"), "--cases", *CASES])
    assert code == 1 and "input.x" in text and "atol 0.0e+00" in text


def test_an_unknown_kind_fails_its_case(tmp_path):
    d = _set(tmp_path)
    _edit_manifest(d, lambda m: _case(m).update(kind="teleport"))
    code, text = run(["check", str(d)])
    assert code == 1 and "unknown case kind 'teleport'" in text


def test_missing_file_and_sha_mismatch_in_the_summary(tmp_path):
    d = _set(tmp_path)
    (d / f"{NEURON}.npz").unlink()
    code, text = run(["check", str(d)])
    assert code == 1 and "is missing" in text and "[.] 2 case(s)" in text and "FAIL (1 case(s) failed)" in text
    d = _set(tmp_path / "b")
    _edit_arrays(d, NEURON, lambda a: None, update_sha=False)
    p = d / f"{NEURON}.npz"
    p.write_bytes(p.read_bytes() + b"\0")
    code, text = run(["check", str(d)])
    assert code == 1 and "sha256 mismatch" in text
