"""The trained tiny model shared by the checks that need one (``verify.renewal_effect``,
``verify.time_flow``): tiny_resnet on the bundled digits at W/S/T = 4/4/2 with frozen widths,
trained by plain SGD for a seed-determined number of steps, and the tools to look inside it.

    trained_model(quick, seed)   (model, optimizer, info) of the mode's ``TRAIN`` sizes, cached per process
    pretrained(steps, seed)      the same for any number of steps
    capture(model, grads)        record each spiking layer's input current I (and dL/dy at its neuron)
    calibration_batch(n, seed)   a fixed batch of training images
    single_thread()              numba and OpenBLAS at one thread while training (reproducible, and faster
                                 for a model this small on a shared machine)
"""
from __future__ import annotations

import contextlib
import ctypes
import functools

import numpy as np

#: the training of the shared model per mode: SGD steps and batch size
TRAIN = {"quick": dict(pre=60, batch=48), "full": dict(pre=300, batch=64)}


# --------------------------------------------------------------------------- #
# one thread for numba and BLAS while training (reproducible, and on a shared
# machine an order of magnitude faster for a model this small)
# --------------------------------------------------------------------------- #
def _openblas_handles():
    out = []
    try:
        with open("/proc/self/maps") as fh:
            paths = sorted({ln.split()[-1] for ln in fh if "openblas" in ln.lower() and ".so" in ln})
    except OSError:
        return out
    for p in paths:
        try:
            lib = ctypes.CDLL(p)
        except OSError:
            continue
        for setn, getn in (("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
                           ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
                           ("openblas_set_num_threads", "openblas_get_num_threads")):
            if hasattr(lib, setn) and hasattr(lib, getn):
                out.append((getattr(lib, setn), getattr(lib, getn)))
                break
    return out


@contextlib.contextmanager
def single_thread():
    """numba and OpenBLAS limited to one thread inside the block, restored afterwards."""
    import numba
    nb = numba.get_num_threads()
    numba.set_num_threads(1)
    blas = []
    try:
        for setf, getf in _openblas_handles():
            old = int(getf())
            setf(1)
            blas.append((setf, old))
    except Exception:  # pragma: no cover - platform without a reachable OpenBLAS
        pass
    try:
        yield
    finally:
        for setf, old in blas:
            setf(old)
        numba.set_num_threads(nb)


# --------------------------------------------------------------------------- #
# the tiny model on the digits
# --------------------------------------------------------------------------- #
@functools.lru_cache(maxsize=1)
def digits():
    from refsnn.data import load_digits
    tr, te = load_digits("train"), load_digits("test")
    return tr.x, tr.y, te.x, te.y


def make_model(seed: int, convention: str = "paper"):
    from refsnn.models import get_model
    from refsnn.nn import SpikingConfig
    cfg = SpikingConfig(learn_weight_bits=False, learn_spike_bits=False, learn_time=False, convention=convention)
    return get_model("tiny_resnet", config=cfg, seed=seed)


def make_optimizer(model):
    from refsnn.optim import SGD, param_groups
    return SGD(param_groups(model), momentum=0.9)


def sgd_steps(model, opt, steps: int, rng, batch: int = 64):
    """``steps`` SGD steps on random batches of the digits; returns the per-step cross-entropy."""
    import refsnn.functional as F
    from refsnn.autograd.tensor import Tensor
    x, y, _, _ = digits()
    model.train()
    losses = []
    for _ in range(steps):
        idx = rng.choice(len(x), batch, replace=False)
        logits = model(Tensor(x[idx]))
        loss = F.cross_entropy(logits, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.data))
    return losses


def evaluate(model):
    """(test accuracy, test cross-entropy), eval mode (BN running statistics, no observers)."""
    import refsnn.functional as F
    from refsnn.autograd.tensor import Tensor, no_grad
    _, _, xt, yt = digits()
    model.eval()
    with no_grad():
        logits = model(Tensor(xt))
    model.train()
    return float(np.mean(np.argmax(logits.data, 1) == yt)), float(F.cross_entropy(logits, yt).data)


@functools.lru_cache(maxsize=8)
def _pretrained_cached(steps: int, seed: int, batch: int):
    with single_thread():
        model = make_model(seed)
        opt = make_optimizer(model)
        losses = sgd_steps(model, opt, steps, np.random.default_rng(1000 + seed), batch)
        acc, ce = evaluate(model)
    return model.state_dict(), opt.state_dict(), tuple(losses), acc, ce


def pretrained(steps: int, seed: int = 0, batch: int = 64):
    """(model, optimizer, info) after ``steps`` SGD steps (batches of ``batch``) at W/S/T = 4/4/2, widths
    frozen, seed-determined (cached per process: the modules of one run share it)."""
    sd, osd, losses, acc, ce = _pretrained_cached(int(steps), int(seed), int(batch))
    model = make_model(seed)
    model.load_state_dict(sd)
    opt = make_optimizer(model)
    opt.load_state_dict(osd)
    return model, opt, {"steps": steps, "batch": batch, "losses": list(losses), "acc": acc, "ce": ce}


def trained_model(quick: bool, seed: int = 0, sizes: dict | None = None):
    """The trained tiny model of this mode: ``pretrained`` with the ``pre`` steps and ``batch`` of ``TRAIN``
    (entries of ``sizes`` override them)."""
    sz = dict(TRAIN["quick" if quick else "full"])
    sz.update(sizes or {})
    return pretrained(sz["pre"], seed, sz["batch"])


def spiking(model):
    from refsnn.nn import spiking_layers
    return [(n, l) for n, l in spiking_layers(model) if l.config.input_neuron]


@contextlib.contextmanager
def capture(model, grads: bool = False):
    """Record, per spiking layer, its analog input ``x`` (the neuron's current I) and, with
    ``grads``, the gradient dL/dy reaching the neuron's squeezed output (a forward hook on the
    layer's ``squeezed`` point puts an identity op on the tape between the neuron and the weight
    op). Yields the dict {name: {...}}; the hooks are removed on exit."""
    from refsnn.autograd.tensor import primitive
    store: dict = {}

    @primitive
    def _tap(ctx, y, *, key):
        return y.copy()

    @_tap.defvjp
    def _tap_vjp(ctx, g):
        store[ctx.kwargs["key"]]["gy"] = np.array(g, copy=True)
        return (g,)

    def keep_input(layer, args, out):
        store[names[id(layer)]] = {"x": np.array(args[0].data if hasattr(args[0], "data") else args[0], copy=True)}

    layers = spiking(model)
    names = {id(layer): name for name, layer in layers}
    handles = [layer.register_forward_hook(keep_input) for _, layer in layers]
    if grads:
        handles += [layer.squeezed.register_forward_hook(lambda m, args, y, _n=name: _tap(y, key=_n))
                    for name, layer in layers]
    try:
        yield store
    finally:
        for h in handles:
            h.remove()


def calibration_batch(n: int = 256, seed: int = 0):
    x, y, _, _ = digits()
    idx = np.sort(np.random.default_rng(7000 + seed).choice(len(x), n, replace=False))
    return x[idx], y[idx]
