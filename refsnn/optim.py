"""Optimizers and the learning-rate schedule of Algorithm A.1 (docs/method.md §11).

    SGD   momentum 0.9, weight decay 1e-4 on ``kind == "weight"`` parameters only
    Adam  an option (not the paper's)
    CosineSchedule   lr_g(t) = min_lr + (base_lr_g - min_lr) * (1 + cos(pi * t / total)) / 2

Every parameter belongs to one *group*; a group has its own learning rate (the
paper's defaults per kind are in ``DEFAULT_LR``: 0.1 for weights, BN/bias,
thresholds, weight steps and the bit-width parameters, 1e-2 for That).  Groups
are made by ``param_groups(model)`` from ``Module.parameter_groups()``; a plain
list of parameters (``SGD(model.parameters(), lr=0.1)``, as torch) or of
``(name, parameter)`` pairs (``model.named_parameters()``) is one group.  The
groups are ``optimizer.param_groups`` (as torch; ``optimizer.groups`` is the same list).

Parameters with ``requires_grad=False`` (frozen widths) or without a gradient
(``grad is None``: not reached by this loss) are skipped: their value and their
optimizer state stay as they are.  After every step each updated threshold V_th
and weight step S_q is clamped to >= eps = 1e-5 (docs/method.md §3): the clamp
belongs to the parameter's ``kind``, whatever the grouping (a group's own
``min_value``, if any, is applied too).  A gradient or a parameter with NaN or
inf is an error naming the parameter, raised before anything is updated
(``max(NaN, eps)`` is NaN: a clamp cannot repair it).

The update, per parameter p with gradient g (group hyper-parameters lr, mu, wd):

    SGD:   g <- g + wd * p;   b <- g (first step) or mu * b + g;   p <- p - lr * b
           (nesterov: p <- p - lr * (g + mu * b))
    Adam:  g <- g + wd * p;   m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2;
           p <- p - lr * (m / (1 - b1^k)) / (sqrt(v / (1 - b2^k)) + eps)

All arithmetic stays in the parameter's precision (float32 or float64), so a
float32 model is updated in float32.  ``state_dict()`` holds every buffer and
step counter; ``load_state_dict`` restores them exactly (checkpoint resume is
bit-identical).
"""
from __future__ import annotations

import math

import numpy as np

from .method.renewal import EPS
from .nn.module import PARAMETER_KINDS

#: docs/method.md §11: learning rate per parameter kind.
DEFAULT_LR = {"weight": 0.1, "bias": 0.1, "bn": 0.1, "threshold": 0.1, "weight_step": 0.1,
              "spike_width": 0.1, "weight_width": 0.1, "time": 1e-2}
#: Kinds whose values must stay >= eps after a step (docs/method.md §3).
CLAMPED_KINDS = ("threshold", "weight_step")


def param_groups(model, lr: dict | None = None, weight_decay: float = 1e-4) -> list:
    """One group per parameter kind present in ``model``, in ``PARAMETER_KINDS`` order.

    ``lr``: {kind: learning rate}, missing kinds take ``DEFAULT_LR``.  Weight decay
    goes to the ``"weight"`` group only (docs/method.md §11); thresholds and
    weight steps get ``min_value = eps``.
    """
    lr = dict(lr or {})
    unknown = set(lr) - set(PARAMETER_KINDS)
    if unknown:
        raise ValueError(f"param_groups: unknown parameter kind(s) {sorted(unknown)} in lr; "
                         f"valid kinds: {list(PARAMETER_KINDS)}")
    by_kind = model.parameter_groups()
    names = {id(p): n for n, p in model.named_parameters()}

    def names_of(params):
        return [names[id(p)] for p in params]

    groups = []
    for kind in PARAMETER_KINDS:
        if kind not in by_kind:
            continue
        groups.append({"name": kind, "params": list(by_kind[kind]), "param_names": names_of(by_kind[kind]),
                       "lr": float(lr.get(kind, DEFAULT_LR[kind])),
                       "weight_decay": float(weight_decay) if kind == "weight" else 0.0,
                       "min_value": EPS if kind in CLAMPED_KINDS else None})
    return groups


def _check_number(owner: str, name: str, value, lo: float, hi: float = math.inf, lo_open: bool = False,
                  hi_open: bool = False) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(value) and (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
    if not ok:
        rng = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
        raise ValueError(f"{owner}: {name} must be a number in {rng}, got {value!r}")
    return float(value)


def _as_groups(owner: str, groups) -> list:
    """A list of group dicts from a list of dicts, of parameters, or of (name, parameter) pairs."""
    if isinstance(groups, dict):
        raise TypeError(f"{owner}: expected parameters, (name, parameter) pairs or a list of group dicts, got a dict; "
                        "pass [group] for one group")
    groups = list(groups)
    if not groups:
        raise ValueError(f"{owner}: no parameters to optimize")
    if not isinstance(groups[0], dict):  # a plain list of parameters (or of named parameters): one group
        groups = [{"name": "all", "params": groups}]
    return groups


def _named_group(g: dict) -> dict:
    """Split ``params`` given as (name, parameter) pairs into ``params`` and ``param_names``."""
    params = list(g.get("params", ()))
    if params and all(isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str) for x in params):
        g = dict(g, params=[x[1] for x in params], param_names=[x[0] for x in params])
    return g


def clamp_floor(p, group: dict):
    """The lower bound of ``p`` after a step: eps for thresholds and weight steps (docs/method.md §3), the
    group's ``min_value`` if it has one (the larger of the two), or None."""
    bounds = [b for b in (EPS if getattr(p, "kind", None) in CLAMPED_KINDS else None, group.get("min_value"))
              if b is not None]
    return max(bounds) if bounds else None


class Optimizer:
    """Base class: parameter groups, the step counter, zero_grad, clamping and the state dict."""

    #: hyper-parameters a group may carry, with their defaults
    defaults: dict = {}
    #: names of the per-parameter buffers kept in ``self.state``
    buffer_names: tuple = ()

    def __init__(self, groups, **defaults):
        groups = [_named_group(g) for g in _as_groups(type(self).__name__, groups)]
        allowed = {"name", "params", "param_names", "min_value", "lr"} | set(self.defaults)
        self.param_groups = []
        for i, g in enumerate(groups):
            unknown = set(g) - allowed
            if unknown:
                raise ValueError(f"{type(self).__name__}: group {i} has unknown option(s) {sorted(unknown)}; "
                                 f"valid: {sorted(allowed)}")
            group = {"name": g.get("name", f"group{i}"), "params": list(g["params"]),
                     "min_value": g.get("min_value")}
            if g.get("param_names") is not None:
                group["param_names"] = list(g["param_names"])
            for key, value in self.defaults.items():
                group[key] = g.get(key, defaults.get(key, value))
            group["lr"] = g.get("lr", defaults.get("lr"))
            if group["lr"] is None:
                raise ValueError(f"{type(self).__name__}: group {group['name']!r} has no learning rate")
            self._check_group(group)
            group["initial_lr"] = float(group["lr"])
            self.param_groups.append(group)
        seen = set()
        for g in self.param_groups:
            for p in g["params"]:
                if id(p) in seen:
                    raise ValueError(f"{type(self).__name__}: a parameter appears in two groups "
                                     f"(second time in {g['name']!r})")
                seen.add(id(p))
        # state[(group index, parameter index)] = {"step": int, buffer name: ndarray}
        self.state: dict = {}
        self.steps = 0  # number of step() calls

    @property
    def groups(self) -> list:
        """The same list as ``param_groups`` (the name refsnn used first)."""
        return self.param_groups

    def _check_group(self, g: dict) -> None:
        name = f"{type(self).__name__} group {g['name']!r}"
        _check_number(name, "lr", g["lr"], 0.0)
        _check_number(name, "weight_decay", g.get("weight_decay", 0.0), 0.0)

    def zero_grad(self) -> None:
        for g in self.param_groups:
            for p in g["params"]:
                p.grad = None

    def _update(self, p, grad: np.ndarray, state: dict, g: dict) -> None:  # pragma: no cover - per subclass
        raise TypeError(f"{type(self).__name__} must define _update (SGD and Adam do)")

    def _param_name(self, gi: int, pi: int) -> str:
        g = self.param_groups[gi]
        names = g.get("param_names")
        if names is not None:
            return repr(names[pi])
        p = g["params"][pi]
        return f"parameter {pi} of group {g['name']!r} ({p!r})"

    def _check_finite(self) -> None:
        """Every gradient and value about to be used is finite; otherwise an error naming the parameter."""
        for gi, g in enumerate(self.param_groups):
            for pi, p in enumerate(g["params"]):
                if not p.requires_grad or p.grad is None:
                    continue
                for what, arr in (("gradient", p.grad), ("value", p.data)):
                    bad = ~np.isfinite(arr)
                    if bad.any():
                        raise FloatingPointError(
                            f"{type(self).__name__}.step: the {what} of {self._param_name(gi, pi)} has "
                            f"{int(bad.sum())} NaN/inf element(s) of {arr.size} (first {arr[bad].ravel()[0]!r}); "
                            "nothing was updated. Lower the learning rate or check the inputs and the loss")

    def step(self) -> None:
        """Update every parameter that requires a gradient and has one; then clamp (section 3)."""
        self._check_finite()
        self.steps += 1
        for gi, g in enumerate(self.param_groups):
            for pi, p in enumerate(g["params"]):
                if not p.requires_grad or p.grad is None:
                    continue
                grad = p.grad
                if grad.shape != p.data.shape or grad.dtype != p.data.dtype:
                    raise ValueError(f"{type(self).__name__}: gradient of {self._param_name(gi, pi)} has "
                                     f"{grad.shape} {grad.dtype}, the parameter {p.data.shape} {p.data.dtype}")
                if g.get("weight_decay", 0.0):
                    # weight decay (L2) on this group only: g <- g + wd * p
                    grad = grad + p.data.dtype.type(g["weight_decay"]) * p.data
                state = self.state.setdefault((gi, pi), {"step": 0})
                state["step"] += 1
                self._update(p, grad, state, g)
                floor = clamp_floor(p, g)
                if floor is not None:
                    # docs/method.md §3: thresholds and steps stay >= eps
                    np.maximum(p.data, p.data.dtype.type(floor), out=p.data)

    def set_lr_factor(self, factor: float) -> None:
        """lr of every group = its initial lr times ``factor`` (used by schedules)."""
        for g in self.param_groups:
            g["lr"] = g["initial_lr"] * factor

    def lrs(self) -> dict:
        return {g["name"]: g["lr"] for g in self.param_groups}

    # -- checkpoints ---------------------------------------------------------------
    def state_dict(self) -> dict:
        """``{"type", "steps", "groups": [hyper-parameters], "state": {"g0.p3.momentum": ndarray, "g0.p3.step": int}}``.

        Arrays are copies; parameters are identified by (group, index), so the
        optimizer that loads it must be built over the same model.
        """
        groups = [{k: v for k, v in g.items() if k not in ("params", "param_names")} | {"n_params": len(g["params"])}
                  for g in self.param_groups]
        state = {}
        for (gi, pi), st in sorted(self.state.items()):
            for key, value in st.items():
                state[f"g{gi}.p{pi}.{key}"] = np.array(value, copy=True) if isinstance(value, np.ndarray) else value
        return {"type": type(self).__name__, "steps": self.steps, "groups": groups, "state": state}

    def load_state_dict(self, sd: dict) -> None:
        if sd.get("type") != type(self).__name__:
            raise ValueError(f"load_state_dict: the state is of a {sd.get('type')!r}, this is a {type(self).__name__}")
        if len(sd["groups"]) != len(self.param_groups):
            raise ValueError(f"load_state_dict: {len(sd['groups'])} groups saved, "
                             f"the optimizer has {len(self.param_groups)}")
        for g, saved in zip(self.param_groups, sd["groups"]):
            if saved["name"] != g["name"] or saved["n_params"] != len(g["params"]):
                raise ValueError(f"load_state_dict: saved group {saved['name']!r} with {saved['n_params']} parameters "
                                 f"does not match group {g['name']!r} with {len(g['params'])}")
            for key, value in saved.items():
                if key not in ("name", "n_params"):
                    g[key] = value
        state: dict = {}
        for key, value in sd["state"].items():
            gs, ps, name = key.split(".", 2)
            gi, pi = int(gs[1:]), int(ps[1:])
            if gi >= len(self.param_groups) or pi >= len(self.param_groups[gi]["params"]):
                raise ValueError(f"load_state_dict: state entry {key!r} names no parameter of this optimizer")
            p = self.param_groups[gi]["params"][pi]
            if name == "step":
                value = int(value)
            else:
                value = np.array(value, copy=True)
                if value.shape != p.data.shape or value.dtype != p.data.dtype:
                    raise ValueError(f"load_state_dict: {key!r} is {value.shape} {value.dtype}, the parameter is "
                                     f"{p.data.shape} {p.data.dtype}")
            state.setdefault((gi, pi), {})[name] = value
        self.state = state
        self.steps = int(sd["steps"])


class SGD(Optimizer):
    """Stochastic gradient descent with momentum (docs/method.md §11: momentum 0.9)."""

    defaults = {"momentum": 0.9, "weight_decay": 0.0, "nesterov": False}
    buffer_names = ("momentum",)

    def _check_group(self, g: dict) -> None:
        super()._check_group(g)
        _check_number(f"SGD group {g['name']!r}", "momentum", g["momentum"], 0.0, 1.0, hi_open=True)

    def _update(self, p, grad, state, g):
        dt = p.data.dtype.type
        mu = g["momentum"]
        if mu:
            buf = state.get("momentum")
            if buf is None:
                # first step: b <- g
                buf = state["momentum"] = np.array(grad, copy=True)
            else:
                # b <- mu * b + g
                buf *= dt(mu)
                buf += grad
            if g["nesterov"]:
                grad = grad + dt(mu) * buf
            else:
                grad = buf
        # p <- p - lr * b
        p.data -= dt(g["lr"]) * grad


class Adam(Optimizer):
    """Adam (Kingma & Ba), an option; weight decay as L2 on the gradient of the groups that have it."""

    defaults = {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}
    buffer_names = ("exp_avg", "exp_avg_sq")

    def _check_group(self, g: dict) -> None:
        super()._check_group(g)
        b1, b2 = g["betas"]
        name = f"Adam group {g['name']!r}"
        _check_number(name, "beta1", b1, 0.0, 1.0, hi_open=True)
        _check_number(name, "beta2", b2, 0.0, 1.0, hi_open=True)
        _check_number(name, "eps", g["eps"], 0.0, lo_open=True)
        g["betas"] = (float(b1), float(b2))

    def _update(self, p, grad, state, g):
        dt = p.data.dtype.type
        b1, b2 = g["betas"]
        if "exp_avg" not in state:
            state["exp_avg"] = np.zeros_like(p.data)
            state["exp_avg_sq"] = np.zeros_like(p.data)
        m, v, k = state["exp_avg"], state["exp_avg_sq"], state["step"]
        m *= dt(b1)
        m += dt(1 - b1) * grad
        v *= dt(b2)
        v += dt(1 - b2) * (grad * grad)
        m_hat = m / dt(1 - b1 ** k)
        v_hat = v / dt(1 - b2 ** k)
        p.data -= dt(g["lr"]) * m_hat / (np.sqrt(v_hat) + dt(g["eps"]))


class CosineSchedule:
    """Cosine annealing over ``total`` steps (batches or epochs, as the caller counts).

        factor(t) = m + (1 - m) * (1 + cos(pi * min(t, total) / total)) / 2,   m = min_factor

    with an optional linear warm-up over the first ``warmup`` units.  The
    schedule holds only the counter ``t``; the lr is recomputed from it, so a
    resumed run sets exactly the same lr.
    """

    def __init__(self, optimizer: Optimizer, total: int, warmup: int = 0, min_factor: float = 0.0):
        if isinstance(total, bool) or not isinstance(total, (int, np.integer)) or total < 1:
            raise ValueError(f"CosineSchedule: total must be an integer >= 1, got {total!r}")
        if isinstance(warmup, bool) or not isinstance(warmup, (int, np.integer)) or not 0 <= warmup < total:
            raise ValueError(f"CosineSchedule: warmup must be an integer in [0, total={total}), got {warmup!r}")
        self.min_factor = _check_number("CosineSchedule", "min_factor", min_factor, 0.0, 1.0)
        self.optimizer, self.total, self.warmup = optimizer, int(total), int(warmup)
        self.t = 0
        self.optimizer.set_lr_factor(self.factor(0))

    def factor(self, t: int) -> float:
        if t < self.warmup:
            return (t + 1) / (self.warmup + 1)
        span = self.total - self.warmup
        x = min(t - self.warmup, span) / span
        return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * x))

    def step(self) -> None:
        """Advance one unit and set the lr of every group."""
        self.t += 1
        self.optimizer.set_lr_factor(self.factor(self.t))

    def state_dict(self) -> dict:
        return {"type": "cosine", "t": self.t, "total": self.total, "warmup": self.warmup,
                "min_factor": self.min_factor}

    def load_state_dict(self, sd: dict) -> None:
        self.t = int(sd["t"])
        self.optimizer.set_lr_factor(self.factor(self.t))


class ConstantSchedule(CosineSchedule):
    """No schedule: factor 1 throughout (same interface)."""

    def factor(self, t: int) -> float:
        return 1.0

    def state_dict(self) -> dict:
        return {"type": "constant", "t": self.t}


OPTIMIZERS = {"sgd": SGD, "adam": Adam}
