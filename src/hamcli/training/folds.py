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
from hamcli.errors import HamcliError, UsageError
from hamcli.models.checkpoint import MAX_MEMBERS
from hamcli.models.precision import resolve_device
from hamcli.runs import (
    family_members,
    finished_checkpoint,
    is_family,
    new_run_name,
    resolve_checkpoint,
    resolve_model,
    set_latest,
)
from hamcli.training import distributed
from hamcli.training.calibrate import MelanomaTarget
from hamcli.training.config import TrainConfig
from hamcli.training.engine import Trainer, TrainEvents


def train_folds(cfg: TrainConfig, events: TrainEvents | None = None) -> Path:
    """One model per fold of the prepared dataset, in `runs/<name>/fold<k>`; returns the family folder."""
    from hamcli.data.splits import calibration_rows

    prepared = PreparedDataset.open(cfg.data)
    k = int(prepared.manifest["fold"].max()) + 1
    if k < 2:
        raise UsageError(f"--all-folds: prepared dataset {prepared.name!r} has no folds; "
                         "run `hamcli prepare --folds K` first")
    calibrated = len(calibration_rows(prepared.manifest)) > 0
    if (cfg.melanoma_sensitivity > 0 or cfg.melanoma_specificity > 0) and not calibrated:
        raise UsageError(f"--all-folds --melanoma-sensitivity: every row of {prepared.name!r} outside its test split "
                         "is in some fold's training rows, so none is left to fit the family's operating point on; "
                         "prepare with a val split, which no fold trains on (e.g. `--split 70/15/15 --folds "
                         f"{k}`)")
    ctx = distributed.context()
    with distributed.peers(ctx):
        # Join the group before its processes agree on the family's name; each fold's Trainer then finds it joined.
        distributed.setup(ctx, resolve_device(cfg.device), len(prepared.manifest))
        try:
            return _train_folds(cfg, events, prepared, k, calibrated, ctx)
        finally:
            distributed.shutdown(ctx)


def _train_folds(cfg: TrainConfig, events: TrainEvents | None, prepared: PreparedDataset, k: int, calibrated: bool,
                 ctx: distributed.Context) -> Path:
    name = distributed.broadcast(cfg.name or new_run_name(cfg.arch), ctx)
    # The family becomes visible under its name only when every fold has finished; rank 0 holds the name.
    holder = slots.replace(paths.runs_dir(), name, "run", cfg.overwrite) if ctx.main else contextlib.nullcontext()
    try:
        with holder as family:
            family = Path(distributed.broadcast(str(family) if ctx.main else None, ctx))
            members, best = [], []
            for fold in range(k):
                # The operating point is the family's, fitted below on every fold's validation rows.
                run_dir = Trainer(replace(cfg, data=prepared.name, fold=fold, name=None, melanoma_sensitivity=0.0,
                                          melanoma_specificity=0.0),
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
                if calibrated:
                    fit_family_postprocess(family, MelanomaTarget(cfg.melanoma_sensitivity,
                                                                  cfg.melanoma_specificity))
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


def fit_family_postprocess(family: Path, target: MelanomaTarget = MelanomaTarget(),
                           prior_shift: str | None = None) -> dict:
    """The family's own postprocessing, fitted as a run's is (`hamcli.training.calibrate.calibrate`: prior
    shift `prior_shift` (None: as the members were configured), the melanoma operating point `target` (none
    for zeros), then the temperature), on the family's own average of its members' raw
    probabilities, on rows no member trained on: the val split of a K-fold family's dataset, which no fold
    trains on, or the validation rows every run of an ensemble chose its epoch on. Recorded in family.json
    (so every command that loads the family applies it to that same average) with its effect on those
    rows."""
    from hamcli.training.calibrate import calibrate

    info = json.loads((family / "family.json").read_text())
    probs, y, fitted_on, counts, configured = held_out_average(family)
    logits = np.log(np.clip(probs, 1e-12, 1.0))
    post, record = calibrate(logits, y, counts, prior_shift or configured, **target.as_options())
    record["fitted_on"] = fitted_on
    fsio.write_json(family / "family.json", {**info, "postprocess": post.as_dict(), "calibration": record,
                                             "members_raw": True})
    return record


def held_out_average(family: Path) -> tuple[np.ndarray, np.ndarray, str, list[int], str]:
    """A family's average of its members' raw probabilities, the labels and a description of the rows no member
    trained on; the training class counts and the prior shift its members were configured with. A UsageError
    naming the fix where there are no such rows."""
    from hamcli.data.splits import calibration_rows
    from hamcli.evaluation.scoring import held_out
    from hamcli.inference.ensemble import Ensemble
    from hamcli.inference.postprocess import Postprocess

    info = json.loads((family / "family.json").read_text())
    if info.get("ensemble_of"):
        fitted_on = "the validation rows every member chose its epoch on (none of them trained on these)"
    else:
        if not len(calibration_rows(PreparedDataset.open(info["data"]).manifest)):
            raise UsageError(f"{slots.public_path(family).name}: every row of {info['data']!r} outside its test "
                             "split trains some fold, so no rows are left to calibrate the family on; prepare with a "
                             "val split, which no fold trains on (e.g. `hamcli prepare --split 70/15/15 --folds K`), "
                             "and train --all-folds again")
        fitted_on = f"the val split of {info['data']}, which no fold trained on"
    ensemble = Ensemble.load_family(family)
    ensemble.post, ensemble.members_raw = Postprocess(), True
    counts = np.sum([m.ckpt_meta["data"]["train_counts"] for m in ensemble.members], axis=0).tolist()
    prior_shift = ensemble.members[0].ckpt_meta.get("config", {}).get("prior_shift", "none")
    # An ensemble's shared validation rows (members validated on different rows, and refits, are refused); a
    # K-fold family's val split.
    val = held_out(ensemble, "val")
    return ensemble.probabilities(val.images).astype(np.float64), val.y_true, fitted_on, counts, prior_shift


def combine(runs: list[str], name: str, overwrite: bool = False, set_default: bool = False) -> Path:
    """A family whose members are finished runs, so that predict, evaluate, export and bundle_model use their
    average. A member may also be a checkpoint file, and a one-file ensemble (the bundled model, say)
    gives all its members, so that runs of one's own can join them. Each member's best.pt is hard-linked
    (else copied) into the family, so that training a run of the same name again later does not change the
    ensemble. Where the members chose their epochs on the same validation rows, the family's temperature is
    fitted there on its own averaged prediction (`fit_family_postprocess`); elsewhere (refits, members of
    other splits) no rows are held out from every member, and the average stays uncalibrated, as its record
    says. It becomes the default model only with `set_default`."""
    from hamcli.inference.ensemble import Ensemble
    from hamcli.inference.predictor import Predictor

    taken = {resolve_model(ref).resolve() for ref in runs}
    if (paths.runs_dir() / name).resolve() in taken:
        raise UsageError(f"hamcli ensemble --name {name}: {name} is one of the runs to combine; replacing it would "
                         "lose the run itself. Choose another --name")
    sources = [source for ref in runs for source in _member_sources(ref)]
    names = [member for member, _ in sources]
    if len(sources) < 2 or len({str(c.resolve()) if isinstance(c, Path) else id(c) for _, c in sources}) < 2:
        raise UsageError("hamcli ensemble: name at least two different runs")
    if len(sources) > MAX_MEMBERS:
        raise UsageError(f"hamcli ensemble: {len(sources)} members, more than hamcli loads ({MAX_MEMBERS})")
    if len(set(names)) < len(names):
        raise UsageError(f"hamcli ensemble: two runs are both named {max(names, key=names.count)!r}; an "
                         "ensemble's members need names of their own")
    members = [Predictor.load(c) if isinstance(c, Path) else Predictor.from_checkpoint(c, Path(n)) for n, c in sources]
    Ensemble(members, Path(name))  # refuses members trained with different inputs
    first = members[0].ckpt_meta["config"]
    with slots.replace(paths.runs_dir(), name, "run", overwrite) as family:
        for member, ckpt in sources:
            (family / member).mkdir()
            if isinstance(ckpt, dict):  # unpacked from a one-file ensemble
                import torch

                with fsio.atomic_path(family / member / "best.pt") as tmp:
                    torch.save(ckpt, tmp)
                continue
            try:
                os.link(ckpt, family / member / "best.pt")
            except OSError:  # another file system, or no hard links: a copy
                shutil.copy2(ckpt, family / member / "best.pt")
            for record_file in ("metrics.json", "config.json", "history.csv"):
                if (ckpt.parent / record_file).exists():
                    shutil.copy2(ckpt.parent / record_file, family / member / record_file)
        fsio.write_json(family / "family.json", {"members": names, "ensemble_of": runs, "folds": None,
                                                 "arch": first["arch"], "data": first.get("data"), "val": {}})
        fsio.write_json(family / "config.json", {**first, "name": name, "ensemble_of": runs})
        try:
            fit_family_postprocess(family)
        except HamcliError as exc:  # no rows held out from every member: the average stays as it is
            info = json.loads((family / "family.json").read_text())
            fsio.write_json(family / "family.json", {**info, "calibration": {"fitted_on": None, "why": str(exc)}})
    if set_default:
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
