"""The paper's ablations as one command (docs/method.md §15; ``refsnn ablate``).

    registry   the tables: rows (targets) x columns (variants), the paper's numbers, the orderings it claims
    cells      one training run per cell and seed, stored as JSON (resumable), progress and time left
    ann        Table 8's mixed-precision ANN (Uhlich et al. 2019) on tiny_resnet
    report     ABLATIONS.md and the accuracy-vs-Bit-Budget figures
    run        the command
"""
from .registry import TABLES, Row, Table, Variant

__all__ = ["TABLES", "Row", "Table", "Variant"]
