"""Numerical and analytical checks of the theory of Yao et al. (arXiv:2506.23717),
docs/method.md §8 (step-size mismatch: flooring vs rounding, Theorem 1,
Lemma 1, the bidirectional version, accumulation, expected error increase).

Each claim has its own runnable module (``python -m verify.theorem1``);
``python -m verify.runner --full`` runs them all and writes ``verify/REPORT.md``
and the figures. This package uses only NumPy, SciPy and matplotlib and does not
import ``refsnn``, so it is an independent reading of the paper.
"""

from .common import Result

__all__ = ["Result"]
