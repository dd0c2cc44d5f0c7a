"""Turning command-line image arguments into a list of paths."""

from __future__ import annotations

import sys
from pathlib import Path


def expand(inputs: list[str]) -> list[str]:
    """Files as given, folders searched recursively, globs expanded, `-` read line by line from stdin."""
    import glob

    from hamcli.data.preprocess import IMAGE_SUFFIXES

    items: list[str] = []
    for item in inputs:
        if item == "-":
            items.extend(line.strip() for line in sys.stdin if line.strip())
        elif Path(item).is_dir():
            items.extend(str(p) for p in sorted(Path(item).rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES)
        elif not Path(item).exists() and any(ch in item for ch in "*?["):
            items.extend(sorted(glob.glob(item, recursive=True)) or [item])
        else:
            items.append(item)
    return items
