"""Lesion-grouped, class-stratified splits and folds (scikit-learn's StratifiedGroupKFold).

A split like 70/15/15 is made by cutting the data into equal stratified, grouped folds
(one fold per greatest common divisor of the percentages) and handing whole folds to
each part, so every part keeps the class balance and no lesion crosses parts.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hamcli.errors import UsageError

MAX_FOLDS = 50


@dataclass(frozen=True)
class SplitSpec:
    train: int
    val: int
    test: int

    @classmethod
    def parse(cls, text: str) -> SplitSpec:
        try:
            parts = [int(p) for p in text.split("/")]
        except ValueError:
            parts = []
        if len(parts) not in (2, 3) or sum(parts) != 100 or min(parts) <= 0:
            raise UsageError(f"--split {text!r}: give train/test or train/val/test percentages, each above 0, "
                             "that add up to 100, e.g. 90/10 or 70/15/15")
        return cls(parts[0], parts[1], parts[2]) if len(parts) == 3 else cls(parts[0], 0, parts[1])

    def __str__(self) -> str:
        return f"{self.train}/{self.val}/{self.test}" if self.val else f"{self.train}/{self.test}"


def folds(y: np.ndarray, groups: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold number of each row: k stratified folds, grouped by `groups`."""
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    fold = np.full(len(y), -1, dtype=np.int64)
    _, counts = np.unique(y, return_counts=True)
    with warnings.catch_warnings():
        # sklearn warns when a class has fewer members than folds; the rare classes simply
        # land in fewer folds, which is the best that grouping allows.
        warnings.simplefilter("ignore", UserWarning)
        if counts.max() >= k:
            splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        else:  # too few images of any class to stratify (a handful of samples): group only
            splitter = GroupKFold(n_splits=k, shuffle=True, random_state=seed)
        for i, (_, idx) in enumerate(splitter.split(np.zeros(len(y)), y, groups)):
            fold[idx] = i
    return fold


def assign_split(table: pd.DataFrame, spec: SplitSpec, seed: int, group_by: str = "lesion") -> np.ndarray:
    """'train'/'val'/'test' for each row of `table` (columns lesion_id, dx)."""
    parts = [p for p in (spec.train, spec.val, spec.test) if p]
    k = min(100 // math.gcd(*parts), MAX_FOLDS)
    groups = table["lesion_id" if group_by == "lesion" else "image_id"].to_numpy()
    n_groups = len(set(groups))
    if n_groups < 2:
        raise UsageError(f"--split {spec}: only {n_groups} {group_by}, too few to split; add more data")
    k = min(k, n_groups)  # tiny datasets: coarser folds, each part still gets whole groups
    fold = folds(table["dx"].to_numpy(), groups, k, seed)
    n_test = max(1, round(spec.test * k / 100)) if spec.test else 0
    n_val = max(1, round(spec.val * k / 100)) if spec.val else 0
    split = np.full(len(table), "train", dtype=object)
    split[fold < n_test] = "test"
    split[(fold >= n_test) & (fold < n_test + n_val)] = "val"
    return split


def assign_folds(table: pd.DataFrame, split: np.ndarray, k: int, seed: int, group_by: str) -> np.ndarray:
    """K grouped, stratified folds over the train rows; -1 for test rows, and for val rows, which no fold
    trains on: they are where a K-fold family's averaged prediction is calibrated."""
    if k < 2:
        raise UsageError(f"--folds {k}: give at least 2 folds")
    fold = np.full(len(table), -1, dtype=np.int64)
    rows = np.flatnonzero(split == "train")
    sub = table.iloc[rows]
    groups = sub["lesion_id" if group_by == "lesion" else "image_id"].to_numpy()
    if len(set(groups)) < k:
        raise UsageError(f"--folds {k}: only {len(set(groups))} {group_by}s in the train split")
    fold[rows] = folds(sub["dx"].to_numpy(), groups, k, seed + 1)
    return fold


def stratified_limit(table: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """About `n` images in the dataset's class proportions, taking whole lesions.

    Written by hand because scikit-learn has no grouped subset draw of a given size.
    """
    if n >= len(table):
        return table
    rng = np.random.default_rng(seed)
    keep: list[str] = []
    for _dx, part in table.groupby("dx", sort=True):
        target = max(1, round(n * len(part) / len(table)))
        sizes = part.groupby("lesion_id", sort=True).size()
        order = rng.permutation(len(sizes))
        taken = 0
        for i in order:
            if taken >= target:
                break
            keep.append(sizes.index[i])
            taken += int(sizes.iloc[i])
    return table[table["lesion_id"].isin(set(keep))].reset_index(drop=True)


def leaked_lesions(table: pd.DataFrame, split: np.ndarray) -> int:
    """Lesions whose images fall in more than one split (0 for a grouped split)."""
    parts = pd.Series(split, index=table.index).groupby(table["lesion_id"]).nunique()
    return int((parts > 1).sum())


def carve_seed(config: dict) -> int:
    """The seed a run's validation carve-out was drawn with, from its recorded options: `--val-seed`,
    else `--seed` (which also seeds initialisation, order and augmentation)."""
    chosen = config.get("val_seed")
    return int(config.get("seed", 42) if chosen is None else chosen)


def train_val_rows(manifest: pd.DataFrame, fold: int | None, seed: int, name: str = "the prepared dataset"
                   ) -> tuple[np.ndarray, np.ndarray, str]:
    """The rows a run trains and validates on: fold `fold`, the val split, or a lesion-grouped 85/15
    carve-out of train; and a description. Deterministic, so evaluate can find a run's validation rows."""
    split = manifest["split"].to_numpy()
    if fold is not None:
        folds = manifest["fold"].to_numpy()
        if folds.max() < 0:
            raise UsageError(f"--fold {fold}: prepared dataset {name!r} has no folds; "
                             "run `hamcli prepare --folds K` first")
        if not 0 <= fold <= folds.max():
            raise UsageError(f"--fold {fold}: choose 0 to {folds.max()}")
        # Rows with a fold number: the train split (and, in datasets prepared before hamcli 0.2, the val split)
        train_idx = np.flatnonzero((folds >= 0) & (folds != fold))
        val_idx = np.flatnonzero(folds == fold)
        return train_idx, val_idx, f"fold {fold}"
    if (split == "val").any():
        return np.flatnonzero(split == "train"), np.flatnonzero(split == "val"), "val split"
    train_rows = np.flatnonzero(split == "train")
    carved = assign_split(manifest.iloc[train_rows].reset_index(drop=True), SplitSpec(85, 0, 15), seed)
    return train_rows[carved == "train"], train_rows[carved == "test"], "lesion-grouped 15% of train"


def calibration_rows(manifest: pd.DataFrame) -> np.ndarray:
    """Rows no fold of a K-fold family trains on, apart from test: the val split of a dataset prepared with
    one (`--split 70/15/15 --folds K`); empty otherwise."""
    return np.flatnonzero((manifest["split"].to_numpy() == "val") & (manifest["fold"].to_numpy() < 0))


def missing_in_parts(table: pd.DataFrame, split: np.ndarray, spec: SplitSpec, limit: int | None) -> list[str]:
    """A warning for each evaluated part (val, test) that lacks a class with training images, naming the
    classes and the one fix that covers them all (for too few lesions, the largest --limit or part any of
    them needs): metrics on that part would otherwise silently average over fewer classes."""
    import math

    warnings_out = []
    for part, percent in (("val", spec.val), ("test", spec.test)):
        if not percent:
            continue
        needed = math.ceil(100 / percent)  # lesions of a class for the part to expect one
        few, unlucky = {}, []
        for dx, rows in table.groupby("dx", sort=True):
            in_split = split[rows.index.to_numpy()]
            if (in_split == "train").any() and not (in_split == part).any():
                lesions = rows["lesion_id"].nunique()
                if lesions < needed:
                    few[dx] = lesions
                else:
                    unlucky.append(dx)
        if few:
            many = len(few) > 1
            fix = (f"raise --limit to at least {max(math.ceil(limit * needed / n) for n in few.values())}" if limit
                   else f"use a split whose {part} part is at least {max(math.ceil(100 / n) for n in few.values())}%")
            names = ", ".join(f"{dx} ({n} lesion{'s' if n != 1 else ''})" for dx, n in few.items())
            warnings_out.append(f"class{'es' if many else ''} {names} {'are' if many else 'is'} too few for a "
                                f"{percent}% {part} part (about {needed} lesions a class): no image of "
                                f"{'them' if many else 'it'} is in {part}, so metrics there average over fewer "
                                f"classes; {fix}")
        if unlucky:
            warnings_out.append(f"by chance no image of class {', '.join(unlucky)} fell in the {percent}% {part} "
                                "part, so metrics there average over fewer classes; try another --seed")
    return warnings_out
