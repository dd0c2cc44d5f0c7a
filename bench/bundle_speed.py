"""The bundled model against another model file, in one run, whole processes: size, `hamcli predict` over
1,000 images, one `hamcli gradcam`.

    python bench/bundle_speed.py --old /work/old-bundle.pt [--new CANDIDATE.pt] [--data ../shared/ham10000-full]
                                 [--repeat 3]

Issue 27 asks the new bundle to predict 1,000 images at least 3x as fast as the one it replaces, measured
in one run against it: both are timed here alternately (A, B, A, B, ...), each `hamcli predict - -f csv` on
the same 1,000 images (paths on stdin, start-up and loading included), and `hamcli gradcam` of one image.
Results: bench/results/bundle_speed.jsonl (median, min and max of --repeat runs each).
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

import hamcli

HAMCLI = [sys.executable, "-m", "hamcli"]


def timed(cmd: list[str], env: dict, stdin: Path | None = None) -> float:
    start = time.perf_counter()
    with open(stdin or os.devnull) as fh:
        subprocess.run(cmd, env=env, check=True, stdin=fh, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def spread(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2), "max": round(max(values), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True, help="the model file to compare against")
    parser.add_argument("--new", type=Path, default=None, help="a model file to time (default: the bundled one)")
    parser.add_argument("--data", type=Path, default=Path("../shared/ham10000-full"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="hamcli-bundle-speed-"))
    env = {**os.environ, "HAMCLI_HOME": str(home)}
    files = [str(p) for p in sorted((args.data / "images").glob("*.jpg"))[:1000]]
    listing = home / "files.txt"
    listing.write_text("\n".join(files) + "\n")
    one = str(sorted((Path(hamcli.__file__).parent / "samples" / "images").glob("*.jpg"))[0])
    models = {"new": str(args.new) if args.new else "bundled", "old": str(args.old)}
    predict: dict[str, list[float]] = {k: [] for k in models}
    cam: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(args.repeat):
        for key, model in models.items():
            predict[key].append(timed([*HAMCLI, "predict", "-", "--model", model, "-f", "csv"], env, listing))
            cam[key].append(timed([*HAMCLI, "gradcam", one, "--model", model, "-o", str(home / f"{key}.png")], env))
    from hamcli.runs import BUNDLED_FILE

    sizes = {"new": (args.new or BUNDLED_FILE).stat().st_size, "old": args.old.stat().st_size}
    emit({"images": len(files), "repeat": args.repeat,
          "predict_1000_s": {k: spread(v) for k, v in predict.items()},
          "predict_images_per_s": {k: round(len(files) / statistics.median(v), 1) for k, v in predict.items()},
          "throughput_ratio": round(statistics.median(predict["old"]) / statistics.median(predict["new"]), 2),
          "gradcam_one_s": {k: spread(v) for k, v in cam.items()},
          "file_mb": {k: round(v / 1e6, 1) for k, v in sizes.items()}, "old": str(args.old),
          "new": str(args.new or "bundled")})


if __name__ == "__main__":
    main()
