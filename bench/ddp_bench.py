"""Two gloo processes of one thread against one process of two threads, on this machine's two cores.

    python bench/ddp_bench.py [--data ../shared/ham10000-dev] [--epochs 2]

LeNet at 64 px on the dev set's lesion-grouped 85/15 split, --epochs each way, trained with
`hamcli train` (and `--devices 2`) as a user would; the figure is the median epoch's training
images per second (all processes together), from each run's history. Results go to --results-file.
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

import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path("../shared/ham10000-dev"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--results-file", type=Path, default=Path("bench/results/ddp.json"))
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="hamcli-ddp-"))
    env = {**os.environ, "HAMCLI_HOME": str(home)}

    def hamcli(*argv: str, extra: dict | None = None) -> None:
        subprocess.run([sys.executable, "-m", "hamcli", *argv], env={**env, **(extra or {})}, check=True,
                       stdout=subprocess.DEVNULL)

    hamcli("download", "--from", str(args.data / "images"), "--metadata", str(args.data / "HAM10000_metadata.csv"))
    hamcli("prepare", "--split", "85/15", "--size", "64", "--name", "dev64", "-q")
    common = ["train", "--arch", "lenet", "--data", "dev64", "--epochs", str(args.epochs), "--batch-size", "64",
              "--precision", "fp32", "-q"]
    rows = {}
    for label, argv, extra in (("1 process x 2 threads", ["--name", "one"], {"OMP_NUM_THREADS": "2"}),
                               ("2 gloo processes x 1 thread", ["--name", "two", "--devices", "2"], {})):
        start = time.perf_counter()
        hamcli(*common, *argv, extra=extra)
        history = pd.read_csv(home / "data" / "runs" / argv[1] / "timing.csv")
        # each process reports its own shard's speed; together they train world-size times that
        world = 2 if "--devices" in argv else 1
        rows[label] = {"images_per_s": round(float(history["images_per_s"].median()) * world, 1),
                       "wall_s": round(time.perf_counter() - start, 1)}
    cpu = next((line.split(":", 1)[1].strip() for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name")), "?")
    result = {"arch": "lenet", "size": 64, "epochs": args.epochs, "batch_per_process": 64, "cpu": cpu,
              "date": time.strftime("%F"), **rows}
    args.results_file.parent.mkdir(parents=True, exist_ok=True)
    args.results_file.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
