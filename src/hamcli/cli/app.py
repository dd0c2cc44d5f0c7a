"""The `hamcli` Typer application and its one error handler.

Commands import the library (and so torch) only when they run, so `hamcli --help`
stays fast.
"""

from __future__ import annotations

import sys
import warnings

import typer
from typer.core import TyperGroup

from hamcli import __version__
from hamcli.cli import data, evaluate, explain, modelling, predict, render
from hamcli.errors import HamcliError


class _Group(TyperGroup):
    """Turns a HamcliError raised by any command into one red line and its exit code."""

    def invoke(self, ctx):  # noqa: ANN001, ANN201
        try:
            return super().invoke(ctx)
        except HamcliError as exc:
            render.error(str(exc))
            raise typer.Exit(exc.exit_code) from None


app = typer.Typer(
    name="hamcli",
    cls=_Group,
    help="Train, evaluate and explain skin-lesion classifiers on HAM10000. Not for diagnosis.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hamcli {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """hamcli: HAM10000 dermatoscopy classifiers from the command line."""


data.register(app)
modelling.register(app)
evaluate.register(app)
predict.register(app)
explain.register(app)




def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    render.warn(str(message))


def main() -> None:
    """Entry point: run the app, turning HamcliError into one red line and an exit code."""
    warnings.showwarning = _show_warning
    try:
        app()
    except HamcliError as exc:
        render.error(str(exc))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        render.error("interrupted")
        sys.exit(130)
