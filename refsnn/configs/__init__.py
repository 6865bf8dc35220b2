"""Example training configurations (TOML), shipped with the package.

    demo.toml                    `refsnn demo`: tiny_resnet on the embedded digits, 4/4/2 -> 2/2/1
    resnet20_cifar10.toml        ResNet20 on CIFAR-10, the paper's settings, targets 2/2/2
    resnet20_cifar10_111.toml    the same, targets 1/1/1
    resnet20_cifar10_341.toml    the same, targets 3/4/1
    sew_resnet34_imagenet.toml   SEW-ResNet34 on ImageNet (documentation: validates, no ImageNet reader yet)
    spikformer_cifar10.toml      Spikformer-4-384 on CIFAR-10 (Table 5), 4/4/2 -> 2/2/1
    spikformer_imagenet.toml     Spikformer-8-512 on ImageNet (App. A.7; documentation, like the SEW file)
    release_cifar10.toml         the authors' release as its launcher runs it: ResNet18, 4/4/2 -> 3/4/1,
                                 convention "official", each setting with the release's file and line

``refsnn.config.bundled_config(name)`` gives the path of one; ``refsnn train --config PATH`` runs it.
"""
