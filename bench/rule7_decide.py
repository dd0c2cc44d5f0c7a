"""Rule 7 (c) of docs/benchmarks.md: which candidate becomes the bundled model, decided on the val split only.

    HAMCLI_HOME=/work/acc27 python bench/rule7_decide.py full-lite0-s42 full-lite0-s1 full-lite2-s42

For each candidate (A alone, C alone, the average of A and B), the macro ROC AUC on full150's val split from
raw probabilities (each member's softmax, averaged; no temperature, prior shift or offset), and the size of
its fp16 file (the member weights as the bundle stores them). The eligible candidate (at most 15 MB) with
the highest AUC wins; within 0.002 of the best, the smaller file. This script never reads the test split.
Writes bench/results/rule7_decide.jsonl.
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
import torch
from _results import emit  # noqa: E402 - bench/ is on the path when a script runs

from hamcli.evaluation.metrics import full_report
from hamcli.evaluation.scoring import held_out
from hamcli.inference.load import load_model
from hamcli.runs import resolve_checkpoint

LIMIT_MB = 15.0
TIE = 0.002


def fp16_megabytes(runs: list[str]) -> float:
    """The bytes of every member's weights in fp16, as `torch.save` writes them (the bundle adds a few KB)."""
    buf = io.BytesIO()
    states = [torch.load(resolve_checkpoint(r), map_location="cpu", weights_only=True)["state_dict"] for r in runs]
    torch.save([{k: v.half() if v.is_floating_point() else v for k, v in s.items()} for s in states], buf)
    return buf.tell() / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("c", nargs="?", help="left out where rule 7 (e) drops it")
    args = parser.parse_args()
    models = {name: load_model(name) for name in (args.a, args.b, args.c) if name}
    val = held_out(models[args.a], "val")
    for name in models:
        assert held_out(models[name], "val").image_ids == val.image_ids, f"{name}: other validation rows"
    raw = {name: m.outputs(val.images, raw=True).probabilities.astype(np.float64) for name, m in models.items()}
    candidates = {"A": [args.a], "A+B": [args.a, args.b]} | ({"C": [args.c]} if args.c else {})
    rows = []
    for label, runs in candidates.items():
        probs = np.mean([raw[r] for r in runs], axis=0)
        report = full_report(val.y_true, probs)
        row = {"rule": 7, "candidate": label, "runs": runs, "val_images": len(val.y_true),
               "val_macro_roc_auc_raw": round(report["macro_roc_auc"], 4),
               "val_balanced_accuracy_raw": round(report["balanced_accuracy"], 4),
               "val_accuracy_raw": round(report["accuracy"], 4), "fp16_mb": round(fp16_megabytes(runs), 2)}
        row["eligible"] = row["fp16_mb"] <= LIMIT_MB
        rows.append(row)
    eligible = [r for r in rows if r["eligible"]]
    best = max(r["val_macro_roc_auc_raw"] for r in eligible)
    near = [r for r in eligible if r["val_macro_roc_auc_raw"] >= best - TIE]
    chosen = min(near, key=lambda r: r["fp16_mb"])
    for row in rows:
        emit({**row, "chosen": row is chosen, "decided": time.strftime("%Y-%m-%d %H:%M")})


if __name__ == "__main__":
    main()
