"""`hamcli prepare`: honest splits, reproducibility, the image cache and bad images."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import make_dataset_folder
from hamcli.cli.app import app
from hamcli.data.importers import import_dataset
from hamcli.data.prepare import PrepareConfig, export_folders, prepare
from hamcli.data.preprocess import ImageReadError, load, open_rgb
from hamcli.data.splits import SplitSpec
from hamcli.errors import UsageError

runner = CliRunner()


@pytest.fixture
def imported(tmp_path):
    root = tmp_path / "ham"
    make_dataset_folder(root, per_class=12, images_per_lesion=3)
    return import_dataset(root)


def test_grouped_split_never_shares_a_lesion(imported):
    prepared = prepare(config=PrepareConfig(split="75/25", size=16))
    m = prepared.manifest
    assert prepared.summary["leaked_lesions"] == 0
    per_lesion = m.groupby("lesion_id")["split"].nunique()
    assert (per_lesion == 1).all()
    # stratified: every class is in both parts
    assert set(m[m.split == "test"].dx) == set(m.dx)
    assert 0.15 < (m.split == "test").mean() < 0.35


def test_three_way_split_and_folds(imported):
    prepared = prepare(config=PrepareConfig(split="50/25/25", size=16, folds=3))
    m = prepared.manifest
    assert set(m.split) == {"train", "val", "test"}
    assert (m[m.split == "test"].fold == -1).all()
    assert set(m[m.split == "train"].fold) == {0, 1, 2}
    assert (m[m.split == "val"].fold == -1).all()  # no fold trains on val: it calibrates the family
    assert (m.groupby("lesion_id")["fold"].nunique() == 1).all()


def test_same_seed_gives_byte_identical_manifest(imported, hamcli_home):
    first = prepare(name="a", config=PrepareConfig(split="75/25", size=16, seed=7))
    second = prepare(name="b", config=PrepareConfig(split="75/25", size=16, seed=7))
    third = prepare(name="c", config=PrepareConfig(split="75/25", size=16, seed=8))
    a = (first.root / "manifest.csv").read_bytes()
    assert a == (second.root / "manifest.csv").read_bytes()
    assert a != (third.root / "manifest.csv").read_bytes()
    assert first.fingerprint == second.fingerprint != third.fingerprint


def test_image_grouping_is_leaky_and_warns(imported):
    with pytest.warns(UserWarning, match="inflated"):
        prepared = prepare(config=PrepareConfig(split="50/50", size=16, group_by="image", seed=3))
    assert prepared.summary["leaked_lesions"] > 0


def test_limit_takes_whole_lesions_in_class_proportion(tmp_path):
    root = tmp_path / "ham"
    make_dataset_folder(root, per_class=20, images_per_lesion=2)
    import_dataset(root)
    prepared = prepare(config=PrepareConfig(split="50/50", size=16, limit=70))
    m = prepared.manifest
    assert len(m) == 70
    assert m.groupby("dx").size().tolist() == [10] * 7


def test_cache_matches_the_shared_preprocessing(imported):
    prepared = prepare(config=PrepareConfig(split="75/25", size=24))
    cache = prepared.images()
    assert cache.shape == (len(prepared.manifest), 24, 24, 3) and cache.dtype == np.uint8
    row = prepared.manifest.iloc[5]
    src = imported.images / row["file"]
    np.testing.assert_array_equal(cache[5], load(src, (24, 24)))


def test_bad_split_text_is_a_usage_error():
    for text in ("90", "90/20", "a/b", "0/100"):
        with pytest.raises(UsageError, match="--split"):
            SplitSpec.parse(text)


def test_cli_prepare_prints_table_and_zero_leaks(imported):
    result = runner.invoke(app, ["prepare", "--split", "75/25", "--size", "16", "-q"])
    assert result.exit_code == 0, result.output
    assert "lesions in more than one split: 0" in result.stdout
    result = runner.invoke(app, ["prepare", "--split", "75/25", "--size", "16", "-q", "--json", "--overwrite"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["counts"]["train"]["mel"] + summary["counts"]["test"]["mel"] == 12


def test_cli_prepare_without_dataset_says_what_to_run():
    result = runner.invoke(app, ["prepare"])
    assert result.exit_code == 1 and "hamcli download" in result.output
    assert "Traceback" not in result.output


def test_export_folders_imagefolder_layout(imported, tmp_path):
    prepared = prepare(config=PrepareConfig(split="75/25", size=16))
    out = export_folders(prepared, tmp_path / "folders")
    n = sum(1 for _ in out.rglob("*.jpg"))
    assert n == len(prepared.manifest)
    assert {p.name for p in out.iterdir()} == {"train", "test"}
    assert {p.name for p in (out / "train").iterdir()} == set(prepared.manifest.dx)


def test_unusable_images_are_excluded_and_counted(tmp_path):
    root = tmp_path / "ham"
    table = make_dataset_folder(root, per_class=4)
    ds = import_dataset(root)
    # Damaged after import (a disk error, a partial copy): prepare must still cope.
    broken = ds.images / f"{table.image_id[0]}.jpg"
    broken.write_bytes(broken.read_bytes()[:400])
    prepared = prepare(config=PrepareConfig(split="50/50", size=16))
    assert table.image_id[0] in prepared.summary["excluded"]
    assert len(prepared.manifest) == 27
    assert prepared.images().shape[0] == 27


def test_failed_prepare_leaves_previous_prepared_dataset(imported, hamcli_home):
    first = prepare(config=PrepareConfig(split="75/25", size=16))
    before = (first.root / "manifest.csv").read_bytes()
    with pytest.raises(UsageError, match="--folds 1"):
        prepare(config=PrepareConfig(split="75/25", size=16, folds=1), overwrite=True)
    assert (first.root / "manifest.csv").read_bytes() == before
    assert [p.name for p in (hamcli_home / "data/prepared").iterdir() if not p.name.startswith(".")] == ["ham10000"]
    assert len(list((hamcli_home / "data/prepared/.versions").iterdir())) == 1


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "I;16", "P", "LA"])
def test_any_mode_becomes_rgb(tmp_path, mode):
    img = Image.new("RGB", (30, 20), (200, 100, 50)).convert(mode) if mode != "I;16" else \
        Image.fromarray(np.full((20, 30), 40000, dtype=np.uint16))
    path = tmp_path / f"x.{'tif' if mode in ('CMYK', 'I;16') else 'png'}"
    img.save(path)
    out = load(path, (8, 8))
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8


def test_exif_rotation_is_applied(tmp_path):
    arr = np.zeros((20, 40, 3), dtype=np.uint8)
    arr[:, :20] = 255  # left half white
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif, quality=95)
    upright = open_rgb(path)
    assert upright.size == (20, 40)
    top = np.asarray(upright)[:5].mean()
    bottom = np.asarray(upright)[-5:].mean()
    assert top > 200 and bottom < 50


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    import hamcli.data.preprocess as images

    path = tmp_path / "big.png"
    Image.new("RGB", (400, 300)).save(path)
    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    with pytest.raises(ImageReadError, match="too large"):
        open_rgb(path)


def test_truncated_and_garbage_files_raise_image_error(tmp_path):
    garbage = tmp_path / "g.jpg"
    garbage.write_bytes(b"hello")
    with pytest.raises(ImageReadError, match="g.jpg"):
        open_rgb(garbage)
    with pytest.raises(ImageReadError, match="not found"):
        open_rgb(tmp_path / "nope.jpg")


def test_pandas_reads_manifest_with_expected_columns(imported):
    prepared = prepare(config=PrepareConfig(split="75/25", size=16))
    cols = list(pd.read_csv(prepared.root / "manifest.csv").columns)
    assert cols[:6] == ["image_id", "lesion_id", "dx", "split", "fold", "file"]


def test_a_class_missing_from_an_evaluated_part_is_named_with_the_fix(tmp_path):
    from conftest import make_dataset_folder
    from hamcli.data.importers import import_dataset

    make_dataset_folder(tmp_path / "few", per_class=2, images_per_lesion=1)  # 2 lesions per class
    import_dataset(tmp_path / "few")
    with pytest.warns(UserWarning, match=r"(class|classes) .*\(2 lesions\).* too few for a 15% test part") as caught:
        prepared = prepare(name="few", config=PrepareConfig(split="70/15/15", size="16"))
    missing = prepared.summary["missing_classes"]
    assert missing and len(caught) == len(missing) <= 2  # one line per part, however many classes it lacks
    assert "use a split whose" in missing[-1] and "at least 50%" in missing[-1]  # 2 lesions: half of them
    with pytest.warns(UserWarning, match="raise --limit to at least") as limited:
        prepare(name="few-limited", config=PrepareConfig(split="70/15/15", size="16", limit=10))
    fixes = [str(w.message) for w in limited if "--limit" in str(w.message)]
    assert len(fixes) <= 2 and all(f.count("--limit") == 1 for f in fixes)
    result = runner.invoke(app, ["prepare", "--source", "ham10000", "--name", "few2", "--split", "70/15/15",
                                 "--size", "16", "-q"])
    assert result.exit_code == 0 and "Warning: class" in result.stderr
