"""Temperature and prior shift: fitted on validation, recorded in the checkpoint, applied everywhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hamcli
import hamcli.models.checkpoint as checkpoint
from hamcli.data.preprocess import to_float
from hamcli.inference.postprocess import Postprocess
from hamcli.training.calibrate import (
    BIASES,
    MELANOMA,
    calibrate,
    choose_bias,
    choose_tau,
    fit_melanoma_offset,
    fit_temperature,
)


def _sampled(n: int, temperature: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose labels are drawn from softmax(logits / temperature): that T is the right answer."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (n, 7))
    p = np.exp(logits / temperature)
    p /= p.sum(1, keepdims=True)
    y = np.array([rng.choice(7, p=row) for row in p])
    return logits, y


def test_temperature_recovers_the_one_the_labels_were_drawn_with():
    for true_t in (0.5, 2.0):
        logits, y = _sampled(4000, true_t)
        assert fit_temperature(logits, y) == pytest.approx(true_t, rel=0.1)


def test_prior_shift_trades_accuracy_for_rare_classes_within_the_limit():
    rng = np.random.default_rng(1)
    prior = np.array([0.03, 0.05, 0.11, 0.01, 0.11, 0.67, 0.02])
    y = rng.choice(7, size=3000, p=prior)
    # a majority-biased model: the true class scores +2.5, nv always +1
    logits = rng.normal(0, 1, (3000, 7))
    logits[np.arange(3000), y] += 2.5
    logits[:, 5] += 1.0
    log_prior = np.log(prior)
    tau = choose_tau(logits, y, log_prior, max_accuracy_drop=0.02)
    assert tau == pytest.approx(0.1)  # 0.2 would gain more balanced accuracy but cost 2.6 points of accuracy
    from hamcli.evaluation.metrics import summary

    before, after = summary(y, logits.argmax(1)), summary(y, (logits - tau * log_prior).argmax(1))
    assert after["balanced_accuracy"] > before["balanced_accuracy"]
    assert after["accuracy"] >= before["accuracy"] - 0.02
    assert choose_tau(logits, y, log_prior, max_accuracy_drop=0.0) <= tau
    post, record = calibrate(logits, y, list((prior * 1000).astype(int)), "auto")
    assert post.tau == tau and record["after"]["balanced_accuracy"] == pytest.approx(after["balanced_accuracy"])
    assert record["fitted_on"] == "validation"


def test_melanoma_operating_point_is_the_smallest_offset_reaching_the_target():
    rng = np.random.default_rng(2)
    y = rng.choice(7, size=2000, p=[0.03, 0.05, 0.11, 0.01, 0.11, 0.67, 0.02])
    logits = rng.normal(0, 1, (2000, 7))
    logits[np.arange(2000), y] += 1.5
    logits[:, 5] += 1.0  # melanoma is often called a naevus
    mel = y == MELANOMA

    def sensitivity(z: np.ndarray) -> float:
        return float((z.argmax(1)[mel] == MELANOMA).mean())

    bias = choose_bias(logits, y, 0.8)
    shifted = logits.copy()
    shifted[:, MELANOMA] += bias
    assert sensitivity(logits) < 0.8 <= sensitivity(shifted)
    smaller = logits.copy()
    smaller[:, MELANOMA] += bias - 0.05
    assert sensitivity(smaller) < 0.8  # and no smaller step reaches it
    post, record = calibrate(logits, y, [30, 50, 110, 10, 110, 670, 20], 0.0, melanoma_sensitivity=0.8)
    assert post.bias[MELANOMA] == bias and record["melanoma_bias"] == bias
    assert record["after"]["accuracy"] < record["before"]["accuracy"]  # the price, recorded
    assert Postprocess.from_dict(post.as_dict()) == post
    probs = np.exp(post.apply(logits))
    assert sensitivity(probs) >= 0.8  # the temperature never moves the decision
    assert choose_bias(logits, np.zeros(10, dtype=int), 0.8) == 0.0  # no melanoma: nothing to set


def test_a_specificity_floor_stops_the_melanoma_point_short_and_alone_asks_for_the_most_sensitive_point():
    rng = np.random.default_rng(3)
    y = rng.choice(7, size=2000, p=[0.03, 0.05, 0.11, 0.01, 0.11, 0.67, 0.02])
    logits = rng.normal(0, 1, (2000, 7))
    logits[np.arange(2000), y] += 1.5
    logits[:, 5] += 1.0
    mel = y == MELANOMA

    def point(bias: float) -> tuple[float, float]:
        called = (logits + np.eye(7)[MELANOMA] * bias).argmax(1) == MELANOMA
        return float(called[mel].mean()), float((~called[~mel]).mean())

    free = choose_bias(logits, y, 0.9)
    assert point(free)[1] < 0.93  # reaching 0.9 sensitivity costs specificity below the floor used next
    floored, why = fit_melanoma_offset(logits, y, 0.9, specificity=0.93)
    assert 0 < floored < free and why == "specificity floor"
    allowed = [b for b in BIASES if point(b)[1] >= 0.93 and all(point(c)[1] >= 0.93 for c in BIASES if c < b)]
    most = max(point(b)[0] for b in allowed)
    assert floored == min(b for b in allowed if point(b)[0] == most)  # the least offset giving the most allowed
    assert fit_melanoma_offset(logits, y, 0.9, specificity=0.999) == (0.0, "below the floor before any offset")
    assert choose_bias(logits, y, 0.5, specificity=0.5) == choose_bias(logits, y, 0.5)  # a floor never met adds nothing
    assert fit_melanoma_offset(logits, y, 0.5)[1] is None  # reached
    post, record = calibrate(logits, y, [30, 50, 110, 10, 110, 670, 20], 0.0, melanoma_specificity=0.93)
    assert post.bias[MELANOMA] == floored == record["melanoma_bias"]  # alone: sensitivity as high as the floor allows
    assert record["melanoma_specificity_floor"] == 0.93 and record["melanoma_stopped_by"] == "specificity floor"
    assert record["after"]["melanoma_specificity"] == pytest.approx(point(floored)[1])
    assert record["after"]["melanoma_sensitivity"] == pytest.approx(point(floored)[0])


def test_an_offset_that_buys_no_sensitivity_is_not_added():
    # Two melanomas the offset can never reach (another class far ahead): the target 1.0 is out of reach.
    logits = np.zeros((6, 7))
    y = np.array([MELANOMA, MELANOMA, MELANOMA, 5, 5, 5])
    logits[:, 5] = [0.12, 9.0, 9.0, 1.0, 1.0, 1.0]  # the first melanoma needs +0.15, the others +9
    bias, why = fit_melanoma_offset(logits, y, 1.0)
    assert bias == 0.15 and why == "no offset reaches it"  # not +4: nothing past 0.15 calls another melanoma


def test_postprocess_is_applied_the_same_to_numpy_and_torch_and_refuses_bad_records():
    post = Postprocess(2.0, 0.5, tuple(np.log(np.full(7, 1 / 7) + np.arange(7) * 0.01)))
    z = np.random.default_rng(0).normal(size=(3, 7))
    assert np.allclose(post.apply(z), post.apply(torch.from_numpy(z)).numpy())
    assert np.allclose(post.apply(z), (z - 0.5 * np.asarray(post.log_prior)) / 2.0)
    assert Postprocess.from_dict(post.as_dict()) == post
    from hamcli.errors import ModelError

    biased = Postprocess(1.5, 0.0, (), (0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0))
    assert np.allclose(biased.apply(z), biased.apply(torch.from_numpy(z)).numpy())
    assert np.allclose(biased.apply(z)[:, 4], (z[:, 4] + 1.0) / 1.5)
    for bad in ({"temperature": 0}, {"temperature": float("nan")}, {"tau": 1.0, "log_prior": [0.0]},
                {"bias": [1.0, 2.0]}, {"bias": [float("inf")] * 7}):
        with pytest.raises(ModelError, match="postprocess"):
            Postprocess.from_dict(bad)


def test_a_run_records_its_calibration_and_predict_applies_it(prepared_tiny, tmp_path):
    from conftest import class_image
    from hamcli.training.config import TrainConfig
    from hamcli.training.runner import train

    run = train(TrainConfig(arch="lenet", data="tiny", epochs=2, batch_size=8, precision="fp32", name="cal",
                            prior_shift="0.7"))
    ckpt = checkpoint.load(run / "best.pt")
    assert ckpt["postprocess"]["tau"] == 0.7 and ckpt["postprocess"]["temperature"] > 0
    assert ckpt["calibration"]["images"] == (prepared_tiny.manifest["split"] == "val").sum()
    assert "ece" in ckpt["calibration"]["after"]
    model = hamcli.load_model("cal")
    image = tmp_path / "x.jpg"
    class_image(2, 5, (40, 30)).save(image)
    x = to_float(torch.from_numpy(model.decode([image])[0]), model.mean, model.std)
    with torch.no_grad():
        expected = torch.softmax(Postprocess.from_dict(ckpt["postprocess"]).apply(model.model(x)), 1).numpy()[0]
    got = model.predict(image).probabilities
    assert np.allclose([got[c] for c in model.classes], expected, atol=1e-5)


def test_calibrate_can_change_the_prior_shift_and_records_it(trained_run):
    import json as _json

    from typer.testing import CliRunner as _Runner

    from hamcli.cli.app import app as _app

    result = _Runner().invoke(_app, ["calibrate", "tiny-lenet", "--prior-shift", "auto", "--json"])
    assert result.exit_code == 0, result.output
    record = _json.loads(result.stdout)
    assert record["prior_shift"] == "auto" and 0 <= record["tau"] <= 2
    assert _json.loads((trained_run / "config.json").read_text())["prior_shift"] == "auto"
    bad = _Runner().invoke(_app, ["calibrate", "tiny-lenet", "--prior-shift", "sideways"])
    assert bad.exit_code == 2 and "--prior-shift" in bad.output


def test_calibrate_says_when_the_melanoma_point_fell_short(capsys):
    from hamcli.cli.train import _say_where_the_point_stopped

    def said(why: str, target: float, floor: float) -> str:
        _say_where_the_point_stopped({"melanoma_sensitivity_target": target, "melanoma_specificity_floor": floor,
                                      "melanoma_stopped_by": why,
                                      "after": {"melanoma_sensitivity": 0.5, "melanoma_specificity": 0.8}})
        return capsys.readouterr().err

    assert "stopped the offset at melanoma sensitivity 0.500, short of 0.65" in said("specificity floor", 0.65, 0.9)
    assert said("specificity floor", 0, 0.9) == ""  # a floor alone is meant to stop it
    assert "already below the floor 0.9: no offset added" in said("below the floor before any offset", 0.65, 0.9)
    assert "no offset reaches melanoma sensitivity 0.99" in said("no offset reaches it", 0.99, 0)
    assert said(None, 0.65, 0.9) == ""
    assert "no melanoma among those rows" in said("no example of the class", 0.65, 0)


def test_train_says_what_the_postprocessing_did_on_validation(capsys):
    from hamcli.cli.train import _say_postprocessing

    figures = {"accuracy": 0.83, "balanced_accuracy": 0.72, "melanoma_sensitivity": 0.48}
    _say_postprocessing({"tau": 0.1, "melanoma_bias": 0.7, "images": 1503, "before": figures,
                         "after": {**figures, "accuracy": 0.79, "melanoma_sensitivity": 0.66},
                         "melanoma_sensitivity_target": 0.65, "melanoma_stopped_by": None})
    said = capsys.readouterr().err
    assert "prior shift tau 0.1 and melanoma offset +0.70 (melanoma sensitivity 0.480 -> 0.660)" in said
    assert "accuracy 0.830 -> 0.790" in said and "1503 validation images" in said
    _say_postprocessing({"tau": 0.0, "melanoma_bias": 0.0, "images": 10, "before": figures, "after": figures})
    assert capsys.readouterr().err == ""  # nothing done, nothing said
    _say_postprocessing({"tau": 0.2, "inherited": False})  # a refit's: fitted later (`calibrate --folds`)
    assert capsys.readouterr().err == ""
