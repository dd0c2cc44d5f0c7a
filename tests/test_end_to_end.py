"""The whole pipeline as a user runs it: download -> prepare -> train -> evaluate -> predict -> gradcam."""

from __future__ import annotations

import json

from PIL import Image
from typer.testing import CliRunner

from conftest import class_image
from hamcli.cli.app import app

runner = CliRunner()


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, f"hamcli {' '.join(args)}: {result.output}"
    return result.stdout


def test_download_prepare_train_evaluate_predict_gradcam(fake_ham_source, tmp_path, dataset_folder):
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
