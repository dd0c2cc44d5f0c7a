"""Recipes and config files: every shipped recipe runs end to end, and a run's options round-trip."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from hamcli.cli.app import app
from hamcli.recipes import book

runner = CliRunner()
SHORT = ["--epochs", "2", "--max-batches", "1", "--batch-size", "8", "--precision", "fp32", "-q"]


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, f"hamcli {' '.join(args)}: {result.output}"
    return result.stdout


@pytest.mark.parametrize("name", book.names())
def test_every_recipe_parses_and_names_what_it_reproduces(name):
    recipe = book.load(name)
    assert recipe.train["arch"] and recipe.prepare["size"]
    assert {"description", "claimed"} <= set(recipe.about)
    assert name in _ok(["recipes"]) and "[train]" in _ok(["recipes", "show", name])


def _fake_torchvision_weights(arch: str) -> None:
    """torchvision's ImageNet file in torch's cache, with random values: the offline path users take."""
    from torchvision.models import get_model

    import hamcli.models.weights as weights
    from hamcli.models.zoo import get_spec

    target = weights.torchvision_file(get_spec(arch))
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(get_model(arch).state_dict(), target)


@pytest.mark.parametrize("name", [n for n in book.names() if n != "hmnist-cnn"])
def test_each_recipe_prepares_and_trains_on_fixture_data(prepared_tiny, name):
    recipe = book.load(name)
    if recipe.train.get("pretrained") and recipe.train["arch"] in ("mobilenet_v2", "resnet18"):
        offline = runner.invoke(app, ["train", "--recipe", name, *SHORT])
        assert offline.exit_code == 1 and "efficientnet_lite0 --pretrained" in offline.stderr  # says, not hides
        _fake_torchvision_weights(recipe.train["arch"])
    args = ["train", "--recipe", name, *SHORT, "--name", f"r-{name}", "--format", "json"]
    summary = json.loads(_ok(args))
    run = summary["run"]
    config = json.loads(open(f"{run}/config.json").read())
    assert config["arch"] == recipe.train["arch"] and config["data"] == recipe.data_name
    assert config["epochs"] == 2 and config["batch_size"] == 8  # the command line overrides the recipe
    prepared = json.loads(_ok(["info", "--format", "json"]))["prepared"]
    assert recipe.data_name in [p["name"] for p in prepared]


def test_the_hmnist_recipe_runs_on_a_csv_exported_by_prepare(prepared_tiny, tmp_path):
    csv = tmp_path / "hmnist_28_28_RGB.csv"
    _ok(["prepare", "--name", "tiny28", "--size", "28", "--split", "50/50", "--export-hmnist", str(csv), "-q"])
    header = csv.read_text().splitlines()[0].split(",")
    assert len(header) == 28 * 28 * 3 + 1 and header[0] == "pixel0000" and header[-1] == "label"
    _ok(["download", "--from", str(csv), "--name", "hmnist"])
    folds = json.loads(_ok(["train", "--recipe", "hmnist-cnn", *SHORT, "--name", "hm", "--format", "json"]))
    assert folds["folds"] == 5 and len(folds["members"]) == 5
    one = json.loads(_ok(["train", "--recipe", "hmnist-cnn", *SHORT, "--fold", "3", "--name", "hm3", "-f", "json"]))
    assert "members" not in one and json.loads(open(f"{one['run']}/config.json").read())["fold"] == 3
    both = runner.invoke(app, ["train", "--recipe", "hmnist-cnn", "--fold", "3", "--all-folds"])
    assert both.exit_code == 2 and "not both" in both.output


def test_config_file_flags_override_and_the_run_records_options_that_repeat_it(prepared_tiny, tmp_path):
    config = tmp_path / "mine.toml"
    config.write_text('[train]\narch = "cnn"\nepochs = 2\nlr = 0.01\nlabel_smoothing = 0.1\naugment = "none"\n'
                      'data = "tiny"\nbatch_size = 8\nprecision = "fp32"\n')
    _ok(["train", "--config", str(config), "--epochs", "1", "--name", "first", "-q"])
    first = json.loads(open(prepared_tiny.root.parent.parent / "runs" / "first" / "config.json").read())
    assert (first["arch"], first["epochs"], first["lr"], first["label_smoothing"]) == ("cnn", 1, 0.01, 0.1)
    recorded = prepared_tiny.root.parent.parent / "runs" / "first" / "config.toml"
    _ok(["train", "--config", str(recorded), "--name", "again", "-q"])
    again = json.loads(open(prepared_tiny.root.parent.parent / "runs" / "again" / "config.json").read())
    assert {k: v for k, v in again.items() if k != "run"} == {**{k: v for k, v in first.items() if k != "run"},
                                                             "name": "again"}
    a, b = (torch.load(prepared_tiny.root.parent.parent / "runs" / r / "last.pt", weights_only=True)["state_dict"]
            for r in ("first", "again"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same options and seed: the same model
    remade = json.loads(_ok(["prepare", "--config", str(recorded), "--name", "tiny-again", "-q", "-f", "json"]))
    assert remade["fingerprint"] == prepared_tiny.fingerprint  # the same split and cache, made again


@pytest.mark.parametrize("text, message", [
    ('[train]\narch = "lenet"\nepoch = 3\n', "no option 'epoch'"),
    ('[train]\nepochs = "three"\n', "epochs = 'three' should be an integer"),
    ('[train]\nlr = true\n', "should be a number"),
    ('[prepare]\nsplit = 90\n', "should be a string"),
    ('[trian]\nepochs = 3\n', "unknown table"),
    ('epochs = [\n', "not a readable TOML"),
])
def test_unknown_keys_and_wrong_types_are_refused_naming_the_key(prepared_tiny, tmp_path, text, message):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    result = runner.invoke(app, ["train", "--config", str(config)])
    assert result.exit_code == 2 and message in result.stderr, result.output
