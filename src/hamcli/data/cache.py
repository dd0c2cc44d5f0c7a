"""Reading a prepared dataset back: its manifest, summary and memory-mapped image cache."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

import hamcli.paths as paths
from hamcli.data.preprocess import INTERPOLATION, POLICY, size_text
from hamcli.errors import DataError, NotFoundError


@dataclass(frozen=True)
class PreparedDataset:
    name: str
    root: Path

    @classmethod
    def open(cls, name_or_path: str | Path | None = None) -> PreparedDataset:
        """A prepared dataset by name or folder; None means the most recently prepared one."""
        if name_or_path is None:
            found = list_prepared()
            if not found:
                raise NotFoundError("no prepared dataset; run `hamcli prepare` first")
            return max(found, key=lambda p: (p.root / "summary.json").stat().st_mtime)
        path = Path(name_or_path)
        if not (path / "summary.json").exists():
            path = paths.prepared_dir() / str(name_or_path)
        if not (path / "summary.json").exists():
            names = ", ".join(p.name for p in list_prepared()) or "none"
            raise NotFoundError(f"no prepared dataset {str(name_or_path)!r} in {paths.prepared_dir()} "
                                f"(present: {names}); run `hamcli prepare --name {name_or_path}` first")
        return cls(path.name, path)

    @cached_property
    def summary(self) -> dict:
        path = self.root / "summary.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: unreadable ({str(exc)[:80]}); prepare it again with `hamcli prepare --name "
                            f"{self.name} --overwrite`") from None
        needed = ("size", "fingerprint", "split", "counts")
        if not isinstance(data, dict) or any(k not in data for k in needed):
            raise DataError(f"{path}: incomplete (needs {', '.join(needed)}); prepare it again with `hamcli prepare "
                            f"--name {self.name} --overwrite`")
        return data

    @cached_property
    def manifest(self) -> pd.DataFrame:
        path = self.root / "manifest.csv"
        try:
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
            df["fold"] = df["fold"].astype(int)
            missing = {"image_id", "lesion_id", "dx", "split"} - set(df.columns)
            if missing or df.empty:
                raise ValueError(f"missing {', '.join(sorted(missing))}" if missing else "no rows")
        except (OSError, ValueError, KeyError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise DataError(f"{path}: unreadable ({str(exc)[:80]}); prepare it again with `hamcli prepare --name "
                            f"{self.name} --overwrite`") from None
        return df

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the cached images; older summaries record one side."""
        size = self.summary["size"]
        return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))

    @property
    def fingerprint(self) -> str:
        return self.summary["fingerprint"]

    def images(self) -> np.ndarray:
        """The (N, S, S, 3) uint8 cache, memory-mapped, rows in manifest order."""
        path = self.root / cache_file(self.size)
        try:
            arr = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: image cache unreadable ({exc}); run `hamcli prepare` again") from None
        if arr.shape[0] != len(self.manifest):
            raise DataError(f"{path}: cache has {arr.shape[0]} images but the manifest {len(self.manifest)}; "
                            "run `hamcli prepare` again")
        return arr


def cache_file(size: tuple[int, int]) -> str:
    return f"images_{size_text(size)}.npy"


def fingerprint(manifest_bytes: bytes, size: tuple[int, int]) -> str:
    """Names the split and what the images are (size and crop policy): any change makes a new fingerprint."""
    recipe = f"\n{size[1]}x{size[0]} {POLICY} {INTERPOLATION}".encode()
    return hashlib.sha256(manifest_bytes + recipe).hexdigest()[:16]


def list_prepared() -> list[PreparedDataset]:
    root = paths.prepared_dir()
    if not root.is_dir():
        return []
    return [PreparedDataset(p.name, p) for p in sorted(root.iterdir())
            if not p.name.startswith(".") and (p / "summary.json").exists()]
