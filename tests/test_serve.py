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

    return TestClient(create_app("bundled", max_upload=1024 * 1024))


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
    assert bad.status_code == 422 and "--method" in bad.json()["detail"]


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
    assert client.get("/healthz").json() == {"status": "ok"}
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
