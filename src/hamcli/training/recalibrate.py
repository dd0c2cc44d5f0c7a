"""`hamcli calibrate`: a finished run's melanoma operating point chosen again, without training it again.

A run fits its postprocessing (prior shift, melanoma offset, temperature) on its validation rows when it
finishes, and a K-fold family fits its melanoma offset on its out-of-fold predictions; either can be fitted
again for another target sensitivity. The test split plays no part.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import hamcli.fsio as fsio
import hamcli.models.checkpoint as checkpoint
from hamcli.errors import UsageError
from hamcli.runs import finished_checkpoint, is_family, resolve_run


def recalibrate(run: str | Path, melanoma_sensitivity: float) -> dict:
    """Fit `run`'s postprocessing again so that melanoma sensitivity reaches the target on rows it never
    trained on; returns the record of its effect there (`before`, `after`). Checkpoints are replaced
    atomically, so an ensemble that pinned the old ones keeps them."""
    if not 0 < melanoma_sensitivity < 1:
        raise UsageError(f"--melanoma-sensitivity {melanoma_sensitivity}: a fraction in (0, 1), e.g. 0.6")
    run_dir = resolve_run(run)
    if is_family(run_dir):
        from hamcli.training.folds import fit_operating_point

        record = fit_operating_point(run_dir, melanoma_sensitivity)
        _record_target(run_dir, melanoma_sensitivity)
        return record
    best = finished_checkpoint(run_dir, f"hamcli calibrate {run}")
    source = checkpoint.load(best)["config"].get("refit")
    if source:
        raise UsageError(f"hamcli calibrate {run}: a refit has no validation rows of its own; calibrate {source} "
                         "and refit it again (a refit copies its source's postprocessing)")
    records = {name: recalibrate_checkpoint(run_dir / name, melanoma_sensitivity)
               for name in ("best.pt", "best_raw.pt") if (run_dir / name).exists()}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    fsio.write_json(run_dir / "metrics.json", {**metrics, "calibration": records["best.pt"]})
    _record_target(run_dir, melanoma_sensitivity)
    return records["best.pt"]


def _record_target(run_dir: Path, melanoma_sensitivity: float) -> None:
    """The run's recorded options take the new target, so that `hamcli train --config runs/RUN/config.toml`
    (a family: its config.json) repeats the run as it now stands, not as it was first calibrated."""
    from hamcli.configfile import dumps, read

    options = run_dir / "config.json"
    if options.exists():
        fsio.write_json(options, {**json.loads(options.read_text()), "melanoma_sensitivity": melanoma_sensitivity})
    toml = run_dir / "config.toml"
    if toml.exists():
        document = read(toml)
        document["train"] = {**document.get("train", {}), "melanoma_sensitivity": melanoma_sensitivity}
        lines = toml.read_text().splitlines()
        comment = "\n".join(line.removeprefix("#").strip() for line in lines[:next(
            (i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))])
        fsio.write_text(toml, dumps(document, comment=comment))


def recalibrate_checkpoint(path: Path, melanoma_sensitivity: float) -> dict:
    """Prior shift (as the run was configured), melanoma offset and temperature fitted again on the
    validation rows the checkpoint chose its epoch on."""
    from hamcli.evaluation.scoring import held_out
    from hamcli.inference.postprocess import Postprocess
    from hamcli.inference.predictor import Predictor
    from hamcli.training.calibrate import calibrate

    predictor = Predictor.load(path)
    predictor.post = Postprocess()
    val = held_out(predictor, "val")
    logits = np.log(np.clip(predictor.probabilities(val.images), 1e-12, 1.0))  # log-softmax: logits up to a constant
    config = predictor.ckpt_meta["config"]
    post, record = calibrate(logits, val.y_true, predictor.ckpt_meta["data"]["train_counts"],
                             config.get("prior_shift", "none"), melanoma_sensitivity=melanoma_sensitivity)
    checkpoint.update(path, postprocess=post.as_dict(), calibration=record,
                      config={**config, "melanoma_sensitivity": melanoma_sensitivity})
    return record
