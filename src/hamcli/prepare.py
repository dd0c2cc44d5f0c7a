"""`hamcli prepare`: a split manifest plus a decoded, resized uint8 image cache.

The output folder `prepared/<name>/` holds `manifest.csv` (one row per usable image, in
cache order), `summary.json` and `images_<S>.npy`, an (N, S, S, 3) uint8 array that
training memory-maps, so no JPEG is decoded twice.
"""

from __future__ import annotations

import hashlib
import shutil
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hamcli import __version__, fsio, paths
from hamcli.classes import CLASS_CODES
from hamcli.datasets import Dataset, open_dataset
from hamcli.errors import DataError, UsageError
from hamcli.images import IMAGE_SUFFIXES, decode_all
from hamcli.prepared import PreparedDataset
from hamcli.splits import SplitSpec, assign_folds, assign_split, leaked_lesions, stratified_limit

RESIZE_POLICY = "centre square crop (side = shorter side), bilinear resize to SxS, JPEG draft decoding"
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class PrepareConfig:
    split: str = "90/10"
    size: int = 128
    seed: int = 42
    group_by: str = "lesion"
    folds: int = 0
    limit: int | None = None
    workers: int = 0  # 0: one per CPU core


def _image_files(ds: Dataset) -> dict[str, Path]:
    return {p.stem: p for p in ds.images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}


def prepare(source: str | None = None, name: str | None = None, config: PrepareConfig | None = None,
            progress: Progress | None = None) -> PreparedDataset:
    """Split dataset `source` and build its image cache as prepared dataset `name`."""
    config = config or PrepareConfig()
    spec = SplitSpec.parse(config.split)
    if config.group_by not in ("lesion", "image"):
        raise UsageError(f"--group-by {config.group_by!r}: choose lesion or image")
    if not 8 <= config.size <= 1024:
        raise UsageError(f"--size {config.size}: choose an image size between 8 and 1024 pixels")
    ds = open_dataset(source)
    name = name or ds.name
    table = pd.read_csv(ds.metadata, dtype=str, keep_default_na=False)
    files = _image_files(ds)
    excluded: dict[str, str] = {}
    missing = ~table["image_id"].isin(files)
    for image_id in table.loc[missing, "image_id"]:
        excluded[image_id] = "image file missing"
    table = table[~missing].reset_index(drop=True)
    if config.limit:
        table = stratified_limit(table, config.limit, config.seed)

    with fsio.atomic_dir(paths.prepared_dir() / name) as out:
        cache_path = out / f"images_{config.size}.npy"
        cache = np.lib.format.open_memmap(cache_path, mode="w+", dtype=np.uint8,
                                          shape=(len(table), config.size, config.size, 3))
        paths_in_order = [files[i] for i in table["image_id"]]
        failures = decode_all(paths_in_order, config.size, cache, config.workers, progress)
        if failures:
            good = np.array([i not in failures for i in range(len(table))])
            for i, reason in failures.items():
                excluded[table["image_id"].iloc[i]] = reason
            kept = np.asarray(cache[good])
            del cache
            np.save(cache_path, kept)
            table = table[good].reset_index(drop=True)
            paths_in_order = [p for p, g in zip(paths_in_order, good, strict=True) if g]
        else:
            cache.flush()
            del cache
        if table.empty:
            raise DataError(f"{ds.root}: no usable images to prepare (all {len(excluded)} were excluded)")
        if config.group_by == "image":
            warnings.warn("--group-by image splits images of one lesion across train and test; results will "
                          "be inflated and are not comparable with lesion-grouped ones", stacklevel=2)
        split = assign_split(table, spec, config.seed, config.group_by)
        fold = (assign_folds(table, split, config.folds, config.seed, config.group_by)
                if config.folds else np.full(len(table), -1))
        manifest = table.copy()
        manifest.insert(3, "split", split)
        manifest.insert(4, "fold", fold)
        manifest.insert(5, "file", [p.name for p in paths_in_order])
        manifest_bytes = manifest.to_csv(index=False, lineterminator="\n").encode()
        (out / "manifest.csv").write_bytes(manifest_bytes)
        summary = {
            "name": name,
            "source": ds.name,
            "source_root": str(ds.root),
            "origin": ds.report.get("origin", ""),
            "config": asdict(config),
            "split": str(spec),
            "has_val": bool(spec.val),
            "size": config.size,
            "resize_policy": RESIZE_POLICY,
            "images": int(len(manifest)),
            "lesions": int(manifest["lesion_id"].nunique()),
            "counts": {s: {c: int(((manifest["split"] == s) & (manifest["dx"] == c)).sum()) for c in CLASS_CODES}
                       for s in ("train", "val", "test")},
            "leaked_lesions": leaked_lesions(manifest, split),
            "excluded": excluded,
            "fingerprint": hashlib.sha256(manifest_bytes).hexdigest()[:16],
            "hamcli_version": __version__,
        }
        fsio.write_json(out / "summary.json", summary)
    return PreparedDataset.open(name)


def export_folders(prepared: PreparedDataset, target: Path) -> Path:
    """Copy the images into `target/<split>/<dx>/`, the layout ImageFolder and Keras projects read."""
    manifest = prepared.manifest
    source_images = Path(prepared.summary["source_root"]) / "images"
    with fsio.atomic_dir(Path(target)) as out:
        for split, dx, file in manifest[["split", "dx", "file"]].itertuples(index=False):
            folder = out / split / dx
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source_images / file, folder / file)
    return Path(target)
