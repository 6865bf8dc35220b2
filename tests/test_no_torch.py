"""refsnn works without PyTorch: nothing outside refsnn.torch imports torch (issue 15)."""
import subprocess
import sys
import textwrap

BLOCKER = textwrap.dedent("""
    import importlib, pkgutil, sys

    class NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError(f"torch is blocked in this test ({name})")
            return None

    sys.meta_path.insert(0, NoTorch())
    import refsnn
    names = [m.name for m in pkgutil.walk_packages(refsnn.__path__, "refsnn.")
             if not (m.name == "refsnn.torch" or m.name.startswith("refsnn.torch.") or m.name.endswith("__main__"))]
    for name in names:
        importlib.import_module(name)
    assert "torch" not in sys.modules, "a module outside refsnn.torch imported torch"
    try:
        import refsnn.torch
    except ImportError as e:
        assert "pip install" in str(e), e
    else:
        raise AssertionError("refsnn.torch imported without torch")
    print(len(names))
""")


def test_refsnn_and_every_subpackage_import_without_torch():
    res = subprocess.run([sys.executable, "-c", BLOCKER], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert int(res.stdout.split()[-1]) > 30   # every module of refsnn (the packages and their modules) was imported
