"""Options as TOML: read a table into a dataclass's fields (refusing unknown keys and wrong types, naming
them), and write resolved options back so that `--config` repeats a run exactly.

Python reads TOML itself (tomllib, 3.11+; tomli before). The writer is ours: the values are flat
strings, numbers and booleans, a dozen lines, not worth a dependency.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import typing
from pathlib import Path
from typing import Any

from hamcli.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


MAX_BYTES = 1_000_000  # a config file is a few dozen lines


def read(path: Path) -> dict:
    """The whole TOML document at `path` (a regular file of at most 1 MB)."""
    from hamcli.fsio import regular_file

    try:
        regular_file(Path(path), "config", MAX_BYTES)
    except UsageError as exc:
        raise UsageError(f"--config {exc}") from None
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"--config {path}: not a readable TOML file ({str(exc)[:120]}); write it as UTF-8 TOML "
                         "with [prepare] and [train] tables") from None
    except RecursionError:
        raise UsageError(f"--config {path}: nested too deeply to be a hamcli config; its tables are flat") from None


def _allowed(hint: Any) -> tuple[type, ...]:
    """The Python types a TOML value may have for a field annotated `hint` (None for optional fields)."""
    args = typing.get_args(hint) or (hint,)
    out: list[type] = []
    for arg in args:
        if arg is type(None):
            continue
        out.append(arg)
        if arg is float:
            out.append(int)  # TOML writes 1.0 as 1 when a person types it
    return tuple(out)


def options(document: dict, section: str, cls: type, where: Path | str) -> dict:
    """The `[section]` table of `document` (or its top level when it has no such table), checked against
    the fields of dataclass `cls`: an unknown key or a value of the wrong type is refused, naming it."""
    table = document.get(section, document if section not in document and not any(
        isinstance(v, dict) for v in document.values()) else {})
    if not isinstance(table, dict):
        raise UsageError(f"{where}: [{section}] must be a table of options")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    out = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in fields:
            raise UsageError(f"{where}: [{section}] has no option {key!r}; the options are "
                             f"{', '.join(sorted(fields))}")
        declared = set(typing.get_args(hints[name]) or (hints[name],))
        allowed = _allowed(hints[name])
        if isinstance(value, bool) and bool not in allowed or not isinstance(value, allowed):
            words = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false"}
            names = " or ".join(sorted(words.get(t.__name__, t.__name__) for t in declared if t is not type(None)))
            raise UsageError(f"{where}: [{section}] {key} = {value!r} should be {names}")
        if type(value) is int and float in declared and int not in declared:
            value = float(value)
        out[name] = value
    return out


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} has no TOML form")
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def dumps(tables: dict[str, dict], comment: str = "") -> str:
    """TOML text for flat tables; None values are left out (they mean "the default")."""
    lines = [f"# {line}" for line in comment.splitlines()] + ([""] if comment else [])
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {_value(value)}" for key, value in table.items() if value is not None)
        lines.append("")
    return "\n".join(lines)
