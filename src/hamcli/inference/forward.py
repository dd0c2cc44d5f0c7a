"""Batched forward passes over uint8 image batches, shared by training (validation), evaluate and predict."""

from __future__ import annotations

import torch

from hamcli.classes import NUM_CLASSES
from hamcli.data.preprocess import to_float
from hamcli.models.precision import Precision


def tta_views(x: torch.Tensor) -> list[torch.Tensor]:
    """A lesion has no up or left: flips, and for square inputs quarter turns too (8 views, else 4)."""
    flips = [x, x.flip(3), x.flip(2), x.flip(2).flip(3)]
    if x.shape[-1] != x.shape[-2]:
        return flips
    return flips + [torch.rot90(v, 1, dims=(2, 3)) for v in flips]


@torch.inference_mode()
def logits(model: torch.nn.Module, images: torch.Tensor, prec: Precision, mean: torch.Tensor, std: torch.Tensor,
           batch_size: int = 128, tta: bool = False, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Logits (N, classes) float32 on CPU for (N, H, W, 3) uint8 images; `tta` averages flips and turns."""
    model.eval()
    chunks = []
    for start in range(0, len(images), batch_size):
        x = to_float(images[start:start + batch_size], mean, std)
        x = x.to(prec.device).contiguous(memory_format=prec.memory_format)
        with prec.autocast():
            if tta:
                # Average probabilities, then return their log: a valid logit vector for softmax.
                probs = torch.stack([model(v).float().softmax(1) for v in tta_views(x)]).mean(0)
                out = probs.clamp_min(1e-12).log()
            else:
                out = model(x).float()
        chunks.append(out.cpu())
    return torch.cat(chunks) if chunks else torch.empty(0, num_classes)
