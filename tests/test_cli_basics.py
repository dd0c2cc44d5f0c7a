"""The app shell: help without torch, version, info, user directories, the error handler."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

import hamcli.paths as paths
from hamcli._version import __version__
from hamcli.cli.app import app
from hamcli.runs import BUNDLED_FILE

runner = CliRunner()

COMMANDS = ["download", "prepare", "info", "models", "train", "evaluate", "predict", "gradcam", "recipes", "serve",
            "export"]


def _modules_after(args: list[str]) -> set[str]:
    code = ("import sys\nfrom hamcli.cli.app import app\n"
            f"try:\n    app({args!r})\nexcept SystemExit:\n    pass\n"
            "print('MODULES:' + ' '.join(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # the help text itself may mention torch: read only the marked last line
    return set(done.stdout.rsplit("MODULES:", 1)[1].split())


def test_help_and_every_command_help_do_not_import_torch():
    for args in (["--help"], ["--version"], *([c, "--help"] for c in COMMANDS)):
        loaded = _modules_after(args)
        assert "torch" not in loaded, args
        assert "pandas" not in loaded and "sklearn" not in loaded and "numpy" not in loaded, args


def test_import_hamcli_is_light():
    done = subprocess.run([sys.executable, "-c", "import sys, hamcli; print('torch' in sys.modules)"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"hamcli {__version__}"


def test_module_entry_point():
    done = subprocess.run([sys.executable, "-m", "hamcli", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and __version__ in done.stdout


def test_hamcli_home_overrides_and_nothing_is_created(hamcli_home):
    assert paths.data_dir() == hamcli_home / "data"
    assert paths.cache_dir() == hamcli_home / "cache"
    runner.invoke(app, ["info"])
    assert not (hamcli_home / "data").exists() and not (hamcli_home / "cache").exists()


def test_default_dirs_come_from_platformdirs(monkeypatch):
    monkeypatch.delenv("HAMCLI_HOME")
    assert "hamcli" in str(paths.data_dir()) and "hamcli" in str(paths.cache_dir())


def test_info_lists_datasets_and_prepared(dataset_folder):
    assert runner.invoke(app, ["download", "--from", str(dataset_folder)]).exit_code == 0
    assert runner.invoke(app, ["prepare", "--split", "50/50", "--size", "16", "-q"]).exit_code == 0
    frame = runner.invoke(app, ["prepare", "--split", "50/50", "--size", "20x15", "--name", "frame", "-q"])
    assert frame.exit_code == 0
    result = runner.invoke(app, ["info", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["datasets"][0]["name"] == "ham10000" and report["datasets"][0]["images"] == 28
    assert {p["name"]: p["px"] for p in report["prepared"]} == {"ham10000": "16", "frame": "20x15"}
    assert [r["name"] for r in report["runs"]] == ["bundled"]  # no run trained yet; the bundled model is there
    summary = json.loads(BUNDLED_FILE.with_suffix(".json").read_text())
    assert report["runs"][0]["arch"] == summary["arch"] != ""  # from the summary beside it, without torch
    assert report["runs"][0]["data"] == summary["data"] != ""
    text = runner.invoke(app, ["info"])
    assert text.exit_code == 0 and "ham10000" in text.stdout and "shipped with" in text.stdout


def test_usage_error_exit_code_is_2(dataset_folder):
    runner.invoke(app, ["download", "--from", str(dataset_folder)])
    result = runner.invoke(app, ["prepare", "--split", "nonsense"])
    assert result.exit_code == 2
    assert "--split" in result.output and "Traceback" not in result.output


def test_real_process_error_is_one_red_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "hamcli", "download", "--from", str(tmp_path / "nope")],
                          capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stdout == ""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "nope" in lines[0] and "Traceback" not in done.stderr


def test_models_lists_every_architecture_with_its_weights_and_parameters():
    import torch

    from hamcli.models.build import build_model, count_parameters
    from hamcli.models.zoo import MODELS

    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert set(rows) == set(MODELS)
    assert rows["lenet"]["parameters"] == count_parameters(build_model("lenet")[0])
    with torch.device("meta"):
        assert rows["efficientnet_lite0"]["parameters"] == count_parameters(build_model("efficientnet_lite0")[0])
    assert rows["lenet"]["imagenet_weights"] == "none"
    assert rows["efficientnet_lite0"]["imagenet_weights"] == "installed"  # the dev extra installs lite0's package
    assert rows["resnet18"]["imagenet_weights"] == "download"  # nothing in this test's torch cache
    table = runner.invoke(app, ["models"])
    assert table.exit_code == 0 and "efficientnet_lite0" in table.stdout


def test_models_default_describes_the_bundled_model_with_its_card_and_figures():
    result = runner.invoke(app, ["models", "--default", "--format", "json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["arch"].startswith("efficientnet_lite") and "model-card.md" in info["model_card"]
    low, high = info["test"]["ci95"]["balanced_accuracy"]
    assert low <= info["test"]["balanced_accuracy"] <= high
    table = runner.invoke(app, ["models", "--default"]).stdout
    assert f"test balanced accuracy      {info['test']['balanced_accuracy']:.3f} (95% CI {low:.3f}-{high:.3f})" in table
