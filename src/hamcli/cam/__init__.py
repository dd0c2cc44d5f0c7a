"""Class activation maps: Grad-CAM, Grad-CAM++ and LayerCAM, one small module each."""

from __future__ import annotations

from hamcli.cam.base import BaseCAM, capture_layer
from hamcli.cam.gradcam import GradCAM
from hamcli.cam.gradcampp import GradCAMPlusPlus
from hamcli.cam.layercam import LayerCAM
from hamcli.errors import UsageError

METHODS: dict[str, type[BaseCAM]] = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "layercam": LayerCAM}


def get_method(name: str) -> type[BaseCAM]:
    try:
        return METHODS[name]
    except KeyError:
        raise UsageError(f"--method {name!r}: choose one of {', '.join(METHODS)}") from None


__all__ = ["METHODS", "BaseCAM", "GradCAM", "GradCAMPlusPlus", "LayerCAM", "capture_layer", "get_method"]
