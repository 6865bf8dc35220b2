"""Benchmark of whole training steps: seconds per step (forward, loss incl. Eq. 21, backward, SGD update).

Cases (each in float32 and float64):

    resnet20     batch 16, random 3x32x32 inputs, 10 classes   (the paper's CIFAR model)
    tiny_resnet  batch 64, the embedded digits (1x8x8)          (the demo's model)
    tiny_resnet_seq  batch 64, the event digits (T = 4 frames of 2x16x16), sequential mode
                 (docs/method.md §14; the model of ``refsnn demo --events``: stem stride 2)

Per case: one untimed warm-up step (LSQ initialisation, numba compilation), then
``--repeats`` timed steps; the median and the minimum are reported.  Memory: the
peak of memory allocated by Python and NumPy during one more step, traced with
``tracemalloc`` (not timed), and the process's peak resident set size
(``ru_maxrss``, a high-water mark over the whole run, so it only grows down the table).

Widths do not change during a few steps, so the observers of Alg. 1 do not fire:
these are steps without a step-size renewal (a renewal adds one grid search of
K candidates on the data of the quantizer that changed).

With ``--against torch`` every case is also timed in the PyTorch port (``refsnn.torch.bench``: the
same model, batch and step) with as many torch threads as numba has, one port step after each refsnn
step (so that on a shared machine both see the same load), and the table gets the port's median and
minimum and the ratios refsnn / port of the medians and of the minima per model and dtype, for every
case (Spikformer and the sequential ``tiny_resnet_seq`` included: the port has both).

    python -m refsnn.bench.train [--quick] [--repeats N] [--models resnet20,tiny_resnet,spikformer_4_384]
                                 [--dtypes float32,float64] [--against torch]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import tracemalloc

import numpy as np

CASES = {"resnet20": {"batch": 16, "data": "random 3x32x32"}, "tiny_resnet": {"batch": 64, "data": "digits 1x8x8"},
         "spikformer_4_384": {"batch": 16, "data": "random 3x32x32"},
         "tiny_resnet_seq": {"batch": 64, "data": "event digits 4x2x16x16"}}
LARGE = ("resnet20", "spikformer_4_384")  # fewer repeats by default
#: the sequential case: T = 4 fixed, no squeeze (docs/method.md §14), as in refsnn/configs/demo_events.toml
SEQ_T = 4
#: cases the PyTorch port cannot run: timed in refsnn only under --against torch (none: the port runs every case)
NO_TORCH = ()


def case_batch(model_name: str, dt, batch: int) -> tuple:
    """The fixed batch of a case: the first digits (or event digits), or random 3x32x32 images with random labels."""
    if model_name == "tiny_resnet_seq":
        from refsnn.data import load_event_digits
        ds = load_event_digits("train", T=SEQ_T, dtype=dt)
        return ds.x[:batch], ds.y[:batch]
    if model_name == "tiny_resnet":
        from refsnn.data import load_digits
        ds = load_digits("train", dtype=dt)
        return ds.x[:batch], ds.y[:batch]
    rng = np.random.default_rng(0)
    return rng.standard_normal((batch, 3, 32, 32)).astype(dt), rng.integers(0, 10, batch).astype(np.int64)


def model_kwargs(model_name: str) -> dict:
    """The ``get_model`` options of a case besides name, classes, seed and dtype (the sequential case's config)."""
    if model_name != "tiny_resnet_seq":
        return {}
    from refsnn.nn import SpikingConfig
    return {"config": SpikingConfig(temporal_mode="sequential", time_steps=float(SEQ_T), time_bound=SEQ_T),
            "in_channels": 2, "stem_stride": 2}


def refsnn_step(model_name: str, dtype: str, batch: int):
    """A closure that runs one training step of ``model_name`` on a fixed batch."""
    from refsnn import functional as F
    from refsnn.autograd.tensor import Tensor
    from refsnn.method.regulate import Penalties, Targets, regulating_loss
    from refsnn.models import get_model
    from refsnn.nn import spiking_layers
    from refsnn.optim import SGD, param_groups

    dt = np.dtype(dtype)
    x, y = case_batch(model_name, dt, batch)
    model = get_model(model_name.replace("_seq", ""), num_classes=10, seed=0, dtype=dt, **model_kwargs(model_name))
    layers = [l for _, l in spiking_layers(model)]
    opt = SGD(param_groups(model, weight_decay=1e-4), momentum=0.9)
    targets, penalties = Targets(2, 2, 1), Penalties()
    model.train()

    def step():
        logits = model(Tensor(x))
        loss = F.cross_entropy(logits, y)
        reg, _ = regulating_loss(layers, targets, penalties)
        loss = loss + reg
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss.data)

    return step


def _clock(step) -> float:
    t = time.perf_counter()
    step()
    return time.perf_counter() - t


#: models with a hand-written plain-PyTorch step (``--against torch-eager``, refsnn.bench.torch_spikformer)
EAGER = ("spikformer_4_384",)


def torch_step(model_name: str, dtype: str, batch: int | None = None, against: str = "torch") -> tuple:
    """(the same step in the PyTorch port, ``refsnn.torch.bench``, or with ``against="torch-eager"`` in the
    hand-written plain-PyTorch Spikformer of ``refsnn.bench.torch_spikformer``; its thread count = numba's)."""
    import numba
    batch = batch or CASES[model_name]["batch"]
    x, y = case_batch(model_name, np.dtype(dtype), batch)
    threads = numba.get_num_threads()
    if against == "torch-eager":
        import torch
        from .torch_spikformer import build_step
        torch.set_num_threads(threads)
        return build_step(torch, x, y.astype(np.int64), dtype=dtype), threads
    from refsnn.torch.bench import step_fn
    return step_fn(model_name, dtype, x, y, threads), threads


def run_case(model_name: str, dtype: str, repeats: int, batch: int | None = None, against: str | None = None) -> dict:
    """One row: refsnn's step (and with ``against="torch"`` the port's step, timed alternately with it, so that
    both see the same load of a shared machine), medians and minima, then refsnn's memory peaks."""
    batch = batch or CASES[model_name]["batch"]
    step = refsnn_step(model_name, dtype, batch)
    other, threads = torch_step(model_name, dtype, batch, against) if against else (None, 0)
    warm = _clock(step)  # warm-up: LSQ initialisation, numba compilation
    twarm = _clock(other) if other else 0.0
    times, ttimes = [], []
    for _ in range(repeats):
        times.append(_clock(step))
        if other:
            ttimes.append(_clock(other))
    tracemalloc.start()
    step()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    rss_mb = rss / 1024 if sys.platform != "darwin" else rss / 2 ** 20
    med = float(np.median(times))
    row = {"model": model_name, "batch": batch, "data": CASES[model_name]["data"], "dtype": dtype,
           "repeats": repeats, "warmup_s": warm, "median_s": med, "min_s": float(min(times)),
           "samples_per_s": batch / med, "peak_traced_mb": peak / 1e6, "max_rss_mb": rss_mb}
    if other:
        row.update({"torch_threads": threads, "torch_warmup_s": twarm, "torch_median_s": float(np.median(ttimes)),
                    "torch_min_s": float(min(ttimes))})
    return row


def format_table(rows: list) -> str:
    head = ("model", "batch", "dtype", "s/step (median)", "min", "samples/s", "warm-up s", "peak traced MB",
            "max RSS MB")
    cells = [(r["model"], str(r["batch"]), r["dtype"], f"{r['median_s']:.3f}", f"{r['min_s']:.3f}",
              f"{r['samples_per_s']:.1f}", f"{r['warmup_s']:.2f}", f"{r['peak_traced_mb']:.0f}",
              f"{r['max_rss_mb']:.0f}") for r in rows]
    if rows and all("torch_median_s" in r for r in rows):
        head += ("torch s/step", "torch min", "refsnn / torch", "ratio of minima")
        cells = [c + (f"{r['torch_median_s']:.3f}", f"{r['torch_min_s']:.3f}",
                      f"{r['median_s'] / r['torch_median_s']:.2f}", f"{r['min_s'] / r['torch_min_s']:.2f}")
                 for c, r in zip(cells, rows)]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) if i < 3 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths))),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
              for row in cells]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="refsnn bench train", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 timed steps per case (1 for resnet20, spikformer_4_384)")
    ap.add_argument("--repeats", type=int, default=None, help="timed steps per case (default 5; resnet20, "
                                                             "spikformer_4_384: 3)")
    ap.add_argument("--models", default="tiny_resnet,tiny_resnet_seq,resnet20",
                    help="comma-separated: tiny_resnet,tiny_resnet_seq,resnet20,spikformer_4_384")
    ap.add_argument("--dtypes", default="float32,float64", help="comma-separated: float32,float64")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    ap.add_argument("--against", choices=("torch", "torch-eager"), default=None,
                    help="also time the same step in the PyTorch port (torch: refsnn.torch; needs the torch extra) "
                         "or, for spikformer_4_384 only, in a hand-written plain-PyTorch step (torch-eager: "
                         "refsnn.bench.torch_spikformer), with the same number of threads, and report the ratio")
    args = ap.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    dtypes = [d for d in args.dtypes.split(",") if d]
    for m in models:
        if m not in CASES:
            ap.error(f"--models: unknown model {m!r}; choose from {list(CASES)}")
    if args.against == "torch-eager" and any(m not in EAGER for m in models):
        ap.error(f"--against torch-eager: only {list(EAGER)} have a plain-PyTorch step; got --models {args.models}")
    for d in dtypes:
        if d not in ("float32", "float64"):
            ap.error(f"--dtypes: {d!r} is not float32 or float64")
    if args.repeats is not None and args.repeats < 1:
        ap.error("--repeats must be >= 1")
    rows = []
    for m in models:
        for d in dtypes:
            if args.repeats is not None:
                reps = args.repeats
            elif args.quick:
                reps = 1 if m in LARGE else 2
            else:
                reps = 3 if m in LARGE else 5
            try:
                rows.append(run_case(m, d, reps, against=args.against if m not in NO_TORCH else None))
            except ImportError as e:
                ap.error(f"--against {args.against} needs torch (pip install -e \".[torch]\"): {e}")
            if not args.json:
                print(f"  {m} {d}: {rows[-1]['median_s']:.3f} s/step", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        import numba
        print(f"training step = forward + cross-entropy + Eq. 21 + backward + SGD update; "
              f"{os.cpu_count()} CPUs, numba threads {numba.get_num_threads()}, "
              f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
              f"OPENBLAS_THREAD_TIMEOUT={os.environ.get('OPENBLAS_THREAD_TIMEOUT')}")
        print(format_table(rows))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
