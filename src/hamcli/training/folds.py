"""K-fold training: one run per fold of a prepared dataset, and the family's mean and spread; and
families made of finished runs (`hamcli ensemble`), such as one recipe trained with several seeds."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

import hamcli.fsio as fsio
import hamcli.models.checkpoint as checkpoint
import hamcli.paths as paths
import hamcli.slots as slots
from hamcli.data.cache import PreparedDataset
from hamcli.errors import UsageError
from hamcli.runs import (
    family_members,
    finished_checkpoint,
    is_family,
    new_run_name,
    resolve_checkpoint,
    resolve_model,
    resolve_run,
    set_latest,
)
from hamcli.training import distributed
from hamcli.training.config import TrainConfig
from hamcli.training.engine import Trainer, TrainEvents


def train_folds(cfg: TrainConfig, events: TrainEvents | None = None) -> Path:
    """One model per fold of the prepared dataset, in `runs/<name>/fold<k>`; returns the family folder."""
    prepared = PreparedDataset.open(cfg.data)
    k = int(prepared.manifest["fold"].max()) + 1
    if k < 2:
        raise UsageError(f"--all-folds: prepared dataset {prepared.name!r} has no folds; "
                         "run `hamcli prepare --folds K` first")
    ctx = distributed.context()
    name = distributed.broadcast(cfg.name or new_run_name(cfg.arch), ctx)
    # The family becomes visible under its name only when every fold has finished; rank 0 holds the name.
    holder = slots.replace(paths.runs_dir(), name, "run", cfg.overwrite) if ctx.main else contextlib.nullcontext()
    try:
        with holder as family:
            family = Path(distributed.broadcast(str(family) if ctx.main else None, ctx))
            members, best = [], []
            for fold in range(k):
                # The operating point is the family's, fitted below on every fold's validation rows.
                run_dir = Trainer(replace(cfg, data=prepared.name, fold=fold, name=None, melanoma_sensitivity=0.0),
                                  events, run_dir=family / f"fold{fold}").run()
                members.append(run_dir.name)
                if ctx.main:
                    best.append(checkpoint.load(run_dir / "best.pt")["metrics"])
            if ctx.main:
                keys = [key for key in best[0] if key.startswith("val_")]
                stats = {key: {"mean": float(np.mean([b[key] for b in best])),
                               "std": float(np.std([b[key] for b in best]))} for key in keys}
                fsio.write_json(family / "family.json", {"members": members, "folds": k, "arch": cfg.arch,
                                                         "data": prepared.name, "val": stats})
                fsio.write_json(family / "config.json", {**asdict(cfg), "all_folds": k})
                if cfg.melanoma_sensitivity > 0:
                    fit_operating_point(family, cfg.melanoma_sensitivity)
        if ctx.main:
            set_latest(paths.runs_dir() / name)
        distributed.barrier(ctx)
    finally:
        distributed.shutdown(ctx)
    return paths.runs_dir() / name


@dataclass
class OutOfFold:
    """Every training image of a K-fold family, each predicted by the one member that validated on it and
    so never learnt from it; `member` indexes `members` for each row."""

    probabilities: np.ndarray
    labels: np.ndarray
    image_ids: list[str]
    member: np.ndarray
    members: list[str]


def out_of_fold(family: Path) -> OutOfFold:
    from hamcli.evaluation.scoring import held_out
    from hamcli.inference.predictor import Predictor

    probs, labels, ids, owner = [], [], [], []
    members = family_members(family)
    for k, member in enumerate(members):
        predictor = Predictor.load(resolve_checkpoint(member))
        val = held_out(predictor, "val")
        probs.append(predictor.probabilities(val.images))
        labels.append(val.y_true)
        ids += val.image_ids
        owner.append(np.full(len(val.y_true), k))
    return OutOfFold(np.concatenate(probs), np.concatenate(labels), ids, np.concatenate(owner),
                     [m.name for m in members])


def fit_operating_point(family: Path, target: float) -> dict:
    """The family's melanoma operating point: the smallest offset to the melanoma logit of the averaged
    prediction that reaches `target` sensitivity on rows no member trained on: a K-fold family's out-of-fold
    predictions, or the validation rows that every run of an ensemble chose its epoch on. Recorded in
    family.json (and so applied by every command that loads the family) with its effect on those rows."""
    from hamcli.evaluation.metrics import with_melanoma
    from hamcli.inference.postprocess import Postprocess
    from hamcli.training.calibrate import MELANOMA, choose_bias

    info = json.loads((family / "family.json").read_text())
    if info.get("ensemble_of"):
        probs, y = shared_validation(family)
        fitted_on = "the validation rows every member chose its epoch on (none of them trained on these)"
    else:
        oof = out_of_fold(family)
        probs, y = oof.probabilities, oof.labels
        fitted_on = "out-of-fold validation predictions (each image from the member that did not train on it)"
    logits = np.log(np.clip(probs, 1e-12, 1.0))
    bias = np.zeros(logits.shape[1])
    bias[MELANOMA] = choose_bias(logits, y, target)
    post = Postprocess(bias=tuple(float(b) for b in bias)) if bias.any() else Postprocess()
    record = {"fitted_on": fitted_on, "images": int(len(y)), "melanoma_sensitivity_target": target,
              "melanoma_bias": float(bias[MELANOMA]), "before": with_melanoma(y, logits.argmax(1)),
              "after": with_melanoma(y, (logits + bias).argmax(1))}
    fsio.write_json(family / "family.json", {**info, "postprocess": post.as_dict(), "calibration": record})
    return record


def shared_validation(family: Path) -> tuple[np.ndarray, np.ndarray]:
    """An ensemble of runs' averaged probabilities (each member's own postprocessing, not the family's) and
    the labels, on the validation rows its members share: runs that chose their epochs on the same rows,
    such as different architectures trained on one split (`held_out` refuses members validated on
    different rows, and refits, which trained on theirs)."""
    from hamcli.evaluation.scoring import held_out
    from hamcli.inference.ensemble import Ensemble
    from hamcli.inference.postprocess import Postprocess

    ensemble = Ensemble.load_family(family)
    ensemble.post = Postprocess()
    val = held_out(ensemble, "val")
    return ensemble.probabilities(val.images).astype(np.float64), val.y_true


def combine(runs: list[str], name: str, operating_point_from: str | None = None, overwrite: bool = False) -> Path:
    """A family whose members are finished runs, so that predict, evaluate, export and bundle_model use their
    average. A member may also be a checkpoint file, and a one-file ensemble (the bundled model, say)
    gives all its members, so that runs of one's own can join them. Each member's best.pt is hard-linked
    (else copied) into the family, so that training a run of the same name again later does not change the
    ensemble. Runs refitted on every row (`--refit`) have no held-out rows left to fit an operating point
    on: `operating_point_from` copies the one another family fitted (`fit_operating_point`)."""
    from hamcli.inference.ensemble import Ensemble
    from hamcli.inference.predictor import Predictor

    sources = [source for ref in runs for source in _member_sources(ref)]
    names = [member for member, _ in sources]
    if len(sources) < 2 or len({str(c.resolve()) if isinstance(c, Path) else id(c) for _, c in sources}) < 2:
        raise UsageError("hamcli ensemble: name at least two different runs")
    if len(set(names)) < len(names):
        raise UsageError(f"hamcli ensemble: two runs are both named {max(names, key=names.count)!r}; an "
                         "ensemble's members need names of their own")
    members = [Predictor.load(c) if isinstance(c, Path) else Predictor.from_checkpoint(c, Path(n)) for n, c in sources]
    Ensemble(members, Path(name))  # refuses members trained with different inputs
    record: dict = {}
    if operating_point_from is not None:
        source = resolve_run(operating_point_from)
        record = json.loads((source / "family.json").read_text()) if is_family(source) else {}
        if not record.get("postprocess"):
            raise UsageError(f"--operating-point-from {operating_point_from}: not a family with a fitted operating "
                             "point; fit one with `hamcli calibrate FAMILY --melanoma-sensitivity S` (or train "
                             "`--all-folds --melanoma-sensitivity S`)")
        record = {"postprocess": record["postprocess"],
                  "calibration": {**record.get("calibration", {}), "copied_from": source.name}}
    first = members[0].ckpt_meta["config"]
    with slots.replace(paths.runs_dir(), name, "run", overwrite) as family:
        for member, ckpt in sources:
            (family / member).mkdir()
            if isinstance(ckpt, dict):  # unpacked from a one-file ensemble
                import torch

                torch.save(ckpt, family / member / "best.pt")
                continue
            try:
                os.link(ckpt, family / member / "best.pt")
            except OSError:  # another file system, or no hard links: a copy
                shutil.copy2(ckpt, family / member / "best.pt")
            for record_file in ("metrics.json", "config.json", "history.csv"):
                if (ckpt.parent / record_file).exists():
                    shutil.copy2(ckpt.parent / record_file, family / member / record_file)
        fsio.write_json(family / "family.json", {"members": names, "ensemble_of": runs, "folds": None,
                                                 "arch": first["arch"], "data": first.get("data"), "val": {}, **record})
        fsio.write_json(family / "config.json", {**first, "name": name, "ensemble_of": runs})
    set_latest(paths.runs_dir() / name)
    return paths.runs_dir() / name


def _member_sources(ref: str) -> list[tuple[str, Path | dict]]:
    """What one `hamcli ensemble` argument contributes: a finished run's best.pt, a checkpoint file, or each
    member of a one-file ensemble (as a checkpoint of its own, named as the ensemble recorded it)."""
    target = resolve_model(ref)
    if target.is_dir():
        if is_family(target):
            raise UsageError(f"{ref}: already an ensemble (of {len(family_members(target))}); name its runs instead")
        return [(target.name, finished_checkpoint(target, f"hamcli ensemble {ref}"))]
    ckpt = checkpoint.load(target)
    if "members" not in ckpt:
        return [(target.stem, target)]
    shared = {k: v for k, v in ckpt.items() if k not in ("members", "postprocess", "calibration", "bundle")}
    unpacked = []
    for member in ckpt["members"]:
        data = dict(shared["data"])
        if member.get("config", {}).get("data"):  # the prepared dataset its fingerprint is of
            data["name"] = member["config"]["data"]
        unpacked.append((str(member["member"]), {**shared, **member, "data": data, "unpacked_from": str(target)}))
    return unpacked
