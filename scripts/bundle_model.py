"""Turn a finished run into the model bundled with hamcli (src/hamcli/bundled/).

    HAMCLI_HOME=/tmp/acc python scripts/bundle_model.py acc-lenet-96

The bundled checkpoint is the run's best.pt with its provenance added: the training data, the
licence it inherits, the test-split metrics measured here, and the ids of every image the model
was trained or validated on, so that `hamcli evaluate --data` leaves those out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import hamcli.evaluate.scoring as evaluation
import hamcli.fsio as fsio
import hamcli.models.checkpoint as checkpoint
from hamcli.data.cache import PreparedDataset
from hamcli.runs import BUNDLED_FILE, resolve_checkpoint

LICENCE = ("trained on HAM10000 (Tschandl et al., Sci. Data 5, 180161, 2018; doi:10.7910/DVN/DBW86T), "
           "CC BY-NC 4.0: research and education only, not for diagnosis")
KEPT = ("accuracy", "balanced_accuracy", "macro_f1", "macro_roc_auc", "melanoma_sensitivity",
        "melanoma_specificity", "ece")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", help="run name or folder (its best.pt is bundled)")
    parser.add_argument("--out", type=Path, default=BUNDLED_FILE)
    args = parser.parse_args()

    path = resolve_checkpoint(args.run)
    ckpt = checkpoint.load(path)
    prepared = PreparedDataset.open(ckpt["data"]["name"])
    if prepared.fingerprint != ckpt["data"]["fingerprint"]:
        raise SystemExit(f"{prepared.root}: changed since the run trained on it")
    m = prepared.manifest
    # Runs trained since checkpoints list their images carry the list; older ones: every non-test image.
    seen = ckpt["data"].get("seen_image_ids") or sorted(m.loc[m["split"] != "test", "image_id"].tolist())
    report = evaluation.evaluate_checkpoint(path)["metrics"]
    test = {k: round(float(report[k]), 4) for k in KEPT} | {"images": int(report["images"])}

    bundle = {k: v for k, v in ckpt.items() if k in (
        "format_version", "hamcli_version", "classes", "epoch", "metrics", "arch", "input_size", "mean", "std",
        "config", "precision", "state_dict")}
    bundle["data"] = {**ckpt["data"], "name": "ham10000-dev", "seen_image_ids": seen}
    bundle["bundle"] = {"licence": LICENCE, "test_split": f"lesion-grouped 15% of hamcli's HAM10000 dev subset "
                        f"({test['images']} images, none of whose lesions were trained on)", "test": test}
    with fsio.atomic_path(args.out) as tmp:
        torch.save(bundle, tmp)
    print(json.dumps({"out": str(args.out), "bytes": args.out.stat().st_size, "seen": len(seen), "test": test}))


if __name__ == "__main__":
    main()
