"""Golden cases of sequential mode and event data (docs/golden.md 6.9-6.11), written here and checked.

The tracked set in tests/golden gets these cases when the integrator regenerates it
(``refsnn golden write tests/golden``); until then they are written to a temporary directory.
"""
import io
import json

import numpy as np

from refsnn.golden import check_golden, write_golden
from refsnn.golden.store import read_npz

SEQ = ["seq_*", "to_frames"]


def test_seq_cases_write_twice_identically_and_recheck(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_golden(a, patterns=SEQ, out=io.StringIO())
    write_golden(b, patterns=SEQ, out=io.StringIO())
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 4 * (11 + 1)  # 9 neurons, 1 conv, 1 to_frames and a manifest per set
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    for s in ("paper-float64", "official-float32"):
        out = io.StringIO()
        assert check_golden(a / s, verbose=False, out=out), out.getvalue()
    man = json.loads((a / "paper-float64" / "manifest.json").read_text())
    names = [c["name"] for c in man["cases"]]
    assert sum(n.startswith("seq_neuron_") for n in names) == 9
    assert {"seq_spiking_conv", "to_frames"} <= set(names)
    for c in man["cases"]:
        if c["kind"] == "seq_neuron":
            assert c["params"]["margin_achieved"]["u"] >= 0.01


def test_conventions_differ_where_method_md_says(tmp_path):
    write_golden(tmp_path, patterns=SEQ, out=io.StringIO())
    P, O = tmp_path / "paper-float64", tmp_path / "official-float64"
    # tau = 1: the forward is the same (C4 is the same computation); the BPTT gradients differ (C3)
    p, o = read_npz(P / "seq_neuron_pos_round_tau1.npz"), read_npz(O / "seq_neuron_pos_round_tau1.npz")
    assert np.array_equal(p["output.Shat"], o["output.Shat"]) and np.array_equal(p["output.v"], o["output.v"])
    assert not np.array_equal(p["grad.x"], o["grad.x"])
    # tau = 2: the decayed reset (C4) changes the membrane itself
    p2, o2 = read_npz(P / "seq_neuron_pos_round_tau2.npz"), read_npz(O / "seq_neuron_pos_round_tau2.npz")
    assert not np.array_equal(p2["output.v"], o2["output.v"])
    # the prior-art neuron emits alpha^t S^t and alpha gets a gradient
    q = read_npz(P / "seq_neuron_prior_art_tau2.npz")
    alpha = q["param.alpha"][:3].reshape(3, 1, 1, 1)
    assert np.array_equal(q["output.Shat"], alpha * q["output.S"]) and q["grad.alpha"][:3].any()
    # to_frames counts every event once, in both slicings, whatever the convention
    f = read_npz(P / "to_frames.npz")
    assert f["output.frames_number"].sum() == f["output.frames_time"].sum() == f["input.t"].size
    assert np.array_equal(f["output.frames_time"], read_npz(O / "to_frames.npz")["output.frames_time"])
