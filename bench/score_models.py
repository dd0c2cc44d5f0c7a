"""Score model files on one lesion-grouped test split, whatever their input size: old against new bundled.

    HAMCLI_HOME=/work/acc python bench/score_models.py --split-of dev200x150 MODEL.pt [MODEL.pt ...]

The test rows of the prepared dataset --split-of (the split the accuracy benchmark scores) are linked
into a scratch folder with their metadata, and each model is scored with
`hamcli evaluate MODEL --data FOLDER --json --ci`, decoding the dev images with its own preprocessing
(a 96 px LeNet and a 200x150 EfficientNet see the same images). Results go to
bench/results/score_models.jsonl.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _results import emit

KEPT = ("accuracy", "balanced_accuracy", "macro_f1", "macro_roc_auc", "melanoma_sensitivity",
        "melanoma_specificity", "melanoma_sensitivity_at_90_specificity", "ece")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--split-of", default="dev200x150")
    parser.add_argument("--data", type=Path, default=Path("../shared/ham10000-dev"))
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args()

    import pandas as pd

    from hamcli.data.cache import PreparedDataset

    manifest = PreparedDataset.open(args.split_of).manifest
    test = manifest[manifest["split"] == "test"]
    meta = pd.read_csv(args.data / "HAM10000_metadata.csv")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        meta[meta["image_id"].isin(test["image_id"])].to_csv(folder / "HAM10000_metadata.csv", index=False)
        for image_id in test["image_id"]:
            (folder / f"{image_id}.jpg").symlink_to((args.data / "images" / f"{image_id}.jpg").resolve())
        for model in args.models:
            done = subprocess.run([sys.executable, "-m", "hamcli", "evaluate", str(model), "--data", str(folder),
                                   "--json", "--ci", "--bootstrap", str(args.bootstrap)],
                                  capture_output=True, text=True, check=True)
            report = json.loads(done.stdout)
            m = report["metrics"]
            row = {"model": model.name, "arch": report["arch"], "test_split_of": args.split_of,
                   "images": m["images"], "left_out_seen": report["left_out_seen"]}
            row |= {k: round(float(m[k]), 4) for k in KEPT if k in m}
            row["ci95"] = {k: [round(v[0], 4), round(v[1], 4)] for k, v in m.get("ci95", {}).items()}
            emit(row)


if __name__ == "__main__":
    main()
