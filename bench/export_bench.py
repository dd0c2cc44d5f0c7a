"""ONNX Runtime against torch for the same model: warm images per second over the same images.

    python bench/export_bench.py [--model bundled] [--images ../shared/ham10000-dev/images] [--n 512]

Exports --model with `hamcli export`, decodes --n images once with the model's preprocessing, then
times `probabilities()` of both predictors on them, alternating, --repeat times each (decoding is
excluded: it is the same for both). Results go to --results-file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import hamcli


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--images", type=Path, default=Path("../shared/ham10000-dev/images"))
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--results-file", type=Path, default=Path("bench/results/export.json"))
    args = parser.parse_args()
    onnx_path = Path(tempfile.mkdtemp()) / "model.onnx"
    subprocess.run([sys.executable, "-m", "hamcli", "export", args.model, "-o", str(onnx_path)], check=True)
    torch_model, onnx_model = hamcli.load_model(args.model), hamcli.load_model(onnx_path)
    files = sorted(args.images.glob("*.jpg"))[:args.n]
    images, _, _ = torch_model.decode(files)
    rates = {"torch": [], "onnxruntime": []}
    for model in (torch_model, onnx_model):
        model.probabilities(images[:64])  # warm-up: graph setup
    for _ in range(args.repeat):
        for name, model in (("torch", torch_model), ("onnxruntime", onnx_model)):
            start = time.perf_counter()
            model.probabilities(images)
            rates[name].append(len(images) / (time.perf_counter() - start))
    cpu = next((line.split(":", 1)[1].strip() for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name")), "?")
    row = {"model": args.model, "arch": torch_model.card.arch, "images": len(images), "cpu": cpu,
           "torch_precision": torch_model.precision, "date": time.strftime("%F"),
           **{f"{k}_img_s": {"min": round(min(v), 1), "median": round(statistics.median(v), 1),
                            "max": round(max(v), 1)} for k, v in rates.items()}}
    args.results_file.parent.mkdir(parents=True, exist_ok=True)
    args.results_file.write_text(json.dumps(row, indent=2) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
