"""Small networks trained from scratch, with named layers so that Grad-CAM and checkpoints read well."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn


def lenet(num_classes: int) -> nn.Sequential:
    """Three 3x3 conv + max-pool blocks (32, 64, 128 channels), then two fully connected layers."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i, (cin, cout) in enumerate(((3, 32), (32, 64), (64, 128)), 1):
        layers[f"conv{i}"] = nn.Conv2d(cin, cout, 3, padding=1)
        layers[f"relu{i}"] = nn.ReLU()
        layers[f"pool{i}"] = nn.MaxPool2d(2)
    return nn.Sequential(OrderedDict(
        features=nn.Sequential(layers), pool=nn.AdaptiveAvgPool2d(4), flatten=nn.Flatten(),
        fc=nn.Linear(128 * 16, 256), relu=nn.ReLU(), dropout=nn.Dropout(0.5),
        classifier=nn.Linear(256, num_classes)))


def _block(cin: int, cout: int, drop: float) -> nn.Sequential:
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(cin, cout, 3, padding=1, bias=False), bn1=nn.BatchNorm2d(cout), relu1=nn.ReLU(),
        conv2=nn.Conv2d(cout, cout, 3, padding=1, bias=False), bn2=nn.BatchNorm2d(cout), relu2=nn.ReLU(),
        pool=nn.MaxPool2d(2), dropout=nn.Dropout(drop)))


def small_cnn(num_classes: int) -> nn.Sequential:
    """Four conv / batch-norm / dropout blocks (32 to 256 channels), global pooling, one linear layer."""
    features = nn.Sequential(OrderedDict(
        block1=_block(3, 32, 0.1), block2=_block(32, 64, 0.2), block3=_block(64, 128, 0.3),
        block4=_block(128, 256, 0.3)))
    return nn.Sequential(OrderedDict(features=features, pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(),
                                     dropout=nn.Dropout(0.4), classifier=nn.Linear(256, num_classes)))


# Checkpoints of format 1 (hamcli 0.1) numbered these layers as anonymous Sequential indices.
_CNN_BLOCK = ("conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "pool", "dropout")
LEGACY_KEYS: dict[str, dict[str, str]] = {
    "lenet": {"0.0.": "features.conv1.", "0.3.": "features.conv2.", "0.6.": "features.conv3.",
              "3.": "fc.", "6.": "classifier."},
    "cnn": {**{f"0.{b}.{j}.": f"features.block{b + 1}.{name}." for b in range(4) for j, name in enumerate(_CNN_BLOCK)},
            "4.": "classifier."},
}


def upgrade_legacy_keys(arch: str, state: dict) -> dict:
    """Rename a format-1 state dict's keys to today's layer names (longest prefix first)."""
    table = LEGACY_KEYS.get(arch)
    if not table:
        return state
    prefixes = sorted(table, key=len, reverse=True)
    out = {}
    for key, value in state.items():
        new = next((table[p] + key[len(p):] for p in prefixes if key.startswith(p)), key)
        out[new] = value
    return out
