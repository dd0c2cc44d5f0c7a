"""The seven HAM10000 diagnosis codes, in the one order every output follows."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


CLASS_CODES: tuple[str, ...] = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")

CLASS_NAMES: dict[str, str] = {
    "akiec": "Actinic keratosis / intraepithelial carcinoma",
    "bcc": "Basal cell carcinoma",
    "bkl": "Benign keratosis-like lesion",
    "df": "Dermatofibroma",
    "mel": "Melanoma",
    "nv": "Melanocytic nevus",
    "vasc": "Vascular lesion",
}

CLASS_INDEX: dict[str, int] = {code: i for i, code in enumerate(CLASS_CODES)}

NUM_CLASSES = len(CLASS_CODES)


def encode(codes) -> np.ndarray:  # noqa: ANN001 - any iterable of class codes
    import numpy as np  # here, so that `hamcli --help` does not pay for numpy

    """Class codes -> int64 indices in CLASS_CODES order."""
    return np.array([CLASS_INDEX[c] for c in codes], dtype=np.int64)
