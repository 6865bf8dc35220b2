"""refsnn: the reference implementation of adaptive bit allocation for spiking neural networks.

Yao et al., "Towards Efficient and Accurate Spiking Neural Networks via Adaptive
Bit Allocation" (arXiv:2506.23717).  The specification is docs/method.md; each
equation is cited by number where it is computed.
"""
from .autograd import Tensor, gradcheck, no_grad, tensor
from . import functional  # noqa: F401  (attaches the Python operators to Tensor)
from .random import default_generator, get_rng_state, manual_seed, set_rng_state

__version__ = "0.1.0"
__all__ = ["Tensor", "tensor", "no_grad", "gradcheck", "functional", "manual_seed", "default_generator",
           "get_rng_state", "set_rng_state", "__version__"]
