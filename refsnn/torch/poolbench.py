"""Forward + backward of the port's max pool: ``python -m refsnn.torch.poolbench [--shape N,C,H,W] [--quick]``.

Compares three pools on one input (default 16x64x32x32, k3 s2 p1: a ResNet stem / an SPS stage):

    lean     TieMaxPool2d (refsnn.torch.pool.tie_grad: window offsets, strided slices)
    literal  the same forward with refsnn.torch.pool.tie_grad_literal (unfold, one-hot, fold)
    torch    F.max_pool2d

and prints, per pool, the median wall time of forward + backward and the peak memory of one forward +
backward (the tensors alive at once, input and its gradient included: torch's memory profiler on the CPU,
the allocator's peak on CUDA).  A benchmark, not a test: the numbers depend on the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings

import torch
from torch.nn import functional as F
from torch.profiler import ProfilerActivity, profile

from .pool import TIE, TieMaxPool2d, tie_grad_literal


class _Literal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, k, s, p):
        y = F.max_pool2d(x, k, s, p)
        ctx.save_for_backward(x, y)
        ctx.args = (k, s, p)
        return y

    @staticmethod
    def backward(ctx, gy):
        x, y = ctx.saved_tensors
        return tie_grad_literal(x, y, gy, *ctx.args, TIE), None, None, None


def pools(k: int, s: int, p: int) -> dict:
    """name -> callable x -> y, the three pools compared."""
    lean = TieMaxPool2d(k, s, p)
    return {"lean": lean, "literal": lambda x: _Literal.apply(x, k, s, p), "torch": lambda x: F.max_pool2d(x, k, s, p)}


def _step(pool, x, gy):
    x.grad = None
    pool(x).backward(gy)


def peak_bytes(pool, x, gy) -> int | None:
    """The largest total size of the tensors alive at once in one forward + backward: CUDA's allocator peak on a
    GPU, torch's memory profiler (``export_memory_timeline``) on the CPU; None where neither is available."""
    if x.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(x.device)
        _step(pool, x, gy)
        return torch.cuda.max_memory_allocated(x.device)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        _step(pool, x, gy)
    if not hasattr(prof, "export_memory_timeline"):   # pragma: no cover - a later torch may drop it
        return None
    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
        warnings.simplefilter("ignore")               # torch 2.13 deprecates it in favour of the CUDA-only API
        path = os.path.join(d, "timeline.json")
        prof.export_memory_timeline(path, device=str(x.device))
        with open(path) as f:
            _, sizes = json.load(f)
    return max((sum(row) for row in sizes), default=0)


def seconds(pool, x, gy, repeats: int) -> float:
    """Median wall time of forward + backward over ``repeats`` (after one warm-up)."""
    _step(pool, x, gy)
    times = []
    for _ in range(repeats):
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        _step(pool, x, gy)
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m refsnn.torch.poolbench", description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="16,64,32,32", help="N,C,H,W of the pool's input")
    ap.add_argument("--kernel", default="3,2,1", help="kernel_size,stride,padding")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="5 repeats")
    args = ap.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split(","))
    k, s, p = (int(v) for v in args.kernel.split(","))
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"--shape must be four positive integers N,C,H,W, got {args.shape!r}")
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, dtype=getattr(torch, args.dtype)).to(args.device).requires_grad_(True)
    gy = torch.randn(F.max_pool2d(x.detach(), k, s, p).shape, generator=g, dtype=x.dtype).to(args.device)
    in_mb = x.numel() * x.element_size() / 2 ** 20
    print(f"pool k{k} s{s} p{p} on {'x'.join(map(str, shape))} {args.dtype} ({in_mb:.1f} MB), {args.device}, "
          f"{args.threads} thread(s)")
    print(f"{'pool':8s} {'fwd+bwd ms':>11s} {'peak MB':>8s} {'peak/input':>10s}")
    for name, pool in pools(k, s, p).items():
        t = seconds(pool, x, gy, 5 if args.quick else args.repeats)
        m = peak_bytes(pool, x, gy)
        mem = f"{m / 2 ** 20:8.1f} {m / 2 ** 20 / in_mb:10.2f}" if m is not None else f"{'n/a':>8s} {'n/a':>10s}"
        print(f"{name:8s} {t * 1e3:11.2f} {mem}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
