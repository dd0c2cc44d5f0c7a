"""A newcomer's first hour: no wasted work, honest times, outputs that carry what a script needs."""

from __future__ import annotations

import json
import os

import torch
from typer.testing import CliRunner

from conftest import class_image
from hamcli.cli.app import app

runner = CliRunner()


def test_a_recipe_trains_on_a_matching_prepared_dataset_instead_of_preparing_a_copy(dataset_folder, hamcli_home):
    assert runner.invoke(app, ["download", "--from", str(dataset_folder)]).exit_code == 0
    assert runner.invoke(app, ["prepare", "--split", "85/15", "--size", "150"]).exit_code == 0
    result = runner.invoke(app, ["train", "--recipe", "recommended", "--epochs", "1", "--max-batches", "1",
                                 "--no-pretrained", "--name", "first"])
    assert result.exit_code == 0, result.output
    assert "training on the prepared dataset ham10000 (split 85/15, size 150)" in result.stderr
    assert "{" not in result.stderr  # no Python dict in the progress line
    prepared = [p.name for p in (hamcli_home / "data" / "prepared").iterdir() if not p.name.startswith(".")]
    assert prepared == ["ham10000"]
    # the recipe's warm-up (1 of 8 epochs) was scaled to the 1-epoch run instead of refusing an option not typed
    assert "warm-up scaled with the run: 0.125 of 1 epochs" in result.stderr
    assert json.loads((hamcli_home / "data" / "runs" / "first" / "config.json").read_text())["warmup_epochs"] == 0.125


def test_an_error_about_a_value_the_user_did_not_type_names_the_recipes_value(dataset_folder, hamcli_home):
    assert runner.invoke(app, ["download", "--from", str(dataset_folder)]).exit_code == 0
    bad = runner.invoke(app, ["train", "--recipe", "recommended", "--schedule", "plateau"])
    assert bad.exit_code == 2 and "recommended value of warmup_epochs" in bad.stderr, bad.output
    assert not (hamcli_home / "data" / "prepared").exists() or not [
        p for p in (hamcli_home / "data" / "prepared").iterdir() if not p.name.startswith(".")]  # nothing prepared


def test_limit_trains_a_quick_trial_and_the_run_says_how_long_it_will_take(prepared_tiny):
    result = runner.invoke(app, ["train", "--data", "tiny", "--limit", "10", "--epochs", "2", "--batch-size", "2",
                                 "--name", "quick"])
    assert result.exit_code == 0, result.output
    ckpt = torch.load(prepared_tiny.root.parents[1] / "runs" / "quick" / "best.pt", weights_only=True)
    assert 6 <= sum(ckpt["data"]["train_counts"]) <= 14 < len(prepared_tiny.manifest)
    assert "limited to about 10 training images" in ckpt["data"]["val_source"]
    assert "for the 2 epoch(s) to go at" in result.stderr and "img/s" in result.stderr


def test_labels_reach_every_format_with_the_image_id(trained_run, tmp_path):
    images = []
    for i in range(2):
        path = tmp_path / f"ISIC_{i:07d}.jpg"
        class_image(i, i).save(path)
        images.append(path)
    labels = tmp_path / "labels.csv"
    labels.write_text("lesion_id,image_id,dx\nHAM_1,ISIC_0000000,mel\nHAM_2,ISIC_0000001,nv\n")
    args = ["predict", *map(str, images), "--labels", str(labels)]
    as_json = json.loads(runner.invoke(app, [*args, "-f", "json"]).stdout)
    assert [r["image_id"] for r in as_json] == ["ISIC_0000000", "ISIC_0000001"]
    assert [r["true_dx"] for r in as_json] == ["mel", "nv"] and all(isinstance(r["correct"], bool) for r in as_json)
    lines = runner.invoke(app, [*args, "-f", "jsonl"]).stdout.splitlines()
    assert [json.loads(line)["true_dx"] for line in lines] == ["mel", "nv"]
    csv_out = runner.invoke(app, [*args, "-f", "csv"]).stdout.splitlines()
    assert csv_out[0].split(",")[-4:] == ["true_dx", "correct", "seen", "error"] and ",mel," in csv_out[1]


def test_images_the_model_learnt_from_are_marked_seen(trained_run, tmp_path):
    seen_id = torch.load(trained_run / "best.pt", weights_only=True)["data"]["seen_image_ids"][0]
    seen = tmp_path / "tiny" / "images" / f"{seen_id}.jpg"
    fresh = tmp_path / "new.jpg"
    class_image(2, 77).save(fresh)
    rows = json.loads(runner.invoke(app, ["predict", str(seen), str(fresh), "-f", "json"]).stdout)
    assert [r["seen"] for r in rows] == [True, False]
    table = runner.invoke(app, ["predict", str(seen), str(fresh)])
    assert "seen in training" in table.stdout and "1 image(s) were among the model's training" in table.stderr


def test_an_ensembles_members_are_named_by_their_own_names_and_folds_only_for_folds(trained_run, tmp_path):
    ckpt = torch.load(trained_run / "best.pt", weights_only=True)
    members = [{"member": f"seed{i}", "state_dict": ckpt["state_dict"], "config": {**ckpt["config"], "seed": i}}
               for i in (1, 2)]
    bundle = {k: v for k, v in ckpt.items() if k != "state_dict"} | {"members": members}
    path = tmp_path / "two.pt"
    torch.save(bundle, path)
    table = runner.invoke(app, ["evaluate", str(path), "--data", str(tmp_path / "tiny")])
    assert table.exit_code == 0, table.output
    assert "ensemble of 2 models" in table.stdout and "folds" not in table.stdout
    assert "seed1 (lenet, seed 1)" in table.stdout and "seed2 (lenet, seed 2)" in table.stdout


def test_help_texts_render_their_brackets():
    for command in ("train", "prepare"):
        shown = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"}).stdout
        assert f"[{'train' if command == 'train' else 'prepare'}] table" in shown, shown
    listing = runner.invoke(app, ["recipes", "--help"], env={"COLUMNS": "200"}).stdout
    assert "[prepare] and [train] options" in listing, listing


def test_help_wraps_at_the_terminal_not_at_the_docstring_line_breaks():
    listing = runner.invoke(app, ["--help"], env={"COLUMNS": "80"}).stdout
    panel = listing[listing.index("Commands"):].splitlines()[1:-1]
    starts = [i for i, line in enumerate(panel) if line[2:3].strip()]  # a command's name starts its entry
    sizes = [b - a for a, b in zip(starts, [*starts[1:], len(panel)], strict=True)]
    assert len(starts) >= 12 and max(sizes) <= 2, listing  # one sentence each, wrapped once at most
    shown = runner.invoke(app, ["predict", "--help"], env={"COLUMNS": "160"}).stdout
    assert "(exit code 1). Research use only: not a diagnosis." in shown, shown


def test_help_at_80_columns_cuts_no_option_name_or_word_short():
    # rich used to end long option names and words with an ellipsis there (`--backbone-lr-mu…`)
    import typer

    commands = typer.main.get_command(app).commands
    for command in ("", *commands):
        shown = runner.invoke(app, [*([command] if command else []), "--help"], env={"COLUMNS": "80"}).stdout
        assert "…" not in shown, f"hamcli {command} --help:\n{shown}"
    train = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "80"}).stdout
    assert "--backbone-lr-mult" in train and "--distil-temperature" in train


def test_importing_an_unchanged_folder_again_is_a_no_op_and_a_changed_one_asks(dataset_folder, hamcli_home):
    assert runner.invoke(app, ["download", "--from", str(dataset_folder)]).exit_code == 0
    report = hamcli_home / "data" / "datasets" / "ham10000" / "report.json"
    before = report.stat().st_mtime_ns
    again = runner.invoke(app, ["download", "--from", str(dataset_folder)])
    assert again.exit_code == 0 and "unchanged since; nothing to do" in again.stderr, again.output
    assert report.stat().st_mtime_ns == before
    class_image(3, 99).save(dataset_folder / "images" / "ISIC_0000000.jpg")  # the copy changed
    changed = runner.invoke(app, ["download", "--from", str(dataset_folder)])
    assert changed.exit_code == 2 and "--overwrite" in changed.stderr


def test_a_linked_images_folder_is_followed(dataset_folder, tmp_path, hamcli_home):
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "HAM10000_metadata.csv").write_bytes((dataset_folder / "HAM10000_metadata.csv").read_bytes())
    os.symlink(dataset_folder / "images", linked / "images")
    os.symlink(linked, linked / "images-again")  # a cycle: walked once
    result = runner.invoke(app, ["download", "--from", str(linked), "--name", "linked", "-f", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["images"] == len(list((dataset_folder / "images").iterdir()))


def test_calibrate_points_out_an_operating_point_that_costs_much_accuracy(trained_run):
    result = runner.invoke(app, ["calibrate", "tiny-lenet", "--melanoma-sensitivity", "0.99"])
    assert result.exit_code == 0, result.output
    record = json.loads((trained_run / "metrics.json").read_text())["calibration"]
    cost = record["before"]["accuracy"] - record["after"]["accuracy"]
    assert ("costs" in result.stderr) == (cost > 0.05), (cost, result.stderr)


def test_an_error_before_training_starts_is_the_first_line(prepared_tiny):
    for args in (["train", "--epochs", "0"], ["calibrate", "no-such-run"]):
        result = runner.invoke(app, args)
        assert result.exit_code != 0 and result.stderr.startswith("Error: "), repr(result.stderr)


def test_a_run_name_wins_over_a_folder_of_that_name_here(trained_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny-lenet").mkdir()  # an unrelated folder that happens to share the run's name
    scored = runner.invoke(app, ["evaluate", "tiny-lenet", "--json"])
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.stdout)["checkpoint"].startswith(str(trained_run))
    assert runner.invoke(app, ["evaluate", "./tiny-lenet"]).exit_code != 0  # the folder itself, as written


def test_a_metadata_csv_without_dx_is_named_with_what_it_lacks(dataset_folder):
    meta = next(dataset_folder.rglob("HAM10000_metadata.csv"))
    lines = meta.read_text().splitlines()
    header = lines[0].split(",")
    keep = [i for i, c in enumerate(header) if c != "dx"]
    meta.write_text("\n".join(",".join(row.split(",")[i] for i in keep) for row in lines) + "\n")
    result = runner.invoke(app, ["download", "--from", str(dataset_folder)])
    assert result.exit_code != 0 and "missing column(s) dx" in result.stderr, result.output


def test_a_taken_name_suggests_resume_only_for_a_run_that_can_resume(trained_run):
    again = runner.invoke(app, ["train", "--data", "tiny", "--arch", "lenet", "--name", "tiny-lenet", "--epochs", "1"])
    assert again.exit_code == 2 and "already exists" in again.stderr and "finished" in again.stderr
    assert "--resume" not in again.stderr and "--overwrite" in again.stderr


def test_calibrate_folds_calls_a_k_fold_family_what_it_is(prepared_tiny):
    from hamcli.training.config import TrainConfig
    from hamcli.training.folds import train_folds

    train_folds(TrainConfig(arch="lenet", data="tiny", epochs=1, batch_size=8, precision="fp32", name="fam",
                            max_batches=1))
    result = runner.invoke(app, ["calibrate", "fam", "--folds", "2"])
    assert result.exit_code == 2 and "a K-fold family" in result.stderr, result.output
