"""The ``refsnn`` command (also ``python -m refsnn``).

    refsnn demo [--out DIR] [--epochs N] [--quick] [--force]    train tiny_resnet on the embedded digits, 4/4/2 -> 2/2/1
    refsnn demo --events [...]                          the same in sequential mode (T = 4) on the event digits
    refsnn train --config FILE.toml [--resume CKPT] [--epochs N] [--out DIR] [--stop-after N] [--check] [--force]
    refsnn eval CKPT [--json]                            accuracy and costs of a checkpoint
    refsnn plots HISTORY.json [--out DIR]                redraw the figures of a run
    refsnn summary --model NAME [...]                    per-layer costs (refsnn.models.costing)
    refsnn bench {conv,neuron,train} [...]               benchmarks (refsnn.bench.*)
    refsnn verify [--quick] [--out DIR] [--only CHECK ...]   the theory checks (verify/, installed as refsnn.verify)
    refsnn figures [--quick] [--out DIR] [--demo-run DIR]   redraw figures/ (verify checks + the demo's training)
    refsnn golden write DIR | check DIR [--against OTHER] golden outputs for other implementations (refsnn.golden)
    refsnn ablate [--tables 3,4,5,6,8] [--quick] [--seeds N] [--out DIR]   the paper's ablation tables

Output: results on stdout; progress, banners and notes on stderr (``refsnn.report.Progress``), so that
``refsnn train ... > result.txt`` and ``refsnn train --check | python -c 'import json, sys; json.load(sys.stdin)'``
work.  Costs follow one unit rule (``refsnn.models.costing``): counts in M, sizes in MB; JSON in raw units.

Exit codes: 0 success, 1 a check failed (verify, demo --strict), 2 a usage or configuration error, a damaged
file or an unusable output directory (one message, no traceback; ``refsnn --debug COMMAND`` shows it),
130 interrupted (Ctrl-C), 141 the reader of the output went away (``| head``).  See ``refsnn.faults``.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import warnings
from pathlib import Path

from . import faults

#: sub-commands whose arguments are parsed by the module they delegate to
DELEGATED = ("summary", "bench", "golden")
BENCHES = {"conv": "refsnn.bench.conv", "neuron": "refsnn.bench.neuron", "train": "refsnn.bench.train"}


def _positive_int(text: str) -> int:
    """An integer >= 1 of a flag (``--epochs``, ``--stop-after``); argparse names the flag in its message."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def _error(msg: str) -> int:
    print(f"refsnn: error: {msg}", file=sys.stderr)
    return 2


# ---------------------------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------------------------
DEMO_CRITERIA = {"accuracy": 0.95, "tolerance": 0.3}
#: `demo --events` (sequential mode, docs/method.md §14): T is fixed, so only W and S are checked.
EVENTS_DEMO_CRITERIA = {"accuracy": 0.90, "tolerance": 0.3}


def demo_config(out: str | None, epochs: int | None = None, quick: bool = False, progress: str | None = None,
                events: bool = False):
    """(the demo's TrainConfig, the path of its settings file) with the command's overrides;
    ``events``: the sequential-mode demo on the event digits (configs/demo_events.toml)."""
    from .config import bundled_config, load_config
    path = bundled_config("demo_events" if events else "demo")
    cfg = load_config(path)
    changes = {"out_dir": out or cfg.out_dir}
    if quick:
        # a smoke run: a few hundred training samples, 2 epochs, renewal rule early
        changes["epochs"] = 2
        changes["data"] = _replace(cfg.data, train_subset=320)
        changes["renewal"] = _replace(cfg.renewal, min_epochs=1)
    if epochs is not None:
        changes["epochs"] = epochs
    if progress:
        changes["progress"] = progress
    return cfg.replace(**changes), path


def run_demo(out: str | None, epochs: int | None = None, quick: bool = False, progress: str | None = None,
             strict: bool = False, force: bool = False, events: bool = False) -> int:
    """Train the demo, print the final table and the demo's criteria; 1 if ``strict`` and a criterion is not met."""
    from .train import Trainer
    cfg, path = demo_config(out, epochs, quick, progress, events)
    criteria = EVENTS_DEMO_CRITERIA if events else DEMO_CRITERIA
    t0, c0 = time.perf_counter(), time.process_time()
    tr = Trainer(cfg)
    tr.fit(force=force)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print()
    print(tr.final_report())
    last = tr.history[-1]
    checks = [(f"test accuracy >= {100 * criteria['accuracy']:g} %", last["test_acc"] >= criteria["accuracy"])]
    for key in ("W", "S") if events else ("W", "S", "T"):
        target = getattr(tr.targets, key)
        checks.append((f"|{key} - {target:g}| <= {criteria['tolerance']}",
                       abs(last[key] - target) <= criteria["tolerance"]))
    print()
    print("demo criteria: " + ";  ".join(f"{name}: {'ok' if ok else 'NOT MET'}" for name, ok in checks)
          + ("  (--quick: not expected to be met)" if quick else ""))
    print(f"wrote {cfg.out_dir}/: history.json, history.csv, checkpoint.npz/.json"
          + (", wst_history.png, layer_allocation.png, curves.png" if cfg.plots else ""))
    print(f"settings: {path}{' (with --quick)' if quick else ''};  wall time {wall:.1f} s, CPU time {cpu:.1f} s")
    if strict and not all(ok for _, ok in checks):
        return 1
    return 0


def cmd_demo(args) -> int:
    return run_demo(args.out, epochs=args.epochs, quick=args.quick, progress=args.progress, strict=args.strict,
                    force=args.force, events=args.events)


def _note(line: str) -> None:
    """A banner or a note: on stderr, so that stdout holds only the results."""
    print(line, file=sys.stderr, flush=True)


def _replace(obj, **changes):
    from dataclasses import replace
    return replace(obj, **changes)


# ---------------------------------------------------------------------------------------------
# train / eval / plots
# ---------------------------------------------------------------------------------------------
def cmd_train(args) -> int:
    from .config import find_config, load_config
    if args.config is None and args.resume is None:
        return _error("train: give --config FILE.toml (or --resume CKPT)")
    path = find_config(args.config) if args.config else None
    cfg = load_config(path) if path else None
    if args.check:
        if cfg is None:
            return _error("train --check needs --config")
        # stdout: the configuration as JSON only (json.load reads it); the verdict goes to stderr
        print(json.dumps(cfg.to_dict(), indent=1))
        note = " (no ImageNet reader exists yet: it cannot be trained)" if cfg.data.name == "imagenet" else ""
        _note(f"{path}: valid{note}")
        return 0
    tr = _trainer(args, cfg)
    tr.fit(until=args.stop_after, force=args.force)
    print()
    print(tr.final_report())
    return 0


def _trainer(args, cfg):
    """The Trainer of ``refsnn train``: a fresh run of ``cfg``, or ``--resume`` (writing, unless ``--out`` or the
    configuration file says otherwise, into the checkpoint's own directory)."""
    from .checkpoint import resume_changes
    from .train import Trainer
    changes = {}
    if args.epochs is not None:
        changes["epochs"] = args.epochs
    if args.out is not None:
        changes["out_dir"] = args.out
    if args.progress:
        changes["progress"] = args.progress
    if args.resume is None:
        return Trainer(cfg.replace(**changes) if changes else cfg)
    if cfg is not None:
        # the flags win over the file; the file may change only the resume-free keys (refsnn.checkpoint)
        changes = {**resume_changes(args.resume, cfg, source=args.config), **changes}
    epochs = changes.pop("epochs", None)
    # without --out: the checkpoint's own directory (Trainer.from_checkpoint), not the out_dir recorded in it
    out_dir = changes.pop("out_dir", None)
    tr = Trainer.from_checkpoint(args.resume, epochs=epochs, out_dir=out_dir, **changes)
    return tr  # its banner (Trainer.fit, on stderr) says from which epoch it resumes and where it writes


def cmd_eval(args) -> int:
    from .train import Trainer
    tr = Trainer.from_checkpoint(args.checkpoint, progress="none")
    loss, acc = tr.evaluate()
    cost = tr.costs()
    if args.json:
        d = {"checkpoint": str(args.checkpoint), "epoch": tr.epoch, "test_loss": loss, "test_acc": acc}
        d.update(cost.as_dict())
        print(json.dumps(d, indent=1))
        return 0
    from .models.costing import format_cost_table
    print(f"{args.checkpoint}: {tr.config.model.name} on {tr.config.data.name}, after epoch {tr.epoch} of "
          f"{tr.config.epochs}")
    print(f"test accuracy {100 * acc:.2f} %   test loss {loss:.4f}   ({len(tr.test_set)} samples)")
    print(format_cost_table(cost))
    return 0


def cmd_plots(args) -> int:
    from .plots import plots_main
    for p in plots_main(args.history, args.out):
        print(p)
    return 0


# ---------------------------------------------------------------------------------------------
# delegated commands
# ---------------------------------------------------------------------------------------------
def _delegate(command: str, argv: list) -> int:
    if command == "summary":
        from .models.costing import summary_main
        return summary_main(argv)
    if command == "bench":
        if not argv or argv[0] in ("-h", "--help"):
            print(f"usage: refsnn bench {{{','.join(BENCHES)}}} [options]\n\n"
                  "  conv    conv2d kernels: numba vs NumPy twin (vs PyTorch if installed)\n"
                  "  neuron  the spiking-neuron kernels\n"
                  "  train   seconds per training step and peak memory (refsnn.bench.train)")
            return 0 if argv else 2
        if argv[0] not in BENCHES:
            return _error(f"bench: unknown benchmark {argv[0]!r}; choose one of {list(BENCHES)}")
        try:
            mod = importlib.import_module(BENCHES[argv[0]])
        except ModuleNotFoundError as e:
            return _error(f"bench {argv[0]}: {BENCHES[argv[0]]} is not available ({e})")
        return int(mod.main(argv[1:]) or 0)
    if command == "golden":
        from .golden import main as golden_main
        return int(golden_main(argv) or 0)
    raise AssertionError(command)  # pragma: no cover


def _verify_runner():
    """``verify.runner``: the checkout's ``verify/`` beside this refsnn, else the installed ``refsnn.verify``."""
    import refsnn
    root = Path(refsnn.__file__).resolve().parents[1]
    if (root / "verify" / "runner.py").is_file() and (root / "pyproject.toml").is_file():
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        return importlib.import_module("verify.runner")
    try:
        return importlib.import_module("refsnn.verify.runner")
    except ModuleNotFoundError:
        raise FileNotFoundError(f"verify: the theory checks are missing: no verify/ beside refsnn ({root}) and no "
                                "refsnn.verify installed; reinstall refsnn (pip install .)") from None


def cmd_verify(args) -> int:
    try:
        runner = _verify_runner()
    except FileNotFoundError as e:
        return _error(str(e))
    report, fig_dir = args.report, args.fig_dir
    if not args.quick or args.out:
        # the full mode writes the report and the figures: --out DIR, else the checkout's verify/REPORT.md and
        # figures/, else ./refsnn-verify/ (never into an installed package)
        default_report, default_figs = runner.default_outputs(args.out)
        report, fig_dir = report or default_report, fig_dir or default_figs
    elif report is None and fig_dir is None:
        _note("refsnn verify --quick: printing only (pass --out DIR, --report or --fig-dir to write files)")
    kw = {"only": args.only} if args.only else {}
    return int(runner.run_all(args.quick, report, fig_dir, **kw) or 0)


def cmd_figures(args) -> int:
    """Redraw every figure of figures/: the verify checks and the demo run's training figures."""
    import shutil
    import tempfile
    try:
        runner = _verify_runner()
    except FileNotFoundError as e:
        return _error(str(e))
    fig_dir = Path(args.out) if args.out else Path(runner.default_outputs()[1])
    fig_dir.mkdir(parents=True, exist_ok=True)
    status = int(runner.run_all(args.quick, None, str(fig_dir)) or 0)
    from .plots import plots_main
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(args.demo_run) if args.demo_run else Path(tmp) / "demo"
        if not args.demo_run:
            run_demo(str(run_dir), quick=args.quick, progress="none")
        for png in plots_main(str(run_dir / "history.json"), str(Path(tmp) / "plots")):
            dest = fig_dir / f"demo_{Path(png).name}"
            shutil.copyfile(png, dest)
            print(f"wrote {dest}")
    return status


def cmd_ablate(args) -> int:
    from .ablate.run import main as ablate_main
    try:
        return ablate_main(args.tables, quick=args.quick, seeds=args.seeds, out=args.out, dataset=args.dataset,
                           epochs=args.epochs, jobs=args.jobs)
    except ValueError as e:
        return _error(f"ablate: {e}")


# ---------------------------------------------------------------------------------------------
# the parser
# ---------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from .config import bundled_names
    ap = argparse.ArgumentParser(prog="refsnn", description="Reference implementation of adaptive bit allocation "
                                 "for spiking neural networks (Yao et al., arXiv:2506.23717).")
    from . import __version__
    ap.add_argument("--version", action="version", version=f"refsnn {__version__}")
    ap.add_argument("--debug", action="store_true", help="show the traceback of an error (give it before the command)")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    progress = {"choices": ("auto", "bar", "line", "none"), "default": None,
                "help": "progress display on stderr (default: a bar on a terminal, else one line per epoch and a "
                        "line with the time left at least every 30 s)"}

    p = sub.add_parser("demo", help="train tiny_resnet on the embedded digits, W/S/T 4/4/2 -> 2/2/1",
                       description="Train tiny_resnet on the embedded UCI digits from W/S/T 4/4/2 towards the targets "
                                   "2/2/1 with step-size renewal; settings: refsnn/configs/demo.toml.")
    p.add_argument("--out", default=None, help="output directory (default: ./refsnn-out, or ./refsnn-out-events "
                                               "with --events)")
    p.add_argument("--events", action="store_true",
                   help="sequential mode (T = 4 fixed, docs/method.md §14) on the embedded event digits, W/S 4/4 -> 2/2; "
                        "settings: refsnn/configs/demo_events.toml")
    p.add_argument("--epochs", type=_positive_int, default=None, metavar="N", help="override the number of epochs (>= 1)")
    p.add_argument("--quick", action="store_true", help="a smoke run: 2 epochs on 320 training samples")
    p.add_argument("--strict", action="store_true", help="exit with 1 if the demo's criteria are not met")
    p.add_argument("--force", action="store_true", help="overwrite the output of an earlier run in --out")
    p.add_argument("--progress", **progress)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train from a TOML configuration (or resume a checkpoint)",
                       description="Train any model on any dataset from a TOML configuration (Algorithm A.1), or "
                                   "continue a checkpoint. Progress and the start banner go to stderr; the final "
                                   "table to stdout; history.json/.csv, checkpoints and figures to the output "
                                   "directory. Bundled configurations: refsnn/configs/ (give their bare name).")
    p.add_argument("--config", default=None, metavar="FILE|NAME", help="the run's TOML file, or the name of a "
                   f"bundled one ({', '.join(bundled_names())})")
    p.add_argument("--resume", default=None, metavar="CKPT", help="continue from this checkpoint (.npz)")
    p.add_argument("--epochs", type=_positive_int, default=None, metavar="N", help="override the total number of epochs "
                   "(>= 1)")
    p.add_argument("--out", default=None, help="override the output directory")
    p.add_argument("--stop-after", type=_positive_int, default=None, metavar="N",
                   help="stop after epoch N >= 1 (the schedule still spans all epochs; resume later)")
    p.add_argument("--force", action="store_true", help="overwrite the history of a run that went further")
    p.add_argument("--check", action="store_true", help="only validate the configuration and print it as JSON on "
                   "stdout (the verdict goes to stderr)")
    p.add_argument("--progress", **progress)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="accuracy and costs of a checkpoint",
                       description="Evaluate a checkpoint on its test set: accuracy, loss and the per-layer cost "
                                   "table (operation counts in M, sizes in MB; --json: raw counts and bytes).")
    p.add_argument("checkpoint", help="checkpoint .npz (its .json must be beside it)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("plots", help="redraw the figures of a run from its history.json",
                       description="Redraw the figures of a run (W/S/T history, per-layer allocation, curves) from "
                                   "its history.json; prints the paths of the PNG files.")
    p.add_argument("history", help="history.json of a run")
    p.add_argument("--out", default=None, help="directory for the PNG files (default: beside history.json)")
    p.set_defaults(func=cmd_plots)

    p = sub.add_parser("verify", help="numerical and analytical checks of the theory (verify/ package)",
                       description="Run the numerical and analytical checks of the paper's theory (Theorem 1, "
                                   "Lemma 1, the costs, renewal, gradient flow, ...), print a table of claims "
                                   "and verdicts; the full mode also writes REPORT.md and the figures. Exit 1 "
                                   "when a result is not as expected.")
    p.add_argument("--quick", action="store_true", help="fewer samples; prints only unless an output is given")
    p.add_argument("--out", default=None, metavar="DIR", help="write DIR/REPORT.md and DIR/figures/ (full mode "
                   "default: the checkout's verify/REPORT.md and figures/; ./refsnn-verify/ when refsnn is installed)")
    p.add_argument("--report", default=None, help="write the report (markdown) here (overrides --out)")
    p.add_argument("--fig-dir", default=None, help="write the figures here (overrides --out)")
    p.add_argument("--only", nargs="+", default=None, metavar="CHECK", help="run only these checks (module names)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("figures", help="redraw figures/: the verify checks and the demo's training figures",
                       description="Redraw every figure of figures/: run the verify checks (their figures) and "
                                   "the demo (or read a finished demo run) for its training figures.")
    p.add_argument("--quick", action="store_true", help="quick verify mode and a 2-epoch demo (a smoke run)")
    p.add_argument("--out", default=None, help="directory for the PNG files (default: figures/ of the checkout; "
                   "./refsnn-verify/figures/ when refsnn is installed)")
    p.add_argument("--demo-run", default=None, help="use this finished demo run (its history.json) instead of "
                   "training the demo again")
    p.set_defaults(func=cmd_figures)

    p = sub.add_parser("ablate", help="run the paper's ablation tables (3, 4, 5, 6-7, 8) and write ABLATIONS.md",
                       description="Train every cell of the paper's ablation tables (docs/method.md §15) on the "
                                   "bundled digits, several seeds, resumable; write ABLATIONS.md and figures.")
    p.add_argument("--tables", default="3,4,5,6,8",
                   help="comma-separated table numbers, 6 = Tables 6-7 (default: 3,4,5,6,8)")
    p.add_argument("--quick", action="store_true", help="a few cells, one seed, 1-2 epochs on 320 samples (< 1 min)")
    p.add_argument("--seeds", type=int, default=None,
                   help="seeds per cell (default: 3, Tables 5 and 6-7: 2; --quick: 1)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs per cell (default: 15, Tables 6-7: 4; --quick: 2, Tables 5-7: 1)")
    p.add_argument("--jobs", type=int, default=1, help="cells trained in parallel processes (default: 1)")
    p.add_argument("--out", default=None, metavar="DIR", help="write DIR/ABLATIONS.md, DIR/figures/, DIR/cells/ "
                   "(default: the checkout's verify/ABLATIONS.md, figures/, verify/ablations/; --quick: "
                   "./refsnn-ablate-quick/)")
    p.add_argument("--dataset", default="digits", help="the data (only digits yet)")
    p.set_defaults(func=cmd_ablate)

    sub.add_parser("summary", help="per-layer costs of a model (see: refsnn summary --help)", add_help=False)
    sub.add_parser("bench", help="benchmarks: conv, neuron, train (see: refsnn bench --help)", add_help=False)
    sub.add_parser("golden", help="golden outputs (refsnn.golden)", add_help=False)
    return ap


def main(argv=None) -> int:
    """Run the command in ``argv``; the exit status (see the module docstring).  Errors are reported as one
    message on stderr (``refsnn.errors``), with the traceback only under ``--debug``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv[:1]
    while argv[:1] == ["--debug"]:
        argv.pop(0)
    with warnings.catch_warnings():
        warnings.showwarning = faults.one_line_warnings()
        try:
            status = _dispatch(argv)
            sys.stdout.flush()  # a closed pipe shows here, not at exit
            return status
        except BaseException as e:  # noqa: BLE001 - every exit path of the command line is decided here
            return faults.report(e, debug)


def _dispatch(argv: list) -> int:
    if argv and argv[0] in DELEGATED:
        return _delegate(argv[0], argv[1:])
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.command is None:
        ap.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
