"""The `hamcli` Typer application and its one error handler.

Commands import the library (and so torch) only when they run, so `hamcli --help`
stays fast.
"""

from __future__ import annotations

import errno
import os
import sys

import typer
from typer.core import TyperCommand, TyperGroup

import hamcli.cli.data as data
import hamcli.cli.evaluate as evaluate
import hamcli.cli.gradcam as gradcam
import hamcli.cli.models as models
import hamcli.cli.predict as predict
import hamcli.cli.recipes as recipes
import hamcli.cli.render as render
import hamcli.cli.serve as serve
import hamcli.cli.train as train
from hamcli._version import __version__
from hamcli.errors import HamcliError


def os_error_line(exc: OSError) -> str:
    """One line for an operating-system error: the file, what went wrong, what to do."""
    where = exc.filename or "a file"
    if exc.errno == errno.ENOSPC:
        return (f"{where}: no space left on the device; free some space and run the command again (anything "
                "it was replacing is unchanged)")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"{where}: permission denied; check the folder's permissions, or set HAMCLI_HOME to a folder of yours"
    return f"{where}: {exc.strerror or exc}"


def _stdout_is_devnull() -> bool:
    try:
        out, null = os.fstat(sys.stdout.fileno()), os.stat(os.devnull)
    except (OSError, ValueError):
        return False
    return (out.st_dev, out.st_ino) == (null.st_dev, null.st_ino)


def stdout_gone() -> None:
    """The reader of stdout has gone (`hamcli predict -f jsonl | head`): stop quietly, exit code 0, as `cat`
    and `ls` do. Later writes, and Python's own flush at exit, go to /dev/null instead of failing."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    sys.exit(0)


# Typer ships its own copy of Click; its base exception is reached through a public subclass.
_ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def _reflow(text: str | None) -> str | None:
    """A docstring's paragraphs as single lines, for the help to wrap at the terminal's width (rich help keeps
    the docstring's own line breaks, which leave ragged lines at any other width)."""
    if not text:
        return text
    return "\n\n".join(" ".join(line.strip() for line in block.splitlines()) for block in text.split("\n\n"))


def _reflow_help(command) -> None:  # noqa: ANN001 - a click Command or Group
    command.help = _reflow(command.help)
    for sub in getattr(command, "commands", {}).values():
        _reflow_help(sub)


class _FoldingHelp:
    """Help that folds long words instead of cutting them (`hamcli.cli.helptables`), for commands and the group."""

    def format_help(self, ctx, formatter) -> None:  # noqa: ANN001
        from hamcli.cli.helptables import fold_help_tables

        fold_help_tables()
        super().format_help(ctx, formatter)


class _Command(_FoldingHelp, TyperCommand):
    pass


class _Group(_FoldingHelp, TyperGroup):
    """Turns a HamcliError raised by any command, and any usage error, into one red line and its exit code."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        _reflow_help(self)

    def invoke(self, ctx):  # noqa: ANN001, ANN201
        try:
            return super().invoke(ctx)
        except HamcliError as exc:
            render.error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            render.error("interrupted; nothing half-written was kept")
            raise typer.Exit(130) from None
        except BrokenPipeError:
            stdout_gone()
        except OSError as exc:
            render.error(os_error_line(exc))
            raise typer.Exit(1) from None
        except (_ClickException, typer.Exit, typer.Abort):
            raise  # usage errors and exits: `main` prints them
        except Exception as exc:
            if os.environ.get("HAMCLI_DEBUG"):
                raise
            render.error(f"unexpected {type(exc).__name__}: {exc}. This is a bug in hamcli: please report it with "
                         "the command you ran (HAMCLI_DEBUG=1 shows where it happened)")
            raise typer.Exit(1) from None

    def main(self, *args, standalone_mode: bool = True, **kwargs):  # noqa: ANN002, ANN003, ANN201
        was_devnull = _stdout_is_devnull()  # rich points stdout at /dev/null when its reader goes
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except BrokenPipeError:
            stdout_gone()
        except SystemExit as exc:  # `hamcli train --help | head`: rich met the broken pipe itself, and exits 1
            if exc.code == 1 and _stdout_is_devnull() and not was_devnull:
                stdout_gone()
            raise
        except _ClickException as exc:
            if not standalone_mode:
                raise
            if type(exc).__name__ == "NoArgsIsHelpError":  # the help is already on screen
                sys.exit(exc.exit_code)
            ctx = getattr(exc, "ctx", None)
            hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            render.error(exc.format_message().replace("\n", " ") + hint)
            sys.exit(exc.exit_code)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


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
    render.show_warnings_as_lines()


for command_group in (data, models, recipes, train, evaluate, predict, gradcam, serve):
    command_group.register(app)
for registered in app.registered_commands:
    if registered.cls in (None, TyperCommand):
        registered.cls = _Command


def main() -> None:
    """Entry point: run the app, turning HamcliError into one red line and an exit code."""
    try:
        app()
        sys.stdout.flush()
    except BrokenPipeError:
        stdout_gone()
    except HamcliError as exc:
        render.error(str(exc))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        render.error("interrupted")
        sys.exit(130)
