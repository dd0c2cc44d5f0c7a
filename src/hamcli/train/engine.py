"""The training loop: epochs over the cached uint8 images, validation, checkpoints, resume."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from hamcli import checkpoint, fsio, paths
from hamcli.errors import HamcliError, UsageError
from hamcli.inference import logits as infer_logits
from hamcli.metrics import summary
from hamcli.prepared import PreparedDataset
from hamcli.runs import check_run_name, new_run_name
from hamcli.train import augment as aug
from hamcli.train.data import TrainData, class_weights, epoch_order, select
from hamcli.train.precision import Precision, choose
from hamcli.zoo import build_model, get_spec

MONITORS = {"balanced_accuracy": 1.0, "macro_f1": 1.0, "loss": -1.0}  # +1: higher is better
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("cosine", "onecycle", "plateau", "none")


class TrainingInterrupted(HamcliError):
    exit_code = 130


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
    early_stop: int = 0
    monitor: str = "balanced_accuracy"
    class_weight: str = "none"
    sampler: str = "none"
    label_smoothing: float = 0.0
    augment: str = "light"
    fold: int | None = None
    seed: int = 42
    pretrained: bool = False
    weights: str | None = None
    freeze_backbone: bool = False
    unfreeze_after: int | None = None
    device: str = "auto"
    precision: str = "auto"
    name: str | None = None
    max_batches: int | None = None  # cap on batches per epoch, for smoke runs

    def check(self) -> None:
        get_spec(self.arch)
        for value, allowed, option in ((self.optimizer, OPTIMIZERS, "--optimizer"),
                                       (self.schedule, SCHEDULES, "--schedule"),
                                       (self.monitor, tuple(MONITORS), "--monitor"),
                                       (self.augment, aug.LEVELS, "--augment")):
            if value not in allowed:
                raise UsageError(f"{option} {value!r}: choose one of {', '.join(allowed)}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise UsageError("--epochs, --batch-size and --lr must be positive")
        if not 0 <= self.label_smoothing < 1:
            raise UsageError("--label-smoothing must be in [0, 1)")
        if self.name:
            check_run_name(self.name)


class TrainEvents:
    """Progress hooks; the CLI overrides them to draw, the library default is silent."""

    def start(self, info: dict) -> None: ...
    def epoch_start(self, epoch: int, epochs: int, batches: int) -> None: ...
    def batch(self, done: int, loss: float, images_per_s: float) -> None: ...
    def epoch_end(self, record: dict) -> None: ...


def _optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:  # noqa: ANN001
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer, steps_per_epoch: int):  # noqa: ANN202
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=cfg.lr * 0.01)
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total)
    if cfg.schedule == "plateau":
        mode = "max" if MONITORS[cfg.monitor] > 0 else "min"
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=mode, factor=0.3, patience=2)
    return None


def _set_backbone_trainable(model: torch.nn.Module, head: str, trainable: bool) -> None:
    for name, p in model.named_parameters():
        p.requires_grad = trainable or name.startswith(head + ".")


@dataclass
class _State:
    epoch: int = 0
    best_score: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list | None = None


class Trainer:
    """One run: builds everything from a TrainConfig, then `run()` trains and writes the run folder."""

    def __init__(self, cfg: TrainConfig, events: TrainEvents | None = None, run_dir: Path | None = None):
        cfg.check()
        self.cfg = cfg
        self.events = events or TrainEvents()
        torch.manual_seed(cfg.seed)
        self.prepared = PreparedDataset.open(cfg.data)
        self.data: TrainData = select(self.prepared, cfg.fold, cfg.seed)
        self.spec = get_spec(cfg.arch)
        self.size = self.prepared.size
        weights = Path(cfg.weights) if cfg.weights else None
        self.model = build_model(cfg.arch, pretrained=cfg.pretrained, weights_path=weights)
        self.prec: Precision = choose(cfg.arch, lambda: build_model(cfg.arch), self.size, cfg.batch_size,
                                      cfg.device, cfg.precision)
        self.model.to(self.prec.device, memory_format=self.prec.memory_format)
        self.mean = torch.tensor(self.spec.mean)
        self.std = torch.tensor(self.spec.std)
        self.train_labels = self.data.labels[self.data.train_idx]
        # Images the model learnt from or was selected on: `evaluate --data` leaves them out.
        ids = self.prepared.manifest["image_id"].to_numpy()
        self.seen_ids = sorted(ids[np.concatenate([self.data.train_idx, self.data.val_idx])].tolist())
        weight = class_weights(self.train_labels, cfg.class_weight)
        self.loss_fn = torch.nn.CrossEntropyLoss(
            weight=None if weight is None else weight.to(self.prec.device), label_smoothing=cfg.label_smoothing)
        self.steps = math.ceil(len(self.data.train_idx) / cfg.batch_size)
        if cfg.max_batches:
            self.steps = min(self.steps, cfg.max_batches)
        if cfg.freeze_backbone:
            _set_backbone_trainable(self.model, self.spec.head, False)
        self.opt = _optimizer(cfg, self.model.parameters())
        # fp16 gradients underflow without loss scaling; bf16 and fp32 need none (the scaler is then a no-op).
        self.scaler = torch.amp.GradScaler("cuda" if self.prec.device == "cuda" else "cpu",
                                           enabled=self.prec.dtype == "fp16")
        self.sched = _scheduler(cfg, self.opt, self.steps)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.state = _State(history=[])
        self.run_dir = run_dir or paths.runs_dir() / (cfg.name or new_run_name(cfg.arch))

    # -- checkpoints -----------------------------------------------------------------
    def _card(self) -> dict:
        return {"arch": self.cfg.arch, "input_size": self.size, "mean": list(self.spec.mean),
                "std": list(self.spec.std), "config": asdict(self.cfg),
                "data": {"name": self.prepared.name, "fingerprint": self.prepared.fingerprint,
                         "val_source": self.data.val_source,
                         "train_counts": torch.bincount(self.train_labels, minlength=7).tolist(),
                         "seen_image_ids": self.seen_ids},
                "precision": {"device": self.prec.device, "dtype": self.prec.dtype}}

    def _save(self, filename: str, interrupted: bool = False) -> None:
        extra = {}
        if filename == "last.pt":
            extra = {"optimizer": self.opt.state_dict(),
                     "scheduler": self.sched.state_dict() if self.sched else None,
                     "scaler": self.scaler.state_dict(),
                     "generator": self.gen.get_state(), "torch_rng": torch.get_rng_state(),
                     "state": {k: v for k, v in asdict(self.state).items() if k != "history"},
                     "interrupted": interrupted}
        best = self.state.history[self.state.best_epoch - 1] if self.state.best_epoch else {}
        checkpoint.save(self.run_dir / filename, state_dict=self.model.state_dict(), epoch=self.state.epoch,
                        history=self.state.history, metrics=best, **self._card(), **extra)

    def restore(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["state_dict"])
        self.opt.load_state_dict(ckpt["optimizer"])
        if self.sched is not None and ckpt.get("scheduler"):
            self.sched.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.gen.set_state(ckpt["generator"])
        torch.set_rng_state(ckpt["torch_rng"])
        self.state = _State(**ckpt["state"], history=list(ckpt["history"]))

    # -- the loop --------------------------------------------------------------------
    def _train_epoch(self, epoch: int) -> dict:
        cfg, d = self.cfg, self.data
        self.model.train()
        if cfg.freeze_backbone and cfg.unfreeze_after is not None and epoch >= cfg.unfreeze_after:
            _set_backbone_trainable(self.model, self.spec.head, True)
        order = d.train_idx[epoch_order(self.train_labels, cfg.sampler, self.gen).numpy()]
        losses, preds, trues = [], [], []
        seen, start = 0, time.perf_counter()
        self.events.epoch_start(epoch, cfg.epochs, self.steps)
        for step in range(self.steps):
            idx = torch.from_numpy(order[step * cfg.batch_size:(step + 1) * cfg.batch_size])
            x = aug.normalise(aug.augment(d.images[idx], cfg.augment, self.gen), self.mean, self.std)
            x = x.to(self.prec.device).contiguous(memory_format=self.prec.memory_format)
            y = d.labels[idx].to(self.prec.device)
            with self.prec.autocast():
                out = self.model(x)
            loss = self.loss_fn(out.float(), y)
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
            if self.sched is not None and cfg.schedule != "plateau":
                self.sched.step()
            loss_value = loss.item()  # one host sync per step, not two
            losses.append(loss_value * len(idx))
            preds.append(out.detach().argmax(1).cpu())
            trues.append(y.cpu())
            seen += len(idx)
            self.events.batch(step + 1, loss_value, seen / (time.perf_counter() - start))
        elapsed = time.perf_counter() - start
        train = summary(torch.cat(trues).numpy(), torch.cat(preds).numpy())
        return {"train_loss": sum(losses) / seen, **{f"train_{k}": v for k, v in train.items()},
                "train_seconds": elapsed, "images_per_s": seen / elapsed}

    def _validate(self) -> dict:
        d = self.data
        out = infer_logits(self.model, d.images[torch.from_numpy(d.val_idx)], self.prec, self.mean, self.std,
                           batch_size=max(self.cfg.batch_size, 128))
        y = d.labels[torch.from_numpy(d.val_idx)]
        # The training criterion (class weights, smoothing), so the two loss curves are comparable.
        loss = self.loss_fn(out.to(self.prec.device), y.to(self.prec.device)).item()
        val = summary(y.numpy(), out.argmax(1).numpy())
        return {"val_loss": loss, **{f"val_{k}": v for k, v in val.items()}}

    def _advice(self) -> list[str]:
        spec = self.spec
        if self.cfg.pretrained and self.size < spec.default_size // 2:
            return [f"{spec.name}'s ImageNet weights were learnt at {spec.default_size} px and lose much of their "
                    f"benefit at {self.size} px; prepare with --size {spec.default_size} (or at least 128)"]
        return []

    def run(self) -> Path:
        cfg, st = self.cfg, self.state
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fsio.write_json(self.run_dir / "config.json", {**asdict(cfg), "run": self.run_dir.name,
                                                       "data_fingerprint": self.prepared.fingerprint})
        self.events.start({"run": str(self.run_dir), "arch": cfg.arch, "data": self.prepared.name,
                           "size": self.size, "train": len(self.data.train_idx), "val": len(self.data.val_idx),
                           "val_source": self.data.val_source, "device": self.prec.device,
                           "precision": self.prec.dtype, "channels_last": self.prec.channels_last,
                           "why": self.prec.reason, "start_epoch": st.epoch + 1, "advice": self._advice()})
        sign = MONITORS[cfg.monitor]
        try:
            for epoch in range(st.epoch + 1, cfg.epochs + 1):
                record = {"epoch": epoch, "lr": self.opt.param_groups[0]["lr"], **self._train_epoch(epoch)}
                record.update(self._validate())
                st.epoch = epoch
                st.history.append(record)
                score = sign * record[f"val_{cfg.monitor}"]
                if isinstance(self.sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    self.sched.step(record[f"val_{cfg.monitor}"])
                if score > st.best_score:
                    st.best_score, st.best_epoch, st.bad_epochs = score, epoch, 0
                    self._save("best.pt")
                else:
                    st.bad_epochs += 1
                self._save("last.pt")
                self.events.epoch_end({**record, "best_epoch": st.best_epoch})
                if cfg.early_stop and st.bad_epochs >= cfg.early_stop:
                    break
        except KeyboardInterrupt:
            self._save("last.pt", interrupted=True)
            self._write_reports()
            raise TrainingInterrupted(f"interrupted after epoch {st.epoch}; {self.run_dir / 'last.pt'} is saved: "
                                      f"continue with `hamcli train --resume {self.run_dir.name}`") from None
        self._write_reports()
        return self.run_dir

    def _write_reports(self) -> None:
        from hamcli.train.report import write_reports

        write_reports(self.run_dir, self.state.history, self.state.best_epoch, self.cfg.monitor)


def train(cfg: TrainConfig, events: TrainEvents | None = None) -> Path:
    """Train one model; returns the run folder."""
    return Trainer(cfg, events).run()


def resume(run: str | Path, events: TrainEvents | None = None) -> Path:
    """Continue an interrupted run from its last.pt."""
    from hamcli.runs import resolve_run

    run_dir = resolve_run(run)
    ckpt = checkpoint.load(run_dir / "last.pt")
    cfg = TrainConfig(**ckpt["config"])
    prepared = PreparedDataset.open(cfg.data or ckpt["data"]["name"])
    if prepared.fingerprint != ckpt["data"]["fingerprint"]:
        raise UsageError(f"{run_dir}: prepared dataset {prepared.name!r} changed since this run started "
                         f"(fingerprint {prepared.fingerprint} != {ckpt['data']['fingerprint']}); start a new run")
    trainer = Trainer(replace(cfg, data=prepared.name), events, run_dir=run_dir)
    trainer.restore(ckpt)
    if trainer.state.epoch >= cfg.epochs or (cfg.early_stop and trainer.state.bad_epochs >= cfg.early_stop):
        raise UsageError(f"{run_dir}: this run already finished ({trainer.state.epoch} epochs)")
    return trainer.run()


def train_folds(cfg: TrainConfig, events: TrainEvents | None = None) -> Path:
    """One model per fold of the prepared dataset, in `runs/<name>/fold<k>`; returns the family folder."""
    prepared = PreparedDataset.open(cfg.data)
    k = int(prepared.manifest["fold"].max()) + 1
    if k < 2:
        raise UsageError(f"--all-folds: prepared dataset {prepared.name!r} has no folds; "
                         "run `hamcli prepare --folds K` first")
    family = paths.runs_dir() / (cfg.name or new_run_name(cfg.arch))
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
    return family
