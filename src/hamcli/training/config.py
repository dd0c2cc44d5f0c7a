"""Every training option, as one frozen dataclass with its allowed values and its checks."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING

from hamcli.errors import UsageError
from hamcli.models.precision import DEVICES, PRECISIONS, resolve_device
from hamcli.models.zoo import get_spec
from hamcli.runs import check_run_name
from hamcli.slots import check_name

if TYPE_CHECKING:
    from hamcli.data.cache import PreparedDataset

MONITORS = {"balanced_accuracy": 1.0, "macro_f1": 1.0, "loss": -1.0}  # +1: higher is better
OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("cosine", "onecycle", "plateau", "none")
CLASS_WEIGHTS = ("none", "balanced", "sqrt")
SAMPLERS = ("none", "weighted")
AUGMENTS = ("none", "light", "strong")


class TrainEvents:
    """Progress hooks; the CLI overrides them to draw, the library default is silent."""

    def start(self, info: dict) -> None: ...
    def epoch_start(self, epoch: int, epochs: int, batches: int) -> None: ...
    def batch(self, done: int, loss: float, images_per_s: float) -> None: ...
    def epoch_end(self, record: dict) -> None: ...
    def shard(self, epoch: int, rank: int, rows: list[int]) -> None: ...


@dataclass(frozen=True)
class TrainConfig:
    arch: str = "lenet"
    data: str | None = None
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    early_stop: int = 0
    monitor: str = "balanced_accuracy"
    class_weight: str = "none"
    sampler: str = "none"
    label_smoothing: float = 0.0
    augment: str = "light"
    fold: int | None = None
    seed: int = 42
    val_seed: int | None = None  # the validation carve-out's seed (None: seed), so seeds can share val rows
    pretrained: bool = False
    weights: str | None = None
    freeze_backbone: bool = False
    unfreeze_after: int | None = None
    freeze_early: int = 0  # backbone modules (stem first) kept frozen for the whole run
    backbone_lr_mult: float = 1.0  # the pretrained backbone learns at lr x this; the new head at lr
    ema: float = 0.0  # decay of an exponential moving average of the weights (0: off; 0.999 typical)
    prior_shift: str = "none"  # none, auto (chosen on validation) or a number: logit adjustment towards rare classes
    melanoma_sensitivity: float = 0.0  # operating point: raise melanoma's logit until validation recall reaches it
    melanoma_specificity: float = 0.0  # ...never below this validation specificity (alone: the most sensitive point)
    refit: str | None = None  # a finished run: train on its training and validation rows, keep the last epoch
    refit_fold: str | None = None  # "k/K": a refit leaving out fold k of K, for the refit's out-of-fold calibration
    device: str = "auto"
    precision: str = "auto"
    name: str | None = None
    overwrite: bool = False  # replace an existing run of that name, once the new one has finished
    max_batches: int | None = None  # cap on batches per epoch, for smoke runs
    limit: int | None = None  # train on about this many images (and validate on as many in proportion): a quick trial
    sync_bn: bool = False  # several GPUs: batch-norm statistics over the whole global batch (SyncBatchNorm)
    deterministic: bool = False  # only deterministic kernels (slower on GPUs): the same weights on every rerun
    compile: bool = False  # torch.compile the training steps' network (opt-in: pays only for long runs)
    distil_from: str | None = None  # a teacher model: learn from its softened probabilities too (training/distil.py)
    distil_weight: float = 0.5  # the teacher's share of the loss
    distil_temperature: float = 2.0  # how much the teacher's probabilities are softened

    def check(self) -> None:
        get_spec(self.arch)
        for value, allowed, option in ((self.optimizer, OPTIMIZERS, "--optimizer"),
                                       (self.schedule, SCHEDULES, "--schedule"),
                                       (self.monitor, tuple(MONITORS), "--monitor"),
                                       (self.class_weight, CLASS_WEIGHTS, "--class-weight"),
                                       (self.sampler, SAMPLERS, "--sampler"),
                                       (self.augment, AUGMENTS, "--augment"),
                                       (self.device, DEVICES, "--device"),
                                       (self.precision, PRECISIONS, "--precision")):
            if value not in allowed:
                raise UsageError(f"{option} {value!r}: choose one of {', '.join(allowed)}")
        from hamcli.data.prepare import check_seed

        check_seed(self.seed, "--seed")
        if self.val_seed is not None:
            check_seed(self.val_seed, "--val-seed")
        for option, value in (("--epochs", self.epochs), ("--batch-size", self.batch_size)):
            if value < 1:
                raise UsageError(f"{option} {value}: must be at least 1")
        for option, value in (("--lr", self.lr), ("--backbone-lr-mult", self.backbone_lr_mult)):
            if not (math.isfinite(value) and value > 0):
                raise UsageError(f"{option} {value}: must be a positive number")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise UsageError(f"--weight-decay {self.weight_decay}: must be zero or positive")
        if not 0 <= self.label_smoothing < 1:
            raise UsageError(f"--label-smoothing {self.label_smoothing}: must be in [0, 1)")
        if not 0 <= self.ema < 1:
            raise UsageError(f"--ema {self.ema}: a decay in [0, 1), e.g. 0.999 (0 turns it off)")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise UsageError(f"--warmup-epochs {self.warmup_epochs}: must be at least 0 and below --epochs")
        if self.refit and (self.early_stop or self.schedule == "plateau" or self.fold is not None):
            raise UsageError("--refit trains without validation rows: it cannot use --early-stop, --schedule "
                             "plateau or --fold")
        if self.refit_fold is not None:
            from hamcli.training.sampling import refit_folds

            if not self.refit:
                raise UsageError("refit_fold is for the out-of-fold models of a refit (`hamcli calibrate REFIT "
                                 "--folds K`), not for a run of its own")
            refit_folds(self.refit_fold)
        if self.warmup_epochs and self.schedule == "plateau":
            raise UsageError("--warmup-epochs works with --schedule cosine, onecycle or none, not plateau")
        if self.prior_shift not in ("none", "auto"):
            try:
                shift = float(self.prior_shift)
            except ValueError:
                shift = -1.0
            if not 0 <= shift <= 5:
                raise UsageError(f"--prior-shift {self.prior_shift!r}: none, auto, or a number from 0 to 5")
        if not 0 <= self.melanoma_sensitivity < 1:
            raise UsageError(f"--melanoma-sensitivity {self.melanoma_sensitivity}: a fraction in [0, 1), "
                             "e.g. 0.65 (0 keeps the argmax)")
        if not 0 <= self.melanoma_specificity < 1:
            raise UsageError(f"--melanoma-specificity {self.melanoma_specificity}: a fraction in [0, 1), "
                             "e.g. 0.9 (0: no floor)")
        if self.freeze_early < 0 or self.early_stop < 0:
            raise UsageError("--freeze-early and --early-stop must be zero or positive")
        if self.unfreeze_after is not None and (self.unfreeze_after < 1 or not self.freeze_backbone):
            raise UsageError("--unfreeze-after N needs --freeze-backbone and N >= 1")
        if self.limit is not None and self.limit < 1:
            raise UsageError(f"--limit {self.limit}: a number of training images, at least 1 (leave it out for all)")
        if self.max_batches is not None and self.max_batches < 1:
            raise UsageError(f"--max-batches {self.max_batches}: must be at least 1")
        if self.compile:
            check_compiler(resolve_device(self.device))
        if not (0 < self.distil_weight <= 1):
            raise UsageError(f"--distil-weight {self.distil_weight}: the teacher's share of the loss, in (0, 1]")
        if not (math.isfinite(self.distil_temperature) and 0.5 <= self.distil_temperature <= 20):
            raise UsageError(f"--distil-temperature {self.distil_temperature}: a softening from 0.5 to 20 (2-4 is "
                             "usual)")
        if self.name is not None:
            check_name(self.name)
            check_run_name(self.name)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """A config from a run's record; keys this hamcli does not know are refused, naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"unknown training option(s): {', '.join(unknown)}")
        return cls(**data)


def run_config_toml(cfg: TrainConfig, prepared: PreparedDataset) -> str:
    """The run's resolved options as TOML that `--config` takes back: [prepare] as its data was prepared
    (to re-create it), [train] as it was trained (the name left out, so a repeat gets a name of its own)."""
    from hamcli.configfile import dumps

    summary = prepared.summary
    prep = {"source": summary.get("source"), **summary.get("config", {})}
    prep.pop("workers", None)
    train = {k: v for k, v in asdict(cfg).items() if k not in ("name", "overwrite")}
    return dumps({"prepare": prep, "train": train},
                 comment=f"hamcli {prepared.summary.get('hamcli_version', '')} run options; repeat with "
                         "`hamcli train --config config.toml` (prepare the data again with `hamcli prepare "
                         "--config config.toml --name NAME`)")


def check_compiler(device: str) -> None:
    """`--compile` needs what torch.compile's inductor generates code with: a C++ compiler on CPU, Triton on a
    GPU. Said before any work, in one line, rather than as a compiler's traceback in the first step."""
    import importlib.util
    import os
    import shutil

    if device.startswith("cuda"):
        if importlib.util.find_spec("triton") is None:
            raise UsageError("--compile on a GPU needs Triton (pip install triton); or train without --compile")
    elif not any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "c++", "clang++")):
        raise UsageError("--compile on CPU needs a C++ compiler (g++ or clang++ on PATH, or CXX); or train "
                         "without --compile")
