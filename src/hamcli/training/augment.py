"""Augmentation for dermoscopy, on whole uint8 batches rather than one PIL image at a time.

A lesion has no up, down, left or right, so both flips and, for square images, 90-degree rotations
are free (a quarter turn would make a 4:3 frame 3:4); `strong` adds a small random affine (rotation,
scale, shift) and colour changes. Each sample draws its own transform from a torch Generator on the
batch's device (the training images live on the GPU for a run where they fit), so a seed reproduces a run.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _flip_rotate(batch: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random flips and quarter turns of an (N, H, W, C) batch, done on uint8 to move 4x fewer bytes, on the
    batch's device."""
    n, device = batch.shape[0], batch.device
    hflip = torch.rand(n, generator=g, device=device) < 0.5
    vflip = torch.rand(n, generator=g, device=device) < 0.5
    x = torch.where(hflip.view(-1, 1, 1, 1), batch.flip(2), batch)
    x = torch.where(vflip.view(-1, 1, 1, 1), x.flip(1), x)
    k = torch.randint(0, 4, (n,), generator=g, device=device)
    if batch.shape[1] != batch.shape[2]:
        return x  # the draw above still happens, so a seed gives the same stream for any shape
    if device.type == "cpu":  # turn only the samples drawn for each turn: a third of the work of the GPU path
        out = x.clone()
        for turns in (1, 2, 3):
            idx = (k == turns).nonzero().flatten()
            if len(idx):
                out[idx] = torch.rot90(x[idx], turns, dims=(1, 2))
        return out
    out = x  # on a GPU, whole-batch selects: indexing by a mask's nonzero() would wait on the host every step
    for turns in (1, 2, 3):
        out = torch.where((k == turns).view(-1, 1, 1, 1), torch.rot90(x, turns, dims=(1, 2)), out)
    return out


def _affine(x: torch.Tensor, g: torch.Generator, degrees: float, scale: float, shift: float) -> torch.Tensor:
    n, device = x.shape[0], x.device
    angle = (torch.rand(n, generator=g, device=device) * 2 - 1) * math.radians(degrees)
    s = 1 + (torch.rand(n, generator=g, device=device) * 2 - 1) * scale
    t = (torch.rand(n, 2, generator=g, device=device) * 2 - 1) * shift
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    h, w = x.shape[-2:]  # grid coordinates are in [-1, 1] on each axis: rotate in pixels, not in them
    theta = torch.stack([torch.stack([cos, -sin * h / w, t[:, 0]], 1), torch.stack([sin * w / h, cos, t[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _colour(x: torch.Tensor, g: torch.Generator, amount: float) -> torch.Tensor:
    n = x.shape[0]

    def factor() -> torch.Tensor:
        return (1 + (torch.rand(n, generator=g, device=x.device) * 2 - 1) * amount).view(-1, 1, 1, 1)

    x = x * factor()  # brightness
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * factor() + mean  # contrast
    grey = x.mean(dim=1, keepdim=True)
    x = (x - grey) * factor() + grey  # saturation
    return x.clamp_(0, 1)


def augment(batch: torch.Tensor, level: str, g: torch.Generator) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> augmented (N, 3, H, W) float in [0, 1]."""
    if level == "none":
        return batch.permute(0, 3, 1, 2).float().div_(255.0)
    x = _flip_rotate(batch, g).permute(0, 3, 1, 2).float().div_(255.0)
    if level == "strong":
        x = _affine(x, g, degrees=20, scale=0.1, shift=0.05)
        x = _colour(x, g, amount=0.15)
    else:
        x = _colour(x, g, amount=0.05)
    return x
