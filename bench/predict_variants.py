"""Ways to speed up batched prediction that were tried and measured (none adopted; see docs/benchmarks.md).

    HAMCLI_HOME=/tmp/acc python bench/predict_variants.py --model acc-resnet18-128 [--data ../shared/ham10000-dev]

Images/s over 1,000 dev-set images in one process, model loaded and warm: `predict_many` as shipped
(chunks of 512 and 256) against decoding the next chunk in a thread while the current one runs; then
decode and forward times alone, and the forward pass at batch sizes 16-128.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _results import emit  # noqa: E402 - bench/ is on the path when a script runs

import hamcli


def overlapped(model, items: list[str], chunk: int) -> None:  # noqa: ANN001
    parts = [items[i:i + chunk] for i in range(0, len(items), chunk)]
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(model.decode, parts[0])
        for k in range(len(parts)):
            arr, _, _ = pending.result()
            if k + 1 < len(parts):
                pending = pool.submit(model.decode, parts[k + 1])
            model.probabilities(arr, 64)


def rate(fn, n: int) -> float:  # noqa: ANN001
    start = time.perf_counter()
    fn()
    return round(n / (time.perf_counter() - start), 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", type=Path, default=Path("../shared/ham10000-dev"))
    args = parser.parse_args()
    files = [str(p) for p in sorted((args.data / "images").glob("*.jpg"))[:1000]]
    model = hamcli.load_model(args.model)
    model.predict_many(files[:64])  # warm-up: folding and oneDNN set-up
    for rep in range(2):
        for chunk in (512, 256):
            emit({"repeat": rep, "variant": "shipped", "chunk": chunk,
                  "images_per_s": rate(lambda c=chunk: model.predict_many(files, chunk=c), len(files))})
        for chunk in (256, 128, 64):
            emit({"repeat": rep, "variant": "decode overlapped with forward", "chunk": chunk,
                  "images_per_s": rate(lambda c=chunk: overlapped(model, files, c), len(files))})
    start = time.perf_counter()
    arr, _, _ = model.decode(files)
    emit({"step": "decode 1000 images", "seconds": round(time.perf_counter() - start, 2)})
    for bs in (16, 32, 64, 128):
        start = time.perf_counter()
        model.probabilities(arr, batch_size=bs)
        emit({"step": "forward 1000 images", "batch": bs, "seconds": round(time.perf_counter() - start, 2)})


if __name__ == "__main__":
    main()
