"""`hamcli serve` (the JSON API, and the page in a real browser) and `hamcli export` (ONNX)."""

from __future__ import annotations

import io
import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import hamcli
from conftest import class_image
from hamcli.cli.app import app

runner = CliRunner()
SAMPLE = min((Path(hamcli.__file__).parent / "samples" / "images").glob("*.jpg"))


@pytest.fixture(scope="module")
def client():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from fastapi.testclient import TestClient

    from hamcli.serve.app import create_app

    return TestClient(create_app("bundled", max_upload=1024 * 1024, allowed_hosts=("testserver",)))


def test_predict_gives_the_json_of_hamcli_predict(client, tmp_path):
    response = client.post("/api/predict", files={"file": ("lesion.jpg", SAMPLE.read_bytes(), "image/jpeg")})
    assert response.status_code == 200
    (row,) = response.json()
    cli = json.loads(runner.invoke(app, ["predict", str(SAMPLE), "--model", "bundled", "-f", "json"]).stdout)[0]
    assert row["path"] == "lesion.jpg" and row["code"] == cli["code"]
    assert row["probabilities"] == pytest.approx(cli["probabilities"], abs=1e-5)


def test_an_upload_is_decoded_once_for_its_check_and_its_prediction(client, monkeypatch):
    from hamcli.data import preprocess

    calls = []
    real = preprocess.decode_bytes
    monkeypatch.setattr(preprocess, "decode_bytes", lambda *a, **k: calls.append(a[2:]) or real(*a, **k))
    response = client.post("/api/predict", files={"file": ("lesion.jpg", SAMPLE.read_bytes(), "image/jpeg")})
    assert response.status_code == 200 and len(calls) == 1


def test_gradcam_is_a_png_overlay_of_the_upload(client):
    response = client.post("/api/gradcam", files={"file": ("x.jpg", SAMPLE.read_bytes(), "image/jpeg")},
                           data={"method": "gradcam++"})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).size == Image.open(SAMPLE).size
    assert response.headers["x-predicted"] in hamcli.CLASS_CODES
    bad = client.post("/api/gradcam", files={"file": ("x.jpg", SAMPLE.read_bytes(), "image/jpeg")},
                      data={"method": "cam"})
    assert bad.status_code == 422 and bad.json()["detail"] == "method must be one of gradcam, gradcam++, layercam"
    for field, value in (("alpha", "2"), ("alpha", "nan"), ("class", "melanoma")):
        bad = client.post("/api/gradcam", files={"file": ("x.jpg", SAMPLE.read_bytes(), "image/jpeg")},
                          data={field: value})
        assert bad.status_code == 422 and "--" not in bad.json()["detail"], bad.json()


@pytest.mark.parametrize("top_k", ["0", "8", "\u00b2", "x", "-1"])
def test_top_k_outside_1_to_7_is_a_422_never_a_500(client, top_k):
    response = client.post("/api/predict", files={"file": ("x.jpg", SAMPLE.read_bytes(), "image/jpeg")},
                           data={"top_k": top_k})
    assert response.status_code == 422 and "top_k" in response.json()["detail"]


@pytest.mark.parametrize("body, status, words", [
    (b"not an image at all", 415, "not an image"),
    (SAMPLE.read_bytes()[:3000], 422, "truncated"),
    (b"x" * (1024 * 1024 + 10), 413, "larger than"),
])
def test_bad_uploads_get_a_clear_status_never_a_500(client, body, status, words):
    response = client.post("/api/predict", files={"file": ("x.jpg", body, "image/jpeg")})
    assert response.status_code == status and words in response.json()["detail"]


def test_a_decompression_bomb_is_refused(client, monkeypatch):
    import hamcli.data.preprocess as preprocess

    monkeypatch.setattr(preprocess, "MAX_PIXELS", 1000)
    response = client.post("/api/predict", files={"file": ("big.jpg", SAMPLE.read_bytes(), "image/jpeg")})
    assert response.status_code == 413 and "too large" in response.json()["detail"]


def test_model_health_docs_page_and_wrong_method(client):
    info = client.get("/api/model").json()
    assert info["classes"] == list(hamcli.CLASS_CODES) and info["figures"] and "not a diagnosis" in info["notice"]
    assert client.get("/healthz").json() == {"status": "ok", "waiting": 0}
    assert client.get("/docs").status_code == 200 and "/api/predict" in client.get("/openapi.json").text
    page = client.get("/").text
    assert "<script>" in page and "http" not in page.split("<body>")[1].split("docs")[0].lower()  # no CDN
    assert client.get("/api/predict").status_code == 405
    assert client.post("/api/predict", data={"x": "1"}).status_code == 400


def test_serve_without_fastapi_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fastapi" else real(name, *a))
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 1 and "pip install 'hamcli[serve]'" in result.stderr


def _browser() -> str | None:
    return next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"),
                             shutil.which("google-chrome")) if p), None)


def test_the_page_in_a_real_browser_shows_the_prediction_and_the_overlay(tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip("no Chromium on this machine (.ci/run installs Debian's chromium)")
    playwright = pytest.importorskip("playwright.sync_api")
    import uvicorn

    from hamcli.serve.app import create_app

    server = uvicorn.Server(uvicorn.Config(create_app("bundled"), host="127.0.0.1", port=0, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with playwright.sync_playwright() as p:
            chrome = p.chromium.launch(executable_path=browser, args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"])
            page = chrome.new_page(viewport={"width": 420, "height": 900})  # a phone's width
            page.goto(f"http://127.0.0.1:{port}/")
            page.set_input_files("#file", str(SAMPLE))
            page.wait_for_selector("#predicted:has-text('(p = ')", timeout=30_000)
            page.wait_for_selector("#overlay:not([hidden])", timeout=60_000)
            predicted = page.inner_text("#predicted")
            assert predicted.split(":")[0] in hamcli.CLASS_CODES
            assert page.locator(".bar").count() == 7
            assert "not a diagnosis" in page.inner_text("#notice")
            page.screenshot(path=str(tmp_path / "serve.png"), full_page=True)
            chrome.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert (tmp_path / "serve.png").stat().st_size > 10_000


@pytest.mark.parametrize("arch", ["lenet", "efficientnet_lite0"])
def test_export_load_predict_agrees_with_torch(prepared_tiny, tmp_path, arch):
    from hamcli.training.config import TrainConfig
    from hamcli.training.runner import train

    run = train(TrainConfig(arch=arch, data="tiny", epochs=1, batch_size=8, precision="fp32", name=f"x-{arch}",
                            max_batches=1, pretrained=arch != "lenet"))
    target = tmp_path / "model.onnx"
    result = runner.invoke(app, ["export", run.name, "-o", str(target)])
    assert result.exit_code == 0, result.output
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(target)).metadata_props}
    assert json.loads(meta["classes"]) == list(hamcli.CLASS_CODES) and meta["hamcli_version"]
    assert json.loads(meta["preprocess"])["size"] == [32, 32]
    images = [tmp_path / f"i{i}.jpg" for i in range(9)]
    for i, path in enumerate(images):
        class_image(i % 7, i, (48, 36)).save(path)
    torch_rows = hamcli.load_model(run.name).predict(images)
    onnx_rows = hamcli.load_model(target).predict(images)
    for a, b in zip(torch_rows, onnx_rows, strict=True):
        assert a.code == b.code
        assert max(abs(a.probabilities[c] - b.probabilities[c]) for c in hamcli.CLASS_CODES) < 1e-4
    cli = json.loads(runner.invoke(app, ["predict", str(images[0]), "--model", str(target), "-f", "json"]).stdout)
    assert cli[0]["code"] == torch_rows[0].code


def test_export_refuses_to_write_a_model_that_disagrees(trained_run, tmp_path, monkeypatch):
    import hamcli.serve.onnx as exporter

    monkeypatch.setattr(exporter, "MAX_DIFF", -1.0)  # nothing can agree this closely
    target = tmp_path / "model.onnx"
    result = runner.invoke(app, ["export", "tiny-lenet", "-o", str(target)])
    assert result.exit_code == 1 and "disagrees" in result.stderr and not target.exists()
    assert not list(tmp_path.glob("*.onnx*"))


def test_onnx_model_probabilities_at_any_batch_size(trained_run, tmp_path):
    target = tmp_path / "m.onnx"
    assert runner.invoke(app, ["export", "tiny-lenet", "-o", str(target)]).exit_code == 0
    model = hamcli.load_model(target)
    x = np.random.default_rng(0).integers(0, 255, (10, 32, 32, 3), dtype=np.uint8)
    assert np.allclose(model.probabilities(x, batch_size=3), model.probabilities(x, batch_size=10), atol=1e-6)


class LiveServer:
    """The app on a real socket, served as `hamcli serve` serves it (read deadline included), in a thread."""

    def __init__(self, app, read_timeout: float = 15.0) -> None:  # noqa: ANN001
        import uvicorn

        from hamcli.serve.server import DeadlineProtocol, bind

        self.sock = bind("127.0.0.1", 0)
        self.port = self.sock.getsockname()[1]
        protocol = type("Deadline", (DeadlineProtocol,), {"read_timeout": read_timeout})
        self.server = uvicorn.Server(uvicorn.Config(app, http=protocol, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def _post(url: str, timeout: float = 30.0):  # noqa: ANN202
    import httpx

    return httpx.post(url, files={"file": ("x.jpg", SAMPLE.read_bytes(), "image/jpeg")}, timeout=timeout)


def _slowed(app, seconds: float) -> None:  # noqa: ANN001
    worker = app.state.worker
    real = worker.predict_many

    def slow(uploads):  # noqa: ANN001, ANN202
        time.sleep(seconds)
        return real(uploads)

    worker.predict_many = slow


def _posting(live, clients: int, gap: float) -> tuple[list, list]:  # noqa: ANN001 - a LiveServer
    """`clients` callers posting one image each to /api/predict, started `gap` seconds apart: their threads, and the
    list their replies land in."""
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(_post(live.url("/api/predict"))))
               for _ in range(clients)]
    for t in threads:
        t.start()
        time.sleep(gap)
    return threads, results


def test_a_busy_model_never_holds_up_health_and_a_full_queue_answers_503_at_once(trained_run):
    import httpx

    from hamcli.serve.app import create_app

    app = create_app("tiny-lenet", max_queue=1)
    _slowed(app, 1.5)
    live = LiveServer(app)
    try:
        threads, results = _posting(live, 3, 0.2)  # the first runs, the second waits, the third finds the queue full
        start = time.perf_counter()
        health = httpx.get(live.url("/healthz"), timeout=5)
        assert health.status_code == 200 and time.perf_counter() - start < 0.1
        for t in threads:
            t.join()
        codes = sorted(r.status_code for r in results)
        assert codes == [200, 200, 503], codes
        busy = next(r for r in results if r.status_code == 503)
        assert busy.headers["retry-after"] == "1" and "busy" in busy.json()["detail"]
    finally:
        live.stop()


def test_a_request_that_waits_too_long_is_a_504_and_its_job_is_dropped(trained_run):
    from hamcli.serve.app import create_app

    app = create_app("tiny-lenet", timeout=0.5)
    _slowed(app, 1.0)
    live = LiveServer(app)
    try:
        # the first is running when the others arrive: they wait, and their callers give up
        threads, results = _posting(live, 3, 0.15)
        for t in threads:
            t.join()
        assert all(r.status_code == 504 and "did not answer within 0.5 s" in r.json()["detail"] for r in results)
        time.sleep(1.5)
        worker = app.state.worker
        assert worker.dropped >= 1 and worker.completed <= 2  # waiting jobs of gone callers never ran
    finally:
        live.stop()


def test_only_requests_for_an_allowed_host_are_answered(trained_run):
    import httpx

    from hamcli.serve.app import create_app

    live = LiveServer(create_app("tiny-lenet"))
    try:
        assert httpx.get(live.url("/healthz")).status_code == 200
        assert httpx.get(live.url("/healthz"), headers={"Host": f"localhost:{live.port}"}).status_code == 200
        rebound = httpx.get(live.url("/api/model"), headers={"Host": "evil.example"})  # DNS rebinding
        assert rebound.status_code == 400
    finally:
        live.stop()


def test_a_connection_that_never_finishes_its_request_is_closed(trained_run):
    import socket

    from hamcli.serve.app import create_app

    live = LiveServer(create_app("tiny-lenet"), read_timeout=0.5)
    try:
        half = [socket.create_connection(("127.0.0.1", live.port)) for _ in range(20)]
        for i, sock in enumerate(half):
            sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: localhost\r\n" if i % 2 else b"")
        time.sleep(1.5)
        for sock in half:
            sock.settimeout(2)
            assert sock.recv(100) == b""  # closed by the server
            sock.close()
        import httpx

        assert httpx.get(live.url("/healthz")).status_code == 200  # and it still serves
    finally:
        live.stop()


def test_a_failed_export_prints_one_line_and_nothing_on_stdout(trained_run, tmp_path, monkeypatch):
    import torch

    def failing(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - what torch's exporter does on an unsupported op
        print("Torch IR graph at exception: graph(%input.1 : Float(*, 3, 32, 32)) ...")
        raise RuntimeError("Unsupported: ONNX export of operator adaptive_avg_pool2d, output size that are not "
                           "factor of input size. Please feel free to request support or submit a pull request")

    monkeypatch.setattr(torch.onnx, "export", failing)
    result = runner.invoke(app, ["export", "tiny-lenet", "-o", str(tmp_path / "m.onnx")])
    assert result.exit_code == 1 and result.stdout == "", result.stdout
    assert "adaptive_avg_pool2d" in result.stderr and "Please feel free" not in result.stderr
    assert not list(tmp_path.glob("*.onnx*"))
