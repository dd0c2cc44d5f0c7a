"""`hamcli train --compile` against eager training: does torch.compile pay for its compile time?

    python bench/compile_bench.py [--device cpu] [--batches 20] [--images 1600]

Per case (EfficientNet-Lite0 at 150 px, the recommended recipe's network; resnet18 at 128 px), on synthetic
images of HAM10000's shape (speed does not depend on the pixels; runs from the repository alone): two whole
`hamcli train` processes, 2 epochs of --batches batches each, one eager and one with --compile, in the
precision hamcli's table picks. From each run's timing.csv: epoch 1 (the compiled run compiles there) and
epoch 2 (steady state). Reported: the compile cost (epoch 1 of compiled minus eager's), the steady speed-up
(eager's epoch 2 over compiled's) and the number of batches after which --compile has paid for itself.
Results: bench/results/compile_bench.jsonl, with the CPU or GPU named.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import emit  # noqa: E402 - bench/ is on the path when a script runs
from gpu_bench import HAMCLI, gpu_name, synthetic

CASES = [("efficientnet_lite0", 150), ("resnet18", 128)]


def epochs_seconds(run_dir: Path) -> list[float]:
    with open(run_dir / "timing.csv", newline="") as f:
        return [float(row["train_seconds"]) for row in csv.DictReader(f)]


def precision(run_dir: Path) -> str:
    from hamcli.models import checkpoint

    p = checkpoint.load(run_dir / "last.pt")["precision"]
    return p["dtype"] + (" + channels-last" if p["channels_last"] else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--images", type=int, default=1600)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="hamcli-compile-bench-"))
    env = {**os.environ, "HAMCLI_HOME": str(root / "home")}
    synthetic(root, args.images)
    quiet = {"check": True, "env": env, "stdout": subprocess.DEVNULL}
    subprocess.run([*HAMCLI, "download", "--from", str(root / "ham"), "-q"], **quiet)
    for arch, size in CASES:
        data = f"s{size}"
        if not (root / "home" / "data" / "prepared" / data).exists():
            subprocess.run([*HAMCLI, "prepare", "--split", "85/15", "--size", str(size), "--name", data, "-q"],
                           **quiet)
        result = {}
        for mode, extra in (("eager", []), ("compiled", ["--compile"])):
            name = f"{arch}-{mode}"
            start = time.perf_counter()
            subprocess.run([*HAMCLI, "train", "--arch", arch, "--data", data, "--epochs", "2", "--max-batches",
                            str(args.batches), "--batch-size", "64", "--device", args.device, "--name", name,
                            "-q", *extra], **quiet)
            whole = time.perf_counter() - start
            first, second = epochs_seconds(root / "home" / "data" / "runs" / name)
            result["precision"] = precision(root / "home" / "data" / "runs" / name)
            result[mode] = {"whole_process_s": round(whole, 1), "epoch1_s": round(first, 2),
                            "epoch2_s": round(second, 2)}
        eager, comp = result["eager"], result["compiled"]
        cost = comp["epoch1_s"] - eager["epoch1_s"]
        saved_per_batch = (eager["epoch2_s"] - comp["epoch2_s"]) / args.batches
        emit({"arch": arch, "size": size, "device": args.device, "gpu": gpu_name(), "batch": 64,
              "batches_per_epoch": args.batches, "precision": result.pop("precision"),
              **{f"{m}_{k}": v for m in result for k, v in result[m].items()},
              "compile_cost_s": round(cost, 1), "steady_speedup": round(eager["epoch2_s"] / comp["epoch2_s"], 3),
              "pays_after_batches": round(cost / saved_per_batch) if saved_per_batch > 0 else None,
              "python": sys.version.split()[0]})


if __name__ == "__main__":
    main()
