"""Benchmark of the spiking-neuron kernels: forward + backward of Eq. 12-17, 20.

    python -m refsnn.bench.neuron [--quick] [--repeats R] [--no-torch] [--sequential]

Times one forward + backward pass of the refined neuron (positive domain, rounding,
tau = 1, paper convention: the defaults) on a float32 input of shape 32x128x32x32,
for T = 1, 2, 3 and B_s = 1..6 (the same width at every step), with

* ``impl="numba"`` (the fused parallel kernels),
* ``impl="numpy"`` (the literal NumPy twin),
* the same equations in PyTorch eager (hand-written backward), when torch imports
  (``torch.set_num_threads(2)``); only a yardstick, never used by the library.

It also reports the memory bandwidth the numba pass reaches: the bytes a pass must
move at least -- forward reads I and writes v (T maps) and y, backward reads gy and v
and writes gI, so ``2 (T + 2) N`` floats -- divided by its time, against the bandwidth
of a large ``np.copyto`` (read + write) measured in the same run. Times are the best
of ``--repeats`` runs after a warm-up. Prints a Markdown table.

``--sequential`` times the sequential neuron instead (refsnn.kernels.neuron_seq, docs/method.md §14):
a current of shape 32x128x32x32 per step, T steps, no squeeze; a pass must move at least
``6 T N`` floats (forward reads I, writes Shat and v; backward reads dL/dShat and v, writes dL/dI).
No torch yardstick there.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from refsnn.bench._common import optional_torch

from refsnn.kernels import neuron as nk
from refsnn.kernels import neuron_seq as ns

SHAPE = (32, 128, 32, 32)


def _best(fn, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _copy_bandwidth(repeats: int) -> float:
    """Bytes per second of a large np.copyto (bytes read + bytes written)."""
    src = np.ones(2**25, dtype=np.float32)  # 128 MiB
    dst = np.empty_like(src)
    np.copyto(dst, src)
    t = _best(lambda: np.copyto(dst, src), max(repeats, 3))
    return 2 * src.nbytes / t


def _refsnn_pass(I, gy, v_th, bits, T, impl):
    y, v = nk.neuron_forward(I, v_th, bits, T, impl=impl)
    return y, v, nk.neuron_backward(gy, v, v_th, bits, T, impl=impl)


def _seq_pass(I, gy, v_th, bits, T, impl):
    Shat, v = ns.seq_neuron_forward(I[:T], v_th, bits, impl=impl)
    return Shat, v, ns.seq_neuron_backward(gy[:T], v, v_th, bits, impl=impl)[:3]


def _torch_pass(torch, I, gy, v_th, bits, T):
    """Eq. 12-14 forward and the paper's backward (Eq. 16-17, 20, A.6-A.7, 6.6) in torch eager."""
    N = I.numel()
    ln2 = math.log(2.0)
    zeros = torch.zeros_like(I)
    v, Shat, total, vs = zeros, zeros, zeros, []
    for t in range(T):
        v = v - Shat + I  # Eq. 13, tau = 1
        vs.append(v)
        q_max = float(2 ** int(bits[t]) - 1)
        S = torch.clamp(torch.floor(v / float(v_th[t]) + 0.5), 0.0, q_max)  # Eq. 14
        Shat = float(v_th[t]) * S
        total = total + Shat
    y = total / T  # Eq. 12
    gv_next, gI = zeros, zeros
    g_vth, g_bits = [0.0] * T, [0.0] * T
    for t in reversed(range(T)):
        vt, q_max = float(v_th[t]), float(2 ** int(bits[t]) - 1)
        u = vs[t] / vt
        gS = gy / T - gv_next
        S = torch.clamp(torch.floor(u + 0.5), 0.0, q_max)
        inside = (u >= 0) & (u <= q_max)
        h = torch.where(inside, S - u, torch.where(u > q_max, q_max, 0.0))
        k = torch.where(u > q_max, vt * (q_max + 1) * ln2, 0.0)
        g = 1.0 / math.sqrt(N * q_max)
        g_vth[t] = g * (gS * h).sum()
        g_bits[t] = g * (gS * k).sum()
        gv = gS * inside.to(I.dtype) + gv_next
        gI = gI + gv
        gv_next = gv
    return y, gI, g_vth, g_bits


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="refsnn bench neuron", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="T in {1, 3}, B_s in {1, 4}, 2 repeats")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed runs per case, best kept (the NumPy twin: half as many); default 5, quick 2")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch eager yardstick")
    parser.add_argument("--sequential", action="store_true",
                        help="time the sequential neuron (a current per step, no squeeze) instead")
    args = parser.parse_args(argv)
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 5)
    if repeats < 1:
        parser.error(f"--repeats must be >= 1, got {repeats}")
    Ts = (1, 3) if args.quick else (1, 2, 3)
    Bs = (1, 4) if args.quick else tuple(range(1, 7))

    seq = args.sequential
    torch = None if seq else optional_torch(args.no_torch)
    one_pass = _seq_pass if seq else _refsnn_pass

    rng = np.random.default_rng(0)
    shape = ((max(Ts),) if seq else ()) + SHAPE
    I = rng.standard_normal(shape, dtype=np.float32)
    gy = rng.standard_normal(shape, dtype=np.float32)
    v_th = np.array([0.05, 0.07, 0.09], dtype=np.float32)
    N = int(np.prod(SHAPE))

    # warm-up (numba compilation or cache load, first-touch of memory) and a bit-for-bit check
    small = (I[..., :2, :, :, :], gy[..., :2, :, :, :])
    for T in Ts:
        bits = np.full(3, 4, dtype=np.int64)
        a = one_pass(*small, v_th, bits, T, "numba")
        b = one_pass(*small, v_th, bits, T, "numpy")
        same = all(np.array_equal(x, z) for x, z in zip(a[:2] + a[2], b[:2] + b[2]))
        if not same:
            print("ERROR: numba and numpy twin disagree")
            return 1
    one_pass(I, gy, v_th, np.full(3, 4, dtype=np.int64), max(Ts), "numba")
    if torch is not None:
        tI, tg = torch.from_numpy(I), torch.from_numpy(gy)
        _torch_pass(torch, tI, tg, v_th, np.full(3, 4), 1)

    bw_copy = _copy_bandwidth(repeats)
    print(f"# bench neuron{' --sequential' if seq else ''}: forward + backward, float32 "
          f"{'T x ' if seq else ''}{'x'.join(map(str, SHAPE))}, positive domain, rounding, tau = 1, paper convention")
    print()
    print(f"best of {repeats} runs; copy bandwidth (np.copyto, 128 MiB, read + write) = {bw_copy / 1e9:.1f} GB/s; "
          f"torch {'%s, 2 threads' % torch.__version__ if torch is not None else 'not used'}")
    print()
    head = "| T | B_s | numba ms | NumPy twin ms | twin / numba |"
    sep = "|---|---|---|---|---|"
    if torch is not None:
        head += " torch ms | torch / numba |"
        sep += "---|---|"
    head += " numba GB/s | % of copy |"
    sep += "---|---|"
    print(head)
    print(sep)
    ratios = []
    for T in Ts:
        for B in Bs:
            bits = np.full(3, B, dtype=np.int64)
            t_nb = _best(lambda: one_pass(I, gy, v_th, bits, T, "numba"), repeats)
            t_np = _best(lambda: one_pass(I, gy, v_th, bits, T, "numpy"), max(1, repeats // 2))
            ratios.append(t_np / t_nb)
            row = f"| {T} | {B} | {1e3 * t_nb:.1f} | {1e3 * t_np:.1f} | {t_np / t_nb:.1f}x |"
            if torch is not None:
                t_pt = _best(lambda: _torch_pass(torch, tI, tg, v_th, bits, T), repeats)
                row += f" {1e3 * t_pt:.1f} | {t_pt / t_nb:.1f}x |"
            moved = (6 * T if seq else 2 * (T + 2)) * N * I.itemsize
            row += f" {moved / t_nb / 1e9:.1f} | {100 * moved / t_nb / bw_copy:.0f}% |"
            print(row, flush=True)
    geo = math.exp(sum(map(math.log, ratios)) / len(ratios))
    print()
    print(f"geometric mean twin / numba = {geo:.1f}x (target >= 5x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
