"""`hamcli calibrate`: a finished model's postprocessing fitted again, on rows it never trained on.

- A run: its prior shift (as configured), melanoma offset and temperature, on the validation rows it chose
  its epoch on.
- A family (K folds, or runs combined with `hamcli ensemble`): its offset and temperature, on its own
  averaged prediction on rows no member trained on (`hamcli.training.folds.fit_family_postprocess`).
- A refit trained on its validation rows too, so none are left: `folds=K` trains its recipe K more times,
  each leaving out one lesion-grouped fold of its rows, and fits on those out-of-fold predictions (as
  scikit-learn's CalibratedClassifierCV does with ensemble=False).

The test split plays no part. The run changes as a whole, under its lock: a new version of its folder with
every file updated replaces the old one in one rename, so an interrupted calibrate leaves it as it was.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

import hamcli.fsio as fsio
import hamcli.models.checkpoint as checkpoint
import hamcli.slots as slots
from hamcli.errors import UsageError
from hamcli.runs import finished_checkpoint, is_family, resolve_run
from hamcli.training.calibrate import MelanomaTarget

ACCURACY_WARNING = 0.05  # an operating point that costs more accuracy than this on held-out rows is pointed out


def recalibrate(run: str | Path, melanoma_sensitivity: float | None = None, folds: int | None = None,
                events=None, prior_shift: str | None = None,  # noqa: ANN001 - TrainEvents for --folds
                melanoma_specificity: float | None = None) -> dict:
    """Fit `run`'s postprocessing again so that melanoma sensitivity reaches the target without its specificity
    falling below the floor (each None: the run's own), with prior shift `prior_shift` (none, auto or a number;
    None: the run's own), on rows it never trained on; returns the record of its effect there (`before`,
    `after`)."""
    from hamcli.training.config import TrainConfig

    given = {"melanoma_sensitivity": melanoma_sensitivity, "melanoma_specificity": melanoma_specificity,
             "prior_shift": prior_shift}
    TrainConfig(**{k: v for k, v in given.items() if v is not None}).check()  # the ranges `train` checks
    named = resolve_run(run)
    if not is_family(named):
        finished_checkpoint(named, f"hamcli calibrate {run}")
    with slots.revise(named.parent, named.name, "run") as run_dir:  # all of it changes, or none
        if is_family(run_dir):
            from hamcli.training.folds import fit_family_postprocess

            if folds:
                kind = "a K-fold family" if json.loads((run_dir / "family.json").read_text()).get("folds") else \
                    "an ensemble"
                raise UsageError(f"--folds: {named.name} is {kind}, calibrated on its own held-out rows; --folds "
                                 "is for refits")
            target = _target(_options(run_dir), melanoma_sensitivity, melanoma_specificity)
            record = fit_family_postprocess(run_dir, target, prior_shift)
            _record_target(run_dir, target, prior_shift)
            return record
        best = run_dir / "best.pt"
        config = checkpoint.load(best)["config"]
        target = _target(config, melanoma_sensitivity, melanoma_specificity)
        config = {**config, "prior_shift": prior_shift or config.get("prior_shift", "none")}
        if config.get("refit"):
            if not folds:
                raise UsageError(f"hamcli calibrate {run}: a refit trained on its validation rows too, so none are "
                                 "held out; give --folds K (e.g. 3) to fit it on out-of-fold predictions of its "
                                 "recipe (K more trainings)")
            records = {"best.pt": _calibrate_refit(run_dir, config, folds, target, events)}
        else:
            if folds:
                raise UsageError(f"--folds: {named.name} has validation rows of its own; --folds is for refits")
            records = {name: recalibrate_checkpoint(run_dir / name, target, prior_shift)
                       for name in ("best.pt", "best_raw.pt") if (run_dir / name).exists()}
        metrics = json.loads((run_dir / "metrics.json").read_text())
        fsio.write_json(run_dir / "metrics.json", {**metrics, "calibration": records["best.pt"]})
        _record_target(run_dir, target, prior_shift)
        return records["best.pt"]


def accuracy_cost(record: dict) -> float:
    """Accuracy given up on the held-out rows by the postprocessing (negative: gained)."""
    return float(record["before"]["accuracy"] - record["after"]["accuracy"])


def _options(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return {}


def _target(config: dict, sensitivity: float | None, specificity: float | None) -> MelanomaTarget:
    """The operating point asked for, each part not given taken from the run's recorded options; except that
    `--melanoma-sensitivity 0` alone removes the operating point, floor and all."""
    own = MelanomaTarget.from_config(config)
    if sensitivity == 0 and specificity is None:
        return MelanomaTarget()
    return MelanomaTarget(own.sensitivity if sensitivity is None else sensitivity,
                          own.specificity if specificity is None else specificity)


def _record_target(run_dir: Path, target: MelanomaTarget, prior_shift: str | None = None) -> None:
    """The run's recorded options take the new target (and prior shift), so that `hamcli train --config
    runs/RUN/config.toml` (a family: its config.json) repeats the run as it now stands, not as it was first
    calibrated."""
    from hamcli.configfile import dumps, read

    changed = {**target.as_options(), **({"prior_shift": prior_shift} if prior_shift else {})}
    options = run_dir / "config.json"
    if options.exists():
        fsio.write_json(options, {**json.loads(options.read_text()), **changed})
    toml = run_dir / "config.toml"
    if toml.exists():
        document = read(toml)
        document["train"] = {**document.get("train", {}), **changed}
        lines = toml.read_text().splitlines()
        comment = "\n".join(line.removeprefix("#").strip() for line in lines[:next(
            (i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))])
        fsio.write_text(toml, dumps(document, comment=comment))


def recalibrate_checkpoint(path: Path, target: MelanomaTarget, prior_shift: str | None = None) -> dict:
    """Prior shift (`prior_shift`, else as the run was configured), melanoma offset and temperature fitted
    again on the validation rows the checkpoint chose its epoch on."""
    from hamcli.evaluation.scoring import held_out
    from hamcli.inference.postprocess import Postprocess
    from hamcli.inference.predictor import Predictor
    from hamcli.training.calibrate import calibrate

    predictor = Predictor.load(path)
    predictor.post = Postprocess()
    val = held_out(predictor, "val")
    logits = np.log(np.clip(predictor.probabilities(val.images), 1e-12, 1.0))  # log-softmax: logits up to a constant
    config = predictor.ckpt_meta["config"]
    shift = prior_shift or config.get("prior_shift", "none")
    post, record = calibrate(logits, val.y_true, predictor.ckpt_meta["data"]["train_counts"], shift,
                             **target.as_options())
    checkpoint.update(path, postprocess=post.as_dict(), calibration=record,
                      config={**config, **target.as_options(), "prior_shift": shift})
    return record


def out_of_fold_logits(run_dir: Path, config: dict, folds: int, events=None  # noqa: ANN001
                       ) -> tuple[np.ndarray, np.ndarray, list[str], list[int]]:
    """The refit's recipe trained `folds` times, each without one lesion-grouped fold of the refit's rows;
    each fold's rows predicted (log-probabilities, no postprocessing) by the model that did not train on them.
    Returns logits, labels, image ids and folds, in fold order. The fold models are thrown away."""
    from hamcli.inference.postprocess import Postprocess
    from hamcli.inference.predictor import Predictor
    from hamcli.training.config import TrainConfig
    from hamcli.training.engine import Trainer

    cfg = TrainConfig.from_dict(config)
    logits, labels, ids, fold = [], [], [], []
    with tempfile.TemporaryDirectory(prefix=".calibration-folds-", dir=run_dir) as tmp:
        for k in range(folds):
            trainer = Trainer(replace(cfg, name=None, overwrite=False, refit_fold=f"{k}/{folds}"), events,
                              run_dir=Path(tmp) / f"fold{k}")
            trainer.run()
            model = Predictor.load(Path(tmp) / f"fold{k}" / "best.pt")
            model.post = Postprocess()
            rows = trainer.data.val_idx
            probs = model.probabilities(trainer.data.images[rows].numpy())
            logits.append(np.log(np.clip(probs, 1e-12, 1.0)))
            labels.append(trainer.data.labels[rows].numpy())
            ids += trainer.prepared.manifest["image_id"].iloc[rows].tolist()
            fold += [k] * len(rows)
    return np.concatenate(logits), np.concatenate(labels), ids, fold


def _calibrate_refit(run_dir: Path, config: dict, folds: int, target: MelanomaTarget,
                     events=None) -> dict:  # noqa: ANN001
    import pandas as pd

    from hamcli.classes import CLASS_CODES
    from hamcli.training.calibrate import calibrate

    if not 2 <= folds <= 10:
        raise UsageError(f"--folds {folds}: from 2 to 10")
    best = run_dir / "best.pt"
    logits, y, ids, fold = out_of_fold_logits(run_dir, config, folds, events)
    post, record = calibrate(logits, y, checkpoint.load(best)["data"]["train_counts"],
                             config.get("prior_shift", "none"), **target.as_options())
    record["fitted_on"] = (f"out-of-fold predictions of this refit's recipe: {folds} models, each trained without one "
                           "lesion-grouped fold of the refit's rows and predicting that fold")
    table = pd.DataFrame({"image_id": ids, "fold": fold, "true_dx": [CLASS_CODES[i] for i in y]})
    for i, code in enumerate(CLASS_CODES):
        table[f"logit_{code}"] = logits[:, i].round(6)
    with fsio.atomic_path(run_dir / "calibration-oof.csv") as tmp:
        table.to_csv(tmp, index=False)
    checkpoint.update(best, postprocess=post.as_dict(), calibration=record,
                      config={**config, **target.as_options()})
    return record
