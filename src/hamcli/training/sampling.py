"""Which cached images train and which validate, and how training batches are drawn."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from hamcli.classes import NUM_CLASSES, encode
from hamcli.data.cache import PreparedDataset
from hamcli.data.splits import train_val_rows
from hamcli.errors import UsageError


@dataclass
class TrainData:
    images: torch.Tensor  # (N, S, S, 3) uint8, all images of the prepared dataset
    labels: torch.Tensor  # (N,) int64 in CLASS_CODES order
    train_idx: np.ndarray
    val_idx: np.ndarray
    val_source: str


def select(prepared: PreparedDataset, fold: int | None, seed: int, refit: bool = False,
           refit_fold: str | None = None, limit: int | None = None) -> TrainData:
    """Train/val rows (`data.splits.train_val_rows`), the labels, and the cache copied into memory. A refit
    trains on both and validates on none; with `refit_fold` "k/K", on all of them but the lesion-grouped fold
    k of K, which it predicts for the refit's out-of-fold calibration (`hamcli calibrate REFIT --folds K`)."""
    m = prepared.manifest
    train_idx, val_idx, source = train_val_rows(m, fold, seed, prepared.name)
    if refit:
        train_idx, val_idx = np.sort(np.concatenate([train_idx, val_idx])), val_idx[:0]
        source = f"none: a refit trains on the training rows and the {source} together"
        if refit_fold:
            k, n = refit_folds(refit_fold)
            part = refit_fold_of(m.iloc[train_idx], n, seed)
            train_idx, val_idx = train_idx[part != k], train_idx[part == k]
            source = f"fold {k} of {n} of the refit's rows (lesion-grouped), for its out-of-fold calibration"
    if limit:  # a quick trial: about `limit` training images, and a validation set in the same proportion
        share = len(val_idx) / max(len(train_idx), 1)
        train_idx = _subset(m, train_idx, limit, seed)
        val_idx = _subset(m, val_idx, max(1, round(limit * share)), seed) if len(val_idx) else val_idx
        source += f", limited to about {limit} training images"
    # Copy the memory-mapped cache into RAM once: every epoch reads every row.
    images = torch.from_numpy(np.array(prepared.images()))
    return TrainData(images, torch.from_numpy(encode(m["dx"])), train_idx, val_idx, source)


def _subset(manifest: pd.DataFrame, rows: np.ndarray, n: int, seed: int) -> np.ndarray:
    """About `n` of `rows`, in the classes' proportions, taking whole lesions (`data.splits.stratified_limit`)."""
    from hamcli.data.splits import stratified_limit

    table = manifest.iloc[rows].assign(_row=rows).reset_index(drop=True)
    return np.sort(stratified_limit(table, n, seed)["_row"].to_numpy())


def refit_folds(text: str) -> tuple[int, int]:
    """"k/K" -> (k, K), checked."""
    try:
        k, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        k, n = -1, 0
    if not (n >= 2 and 0 <= k < n):
        raise UsageError(f"refit_fold {text!r}: give k/K with K at least 2 and k from 0 to K-1, e.g. 0/3")
    return k, n


def refit_fold_of(rows: pd.DataFrame, n: int, seed: int) -> np.ndarray:
    """Each of a refit's training rows' fold of `n`, grouped by lesion and stratified by class."""
    from hamcli.data.splits import folds

    return folds(rows["dx"].to_numpy(), rows["lesion_id"].to_numpy(), n, seed + 2)


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
