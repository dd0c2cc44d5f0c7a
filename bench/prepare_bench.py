"""Decode+resize throughput: hamcli prepare's decoder against a naive Pillow loop, in one run.

    python bench/prepare_bench.py [--data ../shared/ham10000-dev] [--sizes 64 128] [--repeat 3]

The naive loop is what HAM10000 projects usually write: open, convert, resize, one image at a time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _results import emit  # noqa: E402 - bench/ is on the path when a script runs
from PIL import Image

from hamcli.data.preprocess import decode_all


def naive(files: list[Path], size: int) -> np.ndarray:
    out = np.empty((len(files), size, size, 3), dtype=np.uint8)
    for i, f in enumerate(files):
        out[i] = np.asarray(Image.open(f).convert("RGB").resize((size, size)))
    return out


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path("../shared/ham10000-dev"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for folder in ("originals", "images"):
        files = sorted((args.data / folder).glob("*.jpg"))
        for size in args.sizes:
            buf = np.empty((len(files), size, size, 3), dtype=np.uint8)
            t_naive = best_of(lambda f=files, s=size: naive(f, s), args.repeat)
            t_ours = best_of(lambda f=files, s=size, b=buf: decode_all(f, (s, s), b), args.repeat)
            rows.append({"folder": folder, "images": len(files), "size": size,
                         "naive_img_s": round(len(files) / t_naive), "hamcli_img_s": round(len(files) / t_ours),
                         "speedup": round(t_naive / t_ours, 2)})
            emit(rows[-1])
    # The whole command, as a user runs it, on the dev set's 6,088 images.
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "HAMCLI_HOME": home}
        hamcli = [sys.executable, "-m", "hamcli"]
        subprocess.run([*hamcli, "download", "--from", str(args.data / "images"), "--metadata",
                        str(args.data / "HAM10000_metadata.csv"), "--json"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        start = time.perf_counter()
        subprocess.run([*hamcli, "prepare", "--split", "90/10", "--size", "64", "-q", "--json"], env=env,
                       check=True, stdout=subprocess.DEVNULL)
        emit({"command": "hamcli prepare --split 90/10 --size 64", "images": 6088,
              "wall_s": round(time.perf_counter() - start, 2), "cores": os.cpu_count()})


if __name__ == "__main__":
    main()
