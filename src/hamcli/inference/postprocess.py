"""What happens to a model's logits before they become probabilities: prior shift, operating point, temperature.

Both are fitted on the run's validation rows after training (`hamcli.training.calibrate`), recorded in
the checkpoint, and applied by every command that predicts, so evaluate, predict and gradcam agree.

- Temperature scaling (Guo et al. 2017) divides the logits by T: the top class never changes, the
  probabilities become honest (lower expected calibration error).
- Prior shift (logit adjustment, Menon et al. 2021) subtracts tau x log(training class frequency):
  it moves the decision towards rare classes, trading some accuracy for balanced accuracy and
  sensitivity to melanoma. tau = 0 leaves the decisions as trained.
- An operating point adds a fixed amount to one class's logit (in practice melanoma's), chosen as the
  smallest that reaches a wanted sensitivity on validation: the missed-melanoma rate is the error a
  reader of the output cares about most, and it is set here explicitly rather than left to the argmax.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hamcli.errors import ModelError

TEMPERATURE = (0.01, 100.0)
MAX_TAU = 10.0
MAX_BIAS = 20.0


@dataclass(frozen=True)
class Postprocess:
    temperature: float = 1.0
    tau: float = 0.0
    log_prior: tuple[float, ...] = field(default_factory=tuple)  # log of the training class frequencies
    bias: tuple[float, ...] = field(default_factory=tuple)  # per-class logit offsets: the operating point

    @property
    def identity(self) -> bool:
        return self.temperature == 1.0 and self.tau == 0.0 and not any(self.bias)

    def shift(self) -> np.ndarray | float:
        """What is subtracted from the logits before the temperature: tau x log prior - bias."""
        shift = self.tau * np.asarray(self.log_prior, dtype=np.float64) if self.tau else 0.0
        return shift - np.asarray(self.bias, dtype=np.float64) if any(self.bias) else shift

    def apply(self, logits):  # noqa: ANN001, ANN201 - a torch tensor or a numpy array, (N, classes)
        """Adjusted logits: (logits - tau * log prior + bias) / T."""
        if self.identity:
            return logits
        shift = self.shift()
        if not isinstance(logits, np.ndarray) and not isinstance(shift, float):
            import torch

            shift = torch.as_tensor(shift, dtype=logits.dtype, device=logits.device)
        return (logits - shift) / self.temperature

    def scores(self, logits):  # noqa: ANN001, ANN201 - as `apply`
        """The logits divided by the temperature alone, without the decision offsets (prior shift, operating
        point): what ranking metrics such as AUC are computed from, so that they do not move with a threshold."""
        return logits if self.temperature == 1.0 else logits / self.temperature

    def as_dict(self) -> dict:
        return {**asdict(self), "log_prior": list(self.log_prior), "bias": list(self.bias)}

    @classmethod
    def from_dict(cls, data: dict | None, where: Path | str = "checkpoint", classes: int = 7) -> Postprocess:
        if not data:
            return cls()
        try:
            post = cls(float(data.get("temperature", 1.0)), float(data.get("tau", 0.0)),
                       tuple(float(v) for v in data.get("log_prior", ())),
                       tuple(float(v) for v in data.get("bias", ())))
        except (TypeError, ValueError):
            raise ModelError(f"{where}: its postprocess record is malformed; the file is damaged or edited") from None
        problem = post.problem(classes)
        if problem:
            raise ModelError(f"{where}: its postprocess record is out of range ({problem}); the file is damaged "
                             "or edited")
        return post

    def problem(self, classes: int) -> str | None:
        """What is out of range, if anything. The ranges are far wider than any fit gives (temperatures 0.05-20,
        prior shifts 0-5, offsets 0-4), and narrow enough that no value can overflow a probability."""
        values = [self.temperature, self.tau, *self.log_prior, *self.bias]
        if not all(math.isfinite(v) for v in values):
            return "a value is not a finite number"
        if not TEMPERATURE[0] <= self.temperature <= TEMPERATURE[1]:
            return f"temperature {self.temperature:g} outside {TEMPERATURE[0]:g}-{TEMPERATURE[1]:g}"
        if not 0 <= self.tau <= MAX_TAU:
            return f"prior shift tau {self.tau:g} outside 0-{MAX_TAU:g}"
        if self.tau and (len(self.log_prior) != classes or not all(-50 <= v <= 0 for v in self.log_prior)):
            return f"the log prior is not {classes} log frequencies"
        if self.bias and (len(self.bias) != classes or max(abs(b) for b in self.bias) > MAX_BIAS):
            return f"the offsets are not {classes} numbers within +-{MAX_BIAS:g}"
        return None
