"""The CAM methods by name: Grad-CAM, Grad-CAM++ and LayerCAM, one small module each."""

from __future__ import annotations

from hamcli.errors import UsageError
from hamcli.explain.base import BaseCAM, capture_layer
from hamcli.explain.gradcam import GradCAM
from hamcli.explain.gradcampp import GradCAMPlusPlus
from hamcli.explain.layercam import LayerCAM

METHODS: dict[str, type[BaseCAM]] = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "layercam": LayerCAM}


def get_method(name: str) -> type[BaseCAM]:
    try:
        return METHODS[name]
    except KeyError:
        raise UsageError(f"--method {name!r}: choose one of {', '.join(METHODS)}") from None


__all__ = ["METHODS", "BaseCAM", "GradCAM", "GradCAMPlusPlus", "LayerCAM", "capture_layer", "get_method"]
