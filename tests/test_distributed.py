"""DDP on torch.distributed: two real gloo processes on CPU over fixture data."""

from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import replace

import pytest
import torch
from typer.testing import CliRunner

import ddp_jobs
import hamcli.models.checkpoint as checkpoint
from hamcli.cli.app import app
from hamcli.errors import UsageError
from hamcli.training import distributed
from hamcli.training.config import TrainConfig

runner = CliRunner()
CFG = TrainConfig(arch="cnn", data="tiny", epochs=2, batch_size=4, precision="fp32", augment="strong", ema=0.9,
                  name="ddp")


def _quiet(line: str) -> None:
    pass


def test_two_processes_train_disjoint_shards_and_agree(prepared_tiny, hamcli_home, tmp_path):
    distributed.launch(2, functools.partial(ddp_jobs.train_and_record, str(hamcli_home), str(tmp_path), CFG),
                       _quiet)
    from hamcli.data.splits import train_val_rows

    train_rows, _, _ = train_val_rows(prepared_tiny.manifest, None, CFG.seed)
    for epoch in (1, 2):
        shards = [json.loads((tmp_path / f"rows-{epoch}-{rank}.json").read_text()) for rank in (0, 1)]
        assert len(shards[0]) == len(shards[1])  # the same number of steps on both ranks
        assert set(shards[0]) | set(shards[1]) == set(train_rows.tolist())  # together: the whole epoch
        padding = len(shards[0]) * 2 - len(train_rows)
        assert len(set(shards[0]) & set(shards[1])) <= padding  # apart from padding, disjoint
    first = [json.loads((tmp_path / f"rows-1-{r}.json").read_text()) for r in (0, 1)]
    second = [json.loads((tmp_path / f"rows-2-{r}.json").read_text()) for r in (0, 1)]
    assert first != second  # reshuffled by epoch
    rank0, rank1 = (torch.load(tmp_path / f"model-{r}.pt", weights_only=True) for r in (0, 1))
    # DDP keeps the parameters equal, and validation runs on rank 0's batch-norm statistics on every rank, so
    # that the gathered validation scores the model rank 0 saves
    assert all(torch.allclose(rank0[k], rank1[k], atol=1e-6) for k in rank0)
    for epoch in (1, 2):
        draws = [json.loads((tmp_path / f"draw-{epoch}-{r}.json").read_text()) for r in (0, 1)]
        assert draws[0] != draws[1]  # each rank its own dropout masks
        records = [json.loads((tmp_path / f"record-{epoch}-{r}.json").read_text()) for r in (0, 1)]
        assert records[0] == records[1]  # training loss and accuracy of both ranks' rows, the same on each
    run = hamcli_home / "data" / "runs" / "ddp"
    last = checkpoint.load(run / "last.pt")
    assert all(torch.equal(last["state_dict"][k], rank0[k]) for k in rank0)  # what was saved is rank 0's model
    assert last["world_size"] == 2 and last["global_batch_size"] == 8 and last["batch_size_per_device"] == 4
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 2
    scored = runner.invoke(app, ["evaluate", "ddp", "--format", "json"])  # one process, one CPU
    assert scored.exit_code == 0 and json.loads(scored.stdout)["metrics"]["images"] > 0


def test_a_run_interrupted_on_one_process_resumes_on_two(prepared_tiny, hamcli_home):
    from hamcli.training.engine import TrainEvents, TrainingInterrupted
    from hamcli.training.runner import train

    class StopAfterFirst(TrainEvents):
        def epoch_end(self, record: dict) -> None:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        train(replace(CFG, name="grow", ema=0.0), StopAfterFirst())
    result = runner.invoke(app, ["train", "--resume", "grow", "--devices", "2", "-q", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["epochs_run"] == 2
    assert checkpoint.load(hamcli_home / "data" / "runs" / "grow" / "last.pt")["world_size"] == 2


def test_cli_devices_2_trains_and_records_the_world_size(prepared_tiny, hamcli_home):
    result = runner.invoke(app, ["train", "--data", "tiny", "--arch", "lenet", "--epochs", "1", "--batch-size", "4",
                                 "--devices", "2", "--name", "two", "-q", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert checkpoint.load(hamcli_home / "data" / "runs" / "two" / "best.pt")["world_size"] == 2


def test_a_failing_process_stops_the_others_with_one_line(hamcli_home):
    start = time.monotonic()
    lines = []
    with pytest.raises(distributed.LaunchFailed, match="rank 1 could not read its data \\(process 1 of 2") as info:
        distributed.launch(2, functools.partial(ddp_jobs.fail_on_rank_one, str(hamcli_home)), lines.append)
    assert time.monotonic() - start < 50  # stopped, not left waiting at the barrier for the timeout
    assert info.value.exit_code == 1 and "\n" not in str(info.value)


def test_more_processes_than_training_images_is_refused(prepared_tiny, monkeypatch):
    from hamcli.training.engine import Trainer

    monkeypatch.setitem(os.environ, "WORLD_SIZE", "500")
    monkeypatch.setitem(os.environ, "RANK", "0")
    with pytest.raises(UsageError, match="500 processes for"):
        Trainer(CFG)


def test_an_error_every_process_meets_is_said_once_by_the_parent(prepared_tiny):
    result = runner.invoke(app, ["train", "--data", "tiny", "--devices", "2", "--arch", "lenet", "--epochs", "1",
                                 "--weights", "/nonexistent/weights.pt"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "weights.pt" in errors[0] and "(process 0 of 2" in errors[0], result.stderr


def test_all_folds_on_two_processes_trains_every_fold(prepared_tiny, hamcli_home):
    # The family's name is agreed over the group before its first fold trains: the group is joined first.
    result = runner.invoke(app, ["train", "--data", "tiny", "--arch", "lenet", "--epochs", "1", "--batch-size", "4",
                                 "--all-folds", "--devices", "2", "--name", "fam", "-q", "--format", "json"])
    assert result.exit_code == 0, result.output
    family = hamcli_home / "data" / "runs" / "fam"
    assert json.loads((family / "family.json").read_text())["folds"] == 2
    assert all(checkpoint.load(family / f"fold{k}" / "best.pt")["world_size"] == 2 for k in (0, 1))


def test_distilling_on_two_processes_shares_rank_0s_teacher_answers_or_its_refusal(trained_run, prepared_tiny):
    # Rank 0 runs the teacher and broadcasts its softened answers (or its refusal) to the others.
    result = runner.invoke(app, ["train", "--data", "tiny", "--arch", "lenet", "--epochs", "1", "--batch-size", "4",
                                 "--distil-from", "tiny-lenet", "--devices", "2", "--name", "taught", "-q",
                                 "--format", "json"])
    assert result.exit_code == 0, result.output
    best = checkpoint.load(trained_run.parent / "taught" / "best.pt")
    assert best["world_size"] == 2 and best["config"]["distil_from"] == "tiny-lenet"
    # A teacher rank 0 refuses (it takes 32 px images; tiny24 holds 24 px): every rank stops, said once.
    from hamcli.data.prepare import PrepareConfig, prepare

    prepare(name="tiny24", config=PrepareConfig(split="50/25/25", size="24"))
    refused = runner.invoke(app, ["train", "--data", "tiny24", "--arch", "lenet", "--epochs", "1",
                                  "--distil-from", "tiny-lenet", "--devices", "2", "--name", "taught2"])
    errors = [line for line in refused.stderr.splitlines() if line.startswith("Error:")]
    assert refused.exit_code != 0 and "Traceback" not in refused.output, refused.output
    assert len(errors) == 1 and "the teacher takes 32x32 images" in errors[0], refused.stderr
