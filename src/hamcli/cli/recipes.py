"""`hamcli recipes` and `hamcli recipes show NAME`."""

from __future__ import annotations

import typer

import hamcli.cli.render as render
from hamcli.cli.options import output_format

recipes = typer.Typer(help="Named recipes: the HAM10000 projects hamcli reproduces, and the recommended one.",
                      invoke_without_command=True, no_args_is_help=False)


@recipes.callback()
def listing(ctx: typer.Context, fmt: str = output_format()) -> None:
    """List the recipes with what each reproduces and what that project claimed."""
    if ctx.invoked_subcommand is not None:
        return
    from hamcli.recipes import book

    rows = [{"name": name, **book.load(name).about} for name in book.names()]
    if fmt == "json":
        render.print_json(rows)
        return
    if fmt == "csv":
        render.print_csv(["name", "description", "claimed"],
                         ((r["name"], r.get("description", ""), r.get("claimed", "")) for r in rows))
        return
    table = render.table("Recipes (hamcli train --recipe NAME; hamcli recipes show NAME)",
                         ("name", "what", "claimed by the project"), keep=("name",))
    for r in rows:
        render.add_row(table, (r["name"], r.get("description", ""), r.get("claimed", "")))
    render.print_table(table)
    render.info("The claims were measured by each project on its own split, usually by image, where images of "
                "one lesion fall on both sides; docs/recipes.md measures them again by lesion.")


@recipes.command()
def show(name: str = typer.Argument(..., help="A recipe name from `hamcli recipes`.")) -> None:
    """Print a recipe's TOML: its \\[prepare] and \\[train] options (a file `--config` accepts)."""
    from hamcli.recipes import book

    render.out.print(book.text(name), highlight=False, markup=False, end="")


def register(app: typer.Typer) -> None:
    app.add_typer(recipes, name="recipes")
