"""K-fold training: one run per fold of a prepared dataset, and the family's mean and spread."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

import hamcli.fsio as fsio
import hamcli.models.checkpoint as checkpoint
import hamcli.paths as paths
import hamcli.slots as slots
from hamcli.data.cache import PreparedDataset
from hamcli.errors import UsageError
from hamcli.runs import new_run_name, set_latest
from hamcli.training.config import TrainConfig
from hamcli.training.engine import Trainer, TrainEvents


def train_folds(cfg: TrainConfig, events: TrainEvents | None = None) -> Path:
    """One model per fold of the prepared dataset, in `runs/<name>/fold<k>`; returns the family folder."""
    prepared = PreparedDataset.open(cfg.data)
    k = int(prepared.manifest["fold"].max()) + 1
    if k < 2:
        raise UsageError(f"--all-folds: prepared dataset {prepared.name!r} has no folds; "
                         "run `hamcli prepare --folds K` first")
    name = cfg.name or new_run_name(cfg.arch)
    # The family becomes visible under its name only when every fold has finished.
    with slots.replace(paths.runs_dir(), name, "run", cfg.overwrite) as family:
        members, best = [], []
        for fold in range(k):
            run_dir = Trainer(replace(cfg, data=prepared.name, fold=fold, name=None), events,
                              run_dir=family / f"fold{fold}").run()
            members.append(run_dir.name)
            best.append(checkpoint.load(run_dir / "best.pt")["metrics"])
        keys = [key for key in best[0] if key.startswith("val_")]
        stats = {key: {"mean": float(np.mean([b[key] for b in best])), "std": float(np.std([b[key] for b in best]))}
                 for key in keys}
        fsio.write_json(family / "family.json", {"members": members, "folds": k, "arch": cfg.arch,
                                                 "data": prepared.name, "val": stats})
        fsio.write_json(family / "config.json", {**asdict(cfg), "all_folds": k})
    set_latest(paths.runs_dir() / name)
    return paths.runs_dir() / name
