"""Where hamcli keeps its files.

Everything lives under the platformdirs user data and cache directories, or under
`$HAMCLI_HOME` when it is set. Nothing here creates a directory: callers create one only
when they write into it.
"""

from __future__ import annotations

import os
from pathlib import Path

APP = "hamcli"


def home() -> Path | None:
    value = os.environ.get("HAMCLI_HOME")
    if not value:
        return None
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        from hamcli.errors import UsageError

        raise UsageError(f"HAMCLI_HOME={value}: not a folder; point it at a folder (it is created when needed)")
    return path


def data_dir() -> Path:
    root = home()
    if root is not None:
        return root / "data"
    import platformdirs

    return Path(platformdirs.user_data_dir(APP, appauthor=False))


def cache_dir() -> Path:
    root = home()
    if root is not None:
        return root / "cache"
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP, appauthor=False))


def datasets_dir() -> Path:
    """Imported and downloaded raw datasets: `<name>/metadata.csv` and `<name>/images/`."""
    return data_dir() / "datasets"


def prepared_dir() -> Path:
    """Prepared datasets: manifest, summary and image caches."""
    return data_dir() / "prepared"


def runs_dir() -> Path:
    return data_dir() / "runs"


def downloads_dir() -> Path:
    """Partial and completed archive downloads."""
    return cache_dir() / "downloads"
