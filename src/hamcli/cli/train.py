"""`hamcli train`."""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Optional

import typer

import hamcli.cli.render as render
from hamcli.cli.options import choice, flag, json_alias, output_format
from hamcli.models.precision import DEVICES, PRECISIONS
from hamcli.models.zoo import MODELS
from hamcli.runs import resolve_model
from hamcli.training.config import (
    AUGMENTS,
    CLASS_WEIGHTS,
    MONITORS,
    OPTIMIZERS,
    SAMPLERS,
    SCHEDULES,
    TrainEvents,
)

ESTIMATE_AFTER = 10  # steps timed before the run's length is estimated


def _estimate(seconds: float) -> str:
    """How long something will take, in words: "under a second", "about 40 s", "about 12 min"."""
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"about {seconds:.0f} s"
    if seconds < 90 * 60:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"


class _Progress(TrainEvents):
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
        if info["weights"] and not self.quiet:
            render.info(info["weights"])
        if not self.quiet:
            render.info(f"run {info['run']}\n  {info['arch']} on {info['data']} at {info['size']}px: "
                        f"{info['train']} train / {info['val']} val images ({info['val_source']})\n"
                        f"  device {info['device']}, {info['precision']}"
                        f"{' + channels-last' if info['channels_last'] else ''} ({info['why']})"
                        f"{'; torch.compile (the first steps compile)' if info.get('compiled') else ''}"
                        f"{chr(10) + '  ' + info['distil'] if info.get('distil') else ''}")

    def epoch_start(self, epoch: int, epochs: int, batches: int) -> None:
        if self.task is None:
            self.progress.start()
            self.first = (epoch, epochs, batches, time.perf_counter())
        else:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(f"epoch {epoch}/{epochs}", total=batches, loss=0.0, speed=0.0)

    def batch(self, done: int, loss: float, images_per_s: float) -> None:
        self.progress.update(self.task, completed=done, loss=loss, speed=images_per_s)
        first = getattr(self, "first", None)
        if first and not self.quiet and (done >= ESTIMATE_AFTER or done == first[2]):
            # once, from the first steps of this session: the time the rest of the run will take
            epoch, epochs, batches, start = first
            left = (epochs - epoch + 1) * batches - done
            per_batch = (time.perf_counter() - start) / done
            render.info(f"{_estimate(left * per_batch)} for the {epochs - epoch + 1} epoch(s) to go at "
                        f"{images_per_s:.1f} img/s (the first {done} steps; validation adds a little)")
            self.first = None

    def epoch_end(self, r: dict) -> None:
        if not self.quiet:
            star = " *" if r["best_epoch"] == r["epoch"] else ""
            ema = (f"  (EMA: acc {r['val_ema_accuracy']:.3f}  bal.acc {r['val_ema_balanced_accuracy']:.3f})"
                   if "val_ema_accuracy" in r else "")
            if "val_loss" not in r:  # a refit: no validation rows
                render.info(f"epoch {r['epoch']:>3}  train loss {r['train_loss']:.3f}  train acc "
                            f"{r['train_accuracy']:.3f}  {r['images_per_s']:.0f} img/s")
                return
            render.info(f"epoch {r['epoch']:>3}  loss {r['train_loss']:.3f}/{r['val_loss']:.3f}  "
                        f"acc {r['val_accuracy']:.3f}  bal.acc {r['val_balanced_accuracy']:.3f}  "
                        f"F1 {r['val_macro_f1']:.3f}{ema}  {r['images_per_s']:.0f} img/s{star}")

    def stop(self) -> None:
        if self.task is not None:  # never started (an error before the first epoch): nothing to clear
            self.progress.stop()


def train(
    ctx: typer.Context,
    recipe: Optional[str] = typer.Option(None, "--recipe", help="Start from a named recipe (`hamcli recipes`); it "
                                         "prepares the data it needs. Options given here override it."),
    config: Optional[Path] = typer.Option(None, "--config", help="Read options from a TOML file's \\[train] table "
                                          "(a run's config.toml repeats it); options given here override it."),
    arch: str = typer.Option("lenet", "--arch", "-a", **choice(MODELS, "Architecture (`hamcli models`).", "ARCH")),
    data: Optional[str] = typer.Option(None, "--data", help="Prepared dataset (default: the latest)."),
    epochs: int = typer.Option(10, "--epochs", help="Training epochs."),
    batch_size: int = typer.Option(64, "--batch-size", help="Images per step."),
    lr: float = typer.Option(1e-3, "--lr", help="Peak learning rate (of the head, with --backbone-lr-mult)."),
    weight_decay: float = typer.Option(1e-4, "--weight-decay", help="Decoupled weight decay (not on norms/biases)."),
    optimizer: str = typer.Option("adamw", "--optimizer", **choice(OPTIMIZERS, "Optimiser.")),
    schedule: str = typer.Option("cosine", "--schedule", **choice(SCHEDULES, "Learning-rate schedule.")),
    warmup_epochs: float = typer.Option(0.0, "--warmup-epochs", help="Linear warm-up over the first N epochs."),
    early_stop: int = typer.Option(0, "--early-stop", help="Stop after N epochs without improvement (0: off)."),
    monitor: str = typer.Option("balanced_accuracy", "--monitor",
                                **choice(MONITORS, "Validation metric that picks the best epoch.")),
    class_weight: str = typer.Option("none", "--class-weight", **choice(CLASS_WEIGHTS, "Loss weights by class.")),
    sampler: str = typer.Option("none", "--sampler", **choice(SAMPLERS, "weighted: oversample rare classes.")),
    label_smoothing: float = typer.Option(0.0, "--label-smoothing", help="Label smoothing, 0 to <1."),
    augment: str = typer.Option("light", "--augment", **choice(AUGMENTS, "Augmentation strength.")),
    fold: Optional[int] = typer.Option(None, "--fold", help="Validate on fold K of a prepared --folds dataset."),
    all_folds: bool = flag("--all-folds", help="Train one model per fold; report mean and std."),
    seed: int = typer.Option(42, "--seed", help="Seed for initialisation, order and augmentation (and the "
                             "validation carve-out, unless --val-seed)."),
    val_seed: Optional[int] = typer.Option(None, "--val-seed", help="Seed of the validation carve-out alone, so "
                                           "that runs of several --seed values validate on the same rows."),
    pretrained: bool = typer.Option(False, "--pretrained/--no-pretrained", metavar="",
                                    help="Start from ImageNet weights (`hamcli models` says which are here)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Start from this file: ImageNet weights "
                                           "(with --pretrained) or any state dict / hamcli checkpoint."),
    freeze_backbone: bool = flag("--freeze-backbone", help="Train only the classifier head."),
    unfreeze_after: Optional[int] = typer.Option(None, "--unfreeze-after", help="Fine-tune everything from epoch N."),
    freeze_early: int = typer.Option(0, "--freeze-early", help="Keep the first N backbone modules (stem first) "
                                     "frozen all run: their ImageNet edge filters need no tuning, and it saves "
                                     "much of the time."),
    backbone_lr_mult: float = typer.Option(1.0, "--backbone-lr-mult", help="The pretrained backbone learns at "
                                           "--lr x this (e.g. 0.1); the new head at --lr."),
    ema: float = typer.Option(0.0, "--ema", help="Keep a moving average of the weights with this decay (e.g. "
                              "0.999); it is validated each epoch and saved as best.pt, the raw weights as "
                              "best_raw.pt."),
    prior_shift: str = typer.Option("none", "--prior-shift", help="After training, shift decisions towards rare "
                                    "classes by TAU x log(class frequency): none, a number, or auto (the shift "
                                    "with the best validation balanced accuracy costing at most 2 points of "
                                    "validation accuracy). The temperature is always fitted on validation."),
    melanoma_sensitivity: float = typer.Option(0.0, "--melanoma-sensitivity", help="After training, set the "
                                               "operating point: raise melanoma's score until its validation "
                                               "sensitivity reaches this (e.g. 0.65), at some cost in accuracy. "
                                               "0 keeps the plain argmax."),
    melanoma_specificity: float = typer.Option(0.0, "--melanoma-specificity", help="With "
                                               "--melanoma-sensitivity: stop before melanoma's validation "
                                               "specificity falls below this (e.g. 0.9); alone: the most "
                                               "sensitive point at or above it. 0: no floor."),
    device: str = typer.Option("auto", "--device", **choice(DEVICES, "Device.")),
    precision: str = typer.Option("auto", "--precision", **choice(PRECISIONS, "Numeric precision; auto "
                                                                  "follows a table by CPU and architecture.")),
    name: Optional[str] = typer.Option(None, "--name", help="Run name (default: ARCH-TIMESTAMP)."),
    resume: Optional[str] = typer.Option(None, "--resume", help="Continue the interrupted run RUN, exactly."),
    refit: Optional[str] = typer.Option(None, "--refit", help="Train the finished run RUN's recipe again on its "
                                        "training and validation rows together, for RUN's best epoch count, "
                                        "keeping the last; it keeps none of RUN's calibration (`hamcli calibrate "
                                        "REFIT --folds K` fits its own). Options given here override RUN's."),
    devices: int = typer.Option(1, "--devices", min=1, help="Train on N processes of this machine with "
                                "torch.distributed (DDP), as `torchrun --nproc-per-node N` would; --batch-size is "
                                "per process."),
    overwrite: bool = flag("--overwrite", help="Replace an existing run of that name, once the new one has "
                           "finished (until then the old one stays)."),
    max_batches: Optional[int] = typer.Option(None, "--max-batches", help="Cap batches per epoch (smoke runs)."),
    sync_bn: bool = flag("--sync-bn", help="Several GPUs: batch-norm statistics over the global batch."),
    deterministic: bool = flag("--deterministic", help="Deterministic kernels only (slower on GPUs): reruns and "
                               "resumed runs give the same weights on a GPU too."),
    compile: bool = flag("--compile", help="torch.compile the network: the first steps compile, later ones may "
                         "run faster; on 2 CPU cores it did not pay (docs/benchmarks.md), on GPUs unmeasured."),
    distil_from: Optional[str] = typer.Option(None, "--distil-from", help="A teacher (run, family, ensemble or "
                                              "checkpoint at this data's size, that never saw its test images; "
                                              "one that saw its validation images is said): learn from its "
                                              "softened probabilities too."),
    distil_weight: float = typer.Option(0.5, "--distil-weight", help="The teacher's share of the loss, in (0, 1]."),
    distil_temperature: float = typer.Option(2.0, "--distil-temperature", help="How much the teacher's "
                                             "probabilities are softened (2-4 is usual)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="A quick trial: train on about N images (whole "
                                        "lesions, in the classes' proportions) and validate on as many in "
                                        "proportion."),
    quiet: bool = flag("--quiet", "-q", help="No progress."),
    fmt: str = output_format(("table", "json")),
    as_json: bool = json_alias(),
) -> None:
    """Train a classifier on a prepared dataset; writes runs/<name>/ with best.pt, last.pt and curves."""
    import json

    from hamcli.models.precision import resolve_device
    from hamcli.training import distributed
    from hamcli.training.folds import train_folds
    from hamcli.training.runner import resume as resume_run
    from hamcli.training.runner import train as train_run

    rank = distributed.context()
    if devices > 1 and not rank.active:  # start the processes here, as torchrun would
        resolved = None if resume else _resolve(ctx, recipe, config, quiet)
        if resolved:
            distributed.check_sync_bn(resolved[0].sync_bn, resolve_device(resolved[0].device))
        job = functools.partial(_job, resolved, resume, quiet)
        distributed.launch(devices, job)
        run_dir = resolve_model(resume) if resume else resolve_model(None)
    else:
        events = _Progress(quiet or not rank.main)  # under torchrun, rank 0 alone shows progress
        try:
            if resume:
                run_dir = resume_run(resume, events)
            else:
                cfg, folds = _resolve(ctx, recipe, config, quiet)
                run_dir = train_folds(cfg, events) if folds else train_run(cfg, events)
        finally:
            events.stop()
        if not rank.main:
            return
    if (run_dir / "family.json").exists():
        result = json.loads((run_dir / "family.json").read_text())
        values = {k.removeprefix("val_"): f"{v['mean']:.3f} ± {v['std']:.3f}" for k, v in result["val"].items()}
    else:
        result = json.loads((run_dir / "metrics.json").read_text())
        values = {k: f"{v:.3f}" for k, v in result["best"].items() if isinstance(v, (int, float))}
        if not values:  # a refit: no validation rows, so the training figures of its last epoch
            last = json.loads((run_dir / "metrics.json").read_text())
            values = {"epochs": str(last["epochs_run"]), "validation": "none (a refit; see --refit)"}
    if as_json or fmt == "json":
        render.print_json({"run": str(run_dir), **result})
        return
    table = render.table(f"{run_dir}: validation at the best epoch", ("metric", "value"), numeric=("value",))
    for key, value in values.items():
        render.add_row(table, (key.replace("_", " "), value))
    render.print_table(table)
    _say_postprocessing(result.get("calibration") or {})


def _say_postprocessing(record: dict) -> None:
    """After training: what the prior shift and the melanoma operating point did on the validation rows (the
    table above shows the model before them)."""
    if "before" not in record or "after" not in record:  # a refit: nothing fitted yet (`calibrate --folds`)
        return
    before, after = record["before"], record["after"]
    parts = [f"prior shift tau {record['tau']:g}"] if record.get("tau") else []
    if record.get("melanoma_bias"):
        parts.append(f"melanoma offset {record['melanoma_bias']:+.2f} (melanoma sensitivity "
                     f"{before['melanoma_sensitivity']:.3f} -> {after['melanoma_sensitivity']:.3f})")
    if parts:
        images = f"{record['images']} validation image{'s' if record['images'] != 1 else ''}"
        render.info(f"then {' and '.join(parts)}, fitted on {images}: accuracy "
                    f"{before['accuracy']:.3f} -> {after['accuracy']:.3f}, balanced accuracy "
                    f"{before['balanced_accuracy']:.3f} -> {after['balanced_accuracy']:.3f}; predict, evaluate, "
                    "gradcam, serve and export apply it")
    _say_where_the_point_stopped(record)


def _job(resolved, resume: str | None, quiet: bool, rank: int) -> None:  # noqa: ANN001 - (TrainConfig, bool)
    """What each process of `--devices N` runs (a picklable function of the rank)."""
    from hamcli.training.folds import train_folds
    from hamcli.training.runner import resume as resume_run
    from hamcli.training.runner import train as train_run

    render.show_warnings_as_lines()  # a spawned process starts without the app's settings
    events = _Progress(quiet or rank != 0)
    try:
        if resume:
            resume_run(resume, events)
        else:
            cfg, folds = resolved
            (train_folds if folds else train_run)(cfg, events)
    finally:
        events.stop()


def _resolve(ctx: typer.Context, recipe: str | None, config: Path | None, quiet: bool):  # noqa: ANN202
    """The TrainConfig: a recipe or config file's [train] table, then the options given on the command line."""
    from dataclasses import fields

    from hamcli.errors import UsageError
    from hamcli.recipes import book
    from hamcli.training.config import TrainConfig

    if recipe and config:
        raise UsageError("give --recipe or --config, not both")
    refit = ctx.params.get("refit")
    if refit and (recipe or config or ctx.params.get("all_folds")):
        raise UsageError("--refit takes its options from the run it refits; give no --recipe, --config or "
                         "--all-folds")
    given = {name for name in ctx.params if ctx.get_parameter_source(name).name in ("COMMANDLINE", "ENVIRONMENT")}
    names = {f.name for f in fields(TrainConfig)}
    values = {k: (str(v) if k == "weights" and v is not None else v) for k, v in ctx.params.items()
              if k in names and k in given}
    source = book.load(recipe) if recipe else book.from_file(config) if config else None
    options = {**(source.train if source else {}), **values}
    refit = refit or options.get("refit")  # `refit = "RUN"` in a config file means what --refit RUN means
    if refit:
        from hamcli.training.runner import refit_options

        base = refit_options(refit)
        changed = [k for k in ("data", "fold", "arch") if k in options and options[k] != base.get(k)]
        if changed:
            raise UsageError(f"--refit {refit}: a refit trains {refit}'s recipe on its own rows; it cannot change "
                             f"{', '.join('--' + k for k in changed)}")
        cfg = TrainConfig(**{**base, **{k: v for k, v in options.items() if k != "refit"}, "refit": base["refit"]})
        cfg.check()
        return cfg, False
    if source is not None and "epochs" in values and "warmup_epochs" not in values and \
            source.train.get("warmup_epochs") and source.train.get("epochs"):
        # a recipe shortened for a first try keeps its warm-up in proportion, not its count of epochs
        scaled = round(float(source.train["warmup_epochs"]) * values["epochs"] / int(source.train["epochs"]), 3)
        if scaled != source.train["warmup_epochs"]:
            options["warmup_epochs"] = scaled
            if not quiet:
                render.info(f"warm-up scaled with the run: {scaled:g} of {values['epochs']} epochs (the recipe: "
                            f"{source.train['warmup_epochs']:g} of {source.train['epochs']})")
    # every option is checked before any data is prepared (preparing can take minutes)
    try:
        TrainConfig(**{**options, "data": options.get("data") or "not-yet-prepared"}).check()
    except UsageError as exc:
        if source is None:
            raise
        from_source = [k for k in source.train if k not in values and f"--{k.replace('_', '-')}" in str(exc)]
        if not from_source:
            raise
        option = from_source[0]
        raise UsageError(f"{exc} (the {recipe or config} value of {option}, {source.train[option]!r}; give "
                         f"--{option.replace('_', '-')} yourself)") from None
    folds = ctx.params["all_folds"] if "all_folds" in given else bool(source and source.all_folds)
    if ctx.params.get("fold") is not None:  # one fold of a recipe that trains them all
        if "all_folds" in given and folds:
            raise UsageError("give --fold K (one fold) or --all-folds (every fold), not both")
        folds = False
    if source is not None and "data" not in options:
        with render.count_progress(f"preparing {source.data_name}", quiet) as progress:
            options["data"], fresh = book.prepared_for(source, progress)
        what = book.describe_prepare(source.prepare)
        render.info(f"prepared {options['data']} for the recipe ({what})" if fresh else
                    f"training on the prepared dataset {options['data']} ({what})")
    return TrainConfig(**options), folds


def ensemble(
    runs: list[str] = typer.Argument(..., metavar="RUN", help="Two or more finished runs of one input size, "
                                     "e.g. one recipe trained with different --seed values; a checkpoint file, "
                                     "or a one-file ensemble such as `bundled`, gives all its members."),
    name: str = typer.Option(..., "--name", "-n", help="Name of the ensemble, used like a run name."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing ensemble of that name."),
    set_default: bool = flag("--set-default", help="Make it the default model of predict, gradcam, serve and "
                             "load_model() (otherwise name it with --model)."),
) -> None:
    """Use several finished runs as one model, the average of their probabilities.

    predict, evaluate, export and gradcam then take NAME. Where the runs chose their epochs on the same
    validation rows (one split, one --val-seed), the average's temperature is fitted there; `hamcli calibrate
    NAME --melanoma-sensitivity S` fits its operating point."""
    from hamcli.runs import latest
    from hamcli.training.folds import combine

    family = combine(runs, name, overwrite, set_default)
    info = json.loads((family / "family.json").read_text())
    render.info(f"ensemble {family.name}: {len(info['members'])} models ({', '.join(info['members'])})")
    calibration = info.get("calibration") or {}
    if calibration.get("fitted_on"):
        render.info(f"temperature {calibration['temperature']:.2f}, fitted on {calibration['images']} images of "
                    f"{calibration['fitted_on']}")
    else:
        render.warn(f"its probabilities are the members' average, uncalibrated: {calibration.get('why', '')}")
    if not set_default:
        current = latest()
        render.info(f"the default model is still {current.name if current else 'the bundled model'}; use this one "
                    f"with --model {family.name}, or make it the default with --set-default")


def calibrate(
    run: str = typer.Argument(..., metavar="RUN", help="A finished run, a refit (with --folds), a K-fold family, "
                              "or an ensemble of runs validated on the same rows (hamcli ensemble)."),
    melanoma_sensitivity: Optional[float] = typer.Option(None, "--melanoma-sensitivity", help="Raise melanoma's "
                                                         "score until its sensitivity reaches this (e.g. 0.6) on "
                                                         "rows the model never trained on, at some cost in "
                                                         "accuracy; 0 alone removes the operating point (default: the "
                                                         "run's own target)."),
    melanoma_specificity: Optional[float] = typer.Option(None, "--melanoma-specificity", help="While raising "
                                                         "melanoma's score, never let its specificity on those "
                                                         "rows fall below this (e.g. 0.9; with "
                                                         "--melanoma-sensitivity 0: the most sensitive point at or "
                                                         "above it; 0: no floor; default: the run's own)."),
    prior_shift: Optional[str] = typer.Option(None, "--prior-shift", help="none, auto (TAU in 0-2 with the best "
                                              "balanced accuracy costing at most 0.02 accuracy) or a number from 0 "
                                              "to 5 (default: the run's own)."),
    folds: Optional[int] = typer.Option(None, "--folds", help="For a refit: train its recipe K more times, each "
                                        "without one lesion-grouped fold of its rows, and fit on those "
                                        "out-of-fold predictions."),
    fmt: str = output_format(("table", "json")),
    as_json: bool = json_alias(),
) -> None:
    """Fit a finished model's temperature, prior shift and melanoma operating point again, without training.

    It fits on rows the model never trained on: a run's validation rows, a family's own averaged prediction on
    rows no member trained on, or (a refit, --folds K) out-of-fold predictions of its recipe. The test split
    plays no part."""
    from hamcli.training.recalibrate import ACCURACY_WARNING, accuracy_cost, recalibrate

    events = _Progress(quiet=fmt == "json" or as_json)
    try:
        record = recalibrate(run, melanoma_sensitivity, folds, events, prior_shift, melanoma_specificity)
    finally:
        events.stop()
    if fmt == "json" or as_json:
        render.print_json(record)
    else:
        kept = ("accuracy", "balanced_accuracy", "melanoma_sensitivity", "melanoma_specificity")
        heads = ("accuracy", "balanced acc.", "mel. sensitivity", "mel. specificity")
        target, floor = record.get("melanoma_sensitivity_target") or 0, record.get("melanoma_specificity_floor") or 0
        asked = ", ".join(([f"melanoma sensitivity {target:g}"] if target else [])
                          + ([f"specificity at least {floor:g}"] if floor else []))
        table = render.table(f"{run}: calibrated on {record['images']} images it never trained on"
                             + (f", {asked}" if asked else ""), ("", *heads), numeric=heads)
        for when in ("before", "after"):
            render.add_row(table, (when, *("n/a" if record[when].get(k) is None else f"{record[when][k]:.3f}"
                                           for k in kept)))
        render.print_table(table)
        render.info(f"melanoma offset {record['melanoma_bias']:+.2f} on the log-probability, temperature "
                    f"{record['temperature']:.2f}; predict, evaluate, gradcam, serve and export apply them")
    _say_where_the_point_stopped(record)
    cost = accuracy_cost(record)
    if cost > ACCURACY_WARNING:
        cheaper = ("a higher --melanoma-specificity floor" if not record.get("melanoma_sensitivity_target") else
                   "a lower --melanoma-sensitivity, or a --melanoma-specificity floor such as 0.9,")
        render.warn(f"this operating point costs {cost:.3f} accuracy on those rows ({record['before']['accuracy']:.3f} "
                    f"-> {record['after']['accuracy']:.3f}); {cheaper} costs less")


def _say_where_the_point_stopped(record: dict) -> None:
    """A melanoma operating point that fell short of what was asked says so (the record's `melanoma_stopped_by`)."""
    target, floor = record.get("melanoma_sensitivity_target") or 0, record.get("melanoma_specificity_floor") or 0
    why, after = record.get("melanoma_stopped_by"), record.get("after") or {}
    if why == "no example of the class" and (target or floor):
        render.warn("no melanoma among those rows, so no operating point could be fitted; prepare a larger "
                    "validation split")
    elif why == "below the floor before any offset":
        render.warn(f"melanoma specificity on those rows is {after['melanoma_specificity']:.3f} before any offset, "
                    f"already below the floor {floor:g}: no offset added")
    elif why == "specificity floor" and target:
        render.info(f"the specificity floor {floor:g} stopped the offset at melanoma sensitivity "
                    f"{after['melanoma_sensitivity']:.3f}, short of {target:g}")
    elif why == "no offset reaches it" and target:
        render.warn(f"no offset reaches melanoma sensitivity {target:g} on those rows; the most sensitive point "
                    f"reached {after['melanoma_sensitivity']:.3f}")


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.command()(ensemble)
    app.command()(calibrate)
