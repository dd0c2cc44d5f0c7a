"""LayerCAM (Jiang et al. 2021): each location weighted by its own positive gradient."""

from __future__ import annotations

import torch

from hamcli.explain.base import BaseCAM


class LayerCAM(BaseCAM):
    name = "layercam"

    def combine(self, activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
        return (torch.relu(gradients) * activations).sum(1)
