"""Grad-CAM++ (Chattopadhyay et al. 2018): pixel-wise weighting of positive gradients."""

from __future__ import annotations

import torch

from hamcli.explain.base import BaseCAM


class GradCAMPlusPlus(BaseCAM):
    name = "gradcam++"

    def combine(self, activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
        g2, g3 = gradients.pow(2), gradients.pow(3)
        denom = 2 * g2 + activations.sum(dim=(2, 3), keepdim=True) * g3
        alpha = g2 / torch.where(denom != 0, denom, torch.ones_like(denom))
        weights = (alpha * torch.relu(gradients)).sum(dim=(2, 3), keepdim=True)
        return (weights * activations).sum(1)
