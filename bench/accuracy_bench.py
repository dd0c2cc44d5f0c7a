"""Accuracy on the dev set: lenet, cnn, resnet18 and mobilenet_v3_small beside the majority baseline.

    python bench/accuracy_bench.py [--data ../shared/ham10000-dev] [--only NAME ...]

Prepares a lesion-grouped 85/15 split (validation is carved from train, also by lesion), trains each
recipe with `hamcli train` exactly as a user would, then scores the held-out 15% with
`hamcli evaluate --json` (plain and with --tta). One JSON line per recipe, with its wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMON = ["--class-weight", "sqrt", "--augment", "strong", "--schedule", "cosine", "--label-smoothing", "0.05",
          "--monitor", "balanced_accuracy", "--batch-size", "64"]
RECIPES = {
    "lenet": ["--arch", "lenet", "--data", "dev64", "--epochs", "40", "--lr", "0.002", *COMMON],
    "lenet-100": ["--arch", "lenet", "--data", "dev64", "--epochs", "100", "--lr", "0.002", *COMMON],
    "lenet-96": ["--arch", "lenet", "--data", "dev96", "--epochs", "100", "--lr", "0.002", *COMMON],
    "cnn": ["--arch", "cnn", "--data", "dev64", "--epochs", "30", "--lr", "0.002", *COMMON],
    "resnet18": ["--arch", "resnet18", "--data", "dev64", "--epochs", "30", "--lr", "0.001", *COMMON],
    "resnet18-96": ["--arch", "resnet18", "--data", "dev96", "--epochs", "50", "--lr", "0.001", *COMMON],
    "resnet18-128": ["--arch", "resnet18", "--data", "dev128", "--epochs", "24", "--lr", "0.001", *COMMON],
    "mobilenet_v3_small": ["--arch", "mobilenet_v3_small", "--data", "dev128", "--epochs", "30", "--lr", "0.002",
                           *COMMON],
}


def hamcli(args: list[str], env: dict, capture: bool = False) -> str:
    done = subprocess.run([sys.executable, "-m", "hamcli", *args], env=env, check=True, text=True,
                          stdout=subprocess.PIPE if capture else subprocess.DEVNULL)
    return done.stdout or ""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path("../shared/ham10000-dev"))
    parser.add_argument("--home", type=Path, default=None, help="HAMCLI_HOME to use (default: a temp dir)")
    parser.add_argument("--only", nargs="*", default=["lenet", "cnn", "resnet18", "mobilenet_v3_small"])
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="hamcli-acc-"))
    env = {**os.environ, "HAMCLI_HOME": str(home)}
    if not (home / "data" / "datasets" / "ham10000").exists():
        hamcli(["download", "--from", str(args.data / "images"), "--metadata",
                str(args.data / "HAM10000_metadata.csv"), "--json"], env)
    for size in (64, 96, 128):  # the same seed gives the same lesion-grouped split at every size
        if not (home / "data" / "prepared" / f"dev{size}").exists():
            hamcli(["prepare", "--split", "85/15", "--size", str(size), "--name", f"dev{size}", "-q"], env)
    print(json.dumps({"home": str(home)}), flush=True)
    for name in args.only:
        start = time.perf_counter()
        hamcli(["train", *RECIPES[name], "--name", f"acc-{name}", "-q"], env)
        minutes = (time.perf_counter() - start) / 60
        row = {"recipe": name, "command": "hamcli train " + " ".join(RECIPES[name]), "train_minutes": round(minutes, 1)}
        for tta in (False, True):
            report = json.loads(hamcli(["evaluate", f"acc-{name}", "--json", *(["--tta"] if tta else [])], env,
                                       capture=True))
            m = report["metrics"]
            key = "tta" if tta else "plain"
            row[key] = {k: round(m[k], 4) for k in ("accuracy", "balanced_accuracy", "macro_f1", "macro_roc_auc",
                                                   "melanoma_sensitivity", "melanoma_specificity")}
            row["baseline"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in m["baseline"].items()}
            row["test_images"] = m["images"]
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
