"""`hamcli models` and `hamcli train`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hamcli.cli import render


def models(as_json: bool = typer.Option(False, "--json")) -> None:
    """List the model zoo: parameters, default input size, ImageNet weights, Grad-CAM layer."""
    from hamcli.zoo import MODELS, build_model, count_parameters

    rows = [{"name": s.name, "parameters": count_parameters(build_model(s.name)), "input_size": s.default_size,
             "imagenet_weights": s.torchvision, "gradcam_layer": s.cam_layer, "description": s.description}
            for s in MODELS.values()]
    if as_json:
        render.print_json(rows)
        return
    from rich.table import Table

    table = Table(title="Model zoo (hamcli train --arch NAME)")
    table.add_column("name", no_wrap=True)
    for col in ("params", "size", "ImageNet", "Grad-CAM layer"):
        table.add_column(col, no_wrap=True)
    table.add_column("description")
    for r in rows:
        table.add_row(r["name"], f"{r['parameters'] / 1e6:.2f} M", str(r["input_size"]),
                      "yes" if r["imagenet_weights"] else "no", r["gradcam_layer"], r["description"])
    render.out.print(table)


class _Progress:
    """Draws training progress on stderr with rich."""

    def __init__(self, quiet: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.quiet = quiet
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("loss {task.fields[loss]:.3f}  {task.fields[speed]:.0f} img/s"),
                                 TimeRemainingColumn(), console=render.err, disable=quiet, transient=True)
        self.task = None

    def start(self, info: dict) -> None:
        for line in info["advice"]:
            render.warn(line)
        if not self.quiet:
            render.info(f"run {info['run']}\n  {info['arch']} on {info['data']} at {info['size']}px: "
                        f"{info['train']} train / {info['val']} val images ({info['val_source']})\n"
                        f"  device {info['device']}, {info['precision']}"
                        f"{' + channels-last' if info['channels_last'] else ''} ({info['why']})")

    def epoch_start(self, epoch: int, epochs: int, batches: int) -> None:
        if self.task is None:
            self.progress.start()
        else:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(f"epoch {epoch}/{epochs}", total=batches, loss=0.0, speed=0.0)

    def batch(self, done: int, loss: float, images_per_s: float) -> None:
        self.progress.update(self.task, completed=done, loss=loss, speed=images_per_s)

    def epoch_end(self, r: dict) -> None:
        if not self.quiet:
            star = " *" if r["best_epoch"] == r["epoch"] else ""
            render.info(f"epoch {r['epoch']:>3}  loss {r['train_loss']:.3f}/{r['val_loss']:.3f}  "
                        f"acc {r['val_accuracy']:.3f}  bal.acc {r['val_balanced_accuracy']:.3f}  "
                        f"F1 {r['val_macro_f1']:.3f}  {r['images_per_s']:.0f} img/s{star}")

    def stop(self) -> None:
        self.progress.stop()


def train(
    arch: str = typer.Option("lenet", "--arch", "-a", help="Architecture (`hamcli models`)."),
    data: Optional[str] = typer.Option(None, "--data", help="Prepared dataset (default: the latest)."),
    epochs: int = typer.Option(10, "--epochs"),
    batch_size: int = typer.Option(64, "--batch-size"),
    lr: float = typer.Option(1e-3, "--lr"),
    weight_decay: float = typer.Option(1e-4, "--weight-decay"),
    optimizer: str = typer.Option("adamw", "--optimizer", help="adam, adamw or sgd."),
    schedule: str = typer.Option("cosine", "--schedule", help="cosine, onecycle, plateau or none."),
    early_stop: int = typer.Option(0, "--early-stop", help="Stop after N epochs without improvement (0: off)."),
    monitor: str = typer.Option("balanced_accuracy", "--monitor", help="balanced_accuracy, macro_f1 or loss."),
    class_weight: str = typer.Option("none", "--class-weight", help="none, balanced or sqrt."),
    sampler: str = typer.Option("none", "--sampler", help="none or weighted (oversampling inside train)."),
    label_smoothing: float = typer.Option(0.0, "--label-smoothing"),
    augment: str = typer.Option("light", "--augment", help="none, light or strong."),
    fold: Optional[int] = typer.Option(None, "--fold", help="Validate on fold K of a prepared --folds dataset."),
    all_folds: bool = typer.Option(False, "--all-folds", help="Train one model per fold; report mean and std."),
    seed: int = typer.Option(42, "--seed"),
    pretrained: bool = typer.Option(False, "--pretrained/--no-pretrained", help="Start from ImageNet weights."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Start from a local state dict."),
    freeze_backbone: bool = typer.Option(False, "--freeze-backbone", help="Train only the classifier head."),
    unfreeze_after: Optional[int] = typer.Option(None, "--unfreeze-after", help="Fine-tune everything from epoch N."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    precision: str = typer.Option("auto", "--precision", help="auto, fp32, bf16 or fp16."),
    name: Optional[str] = typer.Option(None, "--name", help="Run name (default: ARCH-TIMESTAMP)."),
    resume: Optional[str] = typer.Option(None, "--resume", help="Continue the interrupted run RUN."),
    max_batches: Optional[int] = typer.Option(None, "--max-batches", help="Cap batches per epoch (smoke runs)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    as_json: bool = typer.Option(False, "--json", help="Print a final summary as JSON on stdout."),
) -> None:
    """Train a classifier on a prepared dataset; writes runs/<name>/ with best.pt, last.pt and curves."""
    import json

    from hamcli.train import engine

    events = _Progress(quiet)
    try:
        if resume:
            run_dir = engine.resume(resume, events)
        else:
            cfg = engine.TrainConfig(
                arch=arch, data=data, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                optimizer=optimizer, schedule=schedule, early_stop=early_stop, monitor=monitor,
                class_weight=class_weight, sampler=sampler, label_smoothing=label_smoothing, augment=augment,
                fold=fold, seed=seed, pretrained=pretrained, weights=str(weights) if weights else None,
                freeze_backbone=freeze_backbone, unfreeze_after=unfreeze_after, device=device,
                precision=precision, name=name, max_batches=max_batches)
            run_dir = engine.train_folds(cfg, events) if all_folds else engine.train(cfg, events)
    finally:
        events.stop()
    if (run_dir / "family.json").exists():
        result = json.loads((run_dir / "family.json").read_text())
        lines = [f"{k.removeprefix('val_')}: {v['mean']:.3f} ± {v['std']:.3f}" for k, v in result["val"].items()]
        summary = {"run": str(run_dir), **result}
    else:
        result = json.loads((run_dir / "metrics.json").read_text())
        lines = [f"{k}: {v:.3f}" for k, v in result["best"].items()]
        summary = {"run": str(run_dir), **result}
    if as_json:
        render.print_json(summary)
    else:
        render.info(f"saved {run_dir} (validation at the best epoch: {', '.join(lines)})")


def register(app: typer.Typer) -> None:
    app.command()(models)
    app.command()(train)
