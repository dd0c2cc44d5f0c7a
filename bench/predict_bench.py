"""Predict and Grad-CAM speed: cold start, throughput, and gradcam against predict.

    python bench/predict_bench.py [--data ../shared/ham10000-dev] [--repeat 5]

Makes a resnet18 run at 128 px (one short epoch: speed does not depend on accuracy), then, in one run:
  * `hamcli --help`, and `hamcli predict one.jpg` against `python -c "import torch, torchvision"`;
  * `hamcli predict` over 1,000 dev-set images against a per-image loop (model loaded once; open,
    transform, forward one image at a time, fp32), both in the same process kind;
  * one `hamcli gradcam` against one `hamcli predict` on the same original 600x450 image and model.
Wall times are the median of --repeat runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import emit  # noqa: E402 - bench/ is on the path when a script runs

HAMCLI = [sys.executable, "-m", "hamcli"]


def wall(cmd: list[str], env: dict, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


PER_IMAGE_LOOP = """
import sys, time, torch
from PIL import Image
from torchvision import transforms
import hamcli
files = [line.strip() for line in open(sys.argv[1])]
model = hamcli.load_model(sys.argv[2], device="cpu").model.float().eval()
model = model.to(memory_format=torch.contiguous_format)
tf = transforms.Compose([transforms.Resize(128), transforms.CenterCrop(128), transforms.ToTensor(),
                         transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
start = time.perf_counter()
with torch.inference_mode():
    for f in files:
        model(tf(Image.open(f).convert("RGB"))[None]).softmax(1)
print(len(files) / (time.perf_counter() - start))
"""

HAMCLI_STEADY = """
import sys, time
import hamcli
files = [line.strip() for line in open(sys.argv[1])]
model = hamcli.load_model(sys.argv[2])
start = time.perf_counter()
rows = model.predict_many(files)
print(len(rows) / (time.perf_counter() - start))
"""


def timed(cmd: list[str], env: dict, stdin_path: Path | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    with open(stdin_path) if stdin_path else open(os.devnull) as stdin:
        done = subprocess.run(cmd, env=env, check=True, stdin=stdin, capture_output=True, text=True)
    return time.perf_counter() - start, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path("../shared/ham10000-dev"))
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="hamcli-pred-"))
    env = {**os.environ, "HAMCLI_HOME": str(home)}
    quiet = {"env": env, "check": True, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    subprocess.run([*HAMCLI, "download", "--from", str(args.data / "images"), "--metadata",
                    str(args.data / "HAM10000_metadata.csv")], **quiet)
    subprocess.run([*HAMCLI, "prepare", "--split", "85/15", "--size", "128", "-q"], **quiet)
    subprocess.run([*HAMCLI, "train", "--arch", "resnet18", "--epochs", "1", "--max-batches", "3",
                    "--name", "r18", "-q"], **quiet)
    one = str(sorted((args.data / "originals").glob("*.jpg"))[0])
    rows = {}
    rows["help_s"] = wall([*HAMCLI, "--help"], env, args.repeat)
    rows["import_torch_torchvision_s"] = wall([sys.executable, "-c", "import torch, torchvision"], env, args.repeat)
    rows["predict_one_s"] = wall([*HAMCLI, "predict", one, "--model", "r18"], env, args.repeat)
    rows["cold_start_ratio"] = rows["predict_one_s"] / rows["import_torch_torchvision_s"]
    emit({k: round(v, 3) for k, v in rows.items()})

    files = [str(p) for p in sorted((args.data / "images").glob("*.jpg"))[:1000]]
    listing = home / "files.txt"
    listing.write_text("\n".join(files) + "\n")
    # End to end: whole processes, start-up and model loading included on both sides.
    t_ours, _ = timed([*HAMCLI, "predict", "-", "--model", "r18", "--format", "csv"], env, listing)
    t_loop, loop_out = timed([sys.executable, "-c", PER_IMAGE_LOOP, str(listing), "r18"], env)
    # Steady state: images/s once the model is loaded, on both sides.
    _, steady_out = timed([sys.executable, "-c", HAMCLI_STEADY, str(listing), "r18"], env)
    loop_steady, ours_steady = float(loop_out.split()[-1]), float(steady_out.split()[-1])
    emit({"images": len(files),
                      "end_to_end_s": {"hamcli_predict": round(t_ours, 2), "per_image_loop": round(t_loop, 2),
                                       "speedup": round(t_loop / t_ours, 2)},
                      "steady_img_s": {"hamcli_predict": round(ours_steady, 1), "per_image_loop": round(loop_steady, 1),
                                       "speedup": round(ours_steady / loop_steady, 2)}})

    out = home / "cam.png"
    t_cam = wall([*HAMCLI, "gradcam", one, "--model", "r18", "-o", str(out)], env, args.repeat)
    t_pred = wall([*HAMCLI, "predict", one, "--model", "r18"], env, args.repeat)
    emit({"image": Path(one).name, "gradcam_s": round(t_cam, 3), "predict_s": round(t_pred, 3),
                      "ratio": round(t_cam / t_pred, 2)})


if __name__ == "__main__":
    main()
