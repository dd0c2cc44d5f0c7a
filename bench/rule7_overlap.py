"""How the full-data test split of rule 7 relates to the development subset that earlier rounds tuned on.

    HAMCLI_HOME=/work/acc27 python bench/rule7_overlap.py full150 --dev ../shared/ham10000-dev

The recipe's options (EfficientNet-Lite0 at 150 px, its schedule and postprocessing settings) were chosen in
earlier rounds on `../shared/ham10000-dev`, split 85/15 by lesion (seed 42), partly while that split's test
figures were known. This counts how many images of full150's test split were in that dev split's test part
and in its training part: the extent to which the earlier choices could have been steered by images that
now score the bundled model. Writes bench/results/rule7_overlap.jsonl.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _results import emit  # noqa: E402 - bench/ is on the path when a script runs

from hamcli.data.cache import PreparedDataset
from hamcli.data.metadata import read_metadata
from hamcli.data.splits import SplitSpec, assign_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prepared")
    parser.add_argument("--dev", type=Path, default=Path("../shared/ham10000-dev"))
    args = parser.parse_args()
    manifest = PreparedDataset.open(args.prepared).manifest
    test = set(manifest.loc[manifest["split"] == "test", "image_id"])
    dev = read_metadata(args.dev / "HAM10000_metadata.csv").table
    images = {p.stem for p in (args.dev / "images").glob("*.jpg")}
    dev = dev[dev["image_id"].isin(images)].reset_index(drop=True)
    dev_split = dict(zip(dev["image_id"], assign_split(dev, SplitSpec(85, 0, 15), 42), strict=True))
    emit({"prepared": args.prepared, "test_images": len(test),
          "in_dev": sum(i in dev_split for i in test),
          "in_dev_test": sum(dev_split.get(i) == "test" for i in test),
          "in_dev_train": sum(dev_split.get(i) == "train" for i in test),
          "dev_images": len(dev), "dev_test_images": sum(v == "test" for v in dev_split.values()),
          "note": "dev split recomputed with hamcli's assign_split (85/15, seed 42) on the dev metadata"})


if __name__ == "__main__":
    main()
