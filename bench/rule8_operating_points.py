"""What each of rule 8's models would give up on the val split for its melanoma operating point (val only).

    HAMCLI_HOME=/work/acc27 python bench/rule8_operating_points.py full-lite0-s42 full-lite0-distil full-lite0-200

For each run: the postprocessing `hamcli calibrate --prior-shift auto` would fit on its own raw val predictions
with no melanoma point, with sensitivity 0.65 (rule 7), and with sensitivity 0.65 but specificity at least 0.90
(rule 8 (d)), and the val figures after each. Nothing is written into the runs; the test split is not read.
Writes bench/results/rule8_operating_points.jsonl.
"""

from __future__ import annotations

import argparse

import numpy as np
from _results import emit  # noqa: E402 - bench/ is on the path when a script runs

from hamcli.evaluation.scoring import held_out
from hamcli.inference.load import load_model
from hamcli.training.calibrate import calibrate

POINTS = {"none": (0.0, 0.0), "sensitivity 0.65": (0.65, 0.0), "sensitivity 0.65, specificity >= 0.90": (0.65, 0.90)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    args = parser.parse_args()
    for run in args.runs:
        model = load_model(run)
        val = held_out(model, "val")
        logits = np.log(np.clip(model.outputs(val.images, raw=True).probabilities, 1e-12, 1.0))
        counts = model.ckpt_meta["data"]["train_counts"]
        for label, (sensitivity, specificity) in POINTS.items():
            _, record = calibrate(logits, val.y_true, counts, "auto", melanoma_sensitivity=sensitivity,
                                  melanoma_specificity=specificity)
            after = record["after"]
            emit({"run": run, "point": label, "val_images": len(val.y_true), "tau": record["tau"],
                  "melanoma_bias": record["melanoma_bias"],
                  **{f"val_{k}": round(after[k], 6) for k in ("accuracy", "balanced_accuracy", "melanoma_sensitivity",
                                                             "melanoma_specificity")}})


if __name__ == "__main__":
    main()
