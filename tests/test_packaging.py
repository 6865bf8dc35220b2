"""Packaging: the package list, the TOML parser on Python 3.10, where verify writes, and a real
`pip install .` (not editable) into a fresh venv that runs `refsnn verify` from another directory."""
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_setup_installs_every_package_and_maps_verify(monkeypatch):
    import runpy

    import setuptools
    got = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kw: got.update(kw))
    monkeypatch.chdir(ROOT)
    runpy.run_path(str(ROOT / "setup.py"))
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "refsnn").rglob("__init__.py")
             if "__pycache__" not in p.parts}
    assert sorted(got["packages"]) == sorted(found | {"refsnn.verify"})
    assert got["package_dir"] == {"refsnn.verify": "verify"}
    assert "packages" not in PYPROJECT.get("tool", {}).get("setuptools", {})  # one place says it: setup.py


def test_tomllib_or_tomli_as_requires_python_says():
    project = PYPROJECT["project"]
    assert project["requires-python"] == ">=3.10"
    assert "tomli>=1.1; python_version < '3.11'" in project["dependencies"]
    # the 3.10 path: no tomllib, tomli (stood in for here by the standard library's parser) is used
    code = ("import sys, tomllib; sys.modules['tomli'] = tomllib; sys.modules['tomllib'] = None; "
            "from refsnn.config import load_config, bundled_config; "
            "print(load_config(bundled_config('demo')).model.name)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "tiny_resnet"


def test_verify_outputs_in_a_checkout_and_with_out(tmp_path):
    sys.path.insert(0, str(ROOT))
    try:
        from verify import runner
    finally:
        sys.path.remove(str(ROOT))
    assert runner.checkout_root() == str(ROOT)
    assert runner.default_outputs() == (str(ROOT / "verify" / "REPORT.md"), str(ROOT / "figures"))
    assert runner.default_outputs(str(tmp_path)) == (str(tmp_path / "REPORT.md"), str(tmp_path / "figures"))


def _can_build_offline() -> bool:
    """A wheel can be built without the network: setuptools >= 70.1 (bdist_wheel built in) or the wheel package."""
    spec = importlib.util.find_spec("setuptools")
    if spec is None:
        return False
    import setuptools
    major, minor = (int(x) for x in setuptools.__version__.split(".")[:2])
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


@pytest.mark.skipif(not _can_build_offline(), reason="needs setuptools >= 70.1 or wheel to build offline")
def test_pip_install_runs_verify_from_another_directory(tmp_path):
    """Not editable: a copy of the sources is installed into a venv that sees this environment's numpy/numba."""
    src = tmp_path / "src"
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "pyproject.toml",
                            "setup.py", "README.md", "LICENSE", "refsnn", "verify"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            (src / f).write_bytes((ROOT / f).read_bytes())
    venv = tmp_path / "venv"
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    pip = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                          str(src)], capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    site = Path(subprocess.run([str(py), "-c", "import refsnn, os; print(os.path.dirname(refsnn.__file__))"],
                               capture_output=True, text=True, check=True, cwd=tmp_path).stdout.strip())
    assert site.parent.name == "site-packages" and str(site).startswith(str(venv)), site
    assert not (site / "verify" / "REPORT.md").exists()
    sources = {f[len("refsnn/"):] for f in files if f.startswith("refsnn/") and f.endswith(".py")}
    sources |= {f for f in files if f.startswith("verify/") and f.endswith(".py")}
    assert {str(p.relative_to(site)) for p in site.rglob("*.py")} == sources  # every module, nothing else
    before = _tree(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([str(venv / "bin" / "refsnn"), "verify", "--quick", "--only", "theorem1", "--out", "out"],
                         cwd=elsewhere, capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (elsewhere / "out" / "REPORT.md").is_file() and list((elsewhere / "out" / "figures").glob("*.png"))
    where = subprocess.run([str(py), "-c", "import refsnn.verify.runner as r; print(r.default_outputs())"],
                           cwd=elsewhere, capture_output=True, text=True, check=True, env=env).stdout.strip()
    assert where == str(("refsnn-verify/REPORT.md", "refsnn-verify/figures"))
    assert _tree(site) == before  # nothing written into the installed package
    print(f"install + verify --quick --only theorem1: {time.time() - t0:.1f} s")


def test_importing_refsnn_first_sets_the_openblas_thread_timeout_unless_the_user_did():
    """refsnn/__init__.py: OpenBLAS threads sleep at once after a product (a user's own setting wins)."""
    import os
    import subprocess
    import sys
    code = "import refsnn, os; print(os.environ['OPENBLAS_THREAD_TIMEOUT'])"
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]  # this checkout's refsnn
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "4"
    out = subprocess.run([sys.executable, "-c", code], env={**env, "OPENBLAS_THREAD_TIMEOUT": "12"}, cwd=root,
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "12"
