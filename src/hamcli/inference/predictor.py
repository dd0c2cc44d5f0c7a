"""Loading a trained model for inference, and predicting images in batches.

    >>> import hamcli
    >>> model = hamcli.load_model()            # the latest run (else the bundled model); or a run, .pt or "bundled"
    >>> model.predict("lesion.jpg").code
    'nv'
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

import hamcli.models.checkpoint as checkpoint
from hamcli.classes import CLASS_NAMES
from hamcli.data.preprocess import ImageReadError, Upload, decode_all
from hamcli.errors import ModelError, UsageError
from hamcli.inference.postprocess import Postprocess
from hamcli.models.precision import Precision, describe
from hamcli.runs import resolve_checkpoint

if TYPE_CHECKING:
    import torch
    from PIL import Image

    ImageInput = str | Path | Image.Image


@dataclass(frozen=True)
class Prediction:
    source: str
    code: str
    probability: float
    probabilities: dict[str, float]
    top_k: list[tuple[str, float]] = field(default_factory=list)
    precision: str = "fp32"

    @property
    def name(self) -> str:
        return CLASS_NAMES[self.code]

    def as_dict(self) -> dict:
        return {"path": self.source, "code": self.code, "name": self.name, "probability": self.probability,
                "top_k": [{"code": c, "probability": p} for c, p in self.top_k],
                "probabilities": self.probabilities, "precision": self.precision}


@dataclass(frozen=True)
class Outputs:
    """What a model gives for a batch: `probabilities`, after its whole postprocessing (what predict
    reports and decides on), and `scores`, before its decision offsets (prior shift, operating point) but
    after its temperature, for ranking metrics such as AUC, which must not move with a threshold."""

    probabilities: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class Failure:
    source: str
    reason: str


def read_checkpoint(ref: str | Path | None) -> tuple[dict, Path]:
    """The checkpoint `ref` names, read and checked, and its path; freed tensor memory is kept for the model."""
    from hamcli.models.precision import keep_freed_memory

    keep_freed_memory()
    path = resolve_checkpoint(ref)
    return checkpoint.load(path), path


class Predictor:
    """A model with its recorded preprocessing; `predict` takes paths, PIL images or lists of them.

    Every batch size runs the same numerics (`hamcli.models.precision.inference`: fp32 with channels-last on
    CPU unless bf16 was asked for, batch norm folded), so an image gets the same probabilities alone, in a
    batch of any size, from a path, a PIL image or an upload.
    """

    def __init__(self, model: torch.nn.Module, card: checkpoint.CheckpointInfo, ckpt: dict, prec: Precision) -> None:
        import torch

        from hamcli.models.fold import fold_batchnorm

        model = model.to(prec.device).eval()
        fold_batchnorm(model)
        self.model = model.to(memory_format=prec.memory_format)
        self.card = card
        self.ckpt_meta = {k: v for k, v in ckpt.items() if k not in ("state_dict", "optimizer", "scheduler",
                                                                     "generator", "torch_rng")}
        self.prec = prec
        self.mean = torch.tensor(card.mean)
        self.std = torch.tensor(card.std)
        self.post = Postprocess.from_dict(ckpt.get("postprocess"), card.path, len(card.classes))
        self.probe()

    @classmethod
    def load(cls, ref: str | Path | None = None, device: str = "auto", precision: str = "fp32") -> Predictor:
        ckpt, path = read_checkpoint(ref)
        if "members" in ckpt:
            raise ModelError(f"{path}: an ensemble of {len(ckpt['members'])} models; load it with "
                             "hamcli.load_model")
        return cls.from_checkpoint(ckpt, path, device, precision)

    @classmethod
    def from_checkpoint(cls, ckpt: dict, path: Path, device: str = "auto", precision: str = "fp32") -> Predictor:
        """A Predictor from a checkpoint already read (and checked) by `hamcli.models.checkpoint.load`."""
        from hamcli.models.precision import inference

        card = checkpoint.CheckpointInfo.from_checkpoint(ckpt, path)
        return cls(checkpoint.build_from(ckpt, path), card, ckpt, inference(device, precision))

    @property
    def precision(self) -> str:
        """How this model computes, as recorded in every output row: `fp32 + channels-last`, say."""
        return describe(self.prec)

    def probe(self) -> None:
        """One forward pass on a fixed input: a model whose output is not a probability vector (weights or
        postprocessing edited, damaged or overflowing) is refused here, before it answers anyone."""
        h, w = self.input_size
        ramp = np.linspace(0, 255, h * w * 3, dtype=np.float32).reshape(1, h, w, 3).astype(np.uint8)
        probs = self.outputs(ramp).probabilities
        if probs.shape != (1, len(self.classes)) or not np.isfinite(probs).all() or \
                abs(float(probs.sum()) - 1.0) > 1e-3 or (probs < 0).any():
            raise ModelError(f"{self.card.path}: a test image gives {np.round(probs, 3).tolist()}, not "
                             f"{len(self.classes)} probabilities that sum to 1; the file is damaged or edited")

    @property
    def classes(self) -> tuple[str, ...]:
        return self.card.classes

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the model input."""
        return self.card.input_size

    @property
    def preprocess(self):  # noqa: ANN201 - a hamcli.data.preprocess.Preprocess
        return self.card.preprocess

    def decode(self, items: Sequence[ImageInput], workers: int = 0) -> tuple[np.ndarray, list[int], list[Failure]]:
        """Decode with the checkpoint's preprocessing; returns (array, indices decoded, failures)."""
        h, w = self.input_size
        out = np.empty((len(items), h, w, 3), dtype=np.uint8)
        failed = decode_all(items, (h, w), out, workers)
        ok = [i for i in range(len(items)) if i not in failed]
        return out[ok], ok, [Failure(str(items[i]), reason) for i, reason in sorted(failed.items())]

    def outputs(self, images: np.ndarray, batch_size: int = 64, tta: bool = False, raw: bool = False) -> Outputs:
        """Probabilities and ranking scores (`Outputs`) for (N, H, W, 3) uint8 images already preprocessed;
        `raw`: the network's own softmax, without the postprocessing (as an ensemble fitted on it takes it)."""
        import torch

        from hamcli.inference.forward import logits

        out = logits(self.model, torch.from_numpy(np.ascontiguousarray(images)), self.prec, self.mean, self.std,
                     batch_size=batch_size, tta=tta, num_classes=len(self.classes))
        if raw:
            probs = out.softmax(1).numpy()
            return Outputs(probs, probs)
        return Outputs(self.post.apply(out).softmax(1).numpy(), self.post.scores(out).softmax(1).numpy())

    def probabilities(self, images: np.ndarray, batch_size: int = 64, tta: bool = False) -> np.ndarray:
        """(N, classes) probabilities for (N, H, W, 3) uint8 images already preprocessed (`decode` gives them)."""
        self._check_batch(images)
        return self.outputs(images, batch_size, tta).probabilities

    def _check_batch(self, images: object) -> None:
        """Preprocessed images only: an array of another shape or type would be read as something it is not."""
        h, w = self.input_size
        if not (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 4
                and images.shape[1:] == (h, w, 3)):
            got = (f"an array of shape {tuple(images.shape)} and type {images.dtype}"
                   if isinstance(images, np.ndarray) else type(images).__name__)
            raise UsageError(f"probabilities() takes preprocessed images, a uint8 array of shape (N, {h}, {w}, 3) "
                             f"as `decode()` gives; got {got}. For files or PIL images, use predict()")

    def _rows(self, sources: list[str], probs: np.ndarray, top_k: int) -> list[Prediction]:
        rows = []
        for src, p in zip(sources, probs, strict=True):
            order = np.argsort(-p, kind="stable")
            rows.append(Prediction(src, self.classes[order[0]], float(p[order[0]]),
                                   {c: float(v) for c, v in zip(self.classes, p, strict=True)},
                                   [(self.classes[i], float(p[i])) for i in order[:top_k]], self.precision))
        return rows

    def predict_many(self, items: Sequence[ImageInput], top_k: int = 3, batch_size: int = 64, tta: bool = False,
                     chunk: int = 512, on_result: Callable[[Prediction | Failure], None] | None = None
                     ) -> list[Prediction | Failure]:
        """Predict in input order; unreadable inputs come back as Failure, the rest still run."""
        results: list[Prediction | Failure] = []
        for start in range(0, len(items), chunk):
            part = list(items[start:start + chunk])
            arr, ok, failures = self.decode(part)
            probs = self.probabilities(arr, batch_size, tta) if len(arr) else np.empty((0, len(self.classes)))
            preds = iter(self._rows([_label(part[i]) for i in ok], probs, top_k))
            fails = iter(failures)
            okset = set(ok)
            for i in range(len(part)):
                row = next(preds) if i in okset else next(fails)
                results.append(row)
                if on_result:
                    on_result(row)
        return results

    def predict(self, item: ImageInput | Iterable[ImageInput], top_k: int = 3, tta: bool = False
                ) -> Prediction | list[Prediction]:
        """One image (a path or a PIL image) -> one Prediction; a list of them -> a list. Raises ImageReadError
        on an unreadable image, UsageError on anything else."""
        if not (isinstance(top_k, int) and top_k >= 1):
            raise UsageError(f"top_k={top_k!r}: a number of classes from 1 to {len(self.classes)}")
        single = _is_image(item)
        many = not single and isinstance(item, Iterable) and not isinstance(item, (bytes, np.ndarray, dict))
        items = [item] if single else list(item) if many else None
        odd = [item] if items is None else [i for i in items if not _is_image(i)]
        if odd:
            bad = type(odd[0]).__name__
            raise UsageError(f"predict() takes a path, a PIL image, or a list of them; got {bad}"
                             + (" (an array of preprocessed images goes to probabilities())" if bad == "ndarray"
                                else ""))
        rows = self.predict_many(items, top_k=top_k, tta=tta)
        for row in rows:
            if isinstance(row, Failure):
                raise ImageReadError(row.reason)
        return rows[0] if single else rows


def _is_image(item: object) -> bool:
    return isinstance(item, (str, Path, Upload)) or hasattr(item, "mode")  # a PIL image has a mode


def _label(item: object) -> str:
    return str(item) if isinstance(item, (str, Path)) else f"<{type(item).__name__}>"
