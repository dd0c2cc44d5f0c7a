"""Training speed on CPU, this checkout against another commit's, paired: does a change slow the CPU path?

    git worktree add /tmp/base COMMIT
    python bench/train_paired.py --baseline /tmp/base [--data ../shared/ham10000-dev] [--rounds 3]

Each round runs, one after the other in fresh processes, the baseline's Trainer and this checkout's (each on its own
HAMCLI_HOME, prepared once at 128 px), resnet18, batch 64, 60 timed batches after 2 warm-up ones, timed as
bench/train_bench.py times hamcli (images/s between batch 2 and the last). Alternating the two within a round keeps
a slow minute of a shared machine from landing on one side only. Results: bench/results/train_paired.jsonl.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _results import emit  # noqa: E402 - bench/ is on the path when a script runs

HERE = Path(__file__).resolve().parents[1]

ONE = """
import os, sys
from pathlib import Path
sys.path.insert(0, {bench!r})
import train_bench as tb
from hamcli.training.config import TrainConfig
from hamcli.training.engine import Trainer
home, data = Path(os.environ["HAMCLI_HOME"]), Path({data!r})
if not (home / "data" / "prepared" / "s128").exists():
    tb.run_cli(["download", "--from", str(data / "images"), "--metadata", str(data / "HAM10000_metadata.csv"), "-q"],
               dict(os.environ))
    tb.run_cli(["prepare", "--name", "s128", "--size", "128", "--split", "85/15", "-q"], dict(os.environ))
clock = tb.BatchClock()
trainer = Trainer(TrainConfig(arch="resnet18", data="s128", epochs=1, batch_size=64, max_batches=62, name="b",
                              overwrite=True), clock)
trainer.run()
print(round(clock.steady_images_per_s(64), 1), trainer.prec.dtype)
"""


def commit(tree: Path) -> str:
    return subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="a worktree of the commit to compare with")
    parser.add_argument("--data", type=Path, default=Path("../shared/ham10000-dev"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    homes = Path(tempfile.mkdtemp(prefix="hamcli-paired-"))
    code = ONE.format(bench=str(HERE / "bench"), data=str(args.data.resolve()))
    for round_ in range(1, args.rounds + 1):
        for side, tree in (("baseline", args.baseline.resolve()), ("this", HERE)):
            env = {**os.environ, "HAMCLI_HOME": str(homes / side), "PYTHONPATH": str(tree / "src")}
            out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
            speed, dtype = out.stdout.split()[-2:]
            emit({"round": round_, "side": side, "commit": commit(tree), "arch": "resnet18", "size": 128,
                  "batch": 64, "batches": 60, "precision": dtype, "hamcli_img_s": float(speed)})


if __name__ == "__main__":
    main()
