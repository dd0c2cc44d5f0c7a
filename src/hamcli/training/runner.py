"""Running a Trainer under its name: claiming it, replacing an old run only once the new one has finished,
resuming; and the run's options as a config file that repeats it."""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import hamcli.models.checkpoint as checkpoint
import hamcli.slots as slots
from hamcli.data.cache import PreparedDataset
from hamcli.errors import UsageError
from hamcli.runs import finished, set_latest
from hamcli.training import distributed
from hamcli.training.config import TrainConfig
from hamcli.training.engine import Trainer, TrainEvents


def run_claimed(trainer: Trainer) -> Path:
    """Train, holding the run's name for the whole run (rank 0 holds it for all ranks)."""
    if trainer.claimed or not trainer.dist.main:
        return trainer.run()
    root, name = trainer.run_dir.parent, trainer.run_dir.name
    with slots.claim(root, name, "run"):
        current = slots.version_of(root, name)
        if current is not None and not trainer.cfg.overwrite:
            done = finished(root / name)
            again = "" if done else f"continue it with `hamcli train --resume {name}`, "
            raise UsageError(f"run {name!r} already exists in {root}{' and finished' if done else ''}; {again}"
                             "choose another --name, or pass --overwrite to replace it once the new run has "
                             "finished")
        slots.clean(root, name, {current} if current else set())
        version = slots.new_version(root, name)
        if current is None:  # a new name: visible at once, as the run trains
            trainer.run_dir = slots.publish(root, name, version)
            return trainer.run()
        trainer.run_dir = version  # replacing: the old run stays until the new one has finished
        try:
            trainer.run()
        except BaseException:
            shutil.rmtree(version, ignore_errors=True)
            raise
        trainer.run_dir = slots.publish(root, name, version)
        set_latest(trainer.run_dir)
        return trainer.run_dir


def train(cfg: TrainConfig, events: TrainEvents | None = None) -> Path:
    """Train one model; returns the run folder."""
    ctx = distributed.context()
    with distributed.peers(ctx):
        trainer = Trainer(cfg, events)
        try:
            return run_claimed(trainer)
        finally:
            distributed.shutdown(trainer.dist)


def refit_options(run: str | Path) -> dict:
    """The options of a finished run, for training its recipe again on its training and validation rows
    together (scikit-learn's refit): for the epoch count its validation chose (its best epoch), no early
    stopping, and its name as `refit`. The refit keeps no postprocessing of its source's: that was fitted on
    another model (`hamcli calibrate REFIT --folds K` fits its own)."""
    from hamcli.runs import finished_checkpoint, is_family, resolve_run

    run_dir = resolve_run(run)
    if is_family(run_dir):
        raise UsageError(f"--refit {run}: a K-fold family; its members together already train on every "
                         "training row. Refit a run trained with a validation carve-out or split")
    ckpt = checkpoint.load(finished_checkpoint(run_dir, f"--refit {run}"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    options = dict(ckpt["config"])
    if options.get("refit"):
        raise UsageError(f"--refit {run}: already a refit (of {options['refit']}); refit {options['refit']}")
    if options.get("fold") is not None:
        raise UsageError(f"--refit {run}: a single fold of a family; refit a run without --fold")
    prepared = PreparedDataset.open(options["data"])
    if prepared.fingerprint != ckpt["data"]["fingerprint"]:
        raise UsageError(f"--refit {run}: prepared dataset {prepared.name!r} changed since {run_dir.name} trained on "
                         "it; its validation rows would not be the ones its postprocessing was fitted on")
    epochs = int(metrics.get("best_epoch") or metrics["epochs_run"])
    warmup = min(float(options.get("warmup_epochs", 0.0)), max(epochs - 1, 0) * 1.0)  # a shorter run: no longer
    return {**options, "epochs": epochs, "warmup_epochs": warmup, "early_stop": 0, "name": None,
            "overwrite": False, "refit": run_dir.name}


def resume(run: str | Path, events: TrainEvents | None = None) -> Path:
    """Continue an interrupted run from its last.pt (the state after its last completed epoch)."""
    from hamcli.runs import resolve_run

    run_dir = resolve_run(run)
    main = distributed.context().main
    with slots.claim(run_dir.parent, run_dir.name, "run") if main else contextlib.nullcontext():
        if not (run_dir / "last.pt").exists():
            raise UsageError(f"{run_dir}: no last.pt, so no epoch finished; start the run again")
        ckpt = checkpoint.load(run_dir / "last.pt")
        cfg = TrainConfig.from_dict(ckpt["config"])
        prepared = PreparedDataset.open(cfg.data or ckpt["data"]["name"])
        if prepared.fingerprint != ckpt["data"]["fingerprint"]:
            raise UsageError(f"{run_dir}: prepared dataset {prepared.name!r} changed since this run started "
                             f"(fingerprint {prepared.fingerprint} != {ckpt['data']['fingerprint']}); start a new "
                             "run")
        trainer = Trainer(replace(cfg, data=prepared.name), events, run_dir=run_dir)
        trainer.restore(ckpt)
        if trainer.state.epoch >= cfg.epochs or (cfg.early_stop and trainer.state.bad_epochs >= cfg.early_stop):
            raise UsageError(f"{run_dir}: this run already finished ({trainer.state.epoch} epochs)")
        try:
            with distributed.peers(trainer.dist):
                return trainer.run()
        finally:
            distributed.shutdown(trainer.dist)
