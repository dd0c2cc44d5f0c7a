"""The whole pipeline as a user runs it: download -> prepare -> train -> evaluate -> predict -> gradcam, then
ensemble, calibrate, export, serve, info, models and recipes: every command once (`make test-fast` runs this
file and the other tests marked `fast`)."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import class_image
from hamcli.cli.app import app

runner = CliRunner()


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, f"hamcli {' '.join(args)}: {result.output}"
    return result.stdout


@pytest.mark.fast
def test_every_command_from_download_to_serve(fake_ham_source, tmp_path, dataset_folder):
    server, n_images = fake_ham_source
    report = json.loads(_ok(["download", "--quiet", "--json"]))
    assert report["images"] == n_images and server.requests  # fetched from the local server
    summary = json.loads(_ok(["prepare", "--split", "50/25/25", "--size", "32", "-q", "--json"]))
    assert summary["leaked_lesions"] == 0
    run = json.loads(_ok(["train", "--arch", "lenet", "--epochs", "2", "--batch-size", "8", "--name", "e2e",
                          "-q", "--json"]))
    assert run["epochs_run"] == 2
    scored = json.loads(_ok(["evaluate", "e2e", "--json", "--ci", "--bootstrap", "50"]))
    assert scored["metrics"]["images"] == sum(summary["counts"]["test"].values())
    assert set(scored["metrics"]["ci95"]) >= {"accuracy", "balanced_accuracy"}
    image = tmp_path / "new.jpg"
    class_image(4, 999, (60, 45)).save(image)
    (row,) = json.loads(_ok(["predict", str(image), "--model", "e2e", "-f", "json"]))
    assert abs(sum(row["probabilities"].values()) - 1) < 1e-4
    out = _ok(["gradcam", str(image), "--model", "e2e", "-o", str(tmp_path / "cam.png"), "--json"])
    assert json.loads(out)[0]["predicted"] == row["code"]  # the explanation explains the prediction
    assert Image.open(tmp_path / "cam.png").size == (60, 45)

    # a second seed validated on the same rows, their ensemble calibrated on those rows, exported and served
    _ok(["train", "--arch", "lenet", "--epochs", "2", "--batch-size", "8", "--seed", "7", "--name", "e2e-7", "-q"])
    _ok(["ensemble", "e2e", "e2e-7", "--name", "pair", "--set-default"])
    fitted = json.loads(_ok(["calibrate", "pair", "--melanoma-sensitivity", "0.5", "--json"]))
    assert fitted["images"] == sum(summary["counts"]["val"].values())
    _ok(["export", "pair", "-o", str(tmp_path / "pair.onnx")])
    (exported,) = json.loads(_ok(["predict", str(image), "--model", str(tmp_path / "pair.onnx"), "-f", "json"]))
    (torch_row,) = json.loads(_ok(["predict", str(image), "-f", "json"]))  # the default model: the pair
    assert exported["code"] == torch_row["code"]
    assert max(abs(exported["probabilities"][c] - p) for c, p in torch_row["probabilities"].items()) < 1e-5
    from fastapi.testclient import TestClient

    from hamcli.serve.app import create_app

    client = TestClient(create_app("pair", allowed_hosts=("testserver",)))
    served = client.post("/api/predict", files={"file": ("new.jpg", image.read_bytes(), "image/jpeg")}).json()
    assert served[0]["probabilities"] == pytest.approx(torch_row["probabilities"], abs=1e-6)
    assert "pair" in _ok(["info"]) and "efficientnet_lite0" in _ok(["models"]) and "recommended" in _ok(["recipes"])
