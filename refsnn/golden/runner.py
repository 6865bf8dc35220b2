"""The golden cases as one list: which function computes each kind of case and which makes each group.

    make_cases(seed, patterns)   every case with its inputs, in manifest order
    search_model_seeds()         the model seeds the margin search would choose on this machine
    run_case(kind, params, ...)  compute a case with refsnn: its ``output.*`` and ``grad.*`` arrays

Writing a set is ``refsnn.golden.write``, re-computing and comparing it ``refsnn.golden.check``.
"""
from __future__ import annotations

import fnmatch

import numpy as np

from ..method.conventions import Convention, get_convention
from . import cases_seq as CS
from . import model_cases as M
from . import op_cases as O
from .store import CONVENTIONS, GoldenError
from .spikformer import compute_ssa, make_ssa, make_train_step_spikformer
from . import cases_release as CR
from .train_step import MODEL_SEEDS, compute_train_step, make_train_step, searching

DEFAULT_SEED = 23717
#: the content revision of the sets (docs/golden.md, "Revisions"): 2 = convention rows C6-C11
REVISION = 2
DTYPES = ("float64", "float32")
INPUT_PREFIXES = ("input", "param", "grad_output")
RESULT_PREFIXES = ("output", "grad")

#: the function that computes each kind of case (the same one writes and re-computes a set)
COMPUTE = {"weight_quant": O.compute_weight_quant, "neuron": O.compute_neuron,
           "spiking_layer": O.compute_spiking_layer, "regulate": M.compute_regulate,
           "grid_search": O.compute_grid_search, "observer": O.compute_observer, "cost": M.compute_cost,
           "train_step": compute_train_step, "ssa": compute_ssa, "seq_neuron": CS.compute_seq_neuron,
           "seq_spiking_layer": CS.compute_seq_spiking_layer, "to_frames": CS.compute_to_frames}
#: the groups in manifest order: (maker, the names of its cases, or None: known only by running the maker)
MAKERS = ((O.make_weight_quant, None), (O.make_neurons, None), (O.make_layers, tuple(O.LAYERS)),
          (M.make_regulate, ("regulating_loss_tiny_resnet",)), (O.make_grids, tuple(O.GRIDS)),
          (O.make_observers, tuple(O.OBSERVERS)), (M.make_costs, tuple(M.COSTS)),
          (make_train_step, ("train_step_tiny_resnet",)), (make_ssa, ("ssa_block",)),
          (make_train_step_spikformer, ("train_step_tiny_spikformer",)), (CS.make_seq_neurons, None),
          (CS.make_seq_layers, ("seq_spiking_conv",)), (CS.make_frames, ("to_frames",)),
          # golden revision 2: convention rows C6-C10 (cases_release.py)
          (CR.make_weight_quant, tuple(CR.WEIGHT_QUANT)), (CR.make_grids, tuple(CR.GRIDS)),
          (CR.make_observers, tuple(CR.OBSERVERS)))


def cast_inputs(arrays: dict, dtype, float64_arrays) -> dict:
    """The arrays in the set's ``dtype`` (floats; float64 for ``float64_arrays``) or int64 (integers)."""
    out = {}
    for k, v in arrays.items():
        v = np.asarray(v)
        if v.dtype.kind == "f":
            v = v.astype(np.float64 if k in float64_arrays else dtype)
        elif v.dtype.kind in "iu":
            v = v.astype(np.int64)
        out[k] = v
    return out


def convention_of(name) -> Convention:
    """A golden set's convention, named in its manifest and in the case parameters -> the Convention object
    (the golden sets' one boundary for names; the layers resolve theirs in ``SpikingConfig``)."""
    return get_convention(name)


def run_case(kind: str, params: dict, inputs: dict, dtype, float64_arrays=(), compute=None) -> dict:
    """Compute a case with refsnn (or with ``compute``, another implementation's ``{kind: function}``, e.g.
    ``refsnn.torch.golden.COMPUTE``): its ``output.*`` and ``grad.*`` arrays, in the set's dtype."""
    compute = COMPUTE if compute is None else compute
    if kind not in compute:
        raise GoldenError(f"unknown case kind {kind!r}; this implementation knows {sorted(compute)}")
    arrays = cast_inputs({k: v for k, v in inputs.items() if k.split(".", 1)[0] in INPUT_PREFIXES},
                          np.dtype(dtype), float64_arrays)
    # the case's convention by name (as in the manifest) -> the Convention the method functions take
    res = compute[kind](dict(params, convention=convention_of(params["convention"])), arrays)
    out = {}
    for k, v in res.items():
        if v is None:
            continue
        v = np.asarray(v)
        if v.dtype.kind == "f":
            v = v.astype(np.float64 if k in float64_arrays else dtype)
        elif v.dtype.kind in "iu":
            v = v.astype(np.int64)
        out[k] = np.require(v, requirements="C")
    return out


def make_cases(seed: int = DEFAULT_SEED, patterns=None) -> list:
    """Every case (with its inputs), in manifest order; ``patterns`` (fnmatch globs) keep a subset."""
    out = []
    for maker, names in MAKERS:
        if patterns and names is not None and not any(fnmatch.fnmatchcase(n, p) for n in names for p in patterns):
            continue
        for case in maker(seed):
            if not patterns or any(fnmatch.fnmatchcase(case.name, p) for p in patterns):
                out.append(case)
    return out


def search_model_seeds(seed: int = DEFAULT_SEED) -> dict:
    """{case name: (model seed, margins)}: what the model-seed search chooses on this machine for every case
    whose rounded values come from a model (the cases themselves use ``MODEL_SEEDS``)."""
    with searching() as found:
        make_cases(seed)
    return dict(sorted(found.items()))
