"""`hamcli prepare`: a split manifest plus a decoded, resized uint8 image cache.

The output folder `prepared/<name>/` holds `manifest.csv` (one row per usable image, in
cache order), `summary.json` and `images_<W>x<H>.npy` (`images_<S>.npy` for squares), an
(N, H, W, 3) uint8 array that training memory-maps, so no JPEG is decoded twice.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import hamcli.fsio as fsio
import hamcli.paths as paths
import hamcli.slots as slots
from hamcli._version import __version__
from hamcli.classes import CLASS_CODES
from hamcli.data.cache import PreparedDataset, cache_file, fingerprint
from hamcli.data.preprocess import IMAGE_SUFFIXES, INTERPOLATION, POLICY, decode_all, parse_size, size_text
from hamcli.data.raw import Dataset, open_dataset
from hamcli.data.splits import (
    SplitSpec,
    assign_folds,
    assign_split,
    leaked_lesions,
    missing_in_parts,
    stratified_limit,
)
from hamcli.errors import DataError, UsageError
from hamcli.runs import runs_using
from hamcli.slots import check_name

RESIZE_POLICY = ("the largest centred box of the target's aspect ratio (the centre square for a square size, "
                 "the whole 4:3 frame for 4:3), bilinear resize, every image decoded whole")
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class PrepareConfig:
    split: str = "90/10"
    size: str | int = "128"  # a side (a square) or WIDTHxHEIGHT, e.g. 200x150
    seed: int = 42
    group_by: str = "lesion"
    folds: int = 0
    limit: int | None = None
    workers: int = 0  # 0: one per CPU core

    def check(self) -> None:
        """Every option, before any work (a bad one found after decoding 10,000 images wastes minutes)."""
        from hamcli.data.preprocess import parse_size
        from hamcli.data.splits import MAX_FOLDS

        SplitSpec.parse(self.split)
        parse_size(self.size)
        check_seed(self.seed, "--seed")
        if self.group_by not in ("lesion", "image"):
            raise UsageError(f"--group-by {self.group_by!r}: choose lesion or image")
        if not (self.folds == 0 or 2 <= self.folds <= MAX_FOLDS):
            raise UsageError(f"--folds {self.folds}: 0 (none) or from 2 to {MAX_FOLDS}")
        if self.limit is not None and self.limit < 1:
            raise UsageError(f"--limit {self.limit}: a number of images, at least 1 (leave it out for all)")
        if self.workers < 0:
            raise UsageError(f"--workers {self.workers}: zero (one per core) or more")


def check_seed(seed: object, option: str) -> int:
    """A seed every library takes (scikit-learn and numpy want 0 to 2**32 - 1)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise UsageError(f"{option} {seed}: a whole number from 0 to {2**32 - 1}")
    return seed


def _image_files(ds: Dataset) -> dict[str, Path]:
    return {p.stem: p for p in ds.images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}


def prepare(source: str | None = None, name: str | None = None, config: PrepareConfig | None = None,
            progress: Progress | None = None, overwrite: bool = False, force: bool = False) -> PreparedDataset:
    """Split dataset `source` and build its image cache as prepared dataset `name`.

    An existing prepared dataset is replaced only with `overwrite` (and `force` when runs were trained on
    it), and only once the new one is complete.
    """
    config = config or PrepareConfig()
    config.check()
    spec = SplitSpec.parse(config.split)
    size = parse_size(config.size)
    ds = open_dataset(source)
    name = ds.name if name is None else name
    table = pd.read_csv(ds.metadata, dtype=str, keep_default_na=False)
    files = _image_files(ds)
    excluded: dict[str, str] = {}
    missing = ~table["image_id"].isin(files)
    for image_id in table.loc[missing, "image_id"]:
        excluded[image_id] = "image file missing"
    table = table[~missing].reset_index(drop=True)
    if config.limit:
        table = stratified_limit(table, config.limit, config.seed)

    check_name(name)
    users = runs_using(name) if overwrite else []
    if users and not force:
        raise UsageError(f"prepared dataset {name!r} is what run(s) {', '.join(users)} were trained on; replacing "
                         "it makes their test split unknown (evaluate will refuse them): use another --name, or "
                         "pass --force with --overwrite")
    with slots.replace(paths.prepared_dir(), name, "prepared dataset", overwrite) as out:
        cache_path = out / cache_file(size)
        nbytes = len(table) * size[0] * size[1] * 3
        final = paths.prepared_dir() / name / cache_path.name  # what the user will know it by
        if fsio.free_bytes(out) < nbytes + 4096:
            raise fsio.disk_full(final, nbytes)
        cache = np.lib.format.open_memmap(cache_path, mode="w+", dtype=np.uint8, shape=(len(table), *size, 3))
        allocate(cache_path, final, nbytes)
        paths_in_order = [files[i] for i in table["image_id"]]
        failures = decode_all(paths_in_order, size, cache, config.workers, progress)
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
        gaps = missing_in_parts(table, split, spec, config.limit)
        for gap in gaps:
            warnings.warn(gap, stacklevel=2)
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
            "size": list(size),
            "size_text": size_text(size),
            "preprocess": {"policy": POLICY, "interpolation": INTERPOLATION},
            "resize_policy": RESIZE_POLICY,
            "images": int(len(manifest)),
            "lesions": int(manifest["lesion_id"].nunique()),
            "counts": {s: {c: int(((manifest["split"] == s) & (manifest["dx"] == c)).sum()) for c in CLASS_CODES}
                       for s in ("train", "val", "test")},
            "leaked_lesions": leaked_lesions(manifest, split),
            "missing_classes": gaps,
            "excluded": excluded,
            "fingerprint": fingerprint(manifest_bytes, size),
            "hamcli_version": __version__,
        }
        fsio.write_json(out / "summary.json", summary)
    return PreparedDataset.open(name)


def export_hmnist(prepared: PreparedDataset, target: Path) -> Path:
    """Write the prepared images as Kaggle's `hmnist_<S>_<S>_RGB.csv`: one row of S*S*3 pixel values (row by
    row, R G B) and a `label` in Kaggle's order, the input of the projects that train on that file."""
    from hamcli.data.sources import HMNIST_LABELS

    h, w = prepared.size
    if h != w:
        raise UsageError(f"--export-hmnist: hmnist files hold square images; prepare with a square --size "
                         f"(it is {w}x{h})")
    images = np.asarray(prepared.images()).reshape(len(prepared.manifest), -1)
    table = pd.DataFrame(images, columns=[f"pixel{i:04d}" for i in range(images.shape[1])])
    table["label"] = [HMNIST_LABELS.index(dx) for dx in prepared.manifest["dx"]]
    with fsio.atomic_path(Path(target)) as tmp:
        table.to_csv(tmp, index=False)
    return Path(target)


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


def allocate(path: Path, final: Path, nbytes: int) -> None:
    """Claim the disk blocks of a memory-mapped cache before writing into it: on a full disk, writes into a
    sparse mapping end the process with SIGBUS and no message; here they end in one DiskFullError, before any
    image is decoded."""
    import os

    with open(path, "r+b") as fh:
        try:
            os.posix_fallocate(fh.fileno(), 0, os.fstat(fh.fileno()).st_size)
        except OSError as exc:
            if fsio.is_disk_full(exc):
                raise fsio.disk_full(final, nbytes) from None
            # a file system without fallocate: the free-space check before stands
        except AttributeError:  # not POSIX
            pass
