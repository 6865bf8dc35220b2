"""Differentiable ops: a forward (calling a kernel where there is a hot loop) plus its VJP."""
from .arith import (abs, add, amax, argmax, concatenate, div, exp, flatten, getitem, log, matmul, mean, mul, neg, pow,
                    relu, reshape, sub, sum, transpose)
from .attention import map_to_tokens, merge_heads, split_heads, token_batch_norm
from .nn import (adaptive_avg_pool2d, avg_pool2d, batch_norm, conv2d, cross_entropy, dropout, linear, log_softmax,
                 max_pool2d, mse_loss, softmax)

__all__ = ["add", "sub", "mul", "div", "neg", "pow", "exp", "log", "abs", "relu", "sum", "mean", "amax", "argmax",
           "reshape", "transpose", "flatten", "concatenate", "getitem", "matmul", "linear", "conv2d", "batch_norm",
           "avg_pool2d", "max_pool2d", "adaptive_avg_pool2d", "dropout", "softmax", "log_softmax", "cross_entropy",
           "mse_loss", "split_heads", "merge_heads", "map_to_tokens", "token_batch_norm"]
