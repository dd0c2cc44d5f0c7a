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

from hamcli import checkpoint
from hamcli.classes import CLASS_NAMES
from hamcli.images import ImageReadError, decode_all
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

    @property
    def name(self) -> str:
        return CLASS_NAMES[self.code]

    def as_dict(self) -> dict:
        return {"path": self.source, "code": self.code, "name": self.name, "probability": self.probability,
                "top_k": [{"code": c, "probability": p} for c, p in self.top_k],
                "probabilities": self.probabilities}


@dataclass(frozen=True)
class Failure:
    source: str
    reason: str


class Predictor:
    """A model with its recorded preprocessing; `predict` takes paths, PIL images or lists of them."""

    def __init__(self, model: torch.nn.Module, card: checkpoint.ModelCard, ckpt: dict, prec) -> None:  # noqa: ANN001
        import torch

        self.model = model.to(prec.device, memory_format=prec.memory_format).eval()
        self.card = card
        self.ckpt_meta = {k: v for k, v in ckpt.items() if k not in ("state_dict", "optimizer", "scheduler",
                                                                     "generator", "torch_rng")}
        self.prec = prec
        self._fused: torch.nn.Module | None = None
        self.mean = torch.tensor(card.mean)
        self.std = torch.tensor(card.std)

    @classmethod
    def load(cls, ref: str | Path | None = None, device: str = "auto") -> Predictor:
        from hamcli.train.precision import Precision, resolve_device

        path = resolve_checkpoint(ref)
        ckpt = checkpoint.load(path)
        card = checkpoint.ModelCard.from_checkpoint(ckpt, path)
        dev = resolve_device(device)
        # The precision the run measured as fastest for this model and size on this kind of device.
        trained = ckpt.get("precision", {})
        dtype = trained.get("dtype", "fp32") if trained.get("device") == dev else "fp32"
        if dev == "cuda":
            dtype = "fp16" if dtype == "fp32" else dtype
        prec = Precision(dev, dtype, dtype != "fp32")
        return cls(checkpoint.build_from(ckpt), card, ckpt, prec)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.card.classes

    @property
    def input_size(self) -> int:
        return self.card.input_size

    def decode(self, items: Sequence[ImageInput], workers: int = 0) -> tuple[np.ndarray, list[int], list[Failure]]:
        """Decode with the checkpoint's preprocessing; returns (array, indices decoded, failures)."""
        size = self.input_size
        out = np.empty((len(items), size, size, 3), dtype=np.uint8)
        failed = decode_all(items, size, out, workers)
        ok = [i for i in range(len(items)) if i not in failed]
        return out[ok], ok, [Failure(str(items[i]), reason) for i, reason in sorted(failed.items())]

    def _batch_model(self) -> torch.nn.Module:
        """For many images: a copy with batch norm folded into the convolutions (same outputs, fewer passes).

        `self.model` itself stays untouched, so Grad-CAM's hooks still find every layer.
        """
        if self._fused is None:
            self._fused = self.model
            if self.prec.device == "cpu":
                from torch.fx.experimental.optimization import fuse

                try:
                    self._fused = fuse(self.model).to(memory_format=self.prec.memory_format).eval()
                except Exception:  # noqa: BLE001 - a model torch.fx cannot trace keeps its plain form
                    self._fused = self.model
        return self._fused

    def probabilities(self, images: np.ndarray, batch_size: int = 64, tta: bool = False) -> np.ndarray:
        """(N, 7) class probabilities for (N, S, S, 3) uint8 images already preprocessed."""
        import torch

        from hamcli.inference import logits

        model = self._batch_model() if len(images) > 8 else self.model  # folding costs more than one image
        out = logits(model, torch.from_numpy(np.ascontiguousarray(images)), self.prec, self.mean, self.std,
                     batch_size=batch_size, tta=tta)
        return out.softmax(1).numpy()

    def _rows(self, sources: list[str], probs: np.ndarray, top_k: int) -> list[Prediction]:
        rows = []
        for src, p in zip(sources, probs, strict=True):
            order = np.argsort(-p, kind="stable")
            rows.append(Prediction(src, self.classes[order[0]], float(p[order[0]]),
                                   {c: float(v) for c, v in zip(self.classes, p, strict=True)},
                                   [(self.classes[i], float(p[i])) for i in order[:top_k]]))
        return rows

    def predict_many(self, items: Sequence[ImageInput], top_k: int = 3, batch_size: int = 64, tta: bool = False,
                     chunk: int = 512, on_result: Callable[[Prediction | Failure], None] | None = None
                     ) -> list[Prediction | Failure]:
        """Predict in input order; unreadable inputs come back as Failure, the rest still run."""
        results: list[Prediction | Failure] = []
        for start in range(0, len(items), chunk):
            part = list(items[start:start + chunk])
            arr, ok, failures = self.decode(part)
            probs = self.probabilities(arr, batch_size, tta) if len(arr) else np.empty((0, 7))
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
        """One image -> one Prediction; a list -> a list. Raises on an unreadable image."""
        single = isinstance(item, (str, Path)) or hasattr(item, "mode")
        items = [item] if single else list(item)
        rows = self.predict_many(items, top_k=top_k, tta=tta)
        for row in rows:
            if isinstance(row, Failure):
                raise ImageReadError(row.reason)
        return rows[0] if single else rows


def _label(item: object) -> str:
    return str(item) if isinstance(item, (str, Path)) else f"<{type(item).__name__}>"
