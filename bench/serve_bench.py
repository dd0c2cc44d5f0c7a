"""`hamcli serve` under a bounded load on 127.0.0.1: errors, latency, throughput, peak memory.

    python bench/serve_bench.py [--model bundled] [--requests 300] [--concurrency 8] [--images DIR]

Starts `hamcli serve` as a user would, sends --requests POST /api/predict requests from --concurrency
threads (then a third as many /api/gradcam), each an image from --images (default: the bundled
samples, cycled), and reads the server's peak RSS (VmHWM). Results go to --results-file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import hamcli


def post(url: str, path: Path) -> tuple[int, float]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{path.name}\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    return status, time.perf_counter() - start


def load(url: str, images: list[Path], n: int, concurrency: int) -> dict:
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda i: post(url, images[i % len(images)]), range(n)))
    elapsed = time.perf_counter() - start
    latencies = sorted(t for _, t in results)
    return {"requests": n, "concurrency": concurrency, "errors": sum(s != 200 for s, _ in results),
            "p50_ms": round(1000 * statistics.median(latencies), 1),
            "p95_ms": round(1000 * latencies[int(0.95 * (len(latencies) - 1))], 1),
            "requests_per_s": round(n / elapsed, 1)}


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--images", type=Path, default=Path(hamcli.__file__).parent / "samples" / "images")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--results-file", type=Path, default=Path("bench/results/serve.json"))
    args = parser.parse_args()
    images = sorted(args.images.glob("*.jpg"))
    server = subprocess.Popen([sys.executable, "-m", "hamcli", "serve", "--model", args.model, "--port",
                               str(args.port)], stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{args.port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=2).read()
                break
            except OSError:
                time.sleep(0.2)
        post(f"{base}/api/predict", images[0])  # warm-up
        row = {"model": args.model, "cpu": platform.processor() or platform.machine(), "date": time.strftime("%F"),
               "predict": load(f"{base}/api/predict", images, args.requests, args.concurrency),
               "gradcam": load(f"{base}/api/gradcam", images, max(1, args.requests // 3), args.concurrency),
               "peak_rss_mb": peak_rss_mb(server.pid)}
    finally:
        server.terminate()
        server.wait(timeout=30)
    try:
        row["cpu"] = next(line.split(":", 1)[1].strip() for line in
                          subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                          if line.startswith("Model name"))
    except StopIteration:
        pass
    args.results_file.parent.mkdir(parents=True, exist_ok=True)
    args.results_file.write_text(json.dumps(row, indent=2) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    os.environ.setdefault("HAMCLI_HOME", "/tmp/hamcli-serve-bench")
    main()
