"""Raw datasets in the user data directory: `<name>/metadata.csv`, `<name>/images/`, `<name>/report.json`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import hamcli.paths as paths
from hamcli.errors import NotFoundError


@dataclass(frozen=True)
class Dataset:
    name: str
    root: Path

    @property
    def metadata(self) -> Path:
        return self.root / "metadata.csv"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def report(self) -> dict:
        """The import's validation report; {} when it is missing or damaged (it is only a report)."""
        try:
            data = json.loads((self.root / "report.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}


def list_datasets() -> list[Dataset]:
    root = paths.datasets_dir()
    if not root.is_dir():
        return []
    return [Dataset(p.name, p) for p in sorted(root.iterdir())
            if p.is_dir() and not p.name.startswith(".") and (p / "metadata.csv").exists()]


def open_dataset(name: str | None) -> Dataset:
    """The dataset called `name`; with None, `ham10000` or else the only one present."""
    found = list_datasets()
    names = [d.name for d in found]
    if name is None:
        if "ham10000" in names:
            name = "ham10000"
        elif len(found) == 1:
            return found[0]
        elif not found:
            raise NotFoundError(
                f"no dataset in {paths.datasets_dir()}; run `hamcli download` (or `hamcli download --from PATH`, "
                "or `hamcli download samples` for the bundled samples) first"
            )
        else:
            raise NotFoundError(f"several datasets present ({', '.join(names)}); choose one with --source")
    for ds in found:
        if ds.name == name:
            return ds
    raise NotFoundError(
        f"no dataset named {name!r} in {paths.datasets_dir()} (present: {', '.join(names) or 'none'}); "
        f"run `hamcli download` first"
    )
