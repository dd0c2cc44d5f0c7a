"""Turning command-line image arguments into a list of paths, with a clear word for each empty one."""

from __future__ import annotations

import sys
from pathlib import Path

from hamcli.errors import UsageError


def expand(inputs: list[str]) -> list[str]:
    """Files as given, folders searched recursively, globs expanded, `-` read line by line from stdin.

    An argument that yields nothing (an empty folder, a glob that matches no file, an empty stdin) is
    a usage error naming that argument; a file that does not exist is passed on, to fail on its own.
    """
    import glob

    from hamcli.data.preprocess import IMAGE_SUFFIXES

    items: list[str] = []
    for item in inputs:
        if item == "-":
            lines = [line.strip() for line in sys.stdin if line.strip()]
            if not lines:
                raise UsageError("`-` reads image paths from stdin, but stdin was empty")
            items.extend(lines)
        elif Path(item).is_dir():
            found = [str(p) for p in sorted(Path(item).rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES]
            if not found:
                raise UsageError(f"{item}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
            items.extend(found)
        elif not Path(item).exists() and any(ch in item for ch in "*?["):
            matched = sorted(glob.glob(item, recursive=True))
            if not matched:
                raise UsageError(f"{item!r} matched no file (quote globs so that hamcli, not the shell, expands "
                                 "them, and check the pattern)")
            items.extend(matched)
        else:
            items.append(item)
    return items
