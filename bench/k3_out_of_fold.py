"""A K-fold family's members out of fold against a single run, on non-test rows only.

    HAMCLI_HOME=/work/acc .venv/bin/python bench/k3_out_of_fold.py acc-lite0-square-8-k3 acc-lite0-square-8

Each training image is scored by the one member of FAMILY that validated on it (out of fold); RUN is scored
on its own validation rows, and the members on those same rows. Also: the out-of-fold trade-off of a
melanoma logit offset (what `train --all-folds --melanoma-sensitivity` would choose from). Writes
bench/results/k3-out-of-fold.json with the CPU. The test split plays no part.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from hamcli.evaluation.metrics import with_melanoma
from hamcli.evaluation.scoring import held_out
from hamcli.inference.predictor import Predictor
from hamcli.runs import resolve_checkpoint, resolve_model
from hamcli.training.calibrate import MELANOMA
from hamcli.training.folds import out_of_fold


def figures(probs: np.ndarray, y: np.ndarray) -> dict:
    s = with_melanoma(y, probs.argmax(1))
    return {k: round(s[k], 4) for k in ("accuracy", "balanced_accuracy", "melanoma_sensitivity")} | {
        "images": int(len(y))}


def main() -> None:
    family, run = resolve_model(sys.argv[1]), sys.argv[2]
    oof = out_of_fold(family)
    probs, labels = oof.probabilities, oof.labels
    members = {name: figures(probs[oof.member == k], labels[oof.member == k]) for k, name in enumerate(oof.members)}
    single = Predictor.load(resolve_checkpoint(run))
    val = held_out(single, "val")
    where = {image: k for k, image in enumerate(oof.image_ids)}
    rows = [where[i] for i in val.image_ids]
    logits = np.log(np.clip(probs, 1e-12, 1.0))
    offsets = {}
    for bias in np.round(np.arange(0, 1.55, 0.1), 2):
        shifted = logits.copy()
        shifted[:, MELANOMA] += bias
        offsets[str(bias)] = figures(shifted, labels)
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    out = {"family": family.name, "run": run, "members_own_fold": members,
           "family_out_of_fold": figures(probs, labels),
           "on_run_validation_rows": {run: figures(single.probabilities(val.images), val.y_true),
                                      f"{family.name} members, out of fold": figures(probs[rows], labels[rows])},
           "out_of_fold_melanoma_offsets": offsets,
           "cpu": next((line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                        if line.startswith("Model name")), "?")}
    target = Path(__file__).parent / "results" / "k3-out-of-fold.json"
    target.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out["on_run_validation_rows"]))


if __name__ == "__main__":
    main()
