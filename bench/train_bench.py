"""Training throughput: hamcli train against a typical plain PyTorch loop, and against the model alone.

    python bench/train_bench.py [--data ../shared/ham10000-dev] [--batches 40]

For each case (resnet18 at 128 px, lenet at 64 px), in one process and run:
  * hamcli: the real Trainer (uint8 cache, batch augmentation, auto precision), images/s of its epoch;
  * plain: torchvision ImageFolder over the exported JPEG folders, DataLoader (2 workers), per-image
    transforms (Resize, CenterCrop, RandomHorizontalFlip, ToTensor, Normalize), fp32 -- the way
    HAM10000 projects are usually written;
  * synthetic: the model's own training step on random in-memory tensors, with the precision hamcli chose.
Same model, same batch size, same number of batches. Finally the peak RSS of a whole `hamcli train`
epoch on the dev set at 64 px, measured in a child process.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _results import emit  # noqa: E402 - bench/ is on the path when a script runs

from hamcli.training.engine import TrainEvents

CASES = [("resnet18", 128), ("lenet", 64)]


class BatchClock(TrainEvents):
    """Times hamcli's batches after the first two, as the other loops are timed."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def batch(self, done: int, loss: float, images_per_s: float) -> None:
        self.stamps.append(time.perf_counter())

    def steady_images_per_s(self, batch: int) -> float:
        return batch * (len(self.stamps) - 2) / (self.stamps[-1] - self.stamps[1])


def run_cli(args: list[str], env: dict) -> None:
    subprocess.run([sys.executable, "-m", "hamcli", *args], env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def plain_loop(arch: str, size: int, folder: Path, batch: int, batches: int) -> float:
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    from hamcli.models.build import build_model

    tf = transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size),
                             transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                             transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    loader = DataLoader(datasets.ImageFolder(str(folder), tf), batch_size=batch, shuffle=True, num_workers=2)
    model = build_model(arch)[0].train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    seen, start = 0, None
    for i, (x, y) in enumerate(loader):
        if i == 2:  # skip warm-up (worker start, first allocations)
            seen, start = 0, time.perf_counter()
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += len(y)
        if i == batches + 1:
            break
    return seen / (time.perf_counter() - start)


def synthetic(arch: str, size: int, batch: int, batches: int, prec) -> float:  # noqa: ANN001
    from hamcli.models.build import build_model

    model = build_model(arch)[0].train().to(memory_format=prec.memory_format)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=prec.memory_format)
    y = torch.randint(0, 7, (batch,))
    for i in range(batches + 2):
        if i == 2:
            start = time.perf_counter()
        with prec.autocast():
            out = model(x)
        loss = torch.nn.functional.cross_entropy(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return batch * batches / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path("../shared/ham10000-dev"))
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--memory-only", action="store_true", help="Skip the throughput cases.")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="hamcli-bench-"))
    os.environ["HAMCLI_HOME"] = str(home)
    env = dict(os.environ)
    run_cli(["download", "--from", str(args.data / "images"), "--metadata",
             str(args.data / "HAM10000_metadata.csv"), "--json"], env)
    from hamcli.training.config import TrainConfig
    from hamcli.training.engine import Trainer

    for arch, size in [] if args.memory_only else CASES:
        name = f"s{size}"
        run_cli(["prepare", "--name", name, "--size", str(size), "--split", "85/15", "-q",
                 "--export-folders", str(home / f"folders{size}")], env)
        clock = BatchClock()
        trainer = Trainer(TrainConfig(arch=arch, data=name, epochs=1, batch_size=args.batch_size,
                                      max_batches=args.batches + 2, name=f"bench-{arch}"), clock)
        trainer.run()
        ours = clock.steady_images_per_s(args.batch_size)
        plain = plain_loop(arch, size, home / f"folders{size}" / "train", args.batch_size, args.batches)
        synth = synthetic(arch, size, args.batch_size, args.batches, trainer.prec)
        emit({"arch": arch, "size": size, "batch": args.batch_size, "batches": args.batches,
                          "precision": trainer.prec.dtype, "channels_last": trainer.prec.channels_last,
                          "hamcli_img_s": round(ours, 1), "plain_img_s": round(plain, 1),
                          "synthetic_img_s": round(synth, 1), "speedup_vs_plain": round(ours / plain, 2),
                          "fraction_of_synthetic": round(ours / synth, 3)})
    if args.memory_only:
        run_cli(["prepare", "--name", "s64", "--size", "64", "--split", "85/15", "-q"], env)
    # Peak memory of a whole epoch on the dev set at 64 px, as a user runs it, in a fresh child process.
    # VmHWM, not ru_maxrss: the latter survives exec and would report this (bigger) parent's peak.
    probe = ("import sys\nfrom hamcli.cli.app import main\nsys.argv = ['hamcli', 'train', '--arch', "
             "'lenet', '--data', 's64', '--epochs', '1', '-q', '--name', 'mem']\ntry:\n    main()\n"
             "except SystemExit:\n    pass\nprint(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", probe], env=env, check=True, capture_output=True, text=True)
    emit({"command": "hamcli train --arch lenet --data s64 --epochs 1 (whole dev set, 64 px)",
          "peak_rss_mb": round(int(done.stdout.split()[-1]) / 1024), "wall_s": round(time.perf_counter() - start, 1),
          "threads": torch.get_num_threads(), "cores": os.cpu_count()})


if __name__ == "__main__":
    main()
