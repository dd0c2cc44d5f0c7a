"""Turning any common copy of HAM10000 into a hamcli dataset, with a validation report.

Accepted: the Kaggle archive or its unpacked folder, the Dataverse zips, a plain folder of
`<image_id>.jpg` plus a metadata CSV, the ISIC 2018 test set, Kaggle's `hmnist_*_RGB.csv`
pixel files, and MedMNIST's `dermamnist*.npz`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

import hamcli.fsio as fsio
import hamcli.paths as paths
import hamcli.slots as slots
from hamcli.classes import CLASS_CODES
from hamcli.data.archive import extract_zip
from hamcli.data.metadata import Metadata, read_metadata
from hamcli.data.preprocess import IMAGE_SUFFIXES
from hamcli.data.raw import Dataset
from hamcli.data.sources import DERMAMNIST_LABELS, HMNIST_LABELS
from hamcli.errors import DataError
from hamcli.slots import check_name

SAMPLES_DIR = Path(__file__).parents[1] / "samples"


def _is_metadata_csv(path: Path) -> bool:
    if path.name.lower().startswith("hmnist"):
        return False
    try:
        header = pd.read_csv(path, nrows=0).columns
    except Exception:  # noqa: BLE001 - any unreadable CSV is simply not a metadata candidate
        return False
    cols = {c.strip().lower() for c in header}
    return ("image_id" in cols and "dx" in cols) or ("image" in cols and "mel" in cols)


def files_below(folder: Path) -> list[Path]:
    """Every file below `folder`, in name order, following symbolic links to folders (an `images/` that is a
    link to the real folder is common) but never into a folder twice, so a link cycle ends."""
    found: list[Path] = []
    seen: set[Path] = set()
    for root, dirs, names in os.walk(folder, followlinks=True):
        real = Path(root).resolve()
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        found += [Path(root) / n for n in names]
    return sorted(found)


def find_metadata(folder: Path) -> Path | None:
    """The labelled metadata CSV below `folder`: HAM10000_metadata*.csv first, else any CSV with
    image_id and dx columns or the ISIC one-hot ground truth."""
    csvs = [p for p in files_below(folder) if p.suffix.lower() == ".csv"]
    candidates = [p for p in csvs if p.name.startswith("HAM10000_metadata")] + csvs
    return next((p for p in candidates if _is_metadata_csv(p)), None)


def index_images(folder: Path) -> dict[str, Path]:
    """image_id (the file's stem) -> path, for every image below `folder` (links followed); the first of
    duplicates wins."""
    index: dict[str, Path] = {}
    for path in files_below(folder):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not path.name.startswith("."):
            index.setdefault(path.stem, path)  # Kaggle's archive holds each part twice
    return index


def _check_image(path: Path) -> str | None:
    try:
        with Image.open(path) as img:
            img.verify()
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for broken files
        return f"{path.name}: {exc or type(exc).__name__}"
    return None


def _write_arrays(images: np.ndarray, labels: list[str], ids: list[str], out: Path,
                  extra: dict[str, list[str]] | None = None) -> pd.DataFrame:
    (out / "images").mkdir(parents=True, exist_ok=True)
    for arr, image_id in zip(images, ids, strict=True):
        Image.fromarray(np.asarray(arr, dtype=np.uint8)).save(out / "images" / f"{image_id}.png")
    table = pd.DataFrame({"image_id": ids, "lesion_id": ids, "dx": labels, **(extra or {})})
    return table


def _labels(values: np.ndarray, order: tuple[str, ...], where: str) -> list[str]:
    """Integer labels -> class codes in the source's own order; anything else is an error naming the row."""
    values = np.asarray(values).reshape(-1)
    if values.dtype.kind not in "iu" and not (values.dtype.kind == "f" and np.isfinite(values).all()
                                              and (values == np.round(values)).all()):
        raise DataError(f"{where}: labels must be whole numbers 0-{len(order) - 1} (found {values.dtype} values)")
    bad = np.flatnonzero((values < 0) | (values >= len(order)))
    if len(bad):
        raise DataError(f"{where}: label {values[bad[0]]} in row {bad[0]} is outside 0-{len(order) - 1}; "
                        "the file is damaged or is not this source's")
    return [order[int(v)] for v in values]


def _from_hmnist(csv: Path, out: Path) -> tuple[pd.DataFrame, dict]:
    try:
        df = pd.read_csv(csv)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{csv}: not a readable CSV ({str(exc)[:120]})") from None
    if "label" not in df.columns:
        raise DataError(f"{csv}: no 'label' column; expected Kaggle's hmnist_28_28_RGB.csv layout")
    values = df.drop(columns=["label"])
    side = int(round((values.shape[1] / 3) ** 0.5))
    if side * side * 3 != values.shape[1] or not len(df):
        raise DataError(f"{csv}: {values.shape[1]} pixel columns is not an RGB square image; "
                        "use an hmnist_*_RGB.csv file (the _L files are greyscale and unsupported)")
    numeric = values.apply(pd.to_numeric, errors="coerce")
    broken = numeric.isna().any(axis=1) | ((numeric < 0) | (numeric > 255)).any(axis=1)
    if broken.any():
        raise DataError(f"{csv}: row {int(np.flatnonzero(broken)[0])} has an empty, non-numeric or out-of-range "
                        "pixel value (0-255 expected); the file is damaged")
    labels = _labels(pd.to_numeric(df["label"], errors="coerce").to_numpy(), HMNIST_LABELS, str(csv))
    ids = [f"hmnist_{i:05d}" for i in range(len(df))]
    table = _write_arrays(numeric.to_numpy(dtype=np.uint8).reshape(-1, side, side, 3), labels, ids, out)
    return table, {"no_lesion_ids": ["hmnist files carry no lesion ids: each image is its own lesion, "
                                     "so splits cannot be grouped by lesion"]}


def _from_dermamnist(npz: Path, out: Path) -> tuple[pd.DataFrame, dict]:
    tables = []
    try:
        data = np.load(npz)
        with data:
            for split in ("train", "val", "test"):
                for key in (f"{split}_images", f"{split}_labels"):
                    if key not in data:
                        raise DataError(f"{npz}: no array {key!r}; expected a MedMNIST dermamnist npz")
                images = data[f"{split}_images"]
                if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
                    raise DataError(f"{npz}: {split}_images is {images.dtype} {images.shape}, not (N, H, W, 3) uint8")
                labels = _labels(data[f"{split}_labels"], DERMAMNIST_LABELS, f"{npz} ({split}_labels)")
                if len(labels) != len(images):
                    raise DataError(f"{npz}: {len(images)} {split} images but {len(labels)} labels")
                ids = [f"dermamnist_{split}_{i:05d}" for i in range(len(labels))]
                tables.append(_write_arrays(images, labels, ids, out, {"official_split": [split] * len(ids)}))
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # object arrays, truncation, garbage
        raise DataError(f"{npz}: not a readable npz file ({str(exc)[:120]}); download it again") from None
    return pd.concat(tables, ignore_index=True), {
        "no_lesion_ids": ["dermamnist carries no lesion ids; its official split (column official_split) "
                          "was made by MedMNIST"]}


def _from_folder(roots: list[Path], out: Path, meta_path: Path | None) -> tuple[pd.DataFrame, dict]:
    folder = roots[0]
    meta_path = meta_path or next((m for m in map(find_metadata, roots) if m is not None), None)
    if meta_path is None:
        hmnist = sorted(p for root in roots for p in root.rglob("hmnist_*_RGB.csv"))
        if hmnist:
            return _from_hmnist(hmnist[-1], out)
        named = sorted(p for root in roots for p in files_below(root) if p.name.startswith("HAM10000_metadata")
                       and p.suffix.lower() == ".csv")
        if named:  # there, but not usable: say what is wrong with it (a missing column, say)
            read_metadata(named[0])
        raise DataError(f"{folder}: no metadata CSV found (looked for HAM10000_metadata.csv or a CSV with "
                        "image_id and dx columns); add one or pass --metadata FILE")
    meta: Metadata = read_metadata(meta_path)
    index: dict[str, Path] = {}
    for root in roots:
        for key, value in index_images(root).items():
            index.setdefault(key, value)
    (out / "images").mkdir(parents=True, exist_ok=True)
    problems = dict(meta.problems)
    keep = []
    for image_id in meta.table["image_id"]:
        src = index.get(image_id)
        if src is None:
            problems.setdefault("missing_images", []).append(image_id)
            keep.append(False)
            continue
        reason = _check_image(src)
        if reason:
            problems.setdefault("unreadable_images", []).append(reason)
            keep.append(False)
            continue
        shutil.copyfile(src, out / "images" / f"{image_id}{src.suffix.lower()}")
        keep.append(True)
    listed = set(meta.table["image_id"])
    unlisted = sorted(k for k in index if k not in listed)
    if unlisted:
        problems["unlisted_images"] = unlisted
    table = meta.table[keep].reset_index(drop=True)
    return table, problems


def _unpack(path: Path, scratch: Path) -> list[Path]:
    """The folders to read: `path` itself and, when it is or holds zip archives, their contents in `scratch`."""
    if path.is_file() and path.suffix.lower() == ".zip":
        extract_zip(path, scratch / path.stem)
        return [scratch]
    zips = sorted(path.glob("*.zip")) if path.is_dir() else []
    for z in zips:
        extract_zip(z, scratch / z.stem)
    return [path, scratch] if zips else [path]


def import_dataset(source: Path, name: str = "ham10000", metadata: Path | None = None,
                   origin: str | None = None, overwrite: bool = False) -> Dataset:
    """Import `source` (a folder, zip, hmnist CSV or dermamnist npz) as dataset `name`.

    An existing dataset of that name is replaced only with `overwrite`, and only once the new one is
    complete: a failed or killed import leaves the old one as it was.
    """
    source = Path(source).expanduser()
    check_name(name)
    if not source.exists():
        raise DataError(f"{source}: no such file or folder; give the path of your HAM10000 copy")
    target = paths.datasets_dir() / name
    signature = source_signature(source, metadata)
    with slots.replace(paths.datasets_dir(), name, "dataset", overwrite) as out, \
            tempfile.TemporaryDirectory(dir=out, prefix=".scratch-") as scratch:
        suffix = source.suffix.lower()
        if source.is_file() and suffix == ".npz":
            table, problems = _from_dermamnist(source, out)
        elif source.is_file() and suffix == ".csv":
            if not source.name.lower().startswith("hmnist"):
                raise DataError(f"{source}: a metadata CSV alone has no images; pass the folder that holds "
                                "both the CSV and the images")
            table, problems = _from_hmnist(source, out)
        elif source.is_dir() or suffix == ".zip":
            table, problems = _from_folder(_unpack(source, Path(scratch)), out, metadata)
        else:
            raise DataError(f"{source}: unsupported input; give a folder, a .zip, an hmnist_*_RGB.csv "
                            "or a dermamnist .npz")
        if table.empty:
            raise DataError(f"{source}: no usable labelled images found; check the metadata's image_id "
                            "values against the image file names")
        table.to_csv(out / "metadata.csv", index=False)
        report = build_report(table, problems, origin or str(source))
        fsio.write_json(out / "report.json", {**report, "source_signature": signature})
    return Dataset(name, target)


def source_signature(source: Path, metadata: Path | None = None) -> str:
    """What an import was made from: every file's path, size and modification time (hashed), cheap to
    compute again, so that importing an unchanged copy a second time can be recognised."""
    import hashlib

    digest = hashlib.sha256(str(source.resolve()).encode())
    files = files_below(source) if source.is_dir() else [source]
    for path in [*files, *([metadata] if metadata else [])]:
        try:
            info = path.stat()
        except OSError:
            continue
        digest.update(f"{path}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def unchanged_import(source: Path, name: str, metadata: Path | None = None) -> Dataset | None:
    """The dataset `name` if it was imported from `source` exactly as it is now; None otherwise."""
    import json

    target = paths.datasets_dir() / name
    try:
        report = json.loads((target / "report.json").read_text())
    except (OSError, ValueError):
        return None
    source = Path(source).expanduser()
    if not source.exists() or report.get("source_signature") != source_signature(source, metadata):
        return None
    return Dataset(name, target)


def build_report(table: pd.DataFrame, problems: dict, origin: str) -> dict:
    counts = Counter(table["dx"])
    if len(table) >= 100 and counts.most_common(1)[0][0] != "nv":
        problems = {**problems, "label_order": [
            f"the largest class is {counts.most_common(1)[0][0]}, not nv as in every HAM10000 derivative: "
            "the labels may be in another order than this source's table says"]}
    return {
        "origin": origin,
        "images": int(len(table)),
        "lesions": int(table["lesion_id"].nunique()),
        "per_class": {c: int(counts.get(c, 0)) for c in CLASS_CODES},
        "problems": {k: (v if isinstance(v, list) else [v]) for k, v in problems.items()},
    }


def import_samples(name: str = "samples") -> Dataset:
    """Import the real HAM10000 images bundled with hamcli (two per class); importing them again is harmless."""
    check_name(name)
    return import_dataset(SAMPLES_DIR, name=name, origin="bundled samples", overwrite=True)
