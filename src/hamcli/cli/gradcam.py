"""`hamcli gradcam`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

import hamcli.cli.render as render
from hamcli.cli.inputs import expand
from hamcli.cli.options import choice, flag, inference_precision, output_format
from hamcli.errors import UsageError
from hamcli.models.precision import DEVICES

METHODS = ("gradcam", "gradcam++", "layercam")


def output_paths(items: list[str], output: str | None) -> dict[str, Path]:
    """Where each overlay goes. One input: `-o FILE.png`, or a folder (`-o DIR/` or an existing folder);
    several: a folder. Without -o: `<name>-gradcam.png` here for one input, `gradcam/` for several."""
    several = len(items) > 1
    if output is None:
        folder = Path("gradcam") if several else None
        target = None if several else Path(f"{Path(items[0]).stem}-gradcam.png")
    else:
        as_folder = output.endswith(("/", "\\")) or Path(output).is_dir()
        is_png = Path(output).suffix.lower() == ".png"
        if several and is_png and not as_folder:
            raise UsageError(f"-o {output}: {len(items)} inputs need a folder, one PNG each; give -o DIR/")
        if not several and not as_folder and not is_png:
            raise UsageError(f"-o {output}: give a file ending in .png, or a folder ending in / (for one PNG "
                             "named after the input)")
        folder = Path(output) if (several or as_folder) else None
        target = None if folder else Path(output)
    if folder is None:
        return {items[0]: target}
    names: dict[str, Path] = {}
    used: set[str] = set()
    for i, item in enumerate(items):
        name = f"{Path(item).stem}.png"
        if name in used:  # two inputs with one file name, from different folders
            name = f"{Path(item).stem}-{i}.png"
        used.add(name)
        names[item] = folder / name
    return names


def gradcam(
    images: list[str] = typer.Argument(None, help="Image files, folders or globs (- reads paths from stdin)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="FILE.png for one image; a folder (DIR/) "
                                         "for one or several, one PNG per input named after it. Default: "
                                         "NAME-gradcam.png here, or gradcam/ for several."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Run name or folder, K-fold family or "
                                        "ensemble (the mean of its members' maps), checkpoint file, or bundled "
                                        "(default: the run finished last, else the bundled model)."),
    target: str = typer.Option("pred", "--class", "-c", help="Class to explain: pred or a code (mel, nv, ...)."),
    method: str = typer.Option("gradcam", "--method", **choice(METHODS, "CAM method.")),
    layer: Optional[str] = typer.Option(None, "--layer", help="Layer to explain (default: the deepest of the "
                                        "zoo's candidates whose map is larger than 2x2; see --list-layers)."),
    list_layers: bool = flag("--list-layers", help="List candidate layers and exit."),
    alpha: float = typer.Option(0.45, "--alpha", min=0.0, max=1.0, help="Overlay strength, 0 to 1."),
    colormap: str = typer.Option("jet", "--colormap", help="Any matplotlib colormap."),
    show_panel: bool = flag("--panel", help="Image | heat map | overlay, labelled, with a colour bar and a "
                            "caption."),
    scale: str = typer.Option("image", "--scale", **choice(("image", "shared"), "image: each map scaled to its own "
                                                                            "peak; shared: one scale for all the "
                                                                            "images given, so they compare.")),
    device: str = typer.Option("auto", "--device", **choice(DEVICES, "Device.")),
    precision: str = inference_precision(),
    fmt: str = output_format(("table", "json", "jsonl", "csv")),
    as_json: bool = typer.Option(False, "--json", hidden=True),
) -> None:
    """Write Grad-CAM heat maps over the original images: what the model looked at."""
    import hamcli.explain.maps as explain
    import hamcli.explain.overlay as overlay
    from hamcli.data.preprocess import ImageReadError
    from hamcli.inference.ensemble import Ensemble
    from hamcli.inference.load import load_model

    fmt = "json" if as_json else fmt
    predictor = load_model(model, device=device, precision=precision)
    render.model_source(predictor, model)
    if isinstance(predictor, Ensemble):
        render.info(f"{predictor.family.name} is an ensemble of {len(predictor.members)} models: each map is "
                    "the mean of theirs, for the class the ensemble predicts")
    if list_layers:
        network = predictor.members[0] if isinstance(predictor, Ensemble) else predictor  # (a member's layers)
        default, _ = explain.default_layer(network)
        for name, shape in explain.list_layers(network):
            mark = "   (default)" if name == default else ""
            render.out.print(f"{name}\t{'x'.join(map(str, shape))}{mark}", highlight=False, markup=False)
        return
    items = expand(images or [])
    if not items:
        raise UsageError("give at least one image (or --list-layers)")
    targets = output_paths(items, output)
    columns = ("path", "output", "predicted", "probability", "explained", "explained_probability", "method",
               "layer")
    writer = render.CsvWriter(columns) if fmt == "csv" else None
    failed, rows = 0, []
    results = []
    for item in items:
        try:
            results.append((item, explain.explain(predictor, item, target=target, method=method, layer=layer)))
        except (ImageReadError, explain.EmptyMapError) as exc:
            failed += 1
            render.error(str(exc))
    if scale == "shared" and results:
        peak = max(r.scale for _, r in results)
        results = [(item, r.normalised(peak)) for item, r in results]
    for item, result in results:
        picture = (overlay.panel(result, alpha, colormap) if show_panel
                   else overlay.overlay(result.image, result.heatmap, alpha, colormap, result.box))
        overlay.save_png(picture, targets[item])
        row = dict(zip(columns, (item, str(targets[item]), result.predicted, result.probability, result.target,
                                 result.target_probability, method, result.layer), strict=True))
        rows.append(row)
        if fmt == "jsonl":
            render.print_jsonl(row)
        elif writer:
            writer.row(row.values())
        elif fmt == "table":
            render.out.print(f"{render.clean(item)} -> {targets[item]}  ({result.predicted} "
                             f"{result.probability:.2f}; {method} for {result.target} at {result.layer})",
                             highlight=False, markup=False)
    if fmt == "json":
        render.print_json(rows)
    if rows:
        render.notice()
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(gradcam)
