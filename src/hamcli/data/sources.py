"""The one table of downloadable datasets: where each file lives, its checksum and its licence.

The Dataverse ids and checksums were gathered from public sources and could not be checked
from the machine hamcli was written on; a mismatch is reported, never ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DATAVERSE = "https://dataverse.harvard.edu/api/access/datafile/{id}"
ZENODO = "https://zenodo.org/records/10519652/files/{name}?download=1"

HAM_LICENCE = (
    "CC BY-NC 4.0. Tschandl P., Rosendahl C., Kittler H. The HAM10000 dataset, a large collection of "
    "multi-source dermatoscopic images of common pigmented skin lesions. Sci. Data 5, 180161 (2018), "
    "doi:10.1038/sdata.2018.161; Harvard Dataverse doi:10.7910/DVN/DBW86T. Research and education only."
)
ISIC_LICENCE = (
    "CC BY-NC 4.0. ISIC 2018 Task 3 test set, Codella et al. 2019 (arXiv:1902.03368) and Tschandl et al. "
    "2018; Harvard Dataverse doi:10.7910/DVN/DBW86T. Research and education only."
)
DERMA_LICENCE = (
    "CC BY-NC 4.0 (from HAM10000). Yang J. et al. MedMNIST v2, Sci. Data 10, 41 (2023); "
    "Zenodo doi:10.5281/zenodo.10519652. Research and education only."
)


@dataclass(frozen=True)
class RemoteFile:
    """One file of a source: its name on disk, where it lives and how to verify it."""

    name: str
    url: str
    md5: str | None = None
    note: str = ""


@dataclass(frozen=True)
class Source:
    name: str
    title: str
    homepage: str
    licence: str
    files: tuple[RemoteFile, ...]
    images: int
    variants: dict[str, tuple[RemoteFile, ...]] = field(default_factory=dict)
    labels: tuple[str, ...] | None = None  # class code of each integer label, for sources stored as arrays

    def files_for(self, variant: str | None) -> tuple[RemoteFile, ...]:
        if variant is None or not self.variants:
            return self.files
        return self.variants[variant]


# Integer labels of the sources stored as arrays, as each one's own documentation defines them.
# MedMNIST's INFO table: 0 actinic keratoses, 1 basal cell carcinoma, 2 benign keratosis, 3 dermatofibroma,
# 4 melanoma, 5 melanocytic nevi, 6 vascular lesions.
DERMAMNIST_LABELS: tuple[str, ...] = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
# Kaggle's hmnist_*_RGB.csv label column (skin-cancer-mnist-ham10000): 0 akiec, 1 bcc, 2 bkl, 3 df, 4 nv,
# 5 vasc, 6 mel. Not a download (Kaggle needs an account), but imported with `--from`.
HMNIST_LABELS: tuple[str, ...] = ("akiec", "bcc", "bkl", "df", "nv", "vasc", "mel")

DERMAMNIST_SIZES: dict[str, tuple[RemoteFile, ...]] = {
    size: (RemoteFile(name, ZENODO.format(name=name), md5=md5, note=f"{size}x{size}"),)
    for size, name, md5 in (
        ("28", "dermamnist.npz", "0744692d530f8e62ec473284d019b0c7"),
        ("64", "dermamnist_64.npz", "b70a2f5635c6199aeaa28c31d7202e1f"),
        ("128", "dermamnist_128.npz", "2defd784463fa5243564e855ed717de1"),
        ("224", "dermamnist_224.npz", "8974907d8e169bef5f5b96bc506ae45d"),
    )
}

SOURCES: dict[str, Source] = {
    "ham10000": Source(
        name="ham10000",
        title="HAM10000 training set (10,015 images, 7,470 lesions)",
        homepage="https://doi.org/10.7910/DVN/DBW86T",
        licence=HAM_LICENCE,
        images=10015,
        files=(
            RemoteFile("HAM10000_images_part_1.zip", DATAVERSE.format(id=3172585),
                       md5="4639bfa73ab251610530a97c898e6e46", note="5,000 images"),
            RemoteFile("HAM10000_images_part_2.zip", DATAVERSE.format(id=3172584),
                       md5="da43d6cc50f6613013be07e8986b384b", note="5,015 images"),
            RemoteFile("HAM10000_metadata.csv", DATAVERSE.format(id=4338392) + "?format=original",
                       md5="8f85fb1aa29d80a2797247e434deb79d", note="metadata"),
        ),
    ),
    "isic2018-test": Source(
        name="isic2018-test",
        title="ISIC 2018 Task 3 test set (1,511 images), the standard external test set",
        homepage="https://doi.org/10.7910/DVN/DBW86T",
        licence=ISIC_LICENCE,
        images=1511,
        files=(
            RemoteFile("ISIC2018_Task3_Test_Images.zip", DATAVERSE.format(id=3855824), note="1,511 images"),
            RemoteFile("ISIC2018_Task3_Test_GroundTruth.csv",
                       DATAVERSE.format(id=6924466) + "?format=original", note="one-hot ground truth"),
        ),
    ),
    "dermamnist": Source(
        name="dermamnist",
        title="DermaMNIST (MedMNIST v2): HAM10000 as arrays with the official train/val/test split",
        homepage="https://doi.org/10.5281/zenodo.10519652",
        licence=DERMA_LICENCE,
        images=10015,
        files=DERMAMNIST_SIZES["28"],
        variants=DERMAMNIST_SIZES,
        labels=DERMAMNIST_LABELS,
    ),
}


def mirror_base(source: str) -> str | None:
    """A mirror for `source` from `$HAMCLI_MIRROR_<NAME>` or `$HAMCLI_MIRROR` (files appended by name)."""
    key = "HAMCLI_MIRROR_" + source.upper().replace("-", "_")
    return os.environ.get(key) or os.environ.get("HAMCLI_MIRROR")
