"""Tape-based reverse-mode autograd. Knows nothing of spiking networks."""
from .tensor import (DEFAULT_DTYPE, Context, Node, Primitive, Tensor, check_float_dtype, is_grad_enabled,
                     no_grad, primitive, tensor, unbroadcast)
from .gradcheck import GradcheckError, gradcheck

__all__ = ["Tensor", "tensor", "no_grad", "is_grad_enabled", "primitive", "Primitive", "Context", "Node",
           "unbroadcast", "gradcheck", "GradcheckError", "check_float_dtype", "DEFAULT_DTYPE"]
