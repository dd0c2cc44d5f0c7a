"""Several models used as one: the average of their probabilities, then an operating point of its own.

`hamcli train --all-folds` leaves one run per fold, and `hamcli ensemble` makes a family of finished runs
(one recipe with several seeds, say); predict, evaluate and `hamcli.load_model` use a family as the
ensemble of its runs, which is usually better than any one of them. The family's
melanoma operating point (`--melanoma-sensitivity`) is fitted once, on out-of-fold predictions
(`hamcli.training.folds.fit_operating_point`), and applied to the average. The bundled model can be
such an ensemble stored in one file (a checkpoint with `members`). Grad-CAM explains it as it predicts:
the mean of its members' maps for the class the ensemble predicts (`hamcli.explain.maps.explain`).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from hamcli.errors import ModelError
from hamcli.inference.postprocess import Postprocess
from hamcli.inference.predictor import Predictor
from hamcli.models.precision import Precision
from hamcli.runs import family_members, resolve_checkpoint


class Ensemble(Predictor):
    """Predicts like a Predictor; `members` are the models' own Predictors, `post` acts on their average."""

    def __init__(self, members: list[Predictor], family: Path, post: Postprocess | None = None,
                 meta: dict | None = None) -> None:  # noqa: D107 - no super().__init__
        first = members[0]
        for m in members[1:]:
            if m.classes != first.classes or m.preprocess != first.preprocess:
                raise ModelError(f"{family}: its members were trained with different inputs "
                                 f"({first.preprocess} and {m.preprocess}); evaluate them one by one")
        self.members = members
        self.family = family
        archs = [m.card.arch for m in members]  # one input, not necessarily one architecture
        arch = archs[0] if len(set(archs)) == 1 else " + ".join(f"{a} x{archs.count(a)}" for a in dict.fromkeys(archs))
        self.card = replace(first.card, path=family, arch=arch)
        if meta is None:
            seen = sorted({i for m in members for i in m.ckpt_meta.get("data", {}).get("seen_image_ids", ())})
            meta = {**first.ckpt_meta, "data": {**first.ckpt_meta.get("data", {}), "seen_image_ids": seen}}
        self.ckpt_meta = {**meta, "family": [member_name(m) for m in members]}
        self.model, self.prec, self.mean, self.std = first.model, first.prec, first.mean, first.std
        self.post = post or Postprocess()  # each member applies its own first

    @classmethod
    def load_family(cls, family: Path, device: str = "auto") -> Ensemble:
        members = [Predictor.load(resolve_checkpoint(m), device=device) for m in family_members(family)]
        record = json.loads((family / "family.json").read_text()).get("postprocess")
        return cls(members, family, Postprocess.from_dict(record, family / "family.json", len(members[0].classes)))

    @classmethod
    def from_checkpoint(cls, ckpt: dict, path: Path, device: str = "auto") -> Ensemble:
        """An ensemble stored in one file: shared fields at the top, each member's weights and own
        postprocess in `members`."""
        shared = {k: v for k, v in ckpt.items() if k not in ("members", "postprocess", "calibration")}
        members = [Predictor.from_checkpoint({**shared, **member}, path, device) for member in ckpt["members"]]
        return cls(members, Path(path), Postprocess.from_dict(ckpt.get("postprocess"), path, len(ckpt["classes"])),
                   meta={k: v for k, v in ckpt.items() if k != "members"})

    def probabilities(self, images: np.ndarray, batch_size: int = 64, tta: bool = False) -> np.ndarray:
        mean = np.mean([m.probabilities(images, batch_size, tta) for m in self.members], axis=0, dtype=np.float64)
        if self.post.identity:
            return mean.astype(np.float32)
        z = self.post.apply(np.log(np.clip(mean, 1e-12, 1.0)))
        z = np.exp(z - z.max(1, keepdims=True))
        return (z / z.sum(1, keepdims=True)).astype(np.float32)

    def batch_precision(self, batch_size: int = 64) -> Precision:
        """The first member's measured choice, reported for the ensemble (each member predicts in its own)."""
        return self.members[0].batch_precision(batch_size)


def member_name(member: Predictor) -> str:
    """fold0, ...: the run folder's name, or the name recorded in a one-file ensemble."""
    return str(member.ckpt_meta.get("member") or member.card.path.parent.name)


def validation_score(member: Predictor) -> float:
    """Balanced accuracy on the member's validation rows, as its checkpoint (else metrics.json) records it."""
    try:
        return float(member.ckpt_meta["calibration"]["before"]["balanced_accuracy"])
    except (KeyError, TypeError, ValueError):
        pass
    try:
        return json.loads((member.card.path.parent / "metrics.json").read_text())["best"]["balanced_accuracy"]
    except (OSError, ValueError, KeyError, TypeError):
        return float("-inf")
