"""Batched forward passes over uint8 image batches, shared by training, evaluate and predict."""

from __future__ import annotations

import torch

from hamcli.train.augment import to_float
from hamcli.train.precision import Precision


def _views(x: torch.Tensor) -> list[torch.Tensor]:
    out = []
    for flip in (False, True):
        base = x.flip(3) if flip else x
        out.extend(torch.rot90(base, k, dims=(2, 3)) for k in range(4))
    return out


@torch.inference_mode()
def logits(model: torch.nn.Module, images: torch.Tensor, prec: Precision, mean: torch.Tensor, std: torch.Tensor,
           batch_size: int = 128, tta: bool = False) -> torch.Tensor:
    """Logits (N, 7) float32 on CPU for (N, S, S, 3) uint8 images; `tta` averages 8 flips/rotations."""
    model.eval()
    chunks = []
    for start in range(0, len(images), batch_size):
        x = to_float(images[start:start + batch_size], mean, std)
        x = x.to(prec.device).contiguous(memory_format=prec.memory_format)
        with prec.autocast():
            if tta:
                # Average probabilities, then return their log: a valid logit vector for softmax.
                probs = torch.stack([model(v).float().softmax(1) for v in _views(x)]).mean(0)
                out = probs.clamp_min(1e-12).log()
            else:
                out = model(x).float()
        chunks.append(out.cpu())
    return torch.cat(chunks) if chunks else torch.empty(0, 7)
