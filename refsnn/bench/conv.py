"""Benchmark of the conv2d kernels: numba vs the NumPy twin vs PyTorch CPU (if installed).

One "step" is forward + backward-data + backward-weight in float32 (3 passes of
2*MACs FLOPs each, MACs = N*O*C*kh*kw*Ho*Wo, counted as a direct convolution even
where the numba path uses Winograd). The achieved GFLOP/s is compared with the
float32 matmul GFLOP/s of this machine measured in the same run (2048^3 np.dot).
All times are medians over the repeats, after an untimed warm-up (numba compile
excluded). numba and PyTorch are timed alternately, so both see the same machine load.

``--paths`` instead times the two fast paths of ``impl="numba"`` (Winograd and im2col, forward + the
fused backward) against each other, alternately, on the 3x3 stride-1 shapes of the SPS of
spikformer_4_384, of resnet20 and of the digits' tiny_resnet (float32), and shows which one the rule
``refsnn.kernels.conv.conv_path`` picks: the measurement behind that rule.

    python -m refsnn.bench.conv [--repeats 5] [--twin-repeats 1] [--quick] [--no-torch] [--paths]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from refsnn.bench._common import optional_torch

from refsnn.kernels.conv import conv2d_backward, conv2d_backward_data, conv2d_backward_weight, conv2d_forward, conv_path

SETTLE = 0.3  # seconds of sleep before each timed step (see _steady)

# (N, C, O, H=W, k, stride, padding)
SHAPES = [
    (32, 128, 128, 32, 3, 1, 1),
    (32, 256, 256, 16, 3, 1, 1),
    (32, 512, 512, 8, 3, 1, 1),
    (32, 128, 256, 32, 1, 2, 0),
]


# (N, C, O, H=W) of the 3x3 stride-1 convs of spikformer_4_384's SPS, resnet20 and tiny_resnet (batch of bench train)
PATH_SHAPES = [(16, 3, 48, 32), (16, 48, 96, 32), (16, 96, 192, 32), (16, 192, 384, 16), (16, 384, 384, 8),
               (16, 3, 128, 32), (16, 128, 128, 32), (16, 256, 256, 16), (16, 512, 512, 8),
               (64, 1, 16, 8), (64, 16, 16, 8), (64, 32, 32, 4)]


def _clock(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def _steady(fs):
    """Times of each f in fs, in steady state. Sleep first, so that BLAS / OpenMP worker
    threads still spinning from the previous measurement (ours or PyTorch's) do not steal
    this one's cores; then one untimed run, so that nobody pays for waking threads up."""
    time.sleep(SETTLE)
    for f in fs:
        f()
    return [_clock(f) for f in fs]


def matmul_gflops(n: int = 2048, repeats: int = 3) -> float:
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    np.dot(a, a)
    t = np.median([_clock(lambda: np.dot(a, a)) for _ in range(repeats)])
    return 2.0 * n**3 / t / 1e9


def _refsnn_step(x, w, gy, s, p, impl):
    def fwd():
        conv2d_forward(x, w, s, p, impl=impl)

    def bwd_data():
        conv2d_backward_data(gy, w, x.shape, s, p, impl=impl)

    def bwd_weight():
        conv2d_backward_weight(gy, x, w.shape, s, p, impl=impl)

    return fwd, bwd_data, bwd_weight


def _torch_step(torch, x, w, gy, s, p):
    tx = torch.from_numpy(x).requires_grad_(True)
    tw = torch.from_numpy(w).requires_grad_(True)
    tgy = torch.from_numpy(gy)

    def step():
        tx.grad = None
        tw.grad = None
        y = torch.nn.functional.conv2d(tx, tw, stride=s, padding=p)
        y.backward(tgy)

    return step


def paths_table(repeats: int) -> None:
    """Winograd vs im2col (forward + fused backward, float32), timed alternately; medians and minima in ms."""
    rng = np.random.default_rng(0)
    print("| shape (N, C->O, HxW) | Winograd ms (median / min) | im2col ms (median / min) | faster (by min) | rule |")
    print("|---|---|---|---|---|")
    for N, C, O, H in PATH_SHAPES:
        x = rng.standard_normal((N, C, H, H)).astype(np.float32)
        w = (rng.standard_normal((O, C, 3, 3)) / np.sqrt(9 * C)).astype(np.float32)
        gy = rng.standard_normal((N, O, H, H)).astype(np.float32)

        def step(path):
            return lambda: (conv2d_forward(x, w, 1, 1, path=path), conv2d_backward(gy, x, w, 1, 1, path=path))

        fs = [step("winograd"), step("im2col")]
        t = np.array([_steady(fs) for _ in range(repeats)]) * 1e3
        med, low = np.median(t, axis=0), t.min(axis=0)
        print(f"| {N}, {C}->{O}, {H}x{H} | {med[0]:.1f} / {low[0]:.1f} | {med[1]:.1f} / {low[1]:.1f} "
              f"| {'Winograd' if low[0] < low[1] else 'im2col'} | {conv_path(x.shape, w.shape, 1, 1)} |", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="refsnn bench conv", description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats for numba and torch (median)")
    ap.add_argument("--twin-repeats", type=int, default=1, help="timed repeats for the NumPy twin")
    ap.add_argument("--quick", action="store_true", help="batch 8, 2 repeats: a smoke run")
    ap.add_argument("--no-torch", action="store_true", help="do not time PyTorch even if installed")
    ap.add_argument("--paths", action="store_true", help="time Winograd against im2col on the models' 3x3 shapes "
                                                         "(the measurement behind refsnn.kernels.conv.conv_path)")
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.twin_repeats < 0:
        ap.error("--repeats must be >= 1 and --twin-repeats >= 0")
    repeats = 2 if args.quick else args.repeats
    if args.paths:
        print(f"load average at start: {os.getloadavg()[0]:.1f}; repeats={repeats}")
        paths_table(repeats)
        return 0
    batch = 8 if args.quick else None

    torch = optional_torch(args.no_torch)

    peak = matmul_gflops()
    print(f"float32 matmul (2048^3 np.dot): {peak:.0f} GFLOP/s; repeats={repeats}, "
          f"twin repeats={args.twin_repeats}; torch: {torch.__version__ if torch else 'not timed'}; "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}; "
          f"load average at start: {os.getloadavg()[0]:.1f}")
    print()
    print("| shape (N, C->O, HxW, k, s, p) | numba fwd / bwd-data / bwd-w ms | numba step ms "
          "| NumPy twin ms | torch ms | numba / torch | twin / numba | numba GFLOP/s | % of matmul |")
    print("|---|---|---|---|---|---|---|---|---|")
    worst = 0.0
    rng = np.random.default_rng(0)
    for N, C, O, H, k, s, p in SHAPES:
        N = batch or N
        x = rng.standard_normal((N, C, H, H)).astype(np.float32)
        w = (rng.standard_normal((O, C, k, k)) / np.sqrt(C * k * k)).astype(np.float32)
        Ho = (H + 2 * p - k) // s + 1
        gy = rng.standard_normal((N, O, Ho, Ho)).astype(np.float32)
        flops = 3 * 2.0 * N * O * C * k * k * Ho * Ho

        passes = _refsnn_step(x, w, gy, s, p, "numba")
        tstep = _torch_step(torch, x, w, gy, s, p) if torch else None
        for f in passes:  # warm-up: compile (or load the cache) and touch memory
            f()
        if tstep:
            tstep()
        times, ttimes = [], []
        for _ in range(repeats):
            times.append(_steady(passes))
            if tstep:
                ttimes.append(_steady([tstep])[0])
        parts = np.median(np.array(times), axis=0)
        step = float(np.median(np.sum(times, axis=1)))
        twin = float("nan")
        if args.twin_repeats:
            tp = _refsnn_step(x, w, gy, s, p, "numpy")
            twin = float(np.median([sum(_clock(f) for f in tp) for _ in range(args.twin_repeats)]))
        tt = float(np.median(ttimes)) if ttimes else float("nan")
        gf = flops / step / 1e9
        if ttimes:
            worst = max(worst, step / tt)
        print(f"| {N}, {C}->{O}, {H}x{H}, k{k}, s{s}, p{p} "
              f"| {parts[0] * 1e3:.1f} / {parts[1] * 1e3:.1f} / {parts[2] * 1e3:.1f} "
              f"| {step * 1e3:.1f} | {twin * 1e3:.0f} | {tt * 1e3:.1f} | {step / tt:.2f} "
              f"| {twin / step:.1f} | {gf:.0f} | {100 * gf / peak:.0f}% |")
    print(f"\nload average at end: {os.getloadavg()[0]:.1f}")
    if torch:
        print(f"worst numba / torch ratio: {worst:.2f} (target <= 2)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
