"""Real training on tiny synthetic images: every zoo entry, checkpoints, resume, determinism."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import hamcli
import hamcli.configfile as configfile
import hamcli.models.checkpoint as checkpoint
import hamcli.models.weights as weights
import hamcli.models.zoo as zoo
import hamcli.paths as paths
from hamcli.classes import CLASS_CODES
from hamcli.cli.app import app
from hamcli.errors import ModelError, NotFoundError, UsageError
from hamcli.models.build import build_model
from hamcli.training import runner
from hamcli.training.config import TrainConfig
from hamcli.training.engine import TrainEvents, TrainingInterrupted
from hamcli.training.folds import out_of_fold, train_folds
from hamcli.training.sampling import class_weights, epoch_order

cli = CliRunner()
ROOT = Path(__file__).parents[1]
FAST = dict(data="tiny", batch_size=8, precision="fp32", epochs=1)


@pytest.mark.parametrize("arch", list(zoo.MODELS))
def test_every_zoo_entry_trains_a_step(prepared_tiny, arch):
    run = runner.train(TrainConfig(arch=arch, max_batches=1, **FAST))
    ckpt = checkpoint.load(run / "best.pt")
    model = checkpoint.build_from(ckpt)
    out = model(torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, 7) and torch.isfinite(out).all()


def test_checkpoint_is_self_describing(prepared_tiny):
    run = runner.train(TrainConfig(arch="lenet", name="desc", **{**FAST, "epochs": 2}))
    ckpt = checkpoint.load(run / "best.pt")  # weights_only=True inside
    assert ckpt["arch"] == "lenet" and tuple(ckpt["classes"]) == CLASS_CODES
    prep = ckpt["preprocess"]
    assert prep["size"] == [32, 32] and prep["policy"] == "center-crop" and len(prep["mean"]) == 3
    assert prep["interpolation"] == "bilinear" and len(prep["std"]) == 3
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
    a = runner.train(TrainConfig(arch="cnn", name="a", seed=3, augment="strong", **FAST))
    b = runner.train(TrainConfig(arch="cnn", name="b", seed=3, augment="strong", **FAST))
    c = runner.train(TrainConfig(arch="cnn", name="c", seed=4, augment="strong", **FAST))
    ha, hb, hc = (json.loads((r / "metrics.json").read_text()) for r in (a, b, c))
    assert ha["best"] == hb["best"]
    wa, wb, wc = _final_weights(a), _final_weights(b), _final_weights(c)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


class _StopAfter(TrainEvents):
    """Ctrl-C at the end of `epoch`, or inside it after `batches` steps of the next one."""

    def __init__(self, epoch: int, batches: int | None = None) -> None:
        self.epoch, self.batches, self.current = epoch, batches, 0

    def epoch_start(self, epoch: int, epochs: int, batches: int) -> None:
        self.current = epoch

    def batch(self, done: int, loss: float, images_per_s: float) -> None:
        if self.batches is not None and self.current == self.epoch + 1 and done == self.batches:
            raise KeyboardInterrupt

    def epoch_end(self, record: dict) -> None:
        if self.batches is None and record["epoch"] == self.epoch:
            raise KeyboardInterrupt


@pytest.mark.parametrize("mid_epoch", [False, True], ids=["between-epochs", "mid-epoch"])
def test_interrupt_then_resume_equals_uninterrupted_run(prepared_tiny, mid_epoch):
    cfg = dict(arch="cnn", seed=5, schedule="onecycle", augment="strong", ema=0.9, **{**FAST, "epochs": 3})
    straight = runner.train(TrainConfig(name="straight", **cfg))
    stop = _StopAfter(1, batches=2 if mid_epoch else None)
    with pytest.raises(TrainingInterrupted, match="--resume broken"):
        runner.train(TrainConfig(name="broken", **cfg), stop)
    ckpt = checkpoint.load(prepared_tiny.root.parent.parent / "runs/broken/last.pt")
    assert ckpt["epoch"] == 1  # the last completed epoch, never a half-done one
    resumed = runner.resume("broken")
    assert json.loads((resumed / "metrics.json").read_text())["epochs_run"] == 3
    ws, wr = _final_weights(straight), _final_weights(resumed)
    assert all(torch.equal(ws[k], wr[k]) for k in ws)
    best_s, best_r = (checkpoint.load(r / "best.pt")["state_dict"] for r in (straight, resumed))
    assert all(torch.equal(best_s[k], best_r[k]) for k in best_s)  # the EMA resumed exactly too
    with pytest.raises(UsageError, match="already finished"):
        runner.resume("broken")


def test_interrupt_in_first_epoch_says_nothing_is_saved(prepared_tiny):
    with pytest.raises(TrainingInterrupted, match="no epoch had finished"):
        runner.train(TrainConfig(arch="lenet", name="early", **{**FAST, "epochs": 2}), _StopAfter(0, batches=1))
    with pytest.raises(UsageError, match="no last.pt"):
        runner.resume("early")


def test_cli_resume_after_interrupt(prepared_tiny, monkeypatch):
    with pytest.raises(TrainingInterrupted):
        runner.train(TrainConfig(arch="lenet", name="cli-run", **{**FAST, "epochs": 2}), _StopAfter(1))
    result = cli.invoke(app, ["train", "--resume", "cli-run", "-q", "--json"])
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
    init = build_model("cnn")[0].state_dict()
    run = runner.train(TrainConfig(arch="cnn", name="frozen", freeze_backbone=True, augment="none",
                                   **{**FAST, "epochs": 1}))
    after = checkpoint.load(run / "last.pt")["state_dict"]
    conv, bn = "features.block1.conv1.weight", "features.block2.bn1.running_mean"
    assert torch.equal(after[conv], init[conv]) and not torch.equal(after["classifier.weight"],
                                                                    init["classifier.weight"])
    assert torch.equal(after[bn], init[bn])  # frozen batch norm keeps its statistics


def test_freeze_early_keeps_the_first_modules_and_trains_the_rest(prepared_tiny):
    torch.manual_seed(42)
    init = build_model("cnn")[0].state_dict()
    run = runner.train(TrainConfig(arch="cnn", name="early-frozen", freeze_early=2, augment="none", **FAST))
    after = checkpoint.load(run / "last.pt")["state_dict"]
    for key in ("features.block1.conv1.weight", "features.block2.conv2.weight", "features.block2.bn2.running_var"):
        assert torch.equal(after[key], init[key]), key
    assert not torch.equal(after["features.block3.conv1.weight"], init["features.block3.conv1.weight"])
    with pytest.raises(UsageError, match="has 4 backbone modules"):
        runner.train(TrainConfig(arch="cnn", freeze_early=5, **FAST))


def test_backbone_learns_slower_than_the_head(prepared_tiny):
    from hamcli.training.optim import param_groups

    model = build_model("cnn")[0]
    groups = param_groups(model, "classifier", TrainConfig(arch="cnn", lr=0.01, backbone_lr_mult=0.1))
    by_name = {g["name"]: g for g in groups}
    assert by_name["head"]["lr"] == 0.01 and by_name["backbone"]["lr"] == pytest.approx(0.001)
    assert by_name["backbone-no-decay"]["weight_decay"] == 0.0  # no decay on batch norm and biases
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_warmup_raises_the_rate_then_cosine_lowers_it():
    from hamcli.training.optim import optimizer, param_groups, scheduler

    cfg = TrainConfig(arch="lenet", lr=0.1, epochs=4, warmup_epochs=1)
    model = build_model("lenet")[0]
    opt = optimizer(cfg, param_groups(model, "classifier", cfg))
    sched = scheduler(cfg, opt, steps_per_epoch=10)
    rates = []
    for _ in range(40):
        rates.append(opt.param_groups[-1]["lr"])
        opt.step()
        sched.step()
    assert rates[0] < 0.01 and rates[10] == pytest.approx(0.1) and rates[-1] < 0.01
    assert rates[:11] == sorted(rates[:11]) and rates[10:] == sorted(rates[10:], reverse=True)


def test_ema_run_saves_averaged_and_raw_best(prepared_tiny):
    run = runner.train(TrainConfig(arch="lenet", name="ema", ema=0.5, **{**FAST, "epochs": 2}))
    best, raw = checkpoint.load(run / "best.pt"), checkpoint.load(run / "best_raw.pt")
    assert best["weights"] == "ema" and raw["weights"] == "raw"
    assert not torch.equal(best["state_dict"]["classifier.weight"], raw["state_dict"]["classifier.weight"])
    assert "val_ema_balanced_accuracy" in best["history"][0]
    assert json.loads((run / "metrics.json").read_text())["weights"] == "ema"


def test_all_folds_reports_mean_and_std(prepared_tiny):
    family = train_folds(TrainConfig(arch="lenet", name="cv", max_batches=1, **FAST))
    info = json.loads((family / "family.json").read_text())
    assert info["folds"] == 2 and info["members"] == ["fold0", "fold1"]
    assert set(info["val"]["val_balanced_accuracy"]) == {"mean", "std"}
    assert (family / "fold1" / "best.pt").exists()


def test_pretrained_weights_load_from_torch_cache_offline(prepared_tiny):
    spec = zoo.get_spec("mobilenet_v3_small")
    target = weights.torchvision_file(spec)
    reference = build_model("mobilenet_v3_small")[0]  # random weights standing in for ImageNet's
    imagenet_like = {k: v for k, v in reference.state_dict().items() if not k.startswith("classifier.3")}
    from torchvision.models import get_model

    full = get_model("mobilenet_v3_small").state_dict()
    full.update(imagenet_like)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(full, target)
    model, report = build_model("mobilenet_v3_small", pretrained=True)
    assert report.loaded == report.total - 2 and "torchvision" in report.source  # all but the new head
    key = "features.0.0.weight"
    assert torch.equal(model.state_dict()[key], reference.state_dict()[key])
    class Events(TrainEvents):
        def start(self, info: dict) -> None:
            self.advice = info["advice"]

    events = Events()
    run = runner.train(TrainConfig(arch="mobilenet_v3_small", pretrained=True, freeze_backbone=True,
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
        build_model("resnet18", pretrained=True)
    message = str(info.value)
    assert str(weights.torchvision_file(zoo.get_spec("resnet18"))) in message
    assert "--weights" in message and "efficientnet_lite0 --pretrained" in message


def test_weights_option_starts_from_local_state_dict(prepared_tiny, tmp_path):
    source = build_model("lenet")[0]
    path = tmp_path / "lenet.pt"
    torch.save(source.state_dict(), path)
    model, report = build_model("lenet", weights_path=path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), source.state_dict().values(),
                                                    strict=True))
    assert report.loaded == report.total and not report.skipped
    with pytest.raises(ModelError, match="not found"):
        build_model("lenet", weights_path=tmp_path / "nope.pt")
    with pytest.raises(ModelError, match="another architecture"):  # a cnn file is not a lenet start
        torch.save(build_model("cnn")[0].state_dict(), tmp_path / "cnn.pt")
        build_model("lenet", weights_path=tmp_path / "cnn.pt")


def test_weights_from_a_hamcli_checkpoint_with_another_head_size(trained_run, tmp_path):
    model, report = build_model("lenet", weights_path=trained_run / "best.pt")
    ckpt = checkpoint.load(trained_run / "best.pt")
    assert torch.equal(model.state_dict()["features.conv2.weight"], ckpt["state_dict"]["features.conv2.weight"])
    assert report.loaded == report.total
    # a 3-class state dict: everything but the head loads, and the report names what was left out
    three = build_model("lenet", num_classes=3)[0].state_dict()
    torch.save(three, tmp_path / "three.pt")
    _, report = build_model("lenet", weights_path=tmp_path / "three.pt")
    assert set(report.skipped) == {"classifier.weight", "classifier.bias"} and "classifier.weight" in report.line()


def test_unknown_architecture_lists_valid_ones(prepared_tiny):
    result = cli.invoke(app, ["train", "--arch", "vgg99", "--data", "tiny"])
    assert result.exit_code == 2
    assert "resnet18" in result.output and "lenet" in result.output and "Traceback" not in result.output
    result = cli.invoke(app, ["train", "--arch", "LeNet", "--data", "tiny"])
    assert result.exit_code == 2 and "did you mean 'lenet'" in result.output


def test_missing_prepared_dataset_is_a_clear_error():
    with pytest.raises(NotFoundError, match="hamcli prepare"):
        runner.train(TrainConfig(arch="lenet", data="nope"))
    result = cli.invoke(app, ["train", "--data", "nope"])
    assert result.exit_code == 1 and "nope" in result.output


def test_bad_options_are_usage_errors(prepared_tiny):
    for override, option in (({"optimizer": "rmsprop"}, "--optimizer"), ({"schedule": "step"}, "--schedule"),
                             ({"monitor": "auc"}, "--monitor"), ({"epochs": 0}, "--epochs"),
                             ({"augment": "extreme"}, "--augment"), ({"class_weight": "x"}, "--class-weight"),
                             ({"sampler": "bogus"}, "--sampler"), ({"lr": -1.0}, "--lr"),
                             ({"lr": float("nan")}, "--lr"), ({"batch_size": 0}, "--batch-size"),
                             ({"ema": 1.0}, "--ema"), ({"warmup_epochs": 5.0}, "--warmup-epochs")):
        with pytest.raises(UsageError, match=option):
            runner.train(TrainConfig(arch="lenet", **{**FAST, **override}))
    assert not (prepared_tiny.root.parent.parent / "runs").exists()  # a refused run leaves no folder


def test_cli_train_json_summary_and_auto_precision(prepared_tiny):
    result = cli.invoke(app, ["train", "--arch", "lenet", "--data", "tiny", "--epochs", "1",
                                 "--batch-size", "8", "--sampler", "weighted", "--class-weight", "sqrt",
                                 "--schedule", "plateau", "--label-smoothing", "0.1", "-q", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["epochs_run"] == 1 and 0 <= summary["best"]["balanced_accuracy"] <= 1
    ckpt = checkpoint.load(next(p for p in prepared_tiny.root.parent.parent.glob("runs/*/best.pt")))
    # auto followed the committed table for this CPU's bf16 support, and the checkpoint says so
    from hamcli.models.precision import describe, training_choice

    rule = training_choice("lenet")
    chosen = ckpt["precision"]["dtype"] + (" + channels-last" if ckpt["precision"]["channels_last"] else "")
    assert chosen == describe(rule) and ckpt["precision"]["why"] == rule.reason


def test_auto_precision_is_a_table_lookup_by_cpu_flags_not_a_timing(monkeypatch):
    import hamcli.models.precision as precision

    monkeypatch.setattr(precision, "_cpu_fields", lambda: {"flags": "fpu sse avx512f avx512_bf16 amx_bf16 amx_tile"})
    assert precision.cpu_bf16_class() == "amx"
    assert precision.describe(precision.choose("resnet18", "cpu")) == "bf16 + channels-last"
    assert precision.describe(precision.choose("efficientnet_lite0", "cpu")) == "fp32 + channels-last"
    monkeypatch.setattr(precision, "_cpu_fields", lambda: {"flags": "fpu sse avx2"})
    assert precision.cpu_bf16_class() == "none"
    none = precision.choose("resnet18", "cpu")
    assert precision.describe(none) == "fp32 + channels-last" and "no row" in none.reason
    assert precision.describe(precision.choose("resnet18", "cpu", "bf16")) == "bf16 + channels-last"  # as asked
    assert not hasattr(precision, "measure_cpu")  # nothing is timed at run time


def test_early_stopping_stops(prepared_tiny):
    # validation loss rises every epoch when the learning rate is absurd: no epoch beats the first
    run = runner.train(TrainConfig(arch="lenet", name="es", early_stop=2, monitor="loss", lr=5.0,
                                   optimizer="sgd", schedule="none", **{**FAST, "epochs": 8}))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_run"] == metrics["best_epoch"] + 2 < 8


def test_train_on_one_fold_validates_on_it(prepared_tiny):
    run = runner.train(TrainConfig(arch="lenet", name="f1", fold=1, **FAST))
    ckpt = checkpoint.load(run / "best.pt")
    assert ckpt["data"]["val_source"] == "fold 1"
    m = prepared_tiny.manifest
    fold1 = set(m.loc[m["fold"] == 1, "image_id"])
    assert fold1 <= set(ckpt["data"]["seen_image_ids"])
    assert not set(m.loc[m["split"] == "test", "image_id"]) & set(ckpt["data"]["seen_image_ids"])
    with pytest.raises(UsageError, match="--fold 2: choose 0 to 1"):
        runner.train(TrainConfig(arch="lenet", fold=2, **FAST))


def test_ctrl_c_in_a_real_process_exits_130_and_says_what_was_saved(prepared_tiny):
    import signal
    import subprocess
    import sys
    import time

    last = prepared_tiny.root.parent.parent / "runs" / "sigint" / "last.pt"
    proc = subprocess.Popen([sys.executable, "-m", "hamcli", "train", "--data", "tiny", "--epochs", "500",
                             "--batch-size", "8", "--precision", "fp32", "--name", "sigint", "-q"],
                            stderr=subprocess.PIPE, text=True,
                            # a shell's background job starts with SIGINT ignored, and Python then keeps
                            # it ignored: give the child the default disposition, as a terminal would
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # Interrupt mid-training, once an epoch has been saved: a cold interpreter (a fresh CI virtualenv
    # compiling its bytecode) can take a minute to get there, so wait for the file, not a fixed time.
    deadline = time.monotonic() + 300
    while not last.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    if not last.exists():
        proc.kill()
        pytest.fail(f"training never saved an epoch: {proc.communicate()[1][-500:]}")
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "--resume sigint" in lines[0] and "Traceback" not in err
    assert checkpoint.load(last)["epoch"] >= 1


def test_family_postprocessing_is_fitted_on_its_own_average_and_bundles_as_one_file(prepared_tiny, tmp_path):
    from hamcli.data.splits import calibration_rows
    from hamcli.evaluation.scoring import held_out
    from hamcli.inference.ensemble import Ensemble
    from hamcli.inference.load import load_model
    from hamcli.inference.postprocess import Postprocess
    from hamcli.serve.onnx import export_onnx

    family = train_folds(TrainConfig(arch="lenet", name="cv", max_batches=1, melanoma_sensitivity=1.0, **FAST))
    info = json.loads((family / "family.json").read_text())
    record = info["calibration"]
    m = prepared_tiny.manifest
    val = calibration_rows(m)  # the val split: no fold trained on it
    assert len(val) and record["images"] == len(val) and "val split" in record["fitted_on"]
    assert not set(m["image_id"].iloc[val]) & {i for f in ("fold0", "fold1") for i in checkpoint.load(
        family / f / "best.pt")["data"]["seen_image_ids"]}
    assert record["after"]["melanoma_sensitivity"] == 1.0 or record["melanoma_stopped_by"] == "no offset reaches it"
    assert info["members_raw"] is True
    for fold in ("fold0", "fold1"):  # the members leave the operating point to the family
        assert json.loads((family / fold / "config.json").read_text())["melanoma_sensitivity"] == 0.0
    oof = out_of_fold(family)  # for comparing recipes: each train-split image once, by the member it held out
    train = m[m["split"] == "train"]
    assert sorted(oof.image_ids) == sorted(train["image_id"]) and oof.members == ["fold0", "fold1"]
    fold_of = dict(zip(train["image_id"], train["fold"], strict=True))
    assert [fold_of[i] for i in oof.image_ids] == oof.member.tolist()

    # the family's postprocessing acts on the very average it was fitted on: the members' raw probabilities
    ensemble = load_model("cv")
    images = held_out(ensemble).images
    raw = np.mean([member.outputs(images, raw=True).probabilities for member in ensemble.members], axis=0,
                  dtype=np.float64)
    post = Postprocess.from_dict(info["postprocess"])
    z = post.apply(np.log(raw))
    np.testing.assert_allclose(ensemble.probabilities(images), np.exp(z) / np.exp(z).sum(1, keepdims=True), atol=1e-6)

    out, results = tmp_path / "one.pt", tmp_path / "bundled.json"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "bundle_model.py"), "cv", "--out", str(out),
                           "--results", str(results), "--bootstrap", "20"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    one = load_model(out)
    assert isinstance(one, Ensemble) and len(one.members) == 2 and one.post == ensemble.post and one.members_raw
    summary = json.loads(out.with_suffix(".json").read_text())  # beside the bundle, for `hamcli info`
    assert summary["arch"] == one.card.arch and summary["members"] == 2
    figures = json.loads(results.read_text())
    tolerance = 2e-3 if figures["weights_dtype"] == "fp16" else 1e-6
    np.testing.assert_allclose(one.probabilities(images), ensemble.probabilities(images), atol=tolerance)
    # the recorded test figures are those of the weights as stored
    stored = one.probabilities(images).argmax(1)
    assert figures["test"]["accuracy"] == pytest.approx(float((stored == held_out(ensemble).y_true).mean()), abs=1e-4)
    assert figures["val_images"] == len(val)
    exported = export_onnx(str(out), tmp_path / "one.onnx")  # checked against torch before it is written
    assert exported["max_abs_diff"] < 1e-5

def test_refit_trains_for_the_chosen_epochs_and_is_calibrated_out_of_fold_of_its_own_recipe(trained_run):
    import pandas as pd

    from hamcli.training.calibrate import calibrate

    result = cli.invoke(app, ["train", "--refit", "tiny-lenet", "--name", "refit", "--max-batches", "1"])
    assert result.exit_code == 0, result.output
    assert "validation" in result.output and "none (a refit" in result.output
    source, new = checkpoint.load(trained_run / "best.pt"), checkpoint.load(trained_run.parent / "refit" / "best.pt")
    assert new["config"]["refit"] == "tiny-lenet" and new["config"]["early_stop"] == 0
    chosen = json.loads((trained_run / "metrics.json").read_text())["best_epoch"]
    assert new["epoch"] == new["config"]["epochs"] == chosen  # the epoch count validation chose
    # No postprocessing fitted on another model: uncalibrated until fitted on its own recipe's predictions.
    assert not new.get("postprocess") and "--folds" in json.loads(
        (trained_run.parent / "refit" / "metrics.json").read_text())["calibration"]["why"]
    # It learnt from the source's training and validation rows alike.
    assert sorted(new["data"]["seen_image_ids"]) == sorted(source["data"]["seen_image_ids"])
    assert sum(new["data"]["train_counts"]) == len(new["data"]["seen_image_ids"]) > sum(source["data"]["train_counts"])
    assert not any(key.startswith("val_") for key in new["history"][-1])

    again = cli.invoke(app, ["train", "--refit", "refit"])
    assert again.exit_code == 2 and "already a refit (of tiny-lenet)" in again.output, again.output
    stop = cli.invoke(app, ["train", "--refit", "tiny-lenet", "--early-stop", "3"])
    assert stop.exit_code == 2 and "--refit trains without validation rows" in stop.output, stop.output
    bad = cli.invoke(app, ["calibrate", "refit", "--melanoma-sensitivity", "0.6"])
    assert bad.exit_code == 2 and "give --folds K" in bad.output, bad.output
    bad = cli.invoke(app, ["evaluate", "refit", "--split", "val"])  # they are rows it trained on
    assert bad.exit_code == 2 and "score its source run 'tiny-lenet' with --split val" in bad.output, bad.output

    done = cli.invoke(app, ["calibrate", "refit", "--folds", "2", "--melanoma-sensitivity", "0.6", "--json"])
    assert done.exit_code == 0, done.output
    record = json.loads(done.stdout)
    refit_dir = trained_run.parent / "refit"
    oof = pd.read_csv(refit_dir / "calibration-oof.csv")
    # every row the refit trained on, once, predicted by a model of its recipe that left that row's fold out
    assert sorted(oof["image_id"]) == sorted(new["data"]["seen_image_ids"]) and set(oof["fold"]) == {0, 1}
    assert "out-of-fold" in record["fitted_on"] and record["images"] == len(oof)
    logits = oof[[f"logit_{c}" for c in hamcli.CLASS_CODES]].to_numpy()
    y = np.array([hamcli.CLASS_CODES.index(c) for c in oof["true_dx"]])
    post, _ = calibrate(logits, y, new["data"]["train_counts"], new["config"]["prior_shift"], melanoma_sensitivity=0.6)
    stored = checkpoint.load(refit_dir / "best.pt")
    assert_same_postprocess(stored["postprocess"], post.as_dict())
    assert stored["calibration"]["fitted_on"] == record["fitted_on"]
    assert not list(refit_dir.glob(".calibration-folds-*"))  # the fold models are not kept


def test_a_refits_out_of_fold_models_never_train_on_the_rows_they_predict(prepared_tiny):
    from hamcli.training.sampling import select

    whole = select(prepared_tiny, None, 42, refit=True)
    parts = [select(prepared_tiny, None, 42, refit=True, refit_fold=f"{k}/2") for k in (0, 1)]
    lesions = prepared_tiny.manifest["lesion_id"].to_numpy()
    for part in parts:
        assert not set(part.train_idx) & set(part.val_idx) and not set(lesions[part.train_idx]) & set(
            lesions[part.val_idx])  # grouped by lesion
        assert sorted([*part.train_idx, *part.val_idx]) == sorted(whole.train_idx)
    assert sorted([*parts[0].val_idx, *parts[1].val_idx]) == sorted(whole.train_idx)  # each row predicted once


def test_calibrate_refits_a_runs_operating_point_on_its_validation_rows(trained_run):
    from hamcli.evaluation.scoring import held_out
    from hamcli.inference.predictor import Predictor
    from hamcli.training.calibrate import MELANOMA

    before = checkpoint.load(trained_run / "best.pt")
    result = cli.invoke(app, ["calibrate", "tiny-lenet", "--melanoma-sensitivity", "0.99", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    ckpt = checkpoint.load(trained_run / "best.pt")
    assert record == ckpt["calibration"] == json.loads((trained_run / "metrics.json").read_text())["calibration"]
    assert record["melanoma_sensitivity_target"] == 0.99 and ckpt["config"]["melanoma_sensitivity"] == 0.99
    # The recorded options say so too: `train --config runs/RUN/config.toml` repeats the run as it now stands.
    toml = trained_run / "config.toml"
    recorded = configfile.options(configfile.read(toml), "train", TrainConfig, toml)
    assert recorded["melanoma_sensitivity"] == 0.99 and toml.read_text().startswith("# hamcli")
    assert {k: v for k, v in recorded.items() if k != "melanoma_sensitivity"} == {
        k: v for k, v in before["config"].items() if k not in ("name", "overwrite", "melanoma_sensitivity")
        and v is not None}
    assert ckpt["postprocess"]["tau"] == before["postprocess"]["tau"]  # the run's own prior-shift setting, kept
    assert record["after"]["melanoma_sensitivity"] >= 0.99 or record["melanoma_stopped_by"] == "no offset reaches it"
    bias = ckpt["postprocess"].get("bias") or [0.0] * 7
    assert bias[MELANOMA] == record["melanoma_bias"]
    assert record["melanoma_bias"] > 0 or record["before"]["melanoma_sensitivity"] >= 0.99
    # What predict applies is the new offset: validation melanoma recall as recorded.
    predictor = Predictor.load(trained_run / "best.pt")
    val = held_out(predictor, "val")
    mel = val.y_true == MELANOMA
    assert (predictor.probabilities(val.images).argmax(1)[mel] == MELANOMA).mean() == pytest.approx(
        record["after"]["melanoma_sensitivity"])

    table = cli.invoke(app, ["calibrate", "tiny-lenet", "--melanoma-sensitivity", "0.5"])
    assert table.exit_code == 0 and "melanoma offset" in table.output and "before" in table.output, table.output
    for value in ("-0.1", "1", "1.5"):
        bad = cli.invoke(app, ["calibrate", "tiny-lenet", "--melanoma-sensitivity", value])
        assert bad.exit_code == 2 and "a fraction in [0, 1)" in bad.output and "Traceback" not in bad.output
    assert "--folds is for refits" in cli.invoke(app, ["calibrate", "tiny-lenet", "--folds", "2"]).output


def assert_same_postprocess(got: dict, want: dict) -> None:
    """The same fitted postprocessing: the grids' choices exactly, the temperature to the optimiser's tolerance."""
    assert {k: v for k, v in got.items() if k != "temperature"} == {k: v for k, v in want.items() if k != "temperature"}
    assert got["temperature"] == pytest.approx(want["temperature"], rel=1e-4)


def test_an_ensembles_postprocessing_is_fitted_on_its_own_average_on_rows_no_member_trained_on(prepared_tiny, tmp_path):
    from hamcli.evaluation.scoring import held_out
    from hamcli.inference.ensemble import Ensemble, member_name
    from hamcli.inference.load import load_model
    from hamcli.inference.postprocess import Postprocess
    from hamcli.training.calibrate import MELANOMA, calibrate

    for seed in (1, 2):
        runner.train(TrainConfig(arch="lenet", name=f"seed{seed}", seed=seed, max_batches=1, **FAST))
    train_folds(TrainConfig(arch="lenet", name="cv", max_batches=1, melanoma_sensitivity=1.0, **FAST))

    result = cli.invoke(app, ["ensemble", "seed1", "seed2", "--name", "seeds"])
    assert result.exit_code == 0, result.output
    assert "temperature" in result.output and "the default model is still cv" in result.output
    assert hamcli.load_model().card.path.name == "cv"  # not silently everyone's default
    ensemble = load_model("seeds")
    assert isinstance(ensemble, Ensemble) and [member_name(m) for m in ensemble.members] == ["seed1", "seed2"]
    assert ensemble.members_raw and ensemble.precision == "fp32 + channels-last"
    # fitted on the ensemble's own raw average, on the validation rows both members chose their epochs on
    val = held_out(load_model("seed1"), "val")
    assert val.image_ids == held_out(load_model("seed2"), "val").image_ids
    seen = {i for s in (1, 2) for i in checkpoint.load(paths.runs_dir() / f"seed{s}" / "best.pt")["data"][
        "seen_image_ids"]}
    members = [load_model(f"seed{s}") for s in (1, 2)]

    def raw_average(images):  # noqa: ANN001, ANN202
        return np.mean([m.outputs(images, raw=True).probabilities for m in members], axis=0, dtype=np.float64)

    counts = np.sum([m.ckpt_meta["data"]["train_counts"] for m in members], axis=0).tolist()
    post, _ = calibrate(np.log(raw_average(val.images)), val.y_true, counts, "none")
    family = json.loads((paths.runs_dir() / "seeds" / "family.json").read_text())
    assert_same_postprocess(family["postprocess"], post.as_dict())
    assert family["calibration"]["images"] == len(val.y_true)
    images = held_out(ensemble).images
    z = post.apply(np.log(raw_average(images)))
    np.testing.assert_allclose(ensemble.probabilities(images), np.exp(z) / np.exp(z).sum(1, keepdims=True), atol=1e-6)
    info = cli.invoke(app, ["info", "--json"])
    assert "ensemble of 2 runs" in info.output, info.output

    # its operating point, likewise on its own average
    fitted = cli.invoke(app, ["calibrate", "seeds", "--melanoma-sensitivity", "0.9", "--json"])
    assert fitted.exit_code == 0, fitted.output
    want, _ = calibrate(np.log(raw_average(val.images)), val.y_true, counts, "none", melanoma_sensitivity=0.9)
    family = json.loads((paths.runs_dir() / "seeds" / "family.json").read_text())
    assert_same_postprocess(family["postprocess"], want.as_dict())
    m = prepared_tiny.manifest  # the rows: the val split, which both members validated on and neither trained on
    assert set(val.image_ids) == set(m.loc[m["split"] == "val", "image_id"]) <= seen
    assert sum(members[0].ckpt_meta["data"]["train_counts"]) == int((m["split"] == "train").sum())
    assert json.loads(fitted.stdout)["melanoma_bias"] == (want.bias or [0.0] * 7)[MELANOMA]
    assert json.loads((paths.runs_dir() / "seeds" / "config.json").read_text())["melanoma_sensitivity"] == 0.9
    on_val = cli.invoke(app, ["evaluate", "seeds", "--split", "val", "--json"])  # the same rows, scored
    assert on_val.exit_code == 0 and json.loads(on_val.stdout)["metrics"]["images"] == len(val.y_true), on_val.output
    # Members validated on different rows (two folds) each trained on the other's: no operating point for them.
    two = cli.invoke(app, ["ensemble", "cv/fold0", "cv/fold1", "--name", "two-folds"])
    assert two.exit_code == 0 and "uncalibrated" in two.output, two.output
    assert not Postprocess.from_dict(json.loads((paths.runs_dir() / "two-folds" / "family.json").read_text()).get(
        "postprocess")).bias
    refused = cli.invoke(app, ["calibrate", "two-folds", "--melanoma-sensitivity", "0.9"])
    assert refused.exit_code == 2 and "validated on different rows" in refused.output, refused.output
    assert "Traceback" not in refused.output

    # A later run of the same name, or calibrating a member again, does not change what the ensemble holds.
    before = load_model("seeds").probabilities(images)
    assert cli.invoke(app, ["calibrate", "seed1", "--melanoma-sensitivity", "0.9"]).exit_code == 0
    np.testing.assert_allclose(load_model("seeds").probabilities(images), before, atol=1e-6)
    again = cli.invoke(app, ["calibrate", "cv", "--melanoma-sensitivity", "0.5", "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout)["melanoma_sensitivity_target"] == 0.5, again.output
    assert json.loads((paths.runs_dir() / "cv" / "family.json").read_text())["calibration"][
        "melanoma_sensitivity_target"] == 0.5
    floored = cli.invoke(app, ["calibrate", "cv", "--melanoma-specificity", "0.95", "--json"])
    assert floored.exit_code == 0, floored.output
    record = json.loads(floored.stdout)  # the sensitivity asked before stays; the floor joins it
    assert record["melanoma_sensitivity_target"] == 0.5 and record["melanoma_specificity_floor"] == 0.95
    assert record["after"]["melanoma_specificity"] >= 0.95 or record["melanoma_bias"] == 0.0
    assert json.loads((paths.runs_dir() / "cv" / "config.json").read_text())["melanoma_specificity"] == 0.95
    removed = cli.invoke(app, ["calibrate", "cv", "--melanoma-sensitivity", "0", "--json"])  # alone: all of it
    assert removed.exit_code == 0 and json.loads(removed.stdout)["melanoma_bias"] == 0.0, removed.output
    assert json.loads((paths.runs_dir() / "cv" / "config.json").read_text())["melanoma_specificity"] == 0.0
    wrong = cli.invoke(app, ["calibrate", "cv", "--melanoma-specificity", "1.5"])
    assert wrong.exit_code == 2 and "--melanoma-specificity 1.5" in wrong.output and "Traceback" not in wrong.output
    runner.train(TrainConfig(arch="lenet", name="seed1", seed=7, overwrite=True, max_batches=1, **FAST))
    np.testing.assert_allclose(load_model("seeds").probabilities(images), before, atol=1e-6)

    out = tmp_path / "seeds.pt"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "bundle_model.py"), "seeds", "--out", str(out),
                           "--results", str(tmp_path / "r.json"), "--bootstrap", "20"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert [member_name(m) for m in load_model(out).members] == ["seed1", "seed2"]
    # A one-file ensemble gives all its members to a new one, beside runs of one's own; they share no held-out
    # rows, so the new one is their plain average, each member as it predicts alone.
    grown = cli.invoke(app, ["ensemble", str(out), "cv/fold0", "--name", "grown"])
    assert grown.exit_code == 0, grown.output
    bigger = load_model("grown")
    assert [member_name(m) for m in bigger.members] == ["seed1", "seed2", "fold0"] and not bigger.members_raw
    parts = [m.probabilities(images) for m in load_model(out).members] + [load_model("cv/fold0").probabilities(images)]
    np.testing.assert_allclose(bigger.probabilities(images), np.mean(parts, axis=0), atol=1e-5)
    scored = cli.invoke(app, ["evaluate", "grown", "--json"])  # its members know the prepared data they came from
    assert scored.exit_code == 0 and json.loads(scored.stdout)["metrics"]["images"] == len(images), scored.output

    # An interrupted run has a best.pt too, but only of the epochs it reached: neither an ensemble nor a refit takes it.
    with pytest.raises(TrainingInterrupted):
        runner.train(TrainConfig(arch="lenet", name="cut", max_batches=1, **{**FAST, "epochs": 2}), _StopAfter(1))
    assert (paths.runs_dir() / "cut" / "best.pt").exists()
    for args in (["ensemble", "seed2", "cut", "--name", "bad"], ["train", "--refit", "cut"]):
        bad = cli.invoke(app, args)
        assert bad.exit_code == 2 and "did not finish" in bad.output and "--resume cut" in bad.output, bad.output
    for args, words in ((["seed2"], "at least two different runs"), (["seed2", "seed2"], "at least two different"),
                        (["seed2", "cv"], "cv: already an ensemble"),
                        (["seed2", "seeds"], "already an ensemble"),
                        (["seed1", "seed2", "--overwrite"], "one of the runs to combine")):
        name = "seed1" if "--overwrite" in args else "bad"
        bad = cli.invoke(app, ["ensemble", *args, "--name", name])
        assert bad.exit_code == 2 and words in bad.output and "Traceback" not in bad.output, (args, bad.output)
    assert (paths.runs_dir() / "seed1" / "last.pt").exists()  # the run itself, untouched


def test_val_seed_lets_runs_of_several_seeds_validate_on_the_same_rows(prepared_tiny):
    from hamcli.data.prepare import PrepareConfig, prepare
    from hamcli.evaluation.scoring import held_out
    from hamcli.inference.load import load_model

    prepare(name="carve", config=PrepareConfig(split="80/20", size="32"))  # no val split: runs carve their own
    fast = {**FAST, "data": "carve", "max_batches": 1}
    for name, seed, val_seed in (("s1", 1, 7), ("s2", 2, 7), ("s2-own", 2, None)):
        runner.train(TrainConfig(arch="lenet", name=name, seed=seed, val_seed=val_seed, **fast))
    rows = {name: held_out(load_model(name), "val").image_ids for name in ("s1", "s2", "s2-own")}
    assert rows["s1"] == rows["s2"] and rows["s2"] != rows["s2-own"]
    ckpt = checkpoint.load(paths.runs_dir() / "s2" / "best.pt")
    assert ckpt["data"]["val_source"] == "lesion-grouped 15% of train" and ckpt["config"]["val_seed"] == 7
    assert "val_seed = 7" in (paths.runs_dir() / "s2" / "config.toml").read_text()
    # so an ensemble of the two seeds has rows to fit its operating point on, which neither trained on
    assert cli.invoke(app, ["ensemble", "s1", "s2", "--name", "pair"]).exit_code == 0
    fitted = cli.invoke(app, ["calibrate", "pair", "--melanoma-sensitivity", "0.5", "--json"])
    assert fitted.exit_code == 0 and json.loads(fitted.stdout)["images"] == len(rows["s1"]), fitted.output
    mixed = cli.invoke(app, ["ensemble", "s1", "s2-own", "--name", "mixed"])
    assert mixed.exit_code == 0 and "uncalibrated" in mixed.output
    refused = cli.invoke(app, ["calibrate", "mixed", "--melanoma-sensitivity", "0.5"])
    assert refused.exit_code == 2 and "validated on different rows" in refused.output, refused.output


def test_an_ensemble_of_two_architectures_predicts_explains_and_bundles_as_one(prepared_tiny, tmp_path):
    from conftest import class_image
    from hamcli.explain.maps import default_layer, explain
    from hamcli.inference.load import load_model

    for arch in ("lenet", "cnn"):
        runner.train(TrainConfig(arch=arch, name=arch, max_batches=1, **FAST))
    assert cli.invoke(app, ["ensemble", "lenet", "cnn", "--name", "two"]).exit_code == 0
    two = load_model("two")
    assert two.card.arch == "lenet x1 + cnn x1"
    image = tmp_path / "lesion.jpg"
    class_image(4, 100, (60, 45)).save(image)
    result = explain(two, image)  # each member explained at its own default layer
    layers = [default_layer(m)[0] for m in two.members]
    assert layers[0] != layers[1] and result.layer == " + ".join(layers)
    assert result.predicted == two.predict(image).code
    cam = cli.invoke(app, ["gradcam", str(image), "-m", "two", "-o", str(tmp_path / "two.png")])
    assert cam.exit_code == 0 and (tmp_path / "two.png").exists(), cam.output
    listed = cli.invoke(app, ["gradcam", "--list-layers", "-m", "two"])
    assert listed.exit_code == 0 and layers[0] in listed.stdout, listed.output
    # One file keeps each member's architecture.
    out = tmp_path / "two.pt"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "bundle_model.py"), "two", "--out", str(out),
                           "--results", str(tmp_path / "r.json"), "--bootstrap", "20"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    one = load_model(out)
    assert [m.card.arch for m in one.members] == ["lenet", "cnn"]
    np.testing.assert_allclose(one.predict(image).probabilities["nv"], two.predict(image).probabilities["nv"],
                               atol=2e-3)  # fp16 storage where it changes no top class


def test_the_same_seed_writes_the_same_history_even_while_the_machine_is_busy(prepared_tiny):
    """Nothing a run learns depends on load: precision comes from a rule, and timings live in timing.csv."""
    args = ["train", "--arch", "cnn", "--data", "tiny", "--epochs", "2", "--batch-size", "8", "--seed", "3", "-q"]
    assert cli.invoke(app, [*args, "--name", "quiet"]).exit_code == 0
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]  # both cores busy
    try:
        assert cli.invoke(app, [*args, "--name", "busy"]).exit_code == 0
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    quiet, busy = paths.runs_dir() / "quiet", paths.runs_dir() / "busy"
    assert (quiet / "history.csv").read_bytes() == (busy / "history.csv").read_bytes()
    assert "images_per_s" in (busy / "timing.csv").read_text()
    assert "images_per_s" not in (busy / "history.csv").read_text()
    assert checkpoint.load(quiet / "best.pt")["precision"] == checkpoint.load(busy / "best.pt")["precision"]


def test_deterministic_kernels_are_this_runs_choice_and_sync_bn_says_it_needs_gpus(prepared_tiny):
    run = runner.train(TrainConfig(arch="cnn", name="det", deterministic=True, max_batches=2, **FAST))
    assert checkpoint.load(run / "best.pt")["config"]["deterministic"] is True
    assert not torch.are_deterministic_algorithms_enabled()  # restored once the run is done
    assert "--sync-bn" in cli.invoke(app, ["train", "--data", "tiny", "--sync-bn", "--devices", "2",
                                           "--max-batches", "1", "--epochs", "1"]).output


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_ctrl_c_then_resume_on_cuda_matches_an_uninterrupted_run(prepared_tiny):
    cfg = TrainConfig(arch="cnn", data="tiny", epochs=3, batch_size=4, device="cuda", deterministic=True,
                      augment="strong", ema=0.9, name="whole")
    whole = checkpoint.load(runner.train(cfg) / "last.pt")["state_dict"]
    with pytest.raises(TrainingInterrupted):
        runner.train(replace(cfg, name="cut"), _StopAfter(1))
    resumed = checkpoint.load(runner.resume("cut") / "last.pt")["state_dict"]
    assert all(torch.equal(whole[k].cpu(), resumed[k].cpu()) for k in whole)


def test_compile_trains_through_torch_compile_and_saves_plain_weights(prepared_tiny):
    pytest.importorskip("torch._inductor")
    if sys.version_info >= (3, 14) or not any(map(__import__("shutil").which, ("g++", "c++", "clang++"))):
        pytest.skip("torch.compile needs a C++ compiler and a Python it supports")
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    class Start(TrainEvents):
        def start(self, info: dict) -> None:
            self.info = info

    events = Start()
    run = runner.train(TrainConfig(arch="lenet", name="comp", compile=True, max_batches=2, **FAST), events)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # the steps really ran compiled code
    assert events.info["compiled"] and any("--compile on CPU" in line for line in events.info["advice"])
    ckpt = checkpoint.load(run / "best.pt")
    assert ckpt["config"]["compile"] is True and ckpt["precision"]["compiled"] is True
    assert not any(k.startswith("_orig_mod.") for k in ckpt["state_dict"])  # the eager model's names
    out = checkpoint.build_from(ckpt)(torch.zeros(1, 3, 32, 32))
    assert torch.isfinite(out).all()


def test_compile_without_a_compiler_is_one_line_before_any_work(prepared_tiny, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CXX", raising=False)
    result = cli.invoke(app, ["train", "--arch", "lenet", "--data", "tiny", "--compile", "--device", "cpu",
                              "--name", "nocomp", "--epochs", "1"])
    assert result.exit_code == 2, result.output
    assert "--compile on CPU needs a C++ compiler" in result.output and "Traceback" not in result.output
    assert not (paths.runs_dir() / "nocomp").exists()


@pytest.mark.parametrize(("capability", "dtype"),
                         [((7, 0), "fp16"), ((7, 5), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16")])
def test_cuda_auto_precision_is_bf16_only_where_the_gpu_computes_in_it(monkeypatch, capability, dtype):
    from hamcli.models.precision import choose

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # counts emulated bf16 too
    prec = choose("resnet18", "cuda", "auto")
    assert (prec.device, prec.dtype) == ("cuda", dtype)


def test_a_run_on_the_default_prepared_dataset_records_its_name(prepared_tiny):
    run = runner.train(TrainConfig(arch="lenet", name="dflt", max_batches=1, **{**FAST, "data": None}))
    assert json.loads((run / "config.json").read_text())["data"] == "tiny"
    assert checkpoint.load(run / "best.pt")["config"]["data"] == "tiny"


def test_distillation_learns_from_a_teacher_that_never_saw_the_test_split(trained_run, prepared_tiny):
    from hamcli.training.distil import distil_loss, soft_targets

    data = __import__("hamcli.training.sampling", fromlist=["select"]).select(prepared_tiny, None, 42)
    soft, line = soft_targets("tiny-lenet", prepared_tiny, data.images, data.train_idx, data.val_idx, 2.0)
    assert torch.allclose(soft[torch.from_numpy(data.train_idx)].sum(1), torch.ones(len(data.train_idx)))
    assert (soft[torch.from_numpy(data.val_idx)] == 0).all()  # only the rows the student trains on
    assert "tiny-lenet" in line and "validation figures lean optimistic" in line  # it chose its epoch on them
    teacher = hamcli.load_model("tiny-lenet")  # softened at T = 2: softmax(logits / 2), from the raw probabilities
    raw = teacher.outputs(data.images[torch.from_numpy(data.train_idx[:3])].numpy(), raw=True).probabilities
    want = raw ** 0.5 / (raw ** 0.5).sum(1, keepdims=True)
    assert np.allclose(soft[torch.from_numpy(data.train_idx[:3])].numpy(), want, atol=1e-6)
    logits = torch.randn(4, 7)
    assert distil_loss(logits, logits.div(2).softmax(1), 2.0).abs().item() < 1e-5  # no loss when it agrees
    plain = checkpoint.load(runner.train(TrainConfig(arch="lenet", name="plain", max_batches=2, **FAST)) / "last.pt")
    run = runner.train(TrainConfig(arch="lenet", name="student", distil_from="tiny-lenet", distil_weight=0.7,
                                   max_batches=2, **FAST))
    taught = checkpoint.load(run / "last.pt")
    assert taught["config"]["distil_from"] == "tiny-lenet" and taught["config"]["distil_weight"] == 0.7
    assert any(not torch.equal(plain["state_dict"][k], taught["state_dict"][k]) for k in plain["state_dict"])


def test_distillation_refuses_a_teacher_that_saw_the_test_split_and_bad_settings(trained_run, prepared_tiny):
    with pytest.raises(UsageError, match="--distil-weight"):
        TrainConfig(arch="lenet", data="tiny", distil_from="tiny-lenet", distil_weight=0).check()
    with pytest.raises(UsageError, match="--distil-temperature"):
        TrainConfig(arch="lenet", data="tiny", distil_from="tiny-lenet", distil_temperature=float("nan")).check()
    with pytest.raises(UsageError, match="takes 150x150 images"):
        runner.train(TrainConfig(arch="lenet", name="big", distil_from="bundled", **FAST))
    ckpt = checkpoint.load(trained_run / "best.pt")  # a teacher that also saw one test image
    test_id = prepared_tiny.manifest.loc[prepared_tiny.manifest["split"] == "test", "image_id"].iloc[0]
    ckpt["data"]["seen_image_ids"] = [*ckpt["data"]["seen_image_ids"], test_id]
    torch.save(ckpt, trained_run.parent / "leaky.pt")
    with pytest.raises(UsageError, match="1 images of 'tiny''s test split"):
        runner.train(TrainConfig(arch="lenet", name="leaky", distil_from=str(trained_run.parent / "leaky.pt"),
                                 **FAST))
    result = cli.invoke(app, ["train", "--data", "tiny", "--distil-from", "no-such-run", "--epochs", "1"])
    assert result.exit_code != 0 and "no-such-run" in result.output and "Traceback" not in result.output
