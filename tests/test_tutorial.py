"""The runnable documents run: the ```python blocks of docs/tutorial.md and docs/checkpoint.md, in order, in
one namespace per document (their own asserts check the results; blocks fenced ```python torch run only
when PyTorch is importable).

Also checks the cross-references the code relies on: every section of docs/method.md that a document
cites exists, and every equation number of the paper that refsnn implements appears in docs/method.md.
"""
import os
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
TUTORIAL = DOCS / "tutorial.md"
BLOCK = re.compile(r"^```python( torch)?\n(.*?)^```$", re.S | re.M)


def have_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def python_blocks(text: str, torch: bool = True) -> list:
    """The bodies of the ```python fences of a Markdown text, in order (```python torch ones only if ``torch``)."""
    return [code for tag, code in BLOCK.findall(text) if torch or not tag]


def run_blocks(doc: Path, tmp_path, monkeypatch, capsys) -> str:
    """Execute the document's blocks in one namespace from an empty directory; return what they printed."""
    blocks = python_blocks(doc.read_text(), torch=have_torch())
    monkeypatch.chdir(tmp_path)  # anything a block writes by mistake lands in a temporary directory
    namespace = {"__name__": f"__{doc.stem}__"}
    for i, code in enumerate(blocks, 1):
        try:
            exec(compile(code, f"docs/{doc.name} block {i}", "exec"), namespace)
        except Exception as exc:  # name the block, so a failure says where the document broke
            out = capsys.readouterr().out
            pytest.fail(f"docs/{doc.name} python block {i} failed: {type(exc).__name__}: {exc}\n"
                        f"--- block ---\n{code}\n--- output so far ---\n{out[-2000:]}")
    assert not os.listdir(tmp_path), f"docs/{doc.name} left files behind in the working directory"
    return capsys.readouterr().out


def test_python_blocks_are_found():
    text = "x\n```python\na = 1\n```\n```text\nno\n```\n```python torch\nt = 2\n```\n```python\nb = a + 1\n```\n"
    assert python_blocks(text) == ["a = 1\n", "t = 2\n", "b = a + 1\n"]
    assert python_blocks(text, torch=False) == ["a = 1\n", "b = a + 1\n"]


def test_tutorial_runs(tmp_path, monkeypatch, capsys):
    assert len(python_blocks(TUTORIAL.read_text())) >= 8, "the tutorial lost its code blocks"
    out = run_blocks(TUTORIAL, tmp_path, monkeypatch, capsys)
    assert "dL/dV_th^t" in out and "arrays reproduced" in out


def test_checkpoint_doc_runs(tmp_path, monkeypatch, capsys):
    out = run_blocks(DOCS / "checkpoint.md", tmp_path, monkeypatch, capsys)
    assert "model arrays" in out and "test accuracy" in out
    if have_torch():
        assert "torch == refsnn" in out


def test_cited_method_sections_exist():
    method = (DOCS / "method.md").read_text()
    anchors = set(re.findall(r"^#+ (§[0-9.]+) ", method, re.M))
    for doc in ("tutorial.md", "checkpoint.md"):
        cited = set(re.findall(r"docs/method\.md (§[0-9]+(?:\.[0-9]+)?)", (DOCS / doc).read_text()))
        assert cited <= anchors, f"docs/{doc} cites sections missing from docs/method.md: {sorted(cited - anchors)}"
    # the numbering the ~140 code comments rely on: sections 1-16 with these subsections
    kept = {f"§{n}" for n in range(1, 17)} | {"§5.1", "§5.2", "§5.3"} | {f"§6.{k}" for k in range(1, 7)}
    assert kept <= anchors, f"docs/method.md lost section anchors {sorted(kept - anchors)}"


def test_every_equation_number_is_in_the_method_doc():
    method = (DOCS / "method.md").read_text()
    numbers = ([f"Eq. {n}" for n in range(1, 26)] + [f"App. A.{n}" for n in (1, 2, 3, 4)]
               + [f"App. A.{n}" for n in range(6, 14)] + ["Alg. 1", "Alg. 2", "Alg. A.1"])
    missing = [n for n in numbers if not re.search(re.escape(n) + r"(?![0-9])", method)]
    assert not missing, f"docs/method.md does not state {missing}"


def test_every_figure_has_a_caption():
    figures = sorted(p.name for p in (DOCS.parent / "figures").glob("*.png"))
    text = (DOCS / "figures.md").read_text()
    captioned = set(re.findall(r"^### `([^`]+\.png)`", text, re.M))
    assert figures, "figures/ holds no PNG"
    assert not set(figures) - captioned, f"figures without a caption in docs/figures.md: {sorted(set(figures) - captioned)}"
    assert not captioned - set(figures), f"docs/figures.md captions missing files: {sorted(captioned - set(figures))}"


def test_readme_snippet_shows_what_it_says(tmp_path, monkeypatch, capsys):
    """The README's library snippet runs, and every gradient it prints is non-zero, as its comment claims."""
    readme = DOCS.parent / "README.md"
    out = run_blocks(readme, tmp_path, monkeypatch, capsys)
    numbers = [float(v) for v in re.findall(r"-?\d+\.\d+(?:e-?\d+)?", out)]
    assert len(numbers) >= 6, out
    assert all(v != 0.0 for v in numbers), f"a printed gradient is zero: {out}"
