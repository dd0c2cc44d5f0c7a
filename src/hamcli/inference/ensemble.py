"""Several models used as one: the average of their probabilities, then an operating point of its own.

`hamcli train --all-folds` leaves one run per fold, and `hamcli ensemble` makes a family of finished runs
(one recipe with several seeds, say); predict, evaluate and `hamcli.load_model` use a family as the
ensemble of its runs, which is usually better than any one of them. The family's temperature, prior shift
and melanoma operating point are fitted on its own average of the members' raw probabilities, on rows no
member trained on (`hamcli.training.folds.fit_family_postprocess`), and applied to that average. The
bundled model can be
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
from hamcli.inference.predictor import Outputs, Predictor
from hamcli.models.checkpoint import MAX_MEMBERS
from hamcli.runs import family_members, resolve_checkpoint


class Ensemble(Predictor):
    """Predicts like a Predictor; `members` are the models' own Predictors, `post` acts on their average."""

    def __init__(self, members: list[Predictor], family: Path, post: Postprocess | None = None,
                 meta: dict | None = None, members_raw: bool = False) -> None:  # noqa: D107 - no super().__init__
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
        self.post = post or Postprocess()
        # True where `post` was fitted on the members' raw average (hamcli 0.2 on): each member's own
        # postprocessing, fitted for it alone, is then left out; older families average the members as each
        # predicts alone.
        self.members_raw = members_raw

    @classmethod
    def load_family(cls, family: Path, device: str = "auto", precision: str = "fp32") -> Ensemble:
        names = family_members(family)
        if len(names) > MAX_MEMBERS:
            raise ModelError(f"{family}: {len(names)} members, more than hamcli loads ({MAX_MEMBERS})")
        members = [Predictor.load(resolve_checkpoint(m), device=device, precision=precision) for m in names]
        info = json.loads((family / "family.json").read_text())
        ensemble = cls(members, family, Postprocess.from_dict(info.get("postprocess"), family / "family.json",
                                                               len(members[0].classes)),
                       members_raw=bool(info.get("members_raw")))
        ensemble.probe()
        return ensemble

    @classmethod
    def from_checkpoint(cls, ckpt: dict, path: Path, device: str = "auto", precision: str = "fp32") -> Ensemble:
        """An ensemble stored in one file: shared fields at the top, each member's weights and own
        postprocess in `members`."""
        shared = {k: v for k, v in ckpt.items() if k not in ("members", "postprocess", "calibration")}
        members = [Predictor.from_checkpoint({**shared, **member}, path, device, precision)
                   for member in ckpt["members"]]
        ensemble = cls(members, Path(path), Postprocess.from_dict(ckpt.get("postprocess"), path,
                                                                 len(ckpt["classes"])),
                       meta={k: v for k, v in ckpt.items() if k != "members"},
                       members_raw=bool(ckpt.get("members_raw")))
        ensemble.probe()
        return ensemble

    def outputs(self, images: np.ndarray, batch_size: int = 64, tta: bool = False, raw: bool = False) -> Outputs:
        """The members' probabilities averaged, then the ensemble's own postprocessing (fitted on this
        average); the scores likewise, without its offsets. `raw`: the plain average."""
        parts = [m.outputs(images, batch_size, tta, raw=self.members_raw) for m in self.members]
        probs = np.mean([p.probabilities for p in parts], axis=0, dtype=np.float64)
        scores = np.mean([p.scores for p in parts], axis=0, dtype=np.float64)
        if self.post.identity or raw:
            return Outputs(probs.astype(np.float32), scores.astype(np.float32))
        return Outputs(_softmax(self.post.apply(np.log(np.clip(probs, 1e-12, 1.0)))),
                       _softmax(self.post.scores(np.log(np.clip(scores, 1e-12, 1.0)))))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = np.exp(z - z.max(1, keepdims=True))
    return (z / z.sum(1, keepdims=True)).astype(np.float32)


def member_name(member: Predictor) -> str:
    """fold0, ...: the run folder's name, or the name recorded in a one-file ensemble."""
    return str(member.ckpt_meta.get("member") or member.card.path.parent.name)
