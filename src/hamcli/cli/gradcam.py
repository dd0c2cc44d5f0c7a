"""`hamcli gradcam`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

import hamcli.cli.render as render
from hamcli.cli.inputs import expand
from hamcli.cli.options import choice, flag


def gradcam(
    images: list[str] = typer.Argument(None, help="Image files, folders or globs (- reads paths from stdin)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="PNG file for one image; a folder for "
                                          "several (one PNG per input, named after it)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Run name, run folder or checkpoint "
                                        "(default: the latest run, else the bundled model)."),
    target: str = typer.Option("pred", "--class", "-c", help="Class to explain: pred or a code (mel, nv, ...)."),
    method: str = typer.Option("gradcam", "--method", **choice(("gradcam", "gradcam++", "layercam"), "CAM method.")),
    layer: Optional[str] = typer.Option(None, "--layer", help="Layer to explain (default: the zoo's choice)."),
    list_layers: bool = flag("--list-layers", help="List candidate layers and exit."),
    alpha: float = typer.Option(0.45, "--alpha", help="Overlay strength, 0 to 1."),
    colormap: str = typer.Option("jet", "--colormap", help="Any matplotlib colormap."),
    show_panel: bool = flag("--panel", help="Original | heat map | overlay, captioned."),
    device: str = typer.Option("auto", "--device", **choice(("auto", "cpu", "cuda", "mps"), "Device.")),
    as_json: bool = flag("--json", help="Print prediction and output path per image."),
) -> None:
    """Write Grad-CAM heat maps over the original images: what the model looked at."""
    import hamcli.explain.maps as explain
    import hamcli.explain.overlay as overlay
    from hamcli.data.preprocess import ImageReadError
    from hamcli.errors import UsageError
    from hamcli.inference.predictor import Predictor

    predictor = Predictor.load(model, device=device)
    render.model_source(predictor, model)
    if list_layers:
        default, _ = explain.default_layer(predictor)
        for name, shape in explain.list_layers(predictor):
            render.out.print(f"{name}\t{'x'.join(map(str, shape))}{'   (default)' if name == default else ''}",
                             highlight=False)
        return
    items = expand(images or [])
    if not items:
        raise UsageError("give at least one image (or --list-layers)")
    if output is None:
        raise UsageError("give --output/-o: a PNG file for one image, a folder for several")
    several = len(items) > 1 or output.is_dir()
    targets, used = {}, set()
    for i, item in enumerate(items):
        name = f"{Path(item).stem}.png"
        if name in used:  # two inputs with one file name, from different folders
            name = f"{Path(item).stem}-{i}.png"
        used.add(name)
        targets[item] = output / name if several else output
    failed, rows = 0, []
    for item in items:
        try:
            result = explain.explain(predictor, item, target=target, method=method, layer=layer)
        except ImageReadError as exc:
            failed += 1
            render.error(str(exc))
            continue
        picture = (overlay.panel(result, alpha, colormap) if show_panel
                   else overlay.overlay(result.image, result.heatmap, alpha, colormap))
        overlay.save_png(picture, targets[item])
        rows.append({"path": item, "output": str(targets[item]), "predicted": result.predicted,
                     "probability": result.probability, "explained": result.target,
                     "explained_probability": result.target_probability, "method": method, "layer": result.layer})
        if not as_json:
            render.out.print(f"{item} -> {targets[item]}  ({result.predicted} {result.probability:.2f}; "
                             f"{method} for {result.target})", highlight=False)
    if as_json:
        render.print_json(rows)
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(gradcam)
