"""`hamcli download`, `hamcli prepare` and `hamcli info`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

import hamcli.cli.render as render
from hamcli.cli.options import choice, flag, json_alias, output_format

SOURCE_HELP = "Source from the table (`--list`): ham10000, isic2018-test, dermamnist, or samples (bundled)."


def download(
    source: str = typer.Argument("ham10000", help=SOURCE_HELP),
    from_path: Optional[Path] = typer.Option(None, "--from", help="Import a copy you already have: Kaggle "
                                             "zip or folder, Dataverse zips, image folder + CSV, hmnist CSV, npz."),
    name: Optional[str] = typer.Option(None, "--name", help="Dataset name (default: the source's name)."),
    metadata: Optional[Path] = typer.Option(None, "--metadata", help="With --from: the metadata CSV to use."),
    url: Optional[str] = typer.Option(None, "--url", help="Mirror base URL; files are fetched as URL/<file>. "
                                      "Also $HAMCLI_MIRROR or $HAMCLI_MIRROR_<SOURCE>."),
    size: Optional[str] = typer.Option(None, "--size", help="dermamnist only: 28, 64, 128 or 224."),
    overwrite: bool = flag("--overwrite", help="Replace an existing dataset of that name (only once the new "
                           "one is complete)."),
    list_sources: bool = flag("--list", help="List the sources and exit."),
    quiet: bool = flag("--quiet", "-q", help="No progress bars."),
    fmt: str = output_format(),
    as_json: bool = json_alias(),
) -> None:
    """Fetch HAM10000 (or a related set) from its official home, or import a copy you have."""
    import hamcli.data.download as dl
    import hamcli.data.importers as importers
    from hamcli.data.sources import SOURCES

    fmt = "json" if as_json else fmt
    if list_sources:
        _print_sources(SOURCES, fmt)
        return
    if from_path is not None:
        target = "ham10000" if name is None else name
        same = None if overwrite else importers.unchanged_import(from_path, target, metadata)
        ds = same or importers.import_dataset(from_path, name=target, metadata=metadata, overwrite=overwrite)
        fetched = same is None
    elif source == "samples":
        ds, fetched = importers.import_samples("samples" if name is None else name), True
    else:
        with render.byte_progress(quiet) as progress:
            ds, fetched = dl.download_source(source, variant=size, mirror=url, name=name, progress=progress,
                                             overwrite=overwrite)
    report = ds.report
    if not fetched:
        render.info(f"{ds.name}: already present and verified in {ds.root}" if from_path is None else
                    f"{ds.name}: already imported from {from_path}, unchanged since; nothing to do")
    if fmt == "json":
        render.print_json({"dataset": ds.name, "path": str(ds.root), "fetched": fetched, **report})
    elif fmt == "csv":
        render.print_csv(["class", "images"], report["per_class"].items())
    else:
        _print_report(ds.name, str(ds.root), report)
    for kind, items in report.get("problems", {}).items():
        shown = ", ".join(items[:5]) + (f", ... ({len(items)} in all)" if len(items) > 5 else "")
        render.warn(f"{kind.replace('_', ' ')}: {shown}")


def _print_sources(sources: dict, fmt: str) -> None:
    rows = [{"name": s.name, "title": s.title, "homepage": s.homepage, "licence": s.licence,
             "files": [{"name": f.name, "url": f.url, "md5": f.md5} for f in s.files], "sizes": list(s.variants)}
            for s in sources.values()]
    if fmt == "json":
        render.print_json({r["name"]: {k: v for k, v in r.items() if k != "name"} for r in rows})
        return
    if fmt == "csv":
        render.print_csv(["name", "file", "url", "md5"],
                         ((r["name"], f["name"], f["url"], f["md5"]) for r in rows for f in r["files"]))
        return
    table = render.table("Sources (hamcli download NAME)", ("name", "what", "files", "home"))
    for r in rows:
        files = "\n".join(f"{f['name']} {f['md5'] or '(no md5)'}" for f in r["files"])
        if r["sizes"]:
            files += f"\n--size {' | '.join(r['sizes'])}"
        render.add_row(table, (r["name"], r["title"], files, r["homepage"]))
    render.add_row(table, ("samples", "14 real HAM10000 images bundled with hamcli (2 per class)", "-", "-"))
    render.print_table(table)


def _print_report(name: str, root: str, report: dict) -> None:
    table = render.table(f"{name}: {report['images']} images of {report['lesions']} lesions in {root}",
                         ("class", "images"), numeric=("images",))
    for code, n in report["per_class"].items():
        render.add_row(table, (code, n))
    render.print_table(table)


def prepare(
    ctx: typer.Context,
    recipe: Optional[str] = typer.Option(None, "--recipe", help="Prepare as a named recipe does (its dataset is "
                                         "named recipe-NAME unless --name says otherwise)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Read options from a TOML file's \\[prepare] table; "
                                          "options given here override it."),
    source: Optional[str] = typer.Option(None, "--source", help="Dataset to prepare (default ham10000, or "
                                         "the only one present)."),
    name: Optional[str] = typer.Option(None, "--name", help="Name of the prepared dataset (default: source)."),
    split: str = typer.Option("90/10", "--split", help="train/test or train/val/test percentages."),
    size: str = typer.Option("128", "--size", help="Cached image size: one side for squares (the centre square "
                             "of the frame), or WIDTHxHEIGHT, e.g. 200x150 for the whole 4:3 frame."),
    seed: int = typer.Option(42, "--seed"),
    group_by: str = typer.Option("lesion", "--group-by", **choice(("lesion", "image"), "lesion (honest) or image "
                                                                  "(leaky, for comparison with hobby projects).")),
    folds: int = typer.Option(0, "--folds", help="Add K lesion-grouped stratified folds over the train split "
                              "(a val split stays out of them, to calibrate the family)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Take a stratified subset of about N images."),
    export_folders: Optional[Path] = typer.Option(None, "--export-folders",
                                                  help="Also write DIR/<split>/<class>/ image copies."),
    export_hmnist: Optional[Path] = typer.Option(None, "--export-hmnist", help="Also write the images as Kaggle's "
                                                 "hmnist CSV (one row of pixels and a label per image); needs a "
                                                 "square --size, 28 for hmnist_28_28_RGB.csv."),
    workers: int = typer.Option(0, "--workers", min=0, help="Decoding threads (0: one per core)."),
    overwrite: bool = flag("--overwrite", help="Replace an existing prepared dataset of that name (only once the "
                           "new one is complete)."),
    force: bool = flag("--force", help="With --overwrite: replace it even though runs were trained on it."),
    quiet: bool = flag("--quiet", "-q", help="No progress bar."),
    fmt: str = output_format(),
    as_json: bool = json_alias(),
) -> None:
    """Split a dataset by lesion (stratified by class) and cache its images at one size."""
    import hamcli.data.prepare as prep

    fmt = "json" if as_json else fmt
    from dataclasses import fields

    from hamcli.errors import UsageError
    from hamcli.recipes import book

    if recipe and config:
        raise UsageError("give --recipe or --config, not both")
    loaded = book.load(recipe) if recipe else book.from_file(config) if config else None
    given = {k for k in ctx.params if ctx.get_parameter_source(k).name in ("COMMANDLINE", "ENVIRONMENT")}
    names = {f.name for f in fields(prep.PrepareConfig)}
    options = {**(loaded.prepare if loaded else {}),
               **{k: v for k, v in ctx.params.items() if k in names and k in given}}
    if loaded is not None:
        source = source if "source" in given else loaded.source
        name = name if "name" in given else (loaded.data_name if recipe else name)
    with render.count_progress("decoding images", quiet) as progress:
        prepared = prep.prepare(source, name, prep.PrepareConfig(**options), progress, overwrite=overwrite,
                                force=force)
    if export_folders is not None:
        prep.export_folders(prepared, export_folders)
        render.info(f"exported image folders to {export_folders}")
    if export_hmnist is not None:
        prep.export_hmnist(prepared, export_hmnist)
        render.info(f"exported Kaggle-style hmnist pixels to {export_hmnist}")
    summary = prepared.summary
    if fmt == "json":
        render.print_json({**summary, "path": str(prepared.root)})
    elif fmt == "csv":
        from hamcli.classes import CLASS_CODES

        render.print_csv(["class", "train", "val", "test"],
                         ([c, *(summary["counts"][p][c] for p in ("train", "val", "test"))] for c in CLASS_CODES))
    else:
        _print_split_table(summary, str(prepared.root))
    if summary["excluded"]:
        render.warn(f"{len(summary['excluded'])} image(s) excluded: " + "; ".join(
            f"{k}: {v}" for k, v in list(summary["excluded"].items())[:5]))


def _print_split_table(summary: dict, root: str) -> None:
    from hamcli.classes import CLASS_CODES

    parts = [s for s in ("train", "val", "test") if sum(summary["counts"][s].values())]
    size = summary.get("size_text", summary["size"])
    table = render.table(f"{summary['name']}: {summary['images']} images, split {summary['split']}, {size} px, "
                         f"in {root}", ("class", *parts), numeric=parts)
    for code in CLASS_CODES:
        render.add_row(table, (code, *(summary["counts"][p][code] for p in parts)))
    render.add_row(table, ("all", *(sum(summary["counts"][p].values()) for p in parts)))
    render.print_table(table)
    render.out.print(f"lesions in more than one split: {summary['leaked_lesions']}   "
                     f"fingerprint {summary['fingerprint']}", highlight=False, markup=False)


def info(fmt: str = output_format(("table", "json")), as_json: bool = json_alias()) -> None:
    """Show hamcli's directories and the datasets, prepared datasets and runs present."""
    import hamcli.data.inventory as inventory

    report = inventory.collect()
    if as_json or fmt == "json":
        render.print_json(report)
        return
    render.out.print(f"hamcli {report['version']}", highlight=False, markup=False)
    for key, value in report["directories"].items():
        render.out.print(f"  {key:<9} {render.clean(value)}", highlight=False, markup=False)
    for title, rows in (("Datasets", report["datasets"]), ("Prepared datasets", report["prepared"]),
                        ("Runs", report["runs"])):
        if not rows:
            render.out.print(f"{title}: none", highlight=False, markup=False)
            continue
        table = render.table(title, list(rows[0]))
        for row in rows:
            render.add_row(table, ("-" if v is None else f"{v:.3f}" if isinstance(v, float) else v
                                   for v in row.values()))
        render.print_table(table)


def register(app: typer.Typer) -> None:
    app.command()(download)
    app.command()(prepare)
    app.command()(info)
