"""`hamcli evaluate`: score runs on their held-out test split or on any labelled folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

import hamcli.evaluation.metrics as metrics
from hamcli.classes import CLASS_CODES, encode
from hamcli.data.cache import PreparedDataset
from hamcli.errors import DataError, NotFoundError, UsageError
from hamcli.inference.ensemble import Ensemble
from hamcli.inference.load import load_model
from hamcli.inference.predictor import Predictor
from hamcli.runs import BUNDLED_FILE, resolve_model


@dataclass
class EvalSet:
    name: str
    image_ids: list[str]
    lesion_ids: list[str] | None  # None where lesions are unknown: bootstrap by image
    y_true: np.ndarray
    images: np.ndarray  # (N, S, S, 3) uint8, preprocessed as the checkpoint records
    skipped: list[str] = field(default_factory=list)
    left_out: int = 0  # images the model was trained or validated on


def held_out(predictor: Predictor, split: str = "test") -> EvalSet:
    """The run's test split, or (`split="val"`) the validation rows it selected its epoch on, from the
    prepared dataset it was trained on, checked by fingerprint. An ensemble's validation rows are those
    all its members chose their epochs on, where they are the same rows."""
    from hamcli.data.splits import carve_seed, train_val_rows

    if split == "val" and isinstance(predictor, Ensemble):
        return _shared_validation(predictor)
    card = predictor.card
    if "onnx" in predictor.ckpt_meta:
        raise UsageError(f"{card.path}: an ONNX file carries no prepared dataset, so it has no {split} split to "
                         "score; score a labelled folder with --data DIR (images its model saw are left out)")
    if "bundle" in predictor.ckpt_meta:
        raise NotFoundError(f"{card.path}: the bundled model's {split} split does not ship with hamcli; score a "
                            "labelled folder with --data DIR (images it was trained on are left out)")
    try:
        prepared = PreparedDataset.open(card.data_name)
    except NotFoundError:
        raise NotFoundError(f"{card.path}: its prepared dataset {card.data_name!r} is gone; re-create it with "
                            "`hamcli prepare`, or score a labelled folder with --data DIR") from None
    if prepared.fingerprint != card.data_fingerprint:
        raise DataError(f"{card.path}: prepared dataset {prepared.name!r} changed since training (fingerprint "
                        f"{prepared.fingerprint}, run trained on {card.data_fingerprint}); its test split may "
                        "overlap the training images, so evaluate with --data DIR or retrain")
    m = prepared.manifest
    if split == "val":
        config = predictor.ckpt_meta.get("config", {})
        if config.get("refit"):
            raise UsageError(f"{card.path}: a refit trains on its validation rows too, so none are held out; "
                             f"score its source run {config['refit']!r} with --split val, or this one on its test "
                             "split (`hamcli calibrate REFIT --folds K` fits a refit's operating point)")
        rows = train_val_rows(m, config.get("fold"), carve_seed(config), prepared.name)[1]
    else:
        rows = np.flatnonzero(m["split"].to_numpy() == "test")
    if not len(rows):
        raise DataError(f"{prepared.root}: no {split} split; prepare with e.g. --split 85/15, or use --data DIR")
    images = prepared.images()[rows]
    return EvalSet(f"{prepared.name} ({split} split)", m["image_id"].iloc[rows].tolist(),
                   m["lesion_id"].iloc[rows].tolist(), encode(m["dx"].iloc[rows]), np.asarray(images))


def _shared_validation(ensemble: Ensemble) -> EvalSet:
    """An ensemble's validation rows: those all its members chose their epochs on; for a K-fold family whose
    dataset has a val split, that split, which no fold trained on."""
    from hamcli.classes import encode
    from hamcli.data.splits import calibration_rows
    from hamcli.inference.ensemble import member_name

    info = _family_record(ensemble)
    if info and not info.get("ensemble_of"):
        prepared = PreparedDataset.open(info["data"])
        rows = calibration_rows(prepared.manifest)
        if len(rows):
            m = prepared.manifest
            return EvalSet(f"{prepared.name} (val split, which no fold trained on)", m["image_id"].iloc[rows].tolist(),
                           m["lesion_id"].iloc[rows].tolist(), encode(m["dx"].iloc[rows]),
                           np.asarray(prepared.images()[rows]))
    sets = [held_out(member, "val") for member in ensemble.members]
    if any(val.image_ids != sets[0].image_ids for val in sets):
        raise UsageError(f"{ensemble.family.name}: its members ({', '.join(map(member_name, ensemble.members))}) "
                         "were validated on different rows (a K-fold family's folds, or runs of other prepared data, "
                         "fold or --seed), so no rows are held out from all of them: score it on its test split")
    return sets[0]


def _json(path: Path) -> dict:
    import json

    return json.loads(path.read_text())


def labelled_folder(folder: Path, predictor: Predictor) -> EvalSet:
    """A metadata CSV (HAM10000 or ISIC one-hot) beside images, decoded with the checkpoint's preprocessing."""
    from hamcli.data.importers import find_metadata, index_images
    from hamcli.data.metadata import read_metadata

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder; --data needs a folder with images and a metadata CSV")
    meta_path = find_metadata(folder)
    if meta_path is None:
        raise DataError(f"{folder}: no metadata CSV with image_id and dx columns (or ISIC one-hot ground truth)")
    meta = read_metadata(meta_path)
    index = index_images(folder)
    table = meta.table[meta.table["image_id"].isin(index)]
    skipped = [f"{i}: image file missing" for i in meta.table["image_id"] if i not in index]
    # Scoring a model on images it learnt from (or was selected on) flatters it: leave them out.
    seen = table["image_id"].isin(predictor.ckpt_meta.get("data", {}).get("seen_image_ids", ()))
    table = table[~seen]
    if table.empty and not seen.any():
        raise DataError(f"{folder}: none of the {len(meta.table)} images {meta_path.name} lists is in the folder; "
                        "put the image files beside it (any subfolder)")
    if table.empty:
        raise DataError(f"{folder}: no image left to score; the model was trained or validated on all of the "
                        f"{int(seen.sum())} images found")
    files = [index[i] for i in table["image_id"]]
    arr, ok, failures = predictor.decode(files)
    skipped += [f.reason for f in failures]
    table = table.iloc[ok]
    if table.empty:
        raise DataError(f"{folder}: none of the images listed in {meta_path.name} could be read")
    known_lesions = "no_lesion_ids" not in meta.problems
    return EvalSet(str(folder), table["image_id"].tolist(), table["lesion_id"].tolist() if known_lesions else None,
                   encode(table["dx"]), arr, skipped, int(seen.sum()))


def score(predictor: Predictor, data: Path | None = None, ci: bool = False, tta: bool = False,
          bootstrap: int = 1000, batch_size: int = 64, split: str = "test") -> dict:
    """Metrics (and per-image predictions) for a loaded model: a run's Predictor or a family's Ensemble."""
    evalset = labelled_folder(data, predictor) if data else held_out(predictor, split)
    out = predictor.outputs(evalset.images, batch_size=batch_size, tta=tta)
    probs = out.probabilities
    train_counts = predictor.ckpt_meta.get("data", {}).get("train_counts")
    report = metrics.full_report(evalset.y_true, probs, train_counts, scores=out.scores)
    if ci:
        groups = np.asarray(evalset.lesion_ids if evalset.lesion_ids else evalset.image_ids)
        report["ci95"] = metrics.bootstrap_ci(evalset.y_true, probs, groups, n=bootstrap, scores=out.scores)
        report["ci_resampled_by"] = "lesion" if evalset.lesion_ids else "image"
    predictions = pd.DataFrame({"image_id": evalset.image_ids,
                                "true_dx": [CLASS_CODES[i] for i in evalset.y_true],
                                "pred_dx": [CLASS_CODES[i] for i in probs.argmax(1)]})
    for i, code in enumerate(CLASS_CODES):
        predictions[f"p_{code}"] = probs[:, i].round(6)
    path = predictor.card.path
    name = str(predictor.ckpt_meta.get("member") or (path.name if path.is_dir() else path.stem
                                                     if "onnx" in predictor.ckpt_meta else path.parent.name))
    seed = predictor.ckpt_meta.get("config", {}).get("seed")
    return {"run": name, "label": f"{name} ({predictor.card.arch}" + (f", seed {seed})" if seed is not None else ")"),
            "checkpoint": str(path),
            "arch": predictor.card.arch, "data": evalset.name, "tta": tta, "precision": predictor.precision,
            "skipped": evalset.skipped,
            "left_out_seen": evalset.left_out,
            "seen_unrecorded": bool(data) and "seen_image_ids" not in predictor.ckpt_meta.get("data", {}),
            "family": list(predictor.ckpt_meta.get("family", [])) or None,
            "metrics": report, "predictions": predictions, "probs": probs, "scores": out.scores,
            "y_true": evalset.y_true}


def evaluate_checkpoint(ref: str | Path, **kwargs) -> dict:
    """Metrics for one run, checkpoint file or K-fold family (its ensemble only)."""
    return score(load_model(ref), **kwargs)


def evaluate(ref: str | Path | None = None, precision: str = "fp32", **kwargs) -> dict:
    """One run, or a K-fold family: the ensemble of its folds, and each fold scored on the same images
    (`members`, with their mean and standard deviation)."""
    run_path = resolve_model(ref)
    if ref is None and run_path == BUNDLED_FILE and not kwargs.get("data"):
        raise NotFoundError("no trained run yet: train one first (`hamcli train`), or score the bundled model "
                            "on a labelled folder with `hamcli evaluate bundled --data DIR`")
    predictor = load_model(run_path, precision=precision)
    result = score(predictor, **kwargs)
    if isinstance(predictor, Ensemble):
        folds = predictor.ckpt_meta.get("config", {}).get("all_folds") or _family_folds(predictor)
        result["ensemble_of"] = f"{len(predictor.members)} folds" if folds else f"{len(predictor.members)} models"
        members = [score(m, **kwargs) for m in predictor.members]
        keys = [k for k, v in members[0]["metrics"].items() if isinstance(v, float)]
        result["members"] = members
        result["metrics_mean_std"] = {k: {"mean": float(np.nanmean([m["metrics"][k] for m in members])),
                                          "std": float(np.nanstd([m["metrics"][k] for m in members]))}
                                      for k in keys}
    return result


def _family_record(ensemble: Ensemble) -> dict:
    """The family's family.json ({} for an ensemble loaded from one file)."""
    info = ensemble.family / "family.json"
    return _json(info) if ensemble.family.is_dir() and info.exists() else {}


def _family_folds(ensemble: Ensemble) -> int | None:
    """K for a K-fold family (family.json's `folds`), None for an ensemble of separate runs."""
    return _family_record(ensemble).get("folds")
