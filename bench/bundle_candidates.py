"""The record behind each bundle candidate of rules 7 and 8: training, postprocessing and storage (val only).

    HAMCLI_HOME=/work/acc27 python bench/bundle_candidates.py full-lite0-s42 full-lite0-s1 full-lite2-s42 \\
        full-lite0-x2 full-lite0-distil full-lite0-200

For a run: its best epoch, validation at that epoch (EMA weights, before postprocessing, from metrics.json),
its fastest epoch and images per second (timing.csv, or history.csv for older runs). For a run or an
ensemble: macro ROC AUC, balanced accuracy and accuracy on the validation split from raw probabilities (as
rules 7 and 8 decide), the postprocessing recorded in it (tau, melanoma offset and target, temperature,
validation figures before and after), how many validation images get another top class from its fp16
weights than from fp32 (as scripts/bundle_model.py decides storage), and the size of its weights in fp16
and in fp32. The test split is not read.
Writes bench/results/bundle_candidates.jsonl.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import torch
from _results import emit  # noqa: E402 - bench/ is on the path when a script runs

sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
from bundle_model import fp16_differences, weights_mb  # noqa: E402

import hamcli.models.checkpoint as checkpoint  # noqa: E402
from hamcli.evaluation.metrics import full_report  # noqa: E402
from hamcli.evaluation.scoring import held_out  # noqa: E402
from hamcli.inference.load import load_model  # noqa: E402
from hamcli.runs import family_members, is_family, resolve_checkpoint, resolve_model  # noqa: E402

KEPT = ("accuracy", "balanced_accuracy", "melanoma_sensitivity", "melanoma_specificity")


def training(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    timing = run_dir / "timing.csv"  # runs before timings left history.csv kept them there
    with open(timing if timing.exists() else run_dir / "history.csv") as fh:
        epochs = list(csv.DictReader(fh))
    fastest = min(epochs, key=lambda e: float(e["train_seconds"]))
    return {"best_epoch": metrics["best_epoch"], "epochs_run": metrics["epochs_run"],
            "val_at_best": {k: round(v, 4) for k, v in metrics["best"].items()},
            "fastest_epoch_s": round(float(fastest["train_seconds"]), 1),
            "fastest_images_per_s": round(float(fastest["images_per_s"]), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="runs or ensembles (hamcli ensemble)")
    args = parser.parse_args()
    for name in args.models:
        target = resolve_model(name)
        family = target.is_dir() and is_family(target)
        paths = [resolve_checkpoint(m) for m in family_members(target)] if family else [resolve_checkpoint(target)]
        ckpts = [checkpoint.load(p) for p in paths]
        calibration = (json.loads((target / "family.json").read_text()) if family else ckpts[0]).get("calibration")
        reference = load_model(target)
        val = held_out(reference, "val")
        raw = full_report(val.y_true, reference.outputs(val.images, raw=True).probabilities)
        row = {"model": name, "members": [p.parent.name for p in paths],
               "fp16_top_class_differences_on_validation": fp16_differences(target, ckpts, reference,
                                                                            val.images)[0],
               "val_images": len(val.y_true), "val_macro_roc_auc_raw": round(raw["macro_roc_auc"], 4),
               "val_balanced_accuracy_raw": round(raw["balanced_accuracy"], 4),
               "val_accuracy_raw": round(raw["accuracy"], 4),
               "weights_mb_fp16": round(weights_mb(ckpts, torch.float16), 2),
               "weights_mb_fp32": round(weights_mb(ckpts, torch.float32), 2)}
        if calibration:
            row["postprocess"] = {
                "tau": calibration.get("tau"), "melanoma_bias": calibration.get("melanoma_bias"),
                "melanoma_sensitivity_target": calibration.get("melanoma_sensitivity_target"),
                "melanoma_specificity_floor": calibration.get("melanoma_specificity_floor", 0.0),
                "temperature": calibration.get("temperature"),
                **{f"val_{when}": {k: None if calibration[when].get(k) is None else round(calibration[when][k], 4)
                                   for k in KEPT} for when in ("before", "after")}}
        if not family:
            row["training"] = training(paths[0].parent)
        emit(row)


if __name__ == "__main__":
    main()
