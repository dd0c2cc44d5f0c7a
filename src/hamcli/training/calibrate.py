"""After training: fit the prior shift, the melanoma operating point and the temperature on the validation
rows, never on test.

The fitted `Postprocess` goes into the checkpoint with the validation figures before and after, so a
reader can see what each step bought and that the test split played no part in choosing it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from hamcli.classes import CLASS_CODES
from hamcli.evaluation.metrics import expected_calibration_error, summary, with_melanoma
from hamcli.inference.postprocess import Postprocess

TAUS = tuple(round(0.1 * i, 1) for i in range(21))  # 0 .. 2 in steps of 0.1
BIASES = tuple(round(0.05 * i, 2) for i in range(81))  # 0 .. 4 in steps of 0.05
MELANOMA = CLASS_CODES.index("mel")


class MelanomaTarget(NamedTuple):
    """A melanoma operating point as asked: the validation sensitivity to reach (0: none) and the validation
    specificity not to fall below on the way (0: no floor)."""

    sensitivity: float = 0.0
    specificity: float = 0.0

    @classmethod
    def from_config(cls, config: dict) -> MelanomaTarget:
        return cls(float(config.get("melanoma_sensitivity") or 0.0), float(config.get("melanoma_specificity") or 0.0))

    def as_options(self) -> dict:
        """The keyword arguments of `calibrate`, and the names a run's options record them under."""
        return {"melanoma_sensitivity": self.sensitivity, "melanoma_specificity": self.specificity}


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The T > 0 that minimises the negative log-likelihood of softmax(logits / T) on (logits, y)."""
    from scipy.optimize import minimize_scalar

    def nll(log_t: float) -> float:
        return float(-_log_softmax(logits / math.exp(log_t))[np.arange(len(y)), y].mean())

    result = minimize_scalar(nll, bounds=(math.log(0.05), math.log(20.0)), method="bounded")
    return float(math.exp(result.x))


def choose_tau(logits: np.ndarray, y: np.ndarray, log_prior: np.ndarray, max_accuracy_drop: float) -> float:
    """The prior shift with the best balanced accuracy whose accuracy stays within `max_accuracy_drop` of
    the unshifted model's (ties: the smaller shift)."""
    base = summary(y, logits.argmax(1))["accuracy"]
    best_tau, best = 0.0, -1.0
    for tau in TAUS:
        scores = summary(y, (logits - tau * log_prior).argmax(1))
        if scores["accuracy"] >= base - max_accuracy_drop and scores["balanced_accuracy"] > best + 1e-9:
            best_tau, best = tau, scores["balanced_accuracy"]
    return best_tau


def fit_melanoma_offset(logits: np.ndarray, y: np.ndarray, target: float, specificity: float = 0.0,
                        cls: int = MELANOMA) -> tuple[float, str | None]:
    """The offset to class `cls`'s logit for an operating point, and why it stopped short (None: it reached
    `target`). It is the smallest offset (steps of 0.05, up to 4) whose sensitivity (recall) reaches `target`
    on (logits, y). With a `specificity` floor, no offset may call more than (1 - floor) of the other rows
    `cls`: if the target lies beyond, the smallest offset giving the most sensitivity the floor allows
    ("specificity floor"; 0 and "below the floor before any offset" where the class is already there). If
    no offset reaches the target, the smallest giving the most sensitivity ("no offset reaches it"); an
    offset that buys no sensitivity is never added."""
    positive = y == cls
    if not positive.any():
        return 0.0, "no example of the class"
    others = ~positive
    chosen, best = 0.0, -1.0
    for bias in BIASES:
        shifted = logits.copy()
        shifted[:, cls] += bias
        called = shifted.argmax(1) == cls
        if specificity > 0 and others.any() and (~called[others]).mean() < specificity - 1e-9:
            return chosen, "specificity floor" if bias > 0 else "below the floor before any offset"
        sensitivity = called[positive].mean()
        if sensitivity > best + 1e-12:
            chosen, best = bias, sensitivity
        if sensitivity >= target - 1e-9:
            return chosen, None
    return chosen, "no offset reaches it"


def choose_bias(logits: np.ndarray, y: np.ndarray, target: float, cls: int = MELANOMA,
                specificity: float = 0.0) -> float:
    """`fit_melanoma_offset`'s offset alone: "sensitivity 0.65, but not below specificity 0.90"."""
    return fit_melanoma_offset(logits, y, target, specificity, cls)[0]


def calibrate(logits: np.ndarray, y: np.ndarray, train_counts: list[int], prior_shift: str | float,
              max_accuracy_drop: float = 0.02, melanoma_sensitivity: float = 0.0,
              melanoma_specificity: float = 0.0) -> tuple[Postprocess, dict]:
    """Fit on validation logits; returns the postprocessing and a record of its effect on validation.

    In order: the prior shift (`none`, a number, or `auto`: the best balanced accuracy within
    `max_accuracy_drop`), then the melanoma operating point (`melanoma_sensitivity`, never below
    `melanoma_specificity`; a floor alone asks for the most sensitive point above it), then the temperature
    on the result.
    """
    counts = np.asarray(train_counts, dtype=np.float64).clip(min=1)
    log_prior = np.log(counts / counts.sum())
    if prior_shift == "auto":
        tau = choose_tau(logits, y, log_prior, max_accuracy_drop)
    else:
        tau = 0.0 if prior_shift == "none" else float(prior_shift)
    shifted = logits - tau * log_prior
    bias, stopped_by = np.zeros(logits.shape[1]), None
    if melanoma_sensitivity > 0 or melanoma_specificity > 0:
        bias[MELANOMA], stopped_by = fit_melanoma_offset(shifted, y, melanoma_sensitivity or 1.0,
                                                         melanoma_specificity)
        shifted = shifted + bias
    temperature = fit_temperature(shifted, y)
    post = Postprocess(temperature, tau, tuple(float(v) for v in log_prior),
                       tuple(float(v) for v in bias) if bias.any() else ())
    before, after = np.exp(_log_softmax(logits)), np.exp(_log_softmax(shifted / temperature))
    record = {"fitted_on": "validation", "images": int(len(y)), "temperature": round(temperature, 4), "tau": tau,
              "prior_shift": prior_shift, "max_accuracy_drop": max_accuracy_drop,
              "melanoma_sensitivity_target": melanoma_sensitivity, "melanoma_specificity_floor": melanoma_specificity,
              "melanoma_bias": float(bias[MELANOMA]), "melanoma_stopped_by": stopped_by,
              "before": {**with_melanoma(y, logits.argmax(1)), "ece": expected_calibration_error(y, before)},
              "after": {**with_melanoma(y, shifted.argmax(1)), "ece": expected_calibration_error(y, after)}}
    return post, record
