"""Example training configurations (TOML), shipped with the package.

    demo.toml                    `refsnn demo`: tiny_resnet on the embedded digits, 4/4/2 -> 2/2/1
    resnet20_cifar10.toml        ResNet20 on CIFAR-10, the paper's settings, targets 2/2/2
    resnet20_cifar10_111.toml    the same, targets 1/1/1
    resnet20_cifar10_341.toml    the same, targets 3/4/1
    sew_resnet34_imagenet.toml   SEW-ResNet34 on ImageNet (documentation: validates, no ImageNet reader yet)
    spikformer_cifar10.toml      Spikformer-4-384 on CIFAR-10 (Table 5), 4/4/2 -> 2/2/1
    spikformer_imagenet.toml     Spikformer-8-512 on ImageNet (App. A.7; documentation, like the SEW file)
    demo_events.toml             `refsnn demo --events`: sequential mode on the embedded event digits
    resnet20_cifar10dvs.toml     ResNet20 in sequential mode on CIFAR10-DVS (local copy)
    resnet18_dvsgesture.toml     ResNet18 in sequential mode on DVS128 Gesture (local copy)
    spikformer_cifar10dvs.toml   the DVS Spikformer in sequential mode on CIFAR10-DVS
    spikformer_dvsgesture.toml   the DVS Spikformer in sequential mode on DVS128 Gesture
    release_cifar10.toml         the authors' release as its launcher runs it: ResNet18, 4/4/2 -> 3/4/1,
                                 convention "official", each setting with the release's file and line

``bundled_config(name)`` gives the path of one (also as ``refsnn.config.bundled_config``);
``refsnn train --config NAME`` (or a path) runs it.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError


def bundled_names() -> list:
    """The names of the TOML files shipped in ``refsnn/configs`` (``demo``, ``resnet20_cifar10``, ...), sorted."""
    return sorted(p.stem for p in (Path(__file__).resolve().parent).glob("*.toml"))


def find_config(name_or_path) -> Path:
    """The TOML file of ``--config``: an existing file, else the bundled ``refsnn/configs/NAME.toml`` of a bare
    name (``"demo"``, ``"resnet20_cifar10"``, with or without ``.toml``).  A ``ConfigError`` names the
    argument and lists the bundled configurations when neither exists."""
    path = Path(name_or_path)
    if path.exists():  # a file (or something else that load_config then names: a directory, ...)
        return path
    if str(name_or_path) and path.name == str(name_or_path) and path.name.removesuffix(".toml") in bundled_names():
        return bundled_config(path.name)
    raise ConfigError(f"config file {str(name_or_path)!r} does not exist, nor is it the name of a bundled "
                      f"configuration; bundled: {', '.join(bundled_names())} (refsnn/configs/)")


def bundled_config(name: str) -> Path:
    """Path of a TOML file shipped in ``refsnn/configs`` (``"demo"`` -> ``.../configs/demo.toml``)."""
    base = Path(__file__).resolve().parent
    path = base / (name if name.endswith(".toml") else f"{name}.toml")
    if not path.is_file():
        raise ConfigError(f"no bundled config {name!r}; available: {bundled_names()}")
    return path
