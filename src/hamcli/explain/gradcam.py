"""Grad-CAM (Selvaraju et al. 2017): channels weighted by their spatially averaged gradient."""

from __future__ import annotations

import torch

from hamcli.explain.base import BaseCAM


class GradCAM(BaseCAM):
    name = "gradcam"

    def combine(self, activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
        weights = gradients.mean(dim=(2, 3), keepdim=True)
        return (weights * activations).sum(1)
