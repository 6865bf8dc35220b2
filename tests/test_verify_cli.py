"""`refsnn verify --quick` runs every registered check, passes, and writes its report and figures."""
from refsnn.cli import main


def test_refsnn_verify_quick(tmp_path, capsys):
    report, figs = tmp_path / "REPORT.md", tmp_path / "figures"
    rc = main(["verify", "--quick", "--report", str(report), "--fig-dir", str(figs)])
    out = capsys.readouterr().out
    assert rc == 0, out[-3000:]
    text = report.read_text()
    for claim in ("Theorem 1", "Lemma 1", "renewal", "S-ACE"):
        assert claim.lower() in text.lower(), claim
    assert len(list(figs.glob("*.png"))) >= 5


def test_refsnn_verify_out_dir(tmp_path, capsys):
    rc = main(["verify", "--quick", "--only", "theorem1", "--out", str(tmp_path / "o")])
    assert rc == 0, capsys.readouterr().out[-3000:]
    assert "Theorem 1" in (tmp_path / "o" / "REPORT.md").read_text()
    assert list((tmp_path / "o" / "figures").glob("theory_theorem1*.png"))
