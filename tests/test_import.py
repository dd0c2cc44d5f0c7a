"""`hamcli download --from`: every accepted layout, the validation report, unsafe archives."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import make_dataset_folder
from hamcli.cli.app import app
from hamcli.data.archive import extract_zip
from hamcli.data.importers import import_dataset, import_samples
from hamcli.errors import DataError

runner = CliRunner()


def test_plain_folder_import_reports_per_class(dataset_folder):
    ds = import_dataset(dataset_folder)
    report = ds.report
    assert report["images"] == 28 and report["lesions"] == 14
    assert set(report["per_class"].values()) == {4}
    assert report["problems"] == {}
    assert len(list(ds.images.iterdir())) == 28


def test_report_lists_missing_unlisted_unreadable_and_metadata_problems(tmp_path):
    root = tmp_path / "ham"
    table = make_dataset_folder(root, per_class=2)
    (root / "images" / f"{table.image_id[0]}.jpg").unlink()  # listed but missing
    (root / "images" / "ISIC_9999999.jpg").write_bytes((root / "images" / f"{table.image_id[1]}.jpg").read_bytes())
    (root / "images" / f"{table.image_id[2]}.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    extra = pd.DataFrame([
        {"lesion_id": "HAM_X", "image_id": table.image_id[3], "dx": "nv"},  # duplicate id
        {"lesion_id": "HAM_Y", "image_id": "ISIC_7777777", "dx": "melanoma"},  # unknown dx
        {"lesion_id": "HAM_Z", "image_id": "../etc/passwd", "dx": "nv"},  # not a plain name
    ])
    pd.concat([table, extra]).to_csv(root / "HAM10000_metadata.csv", index=False)
    report = import_dataset(root).report
    problems = report["problems"]
    assert problems["missing_images"] == [table.image_id[0]]
    assert problems["unlisted_images"] == ["ISIC_9999999"]
    assert problems["unreadable_images"][0].startswith(f"{table.image_id[2]}.jpg")
    assert problems["duplicate_image_ids"] == [table.image_id[3]]
    assert problems["unknown_dx"] == ["ISIC_7777777: 'melanoma'"]
    assert problems["bad_image_ids"] == ["'../etc/passwd'"]
    assert report["images"] == 14 - 2


def test_kaggle_archive_with_duplicate_part_folders(tmp_path, dataset_folder):
    archive = tmp_path / "skin-cancer-mnist-ham10000.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i, p in enumerate(sorted((dataset_folder / "images").iterdir())):
            part = "HAM10000_images_part_1" if i % 2 else "HAM10000_images_part_2"
            zf.write(p, f"{part}/{p.name}")
            zf.write(p, f"{part.lower()}/{p.name}")
        zf.write(dataset_folder / "HAM10000_metadata.csv", "HAM10000_metadata.csv")
        zf.writestr("hmnist_8_8_RGB.csv", "pixel0000,label\n1,0\n")
    ds = import_dataset(archive)
    assert ds.report["images"] == 28
    assert "unlisted_images" not in ds.report["problems"]


def test_dataverse_zips_beside_metadata(tmp_path, dataset_folder):
    folder = tmp_path / "dataverse"
    folder.mkdir()
    images = sorted((dataset_folder / "images").iterdir())
    for n, chunk in (("HAM10000_images_part_1.zip", images[:10]), ("HAM10000_images_part_2.zip", images[10:])):
        with zipfile.ZipFile(folder / n, "w") as zf:
            for p in chunk:
                zf.write(p, p.name)
    (folder / "HAM10000_metadata.csv").write_bytes((dataset_folder / "HAM10000_metadata.csv").read_bytes())
    assert import_dataset(folder).report["images"] == 28


def test_hmnist_csv_uses_kaggle_label_order(tmp_path):
    side = 4
    rows = []
    for label in range(7):
        rows.append([label * 10] * (side * side * 3) + [label])
    cols = [f"pixel{i:04d}" for i in range(side * side * 3)] + ["label"]
    csv = tmp_path / "hmnist_4_4_RGB.csv"
    pd.DataFrame(rows, columns=cols).to_csv(csv, index=False)
    ds = import_dataset(csv, name="hm")
    meta = pd.read_csv(ds.metadata)
    # Kaggle: 0 akiec, 1 bcc, 2 bkl, 3 df, 4 nv, 5 vasc, 6 mel
    assert list(meta["dx"]) == ["akiec", "bcc", "bkl", "df", "nv", "vasc", "mel"]
    assert "no_lesion_ids" in ds.report["problems"]


def test_dermamnist_npz_keeps_official_split(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 7), ("val", 3), ("test", 4)):
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, 28, 28, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 7).reshape(-1, 1)
    npz = tmp_path / "dermamnist.npz"
    np.savez(npz, **arrays)
    ds = import_dataset(npz, name="derma")
    meta = pd.read_csv(ds.metadata)
    assert list(meta["official_split"].value_counts().sort_index()) == [4, 7, 3]
    # MedMNIST's own INFO table: 4 melanoma, 5 melanocytic nevi, 6 vascular (not Kaggle's hmnist order)
    assert list(meta["dx"].iloc[4:7]) == ["mel", "nv", "vasc"]


def test_isic_onehot_ground_truth(tmp_path):
    root = tmp_path / "isic"
    table = make_dataset_folder(root, per_class=1)
    (root / "HAM10000_metadata.csv").unlink()
    codes = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    onehot = pd.DataFrame([{"image": r.image_id, **{c: float(c.lower() == r.dx) for c in codes}}
                           for r in table.itertuples()])
    onehot.to_csv(root / "ISIC2018_Task3_Test_GroundTruth.csv", index=False)
    meta = pd.read_csv(import_dataset(root, name="isic").metadata)
    assert list(meta["dx"]) == list(table["dx"])


def test_bundled_samples_import_offline():
    ds = import_samples()
    assert ds.report["images"] == 14
    assert set(ds.report["per_class"].values()) == {2}


def test_missing_columns_error_names_file_and_columns(tmp_path, dataset_folder):
    meta = dataset_folder / "HAM10000_metadata.csv"
    pd.read_csv(meta).rename(columns={"dx": "diagnosis_code"}).to_csv(meta, index=False)
    result = runner.invoke(app, ["download", "--from", str(dataset_folder), "--metadata", str(meta)])
    assert result.exit_code == 1
    assert "missing column(s) dx" in result.output and str(meta) in result.output
    assert "Traceback" not in result.output


def test_failed_import_keeps_previous_dataset(tmp_path, dataset_folder, hamcli_home):
    import_dataset(dataset_folder)
    before = (hamcli_home / "data/datasets/ham10000/metadata.csv").read_bytes()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "HAM10000_metadata.csv").write_text("image_id,dx\nISIC_1,nv\n")
    with pytest.raises(DataError, match="no usable labelled images"):
        import_dataset(broken, overwrite=True)
    assert (hamcli_home / "data/datasets/ham10000/metadata.csv").read_bytes() == before
    visible = [p.name for p in (hamcli_home / "data/datasets").iterdir() if not p.name.startswith(".")]
    assert visible == ["ham10000"]
    assert len(list((hamcli_home / "data/datasets/.versions").iterdir())) == 1  # the failed version is gone


def test_cli_import_json_report(dataset_folder):
    result = runner.invoke(app, ["download", "--from", str(dataset_folder), "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["per_class"]["mel"] == 4


@pytest.mark.parametrize("member", ["../evil.txt", "/abs/evil.txt", "a/../../evil.txt"])
def test_zip_slip_is_refused(tmp_path, member):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(member, "boom")
    with pytest.raises(DataError, match="outside the target folder"):
        extract_zip(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def test_zip_bomb_member_is_refused(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.csv", b"\0" * (40 * 1024 * 1024))
    with pytest.raises(DataError, match="far too large"):
        extract_zip(archive, tmp_path / "out")


def test_not_a_zip_is_a_clear_error(tmp_path: Path):
    fake = tmp_path / "x.zip"
    fake.write_text("hello")
    result = runner.invoke(app, ["download", "--from", str(fake)])
    assert result.exit_code == 1 and "not a readable zip" in result.output
