"""Rule 8 (c) of docs/benchmarks.md: does a challenger replace the bundled model A? Decided on the val split only.

    HAMCLI_HOME=/work/acc27 python bench/rule8_decide.py full-lite0-s42 --d full-lite0-distil --e full-lite0-200

For A (the shipped run) and each challenger that finished (D distilled, E on the 4:3 frame): macro ROC AUC,
balanced accuracy and accuracy on the val split from raw probabilities (softmax, no temperature, prior shift
or offset), and the fp16 size of its weights. First it checks that every model's val split holds the same
images (E's full200 was prepared apart from full150), else that model drops out. A challenger qualifies if
its val AUC beats A's by more than 0.002 and its raw val balanced accuracy is not below A's; the qualifying
one with the best AUC is chosen, D over E within 0.002; none: A stays. This script never reads the test
split. Writes bench/results/rule8_decide.jsonl.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _results import emit  # noqa: E402 - bench/ is on the path when a script runs
from rule7_decide import fp16_megabytes

from hamcli.data.cache import PreparedDataset
from hamcli.evaluation.metrics import full_report
from hamcli.evaluation.scoring import held_out
from hamcli.inference.load import load_model

MARGIN = 0.002


def splits(model) -> dict:  # noqa: ANN001 - a Predictor
    """image_id -> split of the prepared dataset the model trained on."""
    manifest = PreparedDataset.open(model.card.data_name).manifest
    return dict(zip(manifest["image_id"], manifest["split"], strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="the shipped run (rule 7's A)")
    parser.add_argument("--d", help="candidate D, if it finished by rule 8 (g)")
    parser.add_argument("--e", help="candidate E, if it finished by rule 8 (g)")
    args = parser.parse_args()
    runs = {"A": args.a} | {k: v for k, v in (("D", args.d), ("E", args.e)) if v}
    models = {label: load_model(run) for label, run in runs.items()}
    reference = splits(models["A"])
    rows, a_val = {}, None
    for label, model in models.items():
        val = held_out(model, "val")
        a_val = a_val or set(val.image_ids)
        same = splits(model) == reference and set(val.image_ids) == a_val
        probs = model.outputs(val.images, raw=True).probabilities.astype(np.float64)
        report = full_report(val.y_true, probs)
        rows[label] = {"rule": 8, "candidate": label, "run": runs[label], "data": model.card.data_name,
                       "input": "x".join(map(str, reversed(model.input_size))), "same_split_as_a": same,
                       "val_images": len(val.y_true),
                       "val_macro_roc_auc_raw": round(report["macro_roc_auc"], 4),
                       "val_balanced_accuracy_raw": round(report["balanced_accuracy"], 4),
                       "val_accuracy_raw": round(report["accuracy"], 4),
                       "val_melanoma_sensitivity_at_90_specificity_raw":
                           round(report["melanoma_sensitivity_at_90_specificity"], 4),
                       "fp16_mb": round(fp16_megabytes([runs[label]]), 2)}
    a = rows["A"]
    for label, row in rows.items():
        row["qualifies"] = label != "A" and row["same_split_as_a"] and \
            row["val_macro_roc_auc_raw"] > a["val_macro_roc_auc_raw"] + MARGIN and \
            row["val_balanced_accuracy_raw"] >= a["val_balanced_accuracy_raw"]
    qualifying = [r for r in rows.values() if r["qualifies"]]
    chosen = a
    if qualifying:
        chosen = max(qualifying, key=lambda r: r["val_macro_roc_auc_raw"])
        d = rows.get("D")
        if d in qualifying and d["val_macro_roc_auc_raw"] >= chosen["val_macro_roc_auc_raw"] - MARGIN:
            chosen = d
    for row in rows.values():
        emit({**row, "chosen": row is chosen, "decided": time.strftime("%Y-%m-%d %H:%M")})


if __name__ == "__main__":
    main()
