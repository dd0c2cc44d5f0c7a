"""Accuracy of training recipes on the dev set's lesion-grouped 85/15 split, with honest selection.

    python bench/accuracy_bench.py --recipes lite0-frame lite0-square [--data ../shared/ham10000-dev]
    python bench/accuracy_bench.py --list

Each recipe is prepared and trained with `hamcli prepare` / `hamcli train` exactly as a user would run
them, then scored with `hamcli evaluate --json --ci` on the validation rows the run chose its epoch on
(`--split val`) and on the held-out test split, plain and with `--tta`. Recipes, TTA and thresholds are
chosen on the validation numbers only; the test numbers are reported, never used to choose. One JSON
line per recipe goes to --results-file (committed, so every figure in docs/benchmarks.md has a source),
with the commands, the wall-clock training minutes, training and prediction throughput, and the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

COMMON = ["--optimizer", "adamw", "--schedule", "onecycle", "--warmup-epochs", "1", "--label-smoothing", "0.1",
          "--augment", "strong", "--batch-size", "32", "--weight-decay", "0.01", "--monitor", "balanced_accuracy"]
LITE = ["--pretrained", "--lr", "0.001", *COMMON]
# the 8-epoch fine-tune: stem + first 3 blocks frozen (--freeze-early 4), backbone at half the head's rate
FINE = ["--epochs", "8", "--backbone-lr-mult", "0.5", "--ema", "0.998", "--prior-shift", "auto", *LITE]
RECIPES: dict[str, dict] = {
    # first try: 12 epochs; it peaked on validation at epoch 4-6, then overfitted
    "lite0-frame": {"size": "200x150", "train": ["--arch", "efficientnet_lite0", "--epochs", "12",
                                                  "--freeze-early", "4", "--class-weight", "sqrt", *LITE,
                                                  "--ema", "0.999"]},
    "lite0-frame-8": {"size": "200x150", "train": ["--arch", "efficientnet_lite0", "--freeze-early", "4",
                                                    "--class-weight", "sqrt", *FINE]},
    "lite0-frame-8-balanced": {"size": "200x150", "train": ["--arch", "efficientnet_lite0", "--freeze-early", "4",
                                                             "--class-weight", "balanced", *FINE]},
    "lite0-square-8": {"size": "150", "train": ["--arch", "efficientnet_lite0", "--freeze-early", "4",
                                                "--class-weight", "sqrt", *FINE]},
    # three folds of the same recipe, used as one ensemble; the melanoma operating point fitted on all
    # 5,174 out-of-fold predictions (the first time: `scripts/bundle_model.py FAMILY --melanoma-sensitivity S`)
    "lite0-square-8-k3": {"size": "150", "folds": 3, "train": ["--arch", "efficientnet_lite0", "--freeze-early", "4",
                                                               "--class-weight", "sqrt", *FINE, "--all-folds"]},
    # the chosen recipe trained again on training + validation rows (5,174 images), keeping its last epoch
    # and lite0-square-8's validation-fitted postprocessing: `hamcli train --refit`
    "lite0-square-8-refit": {"size": "150", "refit": "lite0-square-8", "train": []},
    # two more refits with other seeds, and the three used as one model (`hamcli ensemble`) with the melanoma
    # offset lite0-square-8-k3 fitted on its out-of-fold predictions (target 0.60, as rule 1 chose)
    "lite0-square-8-refit-s1": {"size": "150", "refit": "lite0-square-8", "train": ["--seed", "1"]},
    "lite0-square-8-refit-s2": {"size": "150", "refit": "lite0-square-8", "train": ["--seed", "2"]},
    "lite0-square-8-refit-x3": {"size": "150", "ensemble": ["lite0-square-8-refit", "lite0-square-8-refit-s1",
                                                            "lite0-square-8-refit-s2"],
                                "operating_point_from": "lite0-square-8-k3", "train": []},
    # rule 6 (docs/benchmarks.md): three refits of lite2-square-8, and the six-member average of them and the
    # three bundled Lite0 refits (`lite0-x3.pt` under --home: a copy of the bundle as rule 6 found it), with
    # the operating point fitted on the validation rows shared by lite0-square-8 and lite2-square-8
    "lite2-square-8-refit": {"size": "150", "refit": "lite2-square-8", "train": []},
    "lite2-square-8-refit-s1": {"size": "150", "refit": "lite2-square-8", "train": ["--seed", "1"]},
    "lite2-square-8-refit-s2": {"size": "150", "refit": "lite2-square-8", "train": ["--seed", "2"]},
    "lite0-lite2-square-8": {"size": "150", "ensemble": ["lite0-square-8", "lite2-square-8"], "train": [],
                             "calibrate": 0.6},
    "lite0-x3-lite2-x3": {"size": "150", "files": ["lite0-x3.pt"],
                          "ensemble": ["lite2-square-8-refit", "lite2-square-8-refit-s1", "lite2-square-8-refit-s2"],
                          "operating_point_from": "lite0-lite2-square-8", "train": []},
    "lite0-frame-266-8": {"size": "266x200", "train": ["--arch", "efficientnet_lite0", "--freeze-early", "4",
                                                        "--class-weight", "sqrt", *FINE]},
    "lite0-frozen-8": {"size": "200x150", "train": ["--arch", "efficientnet_lite0", "--freeze-backbone",
                                                     "--class-weight", "sqrt", *FINE]},
    "lite1-frame-8": {"size": "200x150", "train": ["--arch", "efficientnet_lite1", "--freeze-early", "5",
                                                    "--class-weight", "sqrt", *FINE]},
    "lite2-frame-8": {"size": "200x150", "train": ["--arch", "efficientnet_lite2", "--freeze-early", "5",
                                                    "--class-weight", "sqrt", *FINE]},
    "lite1-square-8": {"size": "150", "train": ["--arch", "efficientnet_lite1", "--freeze-early", "5",
                                                "--class-weight", "sqrt", *FINE]},
    "lite2-square-8": {"size": "150", "train": ["--arch", "efficientnet_lite2", "--freeze-early", "5",
                                                "--class-weight", "sqrt", *FINE]},
    # the previous default: LeNet from scratch at 96 px, 100 epochs
    "lenet-96": {"size": "96", "train": ["--arch", "lenet", "--epochs", "100", "--lr", "0.002",
                                         "--class-weight", "sqrt", "--augment", "strong", "--schedule", "cosine",
                                         "--label-smoothing", "0.05", "--batch-size", "64"]},
}
KEPT = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "macro_roc_auc", "melanoma_sensitivity",
        "melanoma_specificity", "ece")


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or platform.machine()


def torch_version() -> str:
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"], capture_output=True,
                         text=True, check=True).stdout
    return out.strip()


def hamcli(args: list[str], env: dict, capture: bool = False) -> str:
    done = subprocess.run([sys.executable, "-m", "hamcli", *args], env=env, check=True, text=True,
                          stdout=subprocess.PIPE if capture else subprocess.DEVNULL)
    return done.stdout or ""


def scores(run: str, env: dict, split: str, tta: bool, bootstrap: int) -> dict:
    report = json.loads(hamcli(["evaluate", run, "--json", "--split", split, "--ci", "--bootstrap", str(bootstrap),
                                *(["--tta"] if tta else [])], env, capture=True))
    m = report["metrics"]
    out = {k: round(m[k], 4) for k in KEPT}
    out["ci95"] = {k: [round(v[0], 4), round(v[1], 4)] for k, v in m.get("ci95", {}).items()}
    out["images"] = m["images"]
    out["per_class_recall"] = {c: round(v["recall"], 4) for c, v in m["per_class"].items()}
    return out


def plain_scores(run: str, home: Path, bootstrap: int, split: str = "test") -> dict:
    """Figures of an ensemble's average without its own operating point (the members' own kept)."""
    code = (f"import json, hamcli; from hamcli.evaluation.scoring import score; "
            f"from hamcli.inference.postprocess import Postprocess; p = hamcli.load_model({run!r}); "
            f"p.post = Postprocess(); m = score(p, ci=True, bootstrap={bootstrap}, split={split!r})['metrics']; "
            f"print(json.dumps({{k: round(float(m[k]), 4) for k in {KEPT!r}}} | {{'ci95': m['ci95']}}))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "HAMCLI_HOME": str(home)},
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def predict_throughput(run: str, home: Path) -> tuple[float, str]:
    """Warm images per second of `Predictor.probabilities` over the test split (decoding excluded), and the
    precision it ran in."""
    code = (f"import time, hamcli; from hamcli.evaluation.scoring import held_out; p = hamcli.load_model({run!r}); "
            "x = held_out(p).images; p.probabilities(x[:64]); t = time.perf_counter(); p.probabilities(x); "
            "print(len(x) / (time.perf_counter() - t), p.precision)")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "HAMCLI_HOME": str(home)},
                         capture_output=True, text=True, check=True).stdout
    speed, precision = out.strip().splitlines()[-1].split(" ", 1)
    return round(float(speed), 1), precision


def train_precision(run_dir: Path) -> str:
    """The precision `hamcli train --precision auto` measured and chose (recorded in the checkpoint)."""
    code = ("import sys; from hamcli.models.checkpoint import load; from hamcli.models.precision import Precision, "
            "describe; print(describe(Precision(**load(sys.argv[1])['precision'])))")
    return subprocess.run([sys.executable, "-c", code, str(run_dir / "best.pt")], capture_output=True, text=True,
                          check=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path("../shared/ham10000-dev"))
    parser.add_argument("--home", type=Path, default=Path("/tmp/hamcli-accuracy"),
                        help="HAMCLI_HOME for the datasets and runs (kept, so runs can be bundled)")
    parser.add_argument("--recipes", nargs="*", default=["lite0-frame"])
    parser.add_argument("--results-file", type=Path, default=Path("bench/results/accuracy.jsonl"))
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--score-only", action="store_true", help="score runs already trained under --home")
    args = parser.parse_args()
    if args.list:
        for name, recipe in RECIPES.items():
            print(f"{name:18} --size {recipe['size']:8} {' '.join(recipe['train'])}")
        return
    env = {**os.environ, "HAMCLI_HOME": str(args.home)}
    if not (args.home / "data" / "datasets" / "ham10000").exists():
        hamcli(["download", "--from", str(args.data / "images"), "--metadata",
                str(args.data / "HAM10000_metadata.csv"), "--json"], env)
    for name in args.recipes:
        recipe = RECIPES[name]
        folds = recipe.get("folds", 0)
        data = f"dev{recipe['size']}" + (f"-k{folds}" if folds else "")
        prepare = ["prepare", "--split", "85/15", "--size", recipe["size"], *(["--folds", str(folds)] if folds else []),
                   "--name", data, "-q"]
        if not (args.home / "data" / "prepared" / data).exists():  # one seed: the same split at every size
            hamcli(prepare, env)
        train = ["train", *recipe["train"], "--data", data, "--name", f"acc-{name}", "-q"]
        if recipe.get("refit"):
            train = ["train", "--refit", f"acc-{recipe['refit']}", *recipe["train"], "--name", f"acc-{name}", "-q"]
        ensemble = recipe.get("ensemble", [])
        if ensemble:
            source = recipe.get("operating_point_from")
            train = ["ensemble", *[str(args.home / f) for f in recipe.get("files", [])],
                     *[f"acc-{m}" for m in ensemble], "--name", f"acc-{name}", "--overwrite",
                     *(["--operating-point-from", f"acc-{source}"] if source else [])]
        start = time.perf_counter()
        if not args.score_only:
            hamcli(train, env)
            if recipe.get("calibrate"):  # on the validation rows its members share
                hamcli(["calibrate", f"acc-{name}", "--melanoma-sensitivity", str(recipe["calibrate"])], env)
        wall = (time.perf_counter() - start) / 60
        run_dir = args.home / "data" / "runs" / f"acc-{name}"
        family = json.loads((run_dir / "family.json").read_text()) if ensemble else {}
        members = ([run_dir / f"fold{k}" for k in range(folds)] if folds else
                   [run_dir / m for m in family["members"]] if ensemble else [run_dir])
        folds = folds or len(members) * bool(ensemble)  # an ensemble is scored like a family
        members = [m for m in members if (m / "metrics.json").exists()]  # a bundle's members keep no records
        metrics = [json.loads((m / "metrics.json").read_text()) for m in members]
        row = {"recipe": name, "prepare": "hamcli " + " ".join(prepare), "train": "hamcli " + " ".join(train),
               "wall_minutes": None if args.score_only else round(wall, 1),
               "best_epoch": metrics[0]["best_epoch"] if not folds else [m["best_epoch"] for m in metrics],
               "calibration": metrics[0].get("calibration") if not folds else [m.get("calibration") for m in metrics],
               "weights": metrics[0].get("weights", "raw"), "cpu": cpu_model(), "threads": os.cpu_count(),
               "python": platform.python_version(), "torch": torch_version(), "date": time.strftime("%Y-%m-%d")}
        import pandas as pd

        # runs of hamcli 0.1 kept the timings in history.csv; later ones in timing.csv
        histories = [pd.read_csv(m / "timing.csv" if (m / "timing.csv").exists() else m / "history.csv")
                     for m in members]
        row["train_images_per_s"] = round(float(pd.concat(histories)["images_per_s"].median()), 1)
        # the training loop alone at the median epoch's speed, so a busy machine during one epoch does not count
        row["train_minutes"] = round(sum(float(h["train_seconds"].median()) * len(h) for h in histories) / 60, 1)
        row["epochs"] = len(histories[0])
        row["predict_images_per_s"], row["predict_precision"] = predict_throughput(f"acc-{name}", args.home)
        row["train_precision"] = [train_precision(m) for m in members] if folds else train_precision(run_dir)
        if recipe.get("refit"):
            row["refit_of"] = f"acc-{recipe['refit']}"
        shared_val = recipe.get("calibrate")  # an ensemble of runs validated on the same rows
        for split in ("val", "test") if shared_val or not (folds or recipe.get("refit")) else ("test",):
            for tta in (False, True):
                row[f"{split}{'_tta' if tta else ''}"] = scores(f"acc-{name}", env, split, tta, args.bootstrap)
        if shared_val:
            row["calibration"] = json.loads((run_dir / "family.json").read_text()).get("calibration", {})
        elif folds:  # no image is outside every member's training: validation is the out-of-fold record
            row["val"] = {**json.loads((run_dir / "family.json").read_text()).get("calibration", {})}
        if ensemble:  # for information only: the average without the copied operating point
            for split in ("val", "test") if shared_val else ("test",):
                row[f"{split}_without_operating_point"] = plain_scores(f"acc-{name}", args.home, args.bootstrap,
                                                                        split)
        args.results_file.parent.mkdir(parents=True, exist_ok=True)
        with open(args.results_file, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(json.dumps({k: row.get(k) for k in ("recipe", "train_minutes", "val_tta", "test_tta")}), flush=True)


if __name__ == "__main__":
    main()
