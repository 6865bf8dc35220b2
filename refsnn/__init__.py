"""refsnn: the reference implementation of adaptive bit allocation for spiking neural networks.

Yao et al., "Towards Efficient and Accurate Spiking Neural Networks via Adaptive
Bit Allocation" (arXiv:2506.23717).  The specification is docs/method.md; each
equation is cited by number where it is computed.
"""
import os

# OpenBLAS (NumPy's BLAS) keeps its worker threads spinning for 2^28 cycles (~0.1 s) after every
# product by default; refsnn follows each product with numba kernels on the same cores, and on a
# shared 2-core machine the spinning threads took their time: a Spikformer-4-384 training step ran
# ~2x slower (refsnn bench train --against torch). 2^4 cycles makes them sleep at once. Read when
# NumPy loads OpenBLAS, so it works when refsnn is imported before NumPy (the CLI); a user's own setting wins.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from .autograd import Tensor, gradcheck, no_grad, tensor
from . import functional  # noqa: F401  (attaches the Python operators to Tensor)
from .random import default_generator, get_rng_state, manual_seed, set_rng_state

__version__ = "0.1.0"
__all__ = ["Tensor", "tensor", "no_grad", "gradcheck", "functional", "manual_seed", "default_generator",
           "get_rng_state", "set_rng_state", "__version__"]
