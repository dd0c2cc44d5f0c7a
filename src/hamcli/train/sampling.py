"""Which cached images train and which validate, and how training batches are drawn."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hamcli.classes import NUM_CLASSES, encode
from hamcli.data.cache import PreparedDataset
from hamcli.data.splits import SplitSpec, assign_split
from hamcli.errors import UsageError


@dataclass
class TrainData:
    images: torch.Tensor  # (N, S, S, 3) uint8, all images of the prepared dataset
    labels: torch.Tensor  # (N,) int64 in CLASS_CODES order
    train_idx: np.ndarray
    val_idx: np.ndarray
    val_source: str


def select(prepared: PreparedDataset, fold: int | None, seed: int) -> TrainData:
    """Train/val rows: the val split, fold `fold`, or a lesion-grouped 85/15 carve-out of train."""
    m = prepared.manifest
    labels = torch.from_numpy(encode(m["dx"]))
    split = m["split"].to_numpy()
    if fold is not None:
        folds = m["fold"].to_numpy()
        if folds.max() < 0:
            raise UsageError(f"--fold {fold}: prepared dataset {prepared.name!r} has no folds; "
                             "run `hamcli prepare --folds K` first")
        if not 0 <= fold <= folds.max():
            raise UsageError(f"--fold {fold}: choose 0 to {folds.max()}")
        train_idx = np.flatnonzero((split != "test") & (folds != fold))
        val_idx = np.flatnonzero((split != "test") & (folds == fold))
        source = f"fold {fold}"
    elif (split == "val").any():
        train_idx, val_idx = np.flatnonzero(split == "train"), np.flatnonzero(split == "val")
        source = "val split"
    else:
        train_rows = np.flatnonzero(split == "train")
        carved = assign_split(m.iloc[train_rows].reset_index(drop=True), SplitSpec(85, 0, 15), seed)
        train_idx, val_idx = train_rows[carved == "train"], train_rows[carved == "test"]
        source = "lesion-grouped 15% of train"
    # Copy the memory-mapped cache into RAM once: every epoch reads every row.
    images = torch.from_numpy(np.array(prepared.images()))
    return TrainData(images, labels, train_idx, val_idx, source)


def class_weights(labels: torch.Tensor, mode: str) -> torch.Tensor | None:
    """Loss weights from training-set class counts: none, balanced (n / (k * count)) or its sqrt."""
    if mode == "none":
        return None
    counts = torch.bincount(labels, minlength=NUM_CLASSES).float().clamp(min=1)
    w = counts.sum() / (len(counts) * counts)
    if mode == "sqrt":
        w = w.sqrt()
    elif mode != "balanced":
        raise UsageError(f"--class-weight {mode!r}: choose none, balanced or sqrt")
    return w


def epoch_order(labels: torch.Tensor, sampler: str, g: torch.Generator) -> torch.Tensor:
    """Positions (into the training rows) for one epoch: a shuffle, or class-balanced oversampling."""
    n = len(labels)
    if sampler == "none":
        return torch.randperm(n, generator=g)
    if sampler != "weighted":
        raise UsageError(f"--sampler {sampler!r}: choose none or weighted")
    counts = torch.bincount(labels, minlength=NUM_CLASSES).float()
    weights = 1.0 / counts[labels]
    return torch.multinomial(weights, n, replacement=True, generator=g)
