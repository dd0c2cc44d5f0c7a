"""A K-fold family used as one model: the average of its folds' probabilities.

`hamcli train --all-folds` leaves one run per fold; predict, evaluate and `hamcli.load_model` use the
family as the ensemble of those runs, which is usually better than any one of them. Grad-CAM needs
one network's gradients, so it explains the fold that scored best on its own validation rows.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from hamcli.errors import ModelError
from hamcli.inference.postprocess import Postprocess
from hamcli.inference.predictor import Predictor
from hamcli.runs import family_members, resolve_checkpoint


class Ensemble(Predictor):
    """Predicts like a Predictor; `members` are the folds' own Predictors."""

    def __init__(self, members: list[Predictor], family: Path) -> None:  # noqa: D107 - no super().__init__
        first = members[0]
        for m in members[1:]:
            if m.classes != first.classes or m.preprocess != first.preprocess:
                raise ModelError(f"{family}: its folds were trained with different inputs "
                                 f"({first.preprocess} and {m.preprocess}); evaluate them one by one")
        self.members = members
        self.family = family
        self.card = replace(first.card, path=family)
        seen = sorted({i for m in members for i in m.ckpt_meta.get("data", {}).get("seen_image_ids", ())})
        self.ckpt_meta = {**first.ckpt_meta, "family": [m.card.path.parent.name for m in members],
                          "data": {**first.ckpt_meta.get("data", {}), "seen_image_ids": seen}}
        self.model, self.prec, self.mean, self.std = first.model, first.prec, first.mean, first.std
        self.post = Postprocess()  # each member applies its own

    @classmethod
    def load_family(cls, family: Path, device: str = "auto") -> Ensemble:
        members = [Predictor.load(resolve_checkpoint(m), device=device) for m in family_members(family)]
        return cls(members, family)

    def probabilities(self, images: np.ndarray, batch_size: int = 64, tta: bool = False) -> np.ndarray:
        return np.mean([m.probabilities(images, batch_size, tta) for m in self.members], axis=0)

    def best_member(self) -> tuple[Predictor, str]:
        """The fold with the best validation balanced accuracy, and a line saying so."""
        def score(m: Predictor) -> float:
            try:
                return json.loads((m.card.path.parent / "metrics.json").read_text())["best"]["balanced_accuracy"]
            except (OSError, ValueError, KeyError, TypeError):
                return float("-inf")

        best = max(self.members, key=score)
        return best, (f"{self.family.name} is a K-fold family: explaining {best.card.path.parent.name}, its best "
                      f"fold on validation (balanced accuracy {score(best):.3f})")
