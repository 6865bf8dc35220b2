"""Helpers shared by the benchmarks."""
from __future__ import annotations


def optional_torch(disabled: bool = False, threads: int = 2):
    """PyTorch as an optional yardstick (never a dependency): the module, or None if absent or disabled."""
    if disabled:
        return None
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch
