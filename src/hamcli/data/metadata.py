"""Reading labelled metadata: the HAM10000 CSV, or the ISIC 2018 one-hot ground truth."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hamcli.classes import CLASS_CODES
from hamcli.errors import DataError

REQUIRED = ("image_id", "dx")
# Common names for the same columns in other HAM10000 derivatives.
ALIASES = {"image": "image_id", "image_name": "image_id", "isic_id": "image_id", "id": "image_id",
           "label": "dx", "diagnosis": "dx", "class": "dx", "lesion": "lesion_id"}
_PLAIN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class Metadata:
    table: pd.DataFrame
    path: Path
    problems: dict[str, list[str]] = field(default_factory=dict)

    def note(self, kind: str, item: str) -> None:
        self.problems.setdefault(kind, []).append(item)


def _from_onehot(df: pd.DataFrame) -> pd.DataFrame:
    """ISIC's one-hot ground truth -> image_id, dx; a row without exactly one 1 gets no dx (reported, dropped)."""
    codes = [c.upper() for c in CLASS_CODES]
    onehot = df[[c for c in df.columns if c.upper() in codes]]
    onehot.columns = [c.lower() for c in onehot.columns]
    values = onehot.apply(pd.to_numeric, errors="coerce")
    out = pd.DataFrame({"image_id": df["image"].astype(str)})
    single = (values == 1).sum(axis=1).eq(1) & values.isin([0, 1]).all(axis=1)
    out["dx"] = np.where(single, values.fillna(0).idxmax(axis=1).to_numpy(), "(not one-hot)")
    return out


MAX_BYTES = 200_000_000  # HAM10000's is 0.6 MB; ISIC 2019 with every column about 3 MB


def read_metadata(path: Path) -> Metadata:
    """Read and clean a metadata CSV; rows that cannot be used are dropped and recorded in problems."""
    from hamcli.errors import UsageError
    from hamcli.fsio import regular_file

    try:
        regular_file(Path(path), "metadata CSV", MAX_BYTES)
    except UsageError as exc:
        raise DataError(str(exc)) from None
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise DataError(f"{path}: metadata file not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc}); export the metadata as CSV") from None
    df.columns = [c.strip() for c in df.columns]
    if "image" in df.columns and {"MEL", "NV"} <= set(df.columns):
        df = _from_onehot(df)
    df = df.rename(columns={k: v for k, v in ALIASES.items() if k in df.columns and v not in df.columns})
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(df.columns) or 'none'}); "
            "the metadata needs image_id and dx columns, as in HAM10000_metadata.csv"
        )
    meta = Metadata(df, path)
    df["image_id"] = df["image_id"].str.strip()
    df["dx"] = df["dx"].str.strip().str.lower()
    if "lesion_id" not in df.columns or (df["lesion_id"] == "").all():
        df["lesion_id"] = df["image_id"]
        meta.note("no_lesion_ids", "no lesion_id column: each image is treated as its own lesion")
    else:
        df["lesion_id"] = df["lesion_id"].str.strip().where(df["lesion_id"].str.strip() != "", df["image_id"])

    bad_id = ~df["image_id"].map(lambda s: bool(_PLAIN_ID.match(s)) and s not in (".", ".."))
    for image_id in df.loc[bad_id, "image_id"]:
        meta.note("bad_image_ids", repr(image_id))
    unknown = ~df["dx"].isin(CLASS_CODES) & ~bad_id
    for image_id, dx in df.loc[unknown, ["image_id", "dx"]].itertuples(index=False):
        meta.note("unknown_dx", f"{image_id}: {dx!r}")
    df = df[~bad_id & ~unknown]
    dup = df["image_id"].duplicated(keep="first")
    for image_id in df.loc[dup, "image_id"]:
        meta.note("duplicate_image_ids", image_id)
    df = df[~dup].reset_index(drop=True)
    front = ["image_id", "lesion_id", "dx"]
    meta.table = df[front + [c for c in df.columns if c not in front]]
    return meta
