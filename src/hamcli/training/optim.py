"""Optimiser, learning-rate schedule, layer freezing and the moving average of the weights.

Fine-tuning as timm does it: the new head learns at `lr`, the pretrained backbone at `lr x
backbone_lr_mult`; an optional linear warm-up; frozen layers keep their batch-norm statistics.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from hamcli.errors import UsageError
from hamcli.models.zoo import ModelSpec
from hamcli.training.config import MONITORS, TrainConfig


def param_groups(model: nn.Module, head: str, cfg: TrainConfig) -> list[dict]:
    """Two groups, head and backbone, with their own learning rates; no weight decay on norms and biases."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        is_head = name.startswith(head + ".")
        decay = p.ndim > 1
        groups.setdefault((is_head, decay), []).append(p)
    out = []
    for (is_head, decay), params in sorted(groups.items()):
        lr = cfg.lr if is_head else cfg.lr * cfg.backbone_lr_mult
        out.append({"params": params, "lr": lr, "weight_decay": cfg.weight_decay if decay else 0.0,
                    "name": f"{'head' if is_head else 'backbone'}{'' if decay else '-no-decay'}"})
    return out


def optimizer(cfg: TrainConfig, groups: list[dict]) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(groups, lr=cfg.lr)


def scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer, steps_per_epoch: int):  # noqa: ANN201
    """Stepped once per batch (plateau: once per epoch, on the monitored metric).

    cosine: linear warm-up (if asked), then cosine down to 1 % of the peak. onecycle: torch's OneCycleLR
    (up from 1/25 of the peak over the warm-up, 30 % of the run unless --warmup-epochs says, then down to
    1/250000, with Adam's beta1 cycled); for runs too short for it (it divides by zero), the same curve as
    a plain factor.
    """
    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.schedule == "plateau":
        mode = "max" if MONITORS[cfg.monitor] > 0 else "min"
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=mode, factor=0.3, patience=2)
    onecycle = cfg.schedule == "onecycle"
    warm = int((cfg.warmup_epochs / cfg.epochs if cfg.warmup_epochs or not onecycle else 0.3) * total)
    if onecycle and warm >= 2 and total - warm >= 2:  # torch's, with its momentum cycle, where it can count
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in opt.param_groups],
                                                   total_steps=total, pct_start=warm / total)
    if cfg.schedule == "none" and not warm:
        return None

    def factor(step: int) -> float:
        if step < warm:
            if onecycle:
                return 1 / 25 + (1 - 1 / 25) * 0.5 * (1 - math.cos(math.pi * step / warm))
            return 0.01 + 0.99 * step / warm
        if cfg.schedule == "none":
            return 1.0
        low = 1 / 25 / 1e4 if onecycle else 0.01
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return low + (1 - low) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def stage_modules(model: nn.Module, spec: ModelSpec) -> list[tuple[str, nn.Module]]:
    """The backbone's modules in input order, as the zoo lists them ("name.*": the children of name)."""
    out = []
    for entry in spec.stages:
        if entry.endswith(".*"):
            parent = entry[:-2]
            out.extend((f"{parent}.{name}", m) for name, m in model.get_submodule(parent).named_children())
        else:
            out.append((entry, model.get_submodule(entry)))
    return out


class Freezer:
    """Which parameters learn: the whole backbone while `--freeze-backbone` holds, and the first
    `--freeze-early` modules always. Frozen modules stay in eval mode, so their batch norm neither
    updates its statistics nor normalises with the batch's."""

    def __init__(self, model: nn.Module, spec: ModelSpec, cfg: TrainConfig) -> None:
        stages = stage_modules(model, spec)
        if cfg.freeze_early > len(stages):
            raise UsageError(f"--freeze-early {cfg.freeze_early}: {spec.name} has {len(stages)} backbone modules")
        self.model, self.head, self.cfg = model, spec.head, cfg
        self.early = [m for _, m in stages[:cfg.freeze_early]]
        self.backbone_frozen = cfg.freeze_backbone

    def epoch(self, epoch: int) -> None:
        """Set trainable flags for `epoch` (1-based); call before model.train()."""
        cfg = self.cfg
        if self.backbone_frozen and cfg.unfreeze_after is not None and epoch >= cfg.unfreeze_after:
            self.backbone_frozen = False
        head = self.model.get_submodule(self.head)
        for p in self.model.parameters():
            p.requires_grad = not self.backbone_frozen
        for p in head.parameters():
            p.requires_grad = True
        for module in self.early:
            for p in module.parameters():
                p.requires_grad = False

    def train_mode(self) -> None:
        """model.train(), except every module whose parameters are all frozen (batch norm, drop-path)."""
        self.model.train()
        for module in self.model.modules():
            params = list(module.parameters())
            if params and not any(p.requires_grad for p in params):
                module.eval()


class EMA:
    """An exponential moving average of the weights (timm's ModelEmaV3: decay warms up over the first steps)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad = False
        self.updates = 0

    @staticmethod
    def _tensors(module: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(floating, other) parameters and buffers, in the module's own order."""
        every = [*module.parameters(), *module.buffers()]
        return [t for t in every if t.is_floating_point()], [t for t in every if not t.is_floating_point()]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One step of the average: a fused lerp over every floating tensor at once (one kernel launch per
        group, not a Python loop over hundreds of tensors); counters are copied."""
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        ema_float, ema_other = self._tensors(self.module)
        float_, other = self._tensors(model)
        torch._foreach_lerp_(ema_float, [t.detach() for t in float_], 1 - d)
        for mine, theirs in zip(ema_other, other, strict=True):
            mine.copy_(theirs)

    def state_dict(self) -> dict:
        return {"state_dict": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["state_dict"])
        self.updates = int(state["updates"])
