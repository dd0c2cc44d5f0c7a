"""`hamcli serve` under load on 127.0.0.1: latency at 1, 8 and 50 clients, /healthz meanwhile, Grad-CAM, memory.

    python bench/serve_bench.py [--models bundled OTHER.pt ...] [--requests 200] [--images DIR]

For each model, one after the other: starts `hamcli serve` as a user would, warms it up, then
  * predict: --requests POST /api/predict from 1 client, then from 8, then 4 x --requests from 50 clients
    (each client waits up to 120 s; a 503 is counted, not retried), while a prober times GET /healthz every
    50 ms;
  * gradcam: 20 POST /api/gradcam from 1 client (seconds per overlay), then 40 from 8;
  * the server's peak RSS (VmHWM).
Each image is a bundled sample (cycled). Results: bench/results/serve_bench.jsonl, one row per model.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _results import emit  # noqa: E402 - bench/ is on the path when a script runs

import hamcli


def post(url: str, path: Path, timeout: float = 120.0) -> tuple[int, float]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{path.name}\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError:  # no answer within the client's timeout
        status = 0
    return status, time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


def load(url: str, images: list[Path], n: int, concurrency: int) -> dict:
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda i: post(url, images[i % len(images)]), range(n)))
    elapsed = time.perf_counter() - start
    ok = [t for s, t in results if s == 200]
    return {"requests": n, "concurrency": concurrency, "ok": len(ok), "busy_503": sum(s == 503 for s, _ in results),
            "timeout_504": sum(s == 504 for s, _ in results), "no_answer": sum(s == 0 for s, _ in results),
            "other": sum(s not in (0, 200, 503, 504) for s, _ in results),
            "p50_ms": round(1000 * statistics.median(ok), 1) if ok else None,
            "p95_ms": round(1000 * percentile(ok, 0.95), 1) if ok else None,
            "max_ms": round(1000 * max(t for _, t in results), 1), "requests_per_s": round(len(ok) / elapsed, 2)}


class HealthProbe:
    """GET /healthz every 50 ms in a thread; the latencies it saw."""

    def __init__(self, url: str) -> None:
        self.url, self.times, self.failed = url, [], 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            start = time.perf_counter()
            try:
                urllib.request.urlopen(self.url, timeout=5).read()
                self.times.append(time.perf_counter() - start)
            except OSError:
                self.failed += 1
            time.sleep(0.05)

    def result(self) -> dict:
        self.stop.set()
        self.thread.join()
        return {"probes": len(self.times), "failed": self.failed,
                "p95_ms": round(1000 * percentile(self.times, 0.95), 1),
                "max_ms": round(1000 * max(self.times), 1)}


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def bench(model: str, images: list[Path], requests: int, port: int) -> dict:
    server = subprocess.Popen([sys.executable, "-m", "hamcli", "serve", "--model", model, "--port", str(port)],
                              stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=2).read()
                break
            except OSError:
                time.sleep(0.2)
        for image in images[:3]:  # warm-up
            post(f"{base}/api/predict", image)
        post(f"{base}/api/gradcam", images[0])
        row: dict = {"model": model}
        for clients, n in ((1, requests), (8, requests), (50, 4 * requests)):
            probe = HealthProbe(f"{base}/healthz")
            row[f"predict_{clients}"] = load(f"{base}/api/predict", images, n, clients)
            row[f"predict_{clients}"]["healthz"] = probe.result()
        row["gradcam_1"] = load(f"{base}/api/gradcam", images, 20, 1)
        row["gradcam_8"] = load(f"{base}/api/gradcam", images, 40, 8)
        row["p95_ratio_8_to_1"] = round(row["predict_8"]["p95_ms"] / row["predict_1"]["p95_ms"], 2)
        row["peak_rss_mb"] = peak_rss_mb(server.pid)
        return row
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["bundled"])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--images", type=Path, default=Path(hamcli.__file__).parent / "samples" / "images")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    images = sorted(args.images.glob("*.jpg"))
    for model in args.models:
        emit(bench(model, images, args.requests, args.port))


if __name__ == "__main__":
    main()
