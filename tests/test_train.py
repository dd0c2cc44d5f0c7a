"""Real training on tiny synthetic images: every zoo entry, checkpoints, resume, determinism."""

from __future__ import annotations

import json
import urllib.error

import pytest
import torch
from typer.testing import CliRunner

from hamcli import checkpoint, zoo
from hamcli.classes import CLASS_CODES
from hamcli.cli.app import app
from hamcli.errors import ModelError, NotFoundError, UsageError
from hamcli.train import engine
from hamcli.train.data import class_weights, epoch_order
from hamcli.train.engine import TrainConfig, TrainEvents, TrainingInterrupted

runner = CliRunner()
FAST = dict(data="tiny", batch_size=8, precision="fp32", epochs=1)


@pytest.mark.parametrize("arch", list(zoo.MODELS))
def test_every_zoo_entry_trains_a_step(prepared_tiny, arch):
    run = engine.train(TrainConfig(arch=arch, max_batches=1, **FAST))
    ckpt = checkpoint.load(run / "best.pt")
    model = checkpoint.build_from(ckpt)
    out = model(torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, 7) and torch.isfinite(out).all()


def test_checkpoint_is_self_describing(prepared_tiny):
    run = engine.train(TrainConfig(arch="lenet", name="desc", **{**FAST, "epochs": 2}))
    ckpt = checkpoint.load(run / "best.pt")  # weights_only=True inside
    assert ckpt["arch"] == "lenet" and tuple(ckpt["classes"]) == CLASS_CODES
    assert ckpt["input_size"] == 32 and len(ckpt["mean"]) == 3 and len(ckpt["std"]) == 3
    assert ckpt["data"]["fingerprint"] == prepared_tiny.fingerprint
    assert ckpt["config"]["epochs"] == 2 and ckpt["format_version"] == checkpoint.FORMAT_VERSION
    assert len(ckpt["history"]) >= 1 and "val_balanced_accuracy" in ckpt["history"][0]
    assert ckpt["hamcli_version"]
    for name in ("best.pt", "last.pt", "history.csv", "curves.png", "config.json", "metrics.json"):
        assert (run / name).is_file(), name
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((run / "history.csv").read_text().splitlines()) == 3


def _final_weights(run) -> dict:
    return checkpoint.load(run / "last.pt")["state_dict"]


def test_same_seed_same_metrics(prepared_tiny):
    a = engine.train(TrainConfig(arch="cnn", name="a", seed=3, augment="strong", **FAST))
    b = engine.train(TrainConfig(arch="cnn", name="b", seed=3, augment="strong", **FAST))
    c = engine.train(TrainConfig(arch="cnn", name="c", seed=4, augment="strong", **FAST))
    ha, hb, hc = (json.loads((r / "metrics.json").read_text()) for r in (a, b, c))
    assert ha["best"] == hb["best"]
    wa, wb, wc = _final_weights(a), _final_weights(b), _final_weights(c)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


class _StopAfter(TrainEvents):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_end(self, record: dict) -> None:
        if record["epoch"] == self.epoch:
            raise KeyboardInterrupt


def test_interrupt_then_resume_equals_uninterrupted_run(prepared_tiny):
    cfg = dict(arch="cnn", seed=5, schedule="onecycle", augment="strong", **{**FAST, "epochs": 3})
    straight = engine.train(TrainConfig(name="straight", **cfg))
    with pytest.raises(TrainingInterrupted, match="--resume broken"):
        engine.train(TrainConfig(name="broken", **cfg), _StopAfter(1))
    ckpt = checkpoint.load(prepared_tiny.root.parent.parent / "runs/broken/last.pt")
    assert ckpt["interrupted"] and ckpt["epoch"] == 1
    resumed = engine.resume("broken")
    assert json.loads((resumed / "metrics.json").read_text())["epochs_run"] == 3
    ws, wr = _final_weights(straight), _final_weights(resumed)
    assert all(torch.allclose(ws[k].float(), wr[k].float()) for k in ws)
    with pytest.raises(UsageError, match="already finished"):
        engine.resume("broken")


def test_cli_resume_after_interrupt(prepared_tiny, monkeypatch):
    with pytest.raises(TrainingInterrupted):
        engine.train(TrainConfig(arch="lenet", name="cli-run", **{**FAST, "epochs": 2}), _StopAfter(1))
    result = runner.invoke(app, ["train", "--resume", "cli-run", "-q", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["epochs_run"] == 2


def test_weighted_sampler_draws_classes_evenly():
    labels = torch.tensor([5] * 900 + [0] * 60 + [3] * 10 + [1] * 30)
    g = torch.Generator().manual_seed(0)
    drawn = labels[epoch_order(labels, "weighted", g)]
    counts = torch.bincount(drawn, minlength=7)[[0, 1, 3, 5]].float()
    assert counts.min() / counts.max() > 0.8
    plain = labels[epoch_order(labels, "none", g)]
    assert torch.equal(torch.bincount(plain, minlength=7), torch.bincount(labels, minlength=7))


def test_class_weights_modes():
    labels = torch.tensor([0] * 10 + [1] * 40 + [2, 3, 4, 5, 6] * 10)
    balanced = class_weights(labels, "balanced")
    assert torch.isclose(balanced[0] * 10, balanced[1] * 40)
    assert torch.allclose(class_weights(labels, "sqrt"), balanced.sqrt())
    assert class_weights(labels, "none") is None


def test_freeze_backbone_trains_only_the_head(prepared_tiny):
    torch.manual_seed(42)
    init = zoo.build_model("cnn").state_dict()
    run = engine.train(TrainConfig(arch="cnn", name="frozen", freeze_backbone=True, augment="none",
                                   **{**FAST, "epochs": 1}))
    after = checkpoint.load(run / "last.pt")["state_dict"]
    conv = "0.0.0.weight"
    assert torch.equal(after[conv], init[conv]) and not torch.equal(after["4.weight"], init["4.weight"])


def test_all_folds_reports_mean_and_std(prepared_tiny):
    family = engine.train_folds(TrainConfig(arch="lenet", name="cv", max_batches=1, **FAST))
    info = json.loads((family / "family.json").read_text())
    assert info["folds"] == 2 and info["members"] == ["fold0", "fold1"]
    assert set(info["val"]["val_balanced_accuracy"]) == {"mean", "std"}
    assert (family / "fold1" / "best.pt").exists()


def test_pretrained_weights_load_from_torch_cache_offline(prepared_tiny):
    spec = zoo.get_spec("mobilenet_v3_small")
    target = zoo.weights_file(spec)
    reference = zoo.build_model("mobilenet_v3_small")  # random weights standing in for ImageNet's
    imagenet_like = {k: v for k, v in reference.state_dict().items() if not k.startswith("classifier.3")}
    from torchvision.models import get_model

    full = get_model("mobilenet_v3_small").state_dict()
    full.update(imagenet_like)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(full, target)
    model = zoo.build_model("mobilenet_v3_small", pretrained=True)
    key = "features.0.0.weight"
    assert torch.equal(model.state_dict()[key], reference.state_dict()[key])
    class Events(TrainEvents):
        def start(self, info: dict) -> None:
            self.advice = info["advice"]

    events = Events()
    run = engine.train(TrainConfig(arch="mobilenet_v3_small", pretrained=True, freeze_backbone=True,
                                   unfreeze_after=2, max_batches=1, **{**FAST, "epochs": 2}), events)
    assert (run / "best.pt").exists()
    # ImageNet weights on 32 px images: the user is told to prepare larger ones.
    assert len(events.advice) == 1 and "--size 224" in events.advice[0]


def test_pretrained_offline_without_file_names_file_and_fixes(monkeypatch):
    import torch.hub

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(ModelError) as info:
        zoo.build_model("resnet18", pretrained=True)
    message = str(info.value)
    assert str(zoo.weights_file(zoo.get_spec("resnet18"))) in message
    assert "--no-pretrained" in message and "--weights" in message


def test_weights_option_starts_from_local_state_dict(prepared_tiny, tmp_path):
    source = zoo.build_model("lenet")
    path = tmp_path / "lenet.pt"
    torch.save(source.state_dict(), path)
    model = zoo.build_model("lenet", weights_path=path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), source.state_dict().values(),
                                                    strict=True))
    with pytest.raises(ModelError, match="not found"):
        zoo.build_model("lenet", weights_path=tmp_path / "nope.pt")


def test_unknown_architecture_lists_valid_ones(prepared_tiny):
    result = runner.invoke(app, ["train", "--arch", "vgg99", "--data", "tiny"])
    assert result.exit_code == 2
    assert "resnet18" in result.output and "lenet" in result.output and "Traceback" not in result.output


def test_missing_prepared_dataset_is_a_clear_error():
    with pytest.raises(NotFoundError, match="hamcli prepare"):
        engine.train(TrainConfig(arch="lenet", data="nope"))
    result = runner.invoke(app, ["train", "--data", "nope"])
    assert result.exit_code == 1 and "nope" in result.output


def test_bad_options_are_usage_errors(prepared_tiny):
    for override in ({"optimizer": "rmsprop"}, {"schedule": "step"}, {"monitor": "auc"}, {"epochs": 0},
                     {"augment": "extreme"}, {"class_weight": "x"}):
        with pytest.raises(UsageError):
            engine.train(TrainConfig(arch="lenet", **{**FAST, **override}))


def test_cli_train_json_summary_and_auto_precision(prepared_tiny):
    result = runner.invoke(app, ["train", "--arch", "lenet", "--data", "tiny", "--epochs", "1",
                                 "--batch-size", "8", "--sampler", "weighted", "--class-weight", "sqrt",
                                 "--schedule", "plateau", "--label-smoothing", "0.1", "-q", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["epochs_run"] == 1 and 0 <= summary["best"]["balanced_accuracy"] <= 1
    ckpt = checkpoint.load(next(p for p in prepared_tiny.root.parent.parent.glob("runs/*/best.pt")))
    assert ckpt["precision"]["dtype"] in ("fp32", "bf16")


def test_early_stopping_stops(prepared_tiny):
    run = engine.train(TrainConfig(arch="lenet", name="es", early_stop=1, monitor="loss", lr=1e-9,
                                   **{**FAST, "epochs": 6}))
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] < 6
