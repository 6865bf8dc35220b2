"""Batch normalisation over the global batch of a data-parallel run, on any device (docs/method.md §16).

torch's ``nn.SyncBatchNorm`` runs on GPUs only; this one uses a differentiable all-reduce
(``AllSum``) and so also runs on CPU with gloo.  In training mode, over the
ranks' batches together (per channel, dims N, H, W):

    mean = sum x / n,   var = sum (x - mean)^2 / n          (two all-reduces; biased, normalises)
    y    = (x - mean) / sqrt(var + eps) * weight + bias
    running_mean = (1 - m) running_mean + m mean,   running_var = (1 - m) running_var + m var n / (n - 1)

exactly what ``nn.BatchNorm2d`` computes on the concatenated global batch.  The backward pass
all-reduces the gradient of the two sums (the all-reduce is its own adjoint), so each rank's
parameter gradient, averaged by DDP, is that of the single-process loss.  Outside a process
group of more than one rank, or in eval mode, it is ``nn.BatchNorm2d``.  Names and state are
BatchNorm's (``weight``, ``bias``, ``running_mean``, ``running_var``).
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from .renewal import distributed
from .spikformer import TokenBatchNorm


class AllSum(torch.autograd.Function):
    """y = sum over ranks of x (on every rank); its adjoint is the same sum of the incoming gradients."""

    @staticmethod
    def forward(ctx, x):
        y = x.clone()
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
        return y

    @staticmethod
    def backward(ctx, g):
        g = g.clone()
        dist.all_reduce(g, op=dist.ReduceOp.SUM)
        return g


def _all_sum(t: torch.Tensor) -> torch.Tensor:
    return AllSum.apply(t)


class GlobalBatchNorm(nn.BatchNorm2d):
    """BatchNorm over the global batch of all ranks (see the module docstring); N,C or N,C,H,W inputs."""

    def _check_input_dim(self, x):
        if x.dim() not in (2, 4):
            raise ValueError(f"GlobalBatchNorm: expected a 2-D or 4-D input, got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and distributed()):
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        n = _all_sum(torch.tensor([x.numel() // x.shape[1]], dtype=x.dtype, device=x.device)).detach()
        mean = _all_sum(x.sum(dims)) / n
        xc = x - mean.reshape(shape)
        var = _all_sum((xc * xc).sum(dims)) / n
        with torch.no_grad():
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(m * mean.detach())
            self.running_var.mul_(1 - m).add_(m * var.detach() * n / (n - 1))
            self.num_batches_tracked.add_(1)
        y = xc / torch.sqrt(var.reshape(shape) + self.eps)
        return y * self.weight.reshape(shape) + self.bias.reshape(shape)


class GlobalTokenBatchNorm(GlobalBatchNorm):
    """``TokenBatchNorm`` over the global batch: (N, L, D) tokens, each feature over the N*L tokens of all ranks."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[2] != self.num_features:
            raise ValueError(f"GlobalTokenBatchNorm: expected (N, L, {self.num_features}) tokens, got {tuple(x.shape)}")
        n, L, D = x.shape
        return super().forward(x.reshape(n * L, D)).reshape(n, L, D)


def convert_global_batchnorm(model: nn.Module) -> nn.Module:
    """Replace every BatchNorm1d/2d of ``model`` (in place, state kept) by a ``GlobalBatchNorm`` (a Spikformer's
    ``TokenBatchNorm`` by a ``GlobalTokenBatchNorm``)."""
    for name, child in list(model.named_children()):
        if isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d)) and not isinstance(child, GlobalBatchNorm):
            cls = GlobalTokenBatchNorm if isinstance(child, TokenBatchNorm) else GlobalBatchNorm
            g = cls(child.num_features, eps=child.eps, momentum=child.momentum,
                                dtype=child.weight.dtype, device=child.weight.device)
            g.load_state_dict(child.state_dict())
            g.train(child.training)
            setattr(model, name, g)
        else:
            convert_global_batchnorm(child)
    return model
