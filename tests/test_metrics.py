"""Metrics against small cases checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

import hamcli.evaluation.metrics as metrics
from hamcli.classes import CLASS_INDEX

MEL, NV, BCC = CLASS_INDEX["mel"], CLASS_INDEX["nv"], CLASS_INDEX["bcc"]


def onehot_probs(pred: list[int], confidence: float = 0.8) -> np.ndarray:
    probs = np.full((len(pred), 7), (1 - confidence) / 6)
    probs[np.arange(len(pred)), pred] = confidence
    return probs


def test_hand_checked_report():
    y_true = np.array([MEL, MEL, NV, NV, NV, BCC])
    y_pred = [MEL, NV, NV, NV, MEL, BCC]
    r = metrics.full_report(y_true, onehot_probs(y_pred), train_counts=[1, 1, 1, 1, 1, 10, 1])
    assert r["accuracy"] == pytest.approx(4 / 6)
    # recalls: mel 1/2, nv 2/3, bcc 1
    assert r["balanced_accuracy"] == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    assert r["melanoma_sensitivity"] == pytest.approx(0.5)
    assert r["melanoma_specificity"] == pytest.approx(3 / 4)  # 4 non-mel, one called mel
    assert r["per_class"]["mel"]["precision"] == pytest.approx(0.5)
    assert r["per_class"]["nv"]["f1"] == pytest.approx(2 / 3)
    assert r["per_class"]["df"]["support"] == 0
    assert r["confusion_matrix"][MEL][NV] == 1 and r["confusion_matrix"][NV][MEL] == 1
    assert r["baseline"]["class"] == "nv" and r["baseline"]["accuracy"] == pytest.approx(3 / 6)
    # macro F1 over the classes present: mel 0.5, nv 2/3, bcc 1
    assert r["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 1) / 3)


def test_auc_perfect_and_ece():
    y_true = np.array([MEL, MEL, NV, NV])
    probs = onehot_probs([MEL, MEL, NV, NV], confidence=0.8)
    r = metrics.full_report(y_true, probs)
    assert r["macro_roc_auc"] == pytest.approx(1.0)
    assert r["ece"] == pytest.approx(0.2)  # always 80% sure, always right
    probs_wrong = onehot_probs([MEL, NV, NV, MEL], confidence=0.8)  # half right at 80% confidence
    assert metrics.expected_calibration_error(y_true, probs_wrong) == pytest.approx(0.3)


def test_bootstrap_resamples_whole_lesions():
    y_true = np.array([MEL, NV, NV, MEL, NV, BCC])
    probs = onehot_probs([MEL, NV, MEL, NV, NV, BCC])
    one_lesion = np.array(["L"] * 6)
    ci = metrics.bootstrap_ci(y_true, probs, one_lesion, n=50)
    acc = metrics.summary(y_true, probs.argmax(1))["accuracy"]
    assert ci["accuracy"] == pytest.approx((acc, acc))  # one group: every resample is the whole set
    spread = metrics.bootstrap_ci(y_true, probs, np.arange(6).astype(str), n=300)
    lo, hi = spread["accuracy"]
    assert lo < acc < hi
