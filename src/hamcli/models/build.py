"""Building a zoo architecture with a fresh head, from scratch or from pretrained weights."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from hamcli.classes import NUM_CLASSES
from hamcli.models.weights import LoadReport, imagenet_state, load_matching, read_torch_file
from hamcli.models.zoo import ModelSpec, get_spec, replace_head

if TYPE_CHECKING:
    from torch import nn

def build_model(name: str, num_classes: int = NUM_CLASSES, pretrained: bool = False,
                weights_path: Path | None = None) -> tuple[nn.Module, LoadReport | None]:
    """Architecture `name` with a `num_classes` head, and a report of the weights it started from.

    pretrained: ImageNet weights (`--weights FILE`, else the architecture's package or torchvision).
    weights_path alone: start from a local state dict or hamcli checkpoint, keeping what fits.
    """
    spec = get_spec(name)
    if pretrained:
        state, source = imagenet_state(spec, Path(weights_path) if weights_path else None)
        model = spec.builder(1000) if _head_rows(state, spec) == 1000 else spec.builder(num_classes)
        report = load_matching(model, state, source, spec.head)
        if _out_features(model, spec) != num_classes:
            replace_head(model, spec.head, num_classes)  # ImageNet's 1000 classes out, ours in
            head = tuple(k for k in model.state_dict() if k.startswith(spec.head + "."))
            report = replace(report, loaded=report.loaded - len(head), skipped=report.skipped + head)
        return model, report
    model = spec.builder(num_classes)
    if weights_path is None:
        return model, None
    state = read_torch_file(Path(weights_path), what="weights file")
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        from hamcli.errors import ModelError

        raise ModelError(f"{weights_path}: holds no state dict")
    return model, load_matching(model, state, str(weights_path), spec.head)


def _head_rows(state: dict, spec: ModelSpec) -> int | None:
    for key in (f"{spec.head}.weight", "_fc.weight"):
        if key in state and hasattr(state[key], "shape"):
            return int(state[key].shape[0])
    return None


def _out_features(model: nn.Module, spec: ModelSpec) -> int:
    return int(model.get_submodule(spec.head).out_features)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
