"""The training loop: epochs over the cached uint8 images, validation, checkpoints, exact resume.

A run folder holds `best.pt` (the model at its best validation epoch; with `--ema` the averaged
weights, and `best_raw.pt` beside it), `last.pt` (the state after the last *completed* epoch, which
`--resume` continues from exactly) and the reports.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

import hamcli.fsio as fsio
import hamcli.models.checkpoint as checkpoint
import hamcli.paths as paths
import hamcli.slots as slots
from hamcli.classes import NUM_CLASSES
from hamcli.data.cache import PreparedDataset
from hamcli.data.preprocess import Preprocess, normalise, size_text
from hamcli.data.splits import carve_seed
from hamcli.errors import HamcliError
from hamcli.evaluation.metrics import summary
from hamcli.inference.forward import logits as infer_logits
from hamcli.models.build import build_model
from hamcli.models.precision import Precision, choose, keep_freed_memory, resolve_device
from hamcli.models.zoo import get_spec
from hamcli.runs import new_run_name, set_latest
from hamcli.training import augment as aug
from hamcli.training import distributed
from hamcli.training.config import MONITORS, TrainConfig, TrainEvents, run_config_toml
from hamcli.training.distil import distil_loss
from hamcli.training.optim import EMA, Freezer, optimizer, param_groups, scheduler
from hamcli.training.sampling import TrainData, class_weights, epoch_order, select


def _place(images: torch.Tensor, device: str) -> torch.Tensor:
    """Where the training images live for the run: on the GPU when they fit in half its free memory (the 150 px
    cache of HAM10000 is about 0.7 GB), so that batches are cut, augmented and normalised there; else in
    pinned host memory, each batch gathered into pinned memory and copied as uint8 without blocking (`_batch`);
    on CPU where they are."""
    if not device.startswith("cuda"):
        return images
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    return images.to(device) if images.nbytes * 2 < free else images.pin_memory()


def _batch(images: torch.Tensor, rows: torch.Tensor, rows_on: torch.Tensor) -> torch.Tensor:
    """The uint8 images of one batch, on the device its augmentation runs on (where `rows_on` is): cut there
    when the images live there; on the CPU for a CPU run; for a GPU run whose images stay in pinned host memory,
    gathered into pinned memory (blocks the caching host allocator keeps until their copy is done) and sent
    without blocking."""
    if images.device == rows_on.device:
        return images[rows_on]
    staged = torch.empty((len(rows), *images.shape[1:]), dtype=images.dtype, pin_memory=True)
    torch.index_select(images, 0, rows, out=staged)
    return staged.to(rows_on.device, non_blocking=True)


PROGRESS_EVERY = 20  # steps between the progress line's readings of the loss (each one a host sync on a GPU)


def _kernels(cfg: TrainConfig, device: str) -> None:
    """`--deterministic`: only deterministic kernels, so a rerun (or a resumed run) gives the same weights on a
    GPU too; otherwise on CUDA, cuDNN times its algorithms once per shape and keeps the fastest."""
    import os

    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for reproducible GEMMs
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True


def _compiled(net: torch.nn.Module, cfg: TrainConfig) -> torch.nn.Module:
    """The module the training steps call: `--compile` wraps it in torch.compile (the first steps compile, later
    ones run the generated code; a change of what is trainable compiles again). Checkpoints, validation and EMA
    use the eager model, whose parameters the compiled one shares."""
    if not cfg.compile:
        return net
    if not torch.cuda.is_available():  # inductor warns "No CUDA runtime is found" on every CPU-only machine
        import logging

        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    return torch.compile(net)


class TrainingInterrupted(HamcliError):
    exit_code = 130


@dataclass
class _State:
    epoch: int = 0
    best_score: float = -math.inf
    best_epoch: int = 0
    best_raw_score: float = -math.inf
    best_raw_epoch: int = 0
    bad_epochs: int = 0
    history: list | None = None


class Trainer:
    """One run: builds everything from a TrainConfig, then `run()` trains and writes the run folder."""

    def __init__(self, cfg: TrainConfig, events: TrainEvents | None = None, run_dir: Path | None = None):
        cfg.check()
        keep_freed_memory()
        self.cfg = cfg
        self.events = events or TrainEvents()
        self.dist = distributed.context()
        torch.manual_seed(cfg.seed)
        self.prepared = PreparedDataset.open(cfg.data)
        if cfg.data is None:  # the default prepared dataset: recorded by name, so the run says what it trained on
            cfg = self.cfg = replace(cfg, data=self.prepared.name)
        self.data: TrainData = select(self.prepared, cfg.fold, carve_seed(asdict(cfg)), refit=bool(cfg.refit),
                                      refit_fold=cfg.refit_fold, limit=cfg.limit)
        self.spec = get_spec(cfg.arch)
        self.size = self.prepared.size
        self.preprocess = Preprocess(self.size, self.spec.mean, self.spec.std)
        self.model, self.weights_report = build_model(cfg.arch, pretrained=cfg.pretrained,
                                                      weights_path=Path(cfg.weights) if cfg.weights else None)
        device = distributed.setup(self.dist, resolve_device(cfg.device), len(self.data.train_idx))
        # By rule, never by a timing (`hamcli.models.precision`); rank 0's choice goes to every rank, since DDP
        # compares the parameters' layout.
        prec = choose(cfg.arch, cfg.device, cfg.precision) if self.dist.main else None
        self.prec: Precision = replace(distributed.broadcast(prec, self.dist), device=device)
        if cfg.sync_bn and self.dist.active:
            distributed.check_sync_bn(cfg.sync_bn, self.prec.device)
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.model.to(self.prec.device, memory_format=self.prec.memory_format)
        self.images = _place(self.data.images, self.prec.device)
        self.on = self.prec.device if self.prec.device.startswith("cuda") else "cpu"  # where batches are augmented
        # On the device where batches are normalised: a copy from the host there each step would wait on the GPU.
        self.mean = torch.tensor(self.spec.mean, device=self.on)
        self.std = torch.tensor(self.spec.std, device=self.on)
        self.labels_on = self.data.labels.to(self.on)
        self.train_labels = self.data.labels[self.data.train_idx]
        # Images the model learnt from or was selected on: `evaluate --data` leaves them out.
        ids = self.prepared.manifest["image_id"].to_numpy()
        self.seen_ids = sorted(ids[np.concatenate([self.data.train_idx, self.data.val_idx])].tolist())
        self.soft, self.distil_line = None, None
        if cfg.distil_from:
            from hamcli.training.distil import soft_targets

            found: object = None
            if self.dist.main:  # the teacher runs once, on rank 0; the others take its answers (or its refusal)
                try:
                    found = soft_targets(cfg.distil_from, self.prepared, self.data.images, self.data.train_idx,
                                         self.data.val_idx, cfg.distil_temperature)
                except Exception as exc:  # noqa: BLE001 - every rank raises it, none waits for answers
                    found = exc
            found = distributed.broadcast(found, self.dist)
            if isinstance(found, Exception):
                raise found
            soft, self.distil_line = found
            self.soft = soft.to(self.on)
        weight = class_weights(self.train_labels, cfg.class_weight)
        self.loss_fn = torch.nn.CrossEntropyLoss(
            weight=None if weight is None else weight.to(self.prec.device), label_smoothing=cfg.label_smoothing)
        self.steps = math.ceil(math.ceil(len(self.data.train_idx) / self.dist.world) / cfg.batch_size)
        if cfg.max_batches:
            self.steps = min(self.steps, cfg.max_batches)
        self.freezer = Freezer(self.model, self.spec, cfg)
        self.freezer.epoch(1)
        self.net, self.net_trainable = self.model, None  # the module the steps run: DDP around the model
        self.opt = optimizer(cfg, param_groups(self.model, self.spec.head, cfg))
        # fp16 gradients underflow without loss scaling; bf16 and fp32 need none (the scaler is then a no-op).
        self.scaler = torch.amp.GradScaler("cuda" if self.prec.device.startswith("cuda") else "cpu",
                                           enabled=self.prec.dtype == "fp16")
        self.sched = scheduler(cfg, self.opt, self.steps)
        self.ema = EMA(self.model, cfg.ema) if cfg.ema else None
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.state = _State(history=[])
        self.status = "finished"
        self.claimed = run_dir is not None
        name = distributed.broadcast(cfg.name or new_run_name(cfg.arch), self.dist)  # one name on every rank
        self.run_dir = run_dir or paths.runs_dir() / name

    # -- checkpoints -----------------------------------------------------------------
    def _card(self) -> dict:
        return {"arch": self.cfg.arch, "config": asdict(self.cfg),
                "data": {"name": self.prepared.name, "fingerprint": self.prepared.fingerprint,
                         "val_source": self.data.val_source,
                         "train_counts": torch.bincount(self.train_labels, minlength=NUM_CLASSES).tolist(),
                         "seen_image_ids": self.seen_ids},
                "started_from": self.weights_report.source if self.weights_report else "random initialisation",
                "precision": {"device": self.prec.device, "dtype": self.prec.dtype,
                              "channels_last": self.prec.channels_last, "why": self.prec.reason,
                              "compiled": self.cfg.compile},
                "world_size": self.dist.world, "batch_size_per_device": self.cfg.batch_size,
                "global_batch_size": self.cfg.batch_size * self.dist.world}

    def _save(self, filename: str, model: torch.nn.Module, best_epoch: int, weights: str) -> None:
        if not self.dist.main:
            return  # one writer: rank 0
        extra = {}
        if filename == "last.pt":
            extra = {"optimizer": self.opt.state_dict(),
                     "scheduler": self.sched.state_dict() if self.sched else None,
                     "scaler": self.scaler.state_dict(), "ema": self.ema.state_dict() if self.ema else None,
                     "generator": self.gen.get_state(), "torch_rng": torch.get_rng_state(),
                     "state": {k: v for k, v in asdict(self.state).items() if k != "history"}}
        best = self.state.history[best_epoch - 1] if best_epoch else {}
        checkpoint.save(self.run_dir / filename, self.preprocess, state_dict=model.state_dict(),
                        epoch=self.state.epoch, history=self.state.history, metrics=best, weights=weights,
                        **self._card(), **extra)

    def restore(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["state_dict"])
        self.opt.load_state_dict(ckpt["optimizer"])
        if self.sched is not None and ckpt.get("scheduler"):
            self.sched.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None and ckpt.get("ema"):
            self.ema.load_state_dict(ckpt["ema"])
        self.gen.set_state(ckpt["generator"])
        torch.set_rng_state(ckpt["torch_rng"])
        self.state = _State(**ckpt["state"], history=list(ckpt["history"]))
        self.freezer.epoch(self.state.epoch + 1)

    # -- the loop --------------------------------------------------------------------
    def _train_epoch(self, epoch: int) -> dict:
        cfg, d = self.cfg, self.data
        self.freezer.epoch(epoch)
        self.freezer.train_mode()
        # Every rank draws the same order and takes its own shard; augmentation draws from a stream of its own.
        order = distributed.shard(d.train_idx[epoch_order(self.train_labels, cfg.sampler, self.gen).numpy()],
                                  self.dist)
        augment_gen = torch.Generator(device=self.on).manual_seed(cfg.seed * 1_000_003 + epoch * 1_009 + self.dist.rank)
        # Dropout and drop-path draw from torch's global generators (CPU and every GPU): seeded afresh each epoch
        # from (seed, epoch, rank), so that each process of a group draws its own masks, and a run resumed at an
        # epoch's start draws what an uninterrupted one drew, on a GPU as on the CPU.
        torch.manual_seed(cfg.seed * 2_000_003 + epoch * 7_919 + self.dist.rank * 104_729 + 1)
        self.events.shard(epoch, self.dist.rank, order[:self.steps * cfg.batch_size].tolist())
        trainable = tuple(p.requires_grad for p in self.model.parameters())
        if trainable != self.net_trainable:  # DDP registers what is trainable when it is built
            self.net = _compiled(distributed.wrap(self.model, self.dist, self.prec.device), cfg)
            self.net_trainable = trainable
        # Losses, predictions and labels stay on the device until the epoch ends: a GPU never waits on the host
        # inside an epoch; the progress line reads the loss every PROGRESS_EVERY steps.
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.prec.device)
        preds, trues, loss_value = [], [], float("nan")
        seen, start = 0, time.perf_counter()
        order_cpu = torch.from_numpy(order)
        order_on = order_cpu.to(self.on)  # copied once an epoch: a step's indices then need nothing from the host
        self.events.epoch_start(epoch, cfg.epochs, self.steps)
        for step in range(self.steps):
            rows = slice(step * cfg.batch_size, (step + 1) * cfg.batch_size)
            idx = order_on[rows]
            x = normalise(aug.augment(_batch(self.images, order_cpu[rows], idx), cfg.augment, augment_gen),
                          self.mean, self.std)
            x = x.to(self.prec.device, non_blocking=True).contiguous(memory_format=self.prec.memory_format)
            y = self.labels_on[idx].to(self.prec.device, non_blocking=True)
            with self.prec.autocast():
                out = self.net(x)
            out = out.float()  # the losses in fp32, whatever the forward pass ran in
            loss = self.loss_fn(out, y)
            if self.soft is not None:
                loss = (1 - cfg.distil_weight) * loss + cfg.distil_weight * distil_loss(
                    out, self.soft[idx].to(self.prec.device), cfg.distil_temperature)
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
            if self.sched is not None and cfg.schedule != "plateau":
                self.sched.step()
            if self.ema is not None:
                self.ema.update(self.model)
            loss_sum += loss.detach().double() * len(idx)
            preds.append(out.detach().argmax(1))
            trues.append(y)
            if (step + 1) % PROGRESS_EVERY == 0 or step + 1 == self.steps or step == 0:
                loss_value = loss.item()
            seen += len(idx)
            self.events.batch(step + 1, loss_value, seen / (time.perf_counter() - start))
        elapsed = time.perf_counter() - start
        # Every process's rows count: its losses, predictions and labels gathered in row order (one process: its own).
        loss_total, seen_all = distributed.all_sum([float(loss_sum), float(seen)], self.dist)
        pred, true = torch.cat(preds).cpu(), torch.cat(trues).cpu()
        if self.dist.active:
            both = torch.stack([pred, true], 1)
            both = distributed.gather(np.arange(len(both)) * self.dist.world + self.dist.rank, both, self.dist,
                                      len(both) * self.dist.world)
            pred, true = both[:, 0], both[:, 1]
        train = summary(true.numpy(), pred.numpy())
        return {"train_loss": loss_total / seen_all, **{f"train_{k}": v for k, v in train.items()},
                "train_seconds": elapsed, "images_per_s": seen / elapsed}

    def _validate(self, model: torch.nn.Module, prefix: str) -> dict:
        d = self.data
        # Validate the model rank 0 saves: its batch-norm statistics on every process, so that the gathered
        # logits are all of that one model (each process updated its own statistics in its last steps).
        distributed.broadcast_buffers(model, self.dist)
        mine = np.arange(len(d.val_idx))[self.dist.rank::self.dist.world]  # each rank scores its share
        out = infer_logits(model, self.images[torch.from_numpy(d.val_idx[mine])], self.prec, self.mean, self.std,
                           batch_size=max(self.cfg.batch_size, 128))
        out = distributed.gather(mine, out, self.dist, len(d.val_idx))
        y = d.labels[torch.from_numpy(d.val_idx)]
        # The training criterion (class weights, smoothing), so the two loss curves are comparable.
        loss = self.loss_fn(out.to(self.prec.device), y.to(self.prec.device)).item()
        val = summary(y.numpy(), out.argmax(1).numpy())
        return {f"{prefix}loss": loss, **{f"{prefix}{k}": v for k, v in val.items()}}

    def _advice(self) -> list[str]:
        spec, side, advice = self.spec, min(self.size), []
        if (self.cfg.pretrained or self.cfg.weights) and side < spec.input_size // 2:
            advice.append(f"{spec.name}'s ImageNet weights were learnt at {spec.input_size} px and lose much of "
                          f"their benefit at {size_text(self.size)} px; prepare with --size {spec.input_size} (or at "
                          "least 128)")
        if self.cfg.compile and self.prec.device == "cpu":
            advice.append("--compile on CPU: in hamcli's measurements it was no faster than eager steps once "
                          "compiled, after a minute or two of compiling (docs/benchmarks.md, compile): on CPU, leave "
                          "it out")
        return advice

    @staticmethod
    def _better(score: float, best: float, best_epoch: int) -> bool:
        # Ties go to the later epoch: a flat validation score should not keep the least-trained model.
        # A NaN score (a diverged model) is never better.
        return not math.isnan(score) and (best_epoch == 0 or math.isnan(best) or score >= best)

    def _end_epoch(self, epoch: int, record: dict) -> None:
        cfg, st = self.cfg, self.state
        sign = MONITORS[cfg.monitor]
        st.epoch = epoch
        st.history.append(record)
        if cfg.refit:  # no validation rows: the last epoch is the one kept
            raw_score = score = float(epoch)
        else:
            raw_score = sign * record[f"val_{cfg.monitor}"]
            score = sign * record[f"val_ema_{cfg.monitor}"] if self.ema else raw_score
        if isinstance(self.sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.sched.step(sign * score)
        if self._better(score, st.best_score, st.best_epoch):
            st.best_score, st.best_epoch, st.bad_epochs = score, epoch, 0
            model, weights = (self.ema.module, "ema") if self.ema else (self.model, "raw")
            self._save("best.pt", model, epoch, weights)
        else:
            st.bad_epochs += 1
        if self.ema and self._better(raw_score, st.best_raw_score, st.best_raw_epoch):
            st.best_raw_score, st.best_raw_epoch = raw_score, epoch
            self._save("best_raw.pt", self.model, epoch, "raw")
        self._save("last.pt", self.model, st.best_epoch, "raw")

    def run(self) -> Path:
        """Train (the caller holds the run's name); returns the run folder."""
        before = torch.are_deterministic_algorithms_enabled()
        _kernels(self.cfg, self.prec.device)
        try:
            return self._run()
        finally:
            torch.use_deterministic_algorithms(before)  # `--deterministic` is this run's, not the process's

    def _run(self) -> Path:
        cfg, st = self.cfg, self.state
        main = self.dist.main
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        if st.epoch == 0 and main:  # a new run (not a resumed one) records its options
            fsio.write_json(self.run_dir / "config.json", {**asdict(cfg), "run": self.run_dir.name,
                                                           "data_fingerprint": self.prepared.fingerprint})
            fsio.write_text(self.run_dir / "config.toml", run_config_toml(cfg, self.prepared))
        self.events.start({"run": str(slots.public_path(self.run_dir)), "arch": cfg.arch,
                           "data": self.prepared.name,
                           "size": size_text(self.size), "train": len(self.data.train_idx),
                           "val": len(self.data.val_idx), "val_source": self.data.val_source,
                           "device": self.prec.device, "precision": self.prec.dtype,
                           "channels_last": self.prec.channels_last, "why": self.prec.reason,
                           "compiled": cfg.compile, "distil": self.distil_line, "start_epoch": st.epoch + 1,
                           "advice": self._advice(),
                           "weights": self.weights_report.line() if self.weights_report else None})
        try:
            for epoch in range(st.epoch + 1, cfg.epochs + 1):
                record = {"epoch": epoch, "lr": self.opt.param_groups[-1]["lr"], **self._train_epoch(epoch)}
                if len(self.data.val_idx):
                    record.update(self._validate(self.model, "val_"))
                if self.ema is not None and len(self.data.val_idx):
                    record.update(self._validate(self.ema.module, "val_ema_"))
                self._end_epoch(epoch, record)
                self.events.epoch_end({**record, "best_epoch": st.best_epoch})
                if cfg.early_stop and st.bad_epochs >= cfg.early_stop:
                    self.status = "stopped early"
                    break
        except KeyboardInterrupt:
            # last.pt holds the last completed epoch; the half-done one is dropped, so resume is exact.
            self.status = "interrupted"
            if main:
                self._write_reports()
            if self.run_dir.parent.name == slots.VERSIONS:
                saved = "the run it was to replace is unchanged; the new one is dropped by the next claim"
            elif st.epoch:
                saved = (f"{self.run_dir / 'last.pt'} holds epoch {st.epoch}: continue with "
                         f"`hamcli train --resume {self.run_dir.name}`")
            else:
                saved = "no epoch had finished"
            raise TrainingInterrupted(f"interrupted in epoch {st.epoch + 1}; {saved}") from None
        if main:
            self.calibration = self._calibrate()
            self._write_reports()
            self._warn_if_no_better_than_baseline()
            if self.run_dir.parent == paths.runs_dir():  # finished whole: now the default model
                set_latest(self.run_dir)
        distributed.barrier(self.dist)  # the others wait until rank 0 has written everything
        return self.run_dir

    def _warn_if_no_better_than_baseline(self) -> None:
        import warnings

        st, prefix = self.state, "val_ema_" if self.ema else "val_"
        present = int(torch.unique(self.data.labels[torch.from_numpy(self.data.val_idx)]).numel())
        if not st.best_epoch or not present:
            return
        best = st.history[st.best_epoch - 1][f"{prefix}balanced_accuracy"]
        if best <= 1 / present + 1e-9:
            warnings.warn(f"the model never beat the majority baseline on validation (balanced accuracy "
                          f"{best:.3f}, the same as always answering one class); train longer, change --lr, "
                          "or check the prepared data", stacklevel=2)

    def _calibrate(self) -> dict | None:
        """Fit temperature (and, if asked, the prior shift) on the validation rows; record it in best.pt."""
        import copy

        from hamcli.training.calibrate import calibrate

        d, found = self.data, {}
        if self.cfg.refit:  # it trained on its source's validation rows: none are left to fit on
            return {"fitted_on": None, "why": "a refit trains on its validation rows too; `hamcli calibrate RUN "
                                              "--folds K` fits its postprocessing on out-of-fold predictions of its "
                                              "recipe"} if not self.cfg.refit_fold else None
        if not len(d.val_idx) or not self.state.best_epoch:
            return None
        y = d.labels[torch.from_numpy(d.val_idx)].numpy()
        counts = torch.bincount(self.train_labels, minlength=NUM_CLASSES).tolist()
        for name in ("best.pt", "best_raw.pt"):
            path = self.run_dir / name
            if not path.exists():
                continue
            model = copy.deepcopy(self.model)
            model.load_state_dict(checkpoint.load(path)["state_dict"])
            out = infer_logits(model, self.images[torch.from_numpy(d.val_idx)], self.prec, self.mean, self.std,
                               batch_size=max(self.cfg.batch_size, 128)).numpy()
            post, record = calibrate(out, y, counts, self.cfg.prior_shift,
                                     melanoma_sensitivity=self.cfg.melanoma_sensitivity,
                                     melanoma_specificity=self.cfg.melanoma_specificity)
            checkpoint.update(path, postprocess=post.as_dict(), calibration=record)
            found[name] = record
        return found.get("best.pt")

    def _write_reports(self) -> None:
        from hamcli.training.report import write_reports

        write_reports(self.run_dir, self.state.history, self.state.best_epoch, self.cfg.monitor,
                      "val_ema_" if self.ema else "val_", getattr(self, "calibration", None), self.status)
