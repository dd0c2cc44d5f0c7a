"""Option types shared by the commands: choices that --help lists, shells complete and typos get a hint for."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import typer


def suggest(value: str, allowed: Iterable[str]) -> str:
    """' did you mean 'x'?' for the closest allowed value, or ''."""
    allowed = list(allowed)
    lowered = {a.lower(): a for a in allowed}
    if value.lower() in lowered:
        return f" did you mean {lowered[value.lower()]!r}?"
    close = difflib.get_close_matches(value, allowed, n=1, cutoff=0.5)
    return f" did you mean {close[0]!r}?" if close else ""


def choice(allowed: Iterable[str], help: str = "", metavar: str | None = None) -> dict[str, Any]:
    """typer.Option keyword arguments for a string option that takes one of `allowed`."""
    values = tuple(allowed)

    def check(value: str | None) -> str | None:
        if value is None or value in values:
            return value
        raise typer.BadParameter(f"{value!r} is not a choice;{suggest(value, values)} choose one of "
                                 f"{', '.join(values)}")

    def complete(incomplete: str) -> list[str]:
        return [v for v in values if v.startswith(incomplete)]

    return {"callback": check, "autocompletion": complete, "metavar": metavar or f"[{'|'.join(values)}]",
            "help": help}


def positive(kind: type = int, allow_zero: bool = False) -> Callable[[Any], Any]:
    """A callback refusing values below 1 (or below 0), naming the option."""

    def check(ctx: typer.Context, param: Any, value: Any) -> Any:
        if value is None:
            return value
        if value != value or value < 0 or (value == 0 and not allow_zero):  # NaN, negative, zero
            limit = "zero or more" if allow_zero else "positive"
            raise typer.BadParameter(f"{value} must be {limit}")
        return value

    return check


def flag(*decls: str, help: str, default: bool = False) -> Any:
    """A boolean flag whose help shows no `<bool>` placeholder."""
    return typer.Option(default, *decls, help=help, metavar="")


def output_format(formats: Sequence[str] = ("table", "json", "csv")) -> Any:
    """`--format/-f`: what goes to stdout. Prose and progress always go to stderr."""
    return typer.Option(formats[0], "--format", "-f", **choice(formats, "What to print on stdout."))


def json_alias() -> Any:
    """The old `--json` flag, kept hidden: the same as `--format json`."""
    return typer.Option(False, "--json", hidden=True)


INFERENCE_PRECISIONS = ("fp32", "bf16", "fp16")


def inference_precision() -> Any:
    """`--precision` for the commands that predict: fp32 unless asked (the same numbers for any batch)."""
    return typer.Option("fp32", "--precision", **choice(INFERENCE_PRECISIONS, "fp32 (default): every image gets "
                                                        "the same probabilities alone or in any batch. bf16 (CPUs "
                                                        "with AMX or AVX-512 BF16, GPUs) or fp16 (GPUs) are "
                                                        "faster and move probabilities in the 2nd-3rd decimal."))
