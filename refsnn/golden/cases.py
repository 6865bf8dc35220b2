"""The golden cases: what each one feeds to refsnn, and how refsnn computes its outputs.

Every case has a *kind*; a kind is one ``compute_<kind>(params, arrays)`` function that
runs refsnn's public API on the case's ``input.*``, ``param.*`` and ``grad_output.*``
arrays (in the set's dtype) and returns the ``output.*`` and ``grad.*`` arrays.  The
same function writes a set (``refsnn golden write``) and re-computes it
(``refsnn golden check``), so the two cannot drift apart.

``make_<group>(seed)`` lists the cases of one group with their inputs; the inputs depend
on the seed and the case name only (not on the convention or the dtype), and are
float32-exact.  The groups live in three modules; ``runner.make_cases`` collects them all:

    op_cases.py      one operation at a time: weight quantizer, neuron, spiking layers, grid search, observers
    model_cases.py   whole models: regulating loss over tiny_resnet, cost model of the paper's architectures
    train_step.py    one training step of tiny_resnet

This module holds what they share: the ``Case`` record, the width bounds and two small helpers.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..autograd.tensor import Tensor, tensor

T_BOUND = 3
B_BOUND = 6
#: width parameters That giving T = 1, 2, 3 (Eq. 10), away from the rounding ties
T_HAT = {1: 0.77, 2: 1.78, 3: 3.31}


@dataclass
class Case:
    """One golden case before it is computed: its metadata and its input arrays (float64, float32-exact)."""
    name: str
    kind: str
    description: str
    equations: list
    params: dict
    inputs: dict
    #: float arrays kept in float64 in every set (refsnn computes them in float64)
    float64_arrays: tuple = ()
    #: achieved margins, written into params (see draw.py)
    margins: dict = field(default_factory=dict)


def leaf(a) -> Tensor:
    """A leaf tensor of ``a`` that requires a gradient."""
    return tensor(np.array(a), requires_grad=True)


def i64(a):
    """``a`` as an int64 array."""
    return np.asarray(a).astype(np.int64)
