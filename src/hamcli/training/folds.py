"""K-fold training: one run per fold of a prepared dataset, and the family's mean and spread."""

from __future__ import annotations

import contextlib
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
from hamcli.training import distributed
from hamcli.training.config import TrainConfig
from hamcli.training.engine import Trainer, TrainEvents


def train_folds(cfg: TrainConfig, events: TrainEvents | None = None) -> Path:
    """One model per fold of the prepared dataset, in `runs/<name>/fold<k>`; returns the family folder."""
    prepared = PreparedDataset.open(cfg.data)
    k = int(prepared.manifest["fold"].max()) + 1
    if k < 2:
        raise UsageError(f"--all-folds: prepared dataset {prepared.name!r} has no folds; "
                         "run `hamcli prepare --folds K` first")
    ctx = distributed.context()
    name = distributed.broadcast(cfg.name or new_run_name(cfg.arch), ctx)
    # The family becomes visible under its name only when every fold has finished; rank 0 holds the name.
    holder = slots.replace(paths.runs_dir(), name, "run", cfg.overwrite) if ctx.main else contextlib.nullcontext()
    try:
        with holder as family:
            family = Path(distributed.broadcast(str(family) if ctx.main else None, ctx))
            members, best = [], []
            for fold in range(k):
                run_dir = Trainer(replace(cfg, data=prepared.name, fold=fold, name=None), events,
                                  run_dir=family / f"fold{fold}").run()
                members.append(run_dir.name)
                if ctx.main:
                    best.append(checkpoint.load(run_dir / "best.pt")["metrics"])
            if ctx.main:
                keys = [key for key in best[0] if key.startswith("val_")]
                stats = {key: {"mean": float(np.mean([b[key] for b in best])),
                               "std": float(np.std([b[key] for b in best]))} for key in keys}
                fsio.write_json(family / "family.json", {"members": members, "folds": k, "arch": cfg.arch,
                                                         "data": prepared.name, "val": stats})
                fsio.write_json(family / "config.json", {**asdict(cfg), "all_folds": k})
        if ctx.main:
            set_latest(paths.runs_dir() / name)
        distributed.barrier(ctx)
    finally:
        distributed.shutdown(ctx)
    return paths.runs_dir() / name
