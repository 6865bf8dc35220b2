"""setuptools reads the project's metadata from pyproject.toml; this file only says which packages go in.

Every package under refsnn/ (found, so a new sub-package is never forgotten), plus the theory checks of
verify/ installed as ``refsnn.verify``: ``refsnn verify`` and ``refsnn figures`` then work from a plain
``pip install .``, and site-packages gets no top-level package with a name as generic as "verify".
"""
from setuptools import find_packages, setup

setup(packages=find_packages(include=["refsnn", "refsnn.*"]) + ["refsnn.verify"],
      package_dir={"refsnn.verify": "verify"})
