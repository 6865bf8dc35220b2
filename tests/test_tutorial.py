"""docs/tutorial.md runs: its ```python blocks, in order, in one namespace (the tutorial's own asserts check it).

Also checks that the tutorial and the method document keep the cross-references the code relies on:
every section anchor of docs/method.md that the tutorial cites exists.
"""
import os
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
TUTORIAL = DOCS / "tutorial.md"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)


def python_blocks(text: str) -> list:
    """The bodies of the ```python fences of a Markdown text, in order."""
    return BLOCK.findall(text)


def test_python_blocks_are_found():
    blocks = python_blocks("x\n```python\na = 1\n```\n```text\nno\n```\n```python\nb = a + 1\n```\n")
    assert blocks == ["a = 1\n", "b = a + 1\n"]


def test_tutorial_runs(tmp_path, monkeypatch, capsys):
    blocks = python_blocks(TUTORIAL.read_text())
    assert len(blocks) >= 8, "the tutorial lost its code blocks"
    monkeypatch.chdir(tmp_path)  # anything the tutorial writes lands in a temporary directory
    namespace = {"__name__": "__tutorial__"}
    for i, code in enumerate(blocks, 1):
        try:
            exec(compile(code, f"docs/tutorial.md block {i}", "exec"), namespace)
        except Exception as exc:  # name the block, so a failure says where the tutorial broke
            out = capsys.readouterr().out
            pytest.fail(f"docs/tutorial.md python block {i} failed: {type(exc).__name__}: {exc}\n"
                        f"--- block ---\n{code}\n--- output so far ---\n{out[-2000:]}")
    out = capsys.readouterr().out
    assert "dL/dV_th^t" in out and "arrays reproduced" in out
    assert not os.listdir(tmp_path), "the tutorial left files behind in the working directory"


def test_cited_method_sections_exist():
    method = (DOCS / "method.md").read_text()
    anchors = set(re.findall(r"^#+ (§[0-9.]+)", method, re.M))
    cited = set(re.findall(r"docs/method\.md (§[0-9]+(?:\.[0-9]+)?)", TUTORIAL.read_text()))
    assert cited, "the tutorial cites no section of docs/method.md"
    assert cited <= anchors, f"sections cited but missing from docs/method.md: {sorted(cited - anchors)}"
