"""`hamcli predict` and `hamcli evaluate` on a tiny trained run."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import hamcli
import hamcli.models.checkpoint as checkpoint
from conftest import class_image, make_dataset_folder
from hamcli.classes import CLASS_CODES
from hamcli.cli.app import app
from hamcli.data.preprocess import ImageReadError, Preprocess
from hamcli.errors import DataError, NotFoundError
from hamcli.inference.postprocess import Postprocess
from hamcli.models.build import build_model
from hamcli.models.zoo import IMAGENET_MEAN, IMAGENET_STD, MODELS

runner = CliRunner()


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "new"
    folder.mkdir()
    for i in range(5):
        class_image(i, 100 + i, (60, 45)).save(folder / f"img{i}.jpg")
    return folder


def test_python_api_two_lines(trained_run, images):
    model = hamcli.load_model()
    pred = model.predict(images / "img0.jpg")
    assert pred.code in CLASS_CODES and 0 <= pred.probability <= 1
    assert abs(sum(pred.probabilities.values()) - 1) < 1e-4
    assert model.classes == CLASS_CODES
    many = model.predict([images / "img1.jpg", Image.open(images / "img2.jpg")])
    assert len(many) == 2 and many[1].source == "<JpegImageFile>"
    with pytest.raises(ImageReadError):
        model.predict(images / "missing.jpg")


def test_predict_files_directory_and_stdin_keep_order(trained_run, images):
    files = [str(images / f"img{i}.jpg") for i in (3, 0, 4)]
    out = runner.invoke(app, ["predict", *files, "--format", "jsonl"])
    assert out.exit_code == 0, out.output
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["path"] for r in rows] == files
    assert all(len(r["top_k"]) == 3 for r in rows)
    folder = json.loads(runner.invoke(app, ["predict", str(images), "--format", "json"]).stdout)
    assert [Path(r["path"]).name for r in folder] == [f"img{i}.jpg" for i in range(5)]
    piped = runner.invoke(app, ["predict", "-", "--format", "csv"], input="\n".join(files) + "\n")
    table = list(csv.DictReader(io.StringIO(piped.stdout)))
    assert [r["path"] for r in table] == files
    assert set(table[0]) >= {"path", "code", "name", "probability", "p_mel", "p_nv"}
    glob_rows = json.loads(runner.invoke(app, ["predict", str(images / "img[12].jpg"), "-f", "json"]).stdout)
    assert len(glob_rows) == 2


def test_mixed_good_and_corrupt_files_exit_1_with_good_rows(trained_run, images):
    (images / "bad.jpg").write_bytes(b"not an image")
    out = runner.invoke(app, ["predict", str(images / "img0.jpg"), str(images / "bad.jpg"),
                              str(images / "img1.jpg"), "--format", "csv"])
    assert out.exit_code == 1
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [Path(r["path"]).name for r in rows] == ["img0.jpg", "bad.jpg", "img1.jpg"]  # input order, none lost
    assert [bool(r["error"]) for r in rows] == [False, True, False] and rows[1]["code"] == ""
    assert rows[0]["image_id"] == "img0" and rows[0]["precision"] == "fp32 + channels-last"
    assert "bad.jpg" in out.stderr and "Traceback" not in out.output
    shown = runner.invoke(app, ["predict", str(images / "img0.jpg"), str(images / "bad.jpg"), "--format", "table"],
                          env={"COLUMNS": "250"})
    assert shown.exit_code == 1
    lines = [line for line in shown.stdout.splitlines() if "img0.jpg" in line or "bad.jpg" in line]
    assert len(lines) == 2 and "bad.jpg" in lines[1] and "error" in lines[1]  # the table keeps its place too


def test_not_a_diagnosis_goes_to_stderr_in_every_format_and_formats_are_checked(trained_run, images):
    for fmt in ("table", "json", "jsonl", "csv"):
        out = runner.invoke(app, ["predict", str(images / "img0.jpg"), "-f", fmt])
        assert out.exit_code == 0 and "not a diagnosis" in out.stderr and "not a diagnosis" not in out.stdout
    evaluated = runner.invoke(app, ["evaluate", "--format", "json"])
    assert evaluated.exit_code == 0 and "not a diagnosis" in evaluated.stderr
    json.loads(evaluated.stdout)
    bad = runner.invoke(app, ["predict", str(images / "img0.jpg"), "-f", "xml"])
    assert bad.exit_code == 2 and "--format" in bad.stderr and "table, json, jsonl, csv" in bad.stderr


def test_any_mode_and_size_is_handled(trained_run, tmp_path):
    grey16 = tmp_path / "g16.png"
    Image.fromarray((np.arange(300 * 200).reshape(200, 300) % 65535).astype(np.uint16)).save(grey16)
    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (1000, 50), (10, 200, 30, 128)).save(rgba)
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (31, 17), (0, 50, 100, 0)).save(cmyk)
    out = runner.invoke(app, ["predict", str(grey16), str(rgba), str(cmyk), "-f", "json"])
    assert out.exit_code == 0, out.output
    assert len(json.loads(out.stdout)) == 3


def _always(code: str, tmp_path: Path) -> Path:
    model = build_model("lenet")[0]
    with torch.no_grad():
        head = model.classifier
        head.weight.zero_()
        head.bias.fill_(-5.0)
        head.bias[CLASS_CODES.index(code)] = 5.0
    path = tmp_path / f"always-{code}.pt"
    checkpoint.save(path, Preprocess((32, 32), IMAGENET_MEAN, IMAGENET_STD), state_dict=model.state_dict(),
                    arch="lenet", config={}, data={"name": "none", "fingerprint": "none"}, epoch=1, history=[],
                    metrics={})
    return path


@pytest.mark.parametrize("code", ["mel", "akiec", "vasc"])
def test_label_order_is_preserved_end_to_end(tmp_path, images, code):
    out = runner.invoke(app, ["predict", str(images / "img0.jpg"), "--model", str(_always(code, tmp_path)),
                              "-f", "json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)[0]["code"] == code


def test_bundled_model_stands_in_until_a_run_exists(images, prepared_tiny):
    from hamcli.runs import BUNDLED_FILE
    from hamcli.training.config import TrainConfig
    from hamcli.training.runner import train

    bundled = hamcli.load_model()
    members = getattr(bundled, "members", [bundled])  # one network, or an ensemble in one file
    archs = {m.card.arch for m in members}
    assert bundled.card.path == BUNDLED_FILE and all(a.startswith("efficientnet_lite") and a in bundled.card.arch
                                                     for a in archs)
    assert bundled.classes == CLASS_CODES
    assert "bundle" in bundled.ckpt_meta and len(bundled.ckpt_meta["data"]["seen_image_ids"]) > 1000
    summary = json.loads(BUNDLED_FILE.with_suffix(".json").read_text())  # what `hamcli info` shows, torch-free
    assert summary["arch"] == bundled.card.arch and summary["members"] == len(members)
    data = bundled.ckpt_meta["data"]  # the data the bundle trained on, as `hamcli info` names it
    assert summary["data"] == f"{data['name']} ({sum(data['train_counts']):,} training images)"
    assert summary["test"] == {k: v for k, v in bundled.ckpt_meta["bundle"]["test"].items() if k != "ci95"}
    out = runner.invoke(app, ["predict", str(images), "-f", "json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)
    assert len(rows) == 5 and all(abs(sum(r["probabilities"].values()) - 1) < 1e-3 for r in rows)
    # Once a run exists it is the default; the bundled model is still there by name.
    train(TrainConfig(arch="lenet", data="tiny", epochs=1, batch_size=8, precision="fp32", name="first"))
    assert hamcli.load_model().card.path.parent.name == "first"
    assert hamcli.load_model("bundled").card.path == BUNDLED_FILE
    with pytest.raises(NotFoundError):
        hamcli.load_model("nope")


def test_bundled_model_has_no_test_split_to_score_and_its_name_is_reserved(prepared_tiny):
    out = runner.invoke(app, ["evaluate", "bundled"])
    assert out.exit_code == 1 and "--data DIR" in out.output
    out = runner.invoke(app, ["train", "--arch", "lenet", "--data", "tiny", "--name", "bundled"])
    assert out.exit_code == 2 and "reserved" in out.output


def test_evaluate_data_leaves_out_images_the_model_learnt_from(trained_run, prepared_tiny, tmp_path):
    # prepared_tiny was imported from tmp_path / "tiny": its train and val images are in the checkpoint.
    split = prepared_tiny.manifest["split"]
    out = runner.invoke(app, ["evaluate", "--data", str(tmp_path / "tiny"), "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["left_out_seen"] == int((split != "test").sum())
    assert report["metrics"]["images"] == int((split == "test").sum())


def test_an_onnx_export_leaves_out_and_marks_what_its_model_saw(trained_run, prepared_tiny, tmp_path):
    import onnx

    split = prepared_tiny.manifest["split"]
    target = tmp_path / "tiny.onnx"
    assert runner.invoke(app, ["export", "tiny-lenet", "-o", str(target)]).exit_code == 0
    out = runner.invoke(app, ["evaluate", str(target), "--data", str(tmp_path / "tiny"), "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["left_out_seen"] == int((split != "test").sum()) and report["run"] == "tiny"
    assert report["metrics"]["images"] == int((split == "test").sum()) and not report["seen_unrecorded"]
    seen_id = prepared_tiny.manifest.loc[split == "train", "image_id"].iloc[0]
    image = next((tmp_path / "tiny").rglob(f"{seen_id}.*"))
    rows = json.loads(runner.invoke(app, ["predict", str(image), "--model", str(target), "-f", "json"]).stdout)
    assert rows[0]["seen"] is True
    no_split = runner.invoke(app, ["evaluate", str(target)])
    assert no_split.exit_code == 2 and "--data DIR" in no_split.stderr and "''" not in no_split.stderr
    graph = onnx.load(str(target))  # an export from before the record: scored whole, with a warning
    kept = [p for p in graph.metadata_props if p.key != "data"]
    del graph.metadata_props[:]
    graph.metadata_props.extend(kept)
    onnx.save(graph, str(tmp_path / "old.onnx"))
    old = runner.invoke(app, ["evaluate", str(tmp_path / "old.onnx"), "--data", str(tmp_path / "tiny")])
    assert old.exit_code == 0 and "does not record which images" in old.stderr
    for prop in graph.metadata_props:  # a damaged record is one line
        if prop.key == "classes":
            graph.metadata_props.add(key="data", value='{"seen_image_ids": [1, 2]}')
            break
    onnx.save(graph, str(tmp_path / "bad.onnx"))
    bad = runner.invoke(app, ["predict", str(image), "--model", str(tmp_path / "bad.onnx")])
    assert bad.exit_code == 1 and "data record is damaged" in bad.stderr and "Traceback" not in bad.output


def test_evaluate_data_names_images_missing_from_the_folder(trained_run, tmp_path):
    folder = tmp_path / "missing"
    folder.mkdir()
    (folder / "HAM10000_metadata.csv").write_text("lesion_id,image_id,dx\nHAM_1,ISIC_9999991,nv\n"
                                                  "HAM_2,ISIC_9999992,mel\n")
    out = runner.invoke(app, ["evaluate", "--data", str(folder)])
    assert out.exit_code == 1 and "none of the 2 images" in out.stderr and "trained or validated" not in out.stderr


def test_evaluate_latest_run_on_its_test_split(trained_run, prepared_tiny, tmp_path):
    n_test = int((prepared_tiny.manifest["split"] == "test").sum())
    out = runner.invoke(app, ["evaluate", "--json", "--predictions", str(tmp_path / "p.csv"),
                              "--plot", str(tmp_path / "plots"), "--ci", "--bootstrap", "50"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    m = report["metrics"]
    assert report["run"] == "tiny-lenet" and m["images"] == n_test
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "macro_roc_auc",
                "melanoma_sensitivity", "melanoma_specificity", "ece"):
        assert key in m
    assert set(m["per_class"]) == set(CLASS_CODES) and m["baseline"]["class"] in CLASS_CODES
    assert m["ci_resampled_by"] == "lesion" and len(m["ci95"]["accuracy"]) == 2
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert len(rows) == n_test and set(rows[0]) >= {"image_id", "true_dx", "pred_dx", "p_mel"}
    probs = np.array([[float(r[f"p_{c}"]) for c in CLASS_CODES] for r in rows])
    assert np.allclose(probs.sum(1), 1, atol=1e-4)
    assert (tmp_path / "plots" / "evaluate-confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "plots" / "evaluate-roc.png").exists()


def test_evaluate_table_and_tta(trained_run):
    out = runner.invoke(app, ["evaluate", "tiny-lenet", "--tta"])
    assert out.exit_code == 0, out.output
    for text in ("balanced accuracy", "melanoma sensitivity", "confusion matrix", "always"):
        assert text in out.stdout


def test_evaluate_data_folder_and_isic_layout(trained_run, tmp_path):
    folder = tmp_path / "clinic"
    make_dataset_folder(folder, per_class=2, first_id=1000)
    out = runner.invoke(app, ["evaluate", "--data", str(folder), "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["metrics"]["images"] == 14 and report["metrics"]["per_class"]["mel"]["support"] == 2
    # The ISIC 2018 layout: one-hot ground truth, no lesion ids (bootstrap falls back to images).
    isic = tmp_path / "isic"
    table = make_dataset_folder(isic, per_class=1, first_id=2000)
    (isic / "HAM10000_metadata.csv").unlink()
    codes = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    rows = [{"image": r.image_id, **{c: float(c.lower() == r.dx) for c in codes}} for r in table.itertuples()]
    import pandas as pd

    pd.DataFrame(rows).to_csv(isic / "ISIC2018_Task3_Test_GroundTruth.csv", index=False)
    out = runner.invoke(app, ["evaluate", "--data", str(isic), "--json", "--ci", "--bootstrap", "20"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)["metrics"]
    assert report["images"] == 7 and report["ci_resampled_by"] == "image"
    assert all(report["per_class"][c]["support"] == 1 for c in CLASS_CODES)


def test_evaluate_compares_several_runs(trained_run):
    from hamcli.training.config import TrainConfig
    from hamcli.training.runner import train

    train(TrainConfig(arch="cnn", data="tiny", epochs=1, batch_size=8, precision="fp32", name="tiny-cnn"))
    out = runner.invoke(app, ["evaluate", "tiny-lenet", "tiny-cnn"])
    assert out.exit_code == 0 and "comparison" in out.stdout
    both = json.loads(runner.invoke(app, ["evaluate", "tiny-lenet", "tiny-cnn", "--json"]).stdout)
    assert [r["run"] for r in both] == ["tiny-lenet", "tiny-cnn"]
    for r in both:  # each row holds that run's own scores, and the table shows them
        alone = json.loads(runner.invoke(app, ["evaluate", r["run"], "--json"]).stdout)["metrics"]
        assert r["metrics"]["balanced_accuracy"] == alone["balanced_accuracy"]
        row = next(line for line in out.stdout.splitlines() if r["run"] in line)
        assert f"{alone['balanced_accuracy']:.3f}" in row and f"{alone['accuracy']:.3f}" in row


def test_a_fold_family_works_wherever_a_run_does(prepared_tiny, images, tmp_path):
    from hamcli.training.config import TrainConfig
    from hamcli.training.folds import train_folds

    train_folds(TrainConfig(arch="lenet", data="tiny", epochs=1, batch_size=8, precision="fp32", name="cv"))
    report = json.loads(runner.invoke(app, ["evaluate", "cv", "--json"]).stdout)
    assert report["family"] == ["fold0", "fold1"] and len(report["members"]) == 2
    assert set(report["metrics_mean_std"]["balanced_accuracy"]) == {"mean", "std"}
    # the family's own figures are those of the ensemble: the mean of its folds' probabilities, then the
    # temperature fitted on that mean over the val split, which no fold trained on
    ensemble = hamcli.load_model("cv")  # the default model too, as the run trained last
    assert hamcli.load_model().card.path == ensemble.card.path
    family = json.loads((ensemble.card.path / "family.json").read_text())
    assert "val split" in family["calibration"]["fitted_on"]
    image = images / "img0.jpg"
    folds = [hamcli.load_model(f"{ensemble.card.path}/fold{k}") for k in (0, 1)]
    pixels = folds[0].decode([image])[0]
    raw = np.mean([f.outputs(pixels, raw=True).probabilities for f in folds], axis=0, dtype=np.float64)
    z = Postprocess.from_dict(family["postprocess"]).apply(np.log(raw))[0]
    want = np.exp(z) / np.exp(z).sum()
    got = ensemble.predict(image).probabilities
    assert max(abs(got[c] - want[i]) for i, c in enumerate(CLASS_CODES)) < 1e-6
    table = runner.invoke(app, ["evaluate", "cv", "--ci", "--bootstrap", "20"]).stdout
    assert "ensemble of 2 folds" in table and "±" in table and "fold1" in table, table
    assert runner.invoke(app, ["predict", str(image), "-f", "json"]).exit_code == 0
    cam = runner.invoke(app, ["gradcam", str(image), "-o", str(tmp_path / "cam.png"), "--json"])
    assert cam.exit_code == 0 and "ensemble of 2 models: each map is the mean of theirs" in cam.stderr
    # Grad-CAM explains the ensemble as it predicts: its class and probability, the mean of its members' maps.
    from hamcli.explain.maps import explain

    top = ensemble.predict(image)
    row = json.loads(cam.stdout)[0]
    assert row["predicted"] == top.code and row["probability"] == pytest.approx(top.probability, abs=1e-5)
    result = hamcli.gradcam(ensemble, image)
    maps = [explain(m, image, target=top.code).raw for m in ensemble.members]  # each in its layer's own units
    assert not np.allclose(maps[0], maps[1])  # two different networks: the mean is not either one
    np.testing.assert_allclose(result.heatmap, np.mean(maps, 0) / np.mean(maps, 0).max(), atol=1e-6)
    other = next(c for c in CLASS_CODES if c != top.code)
    assert hamcli.gradcam(ensemble, image, target=other).target_probability == pytest.approx(
        top.probabilities[other], abs=1e-5)


def test_evaluate_refuses_changed_prepared_dataset(trained_run):
    from hamcli.data.prepare import PrepareConfig, prepare
    from hamcli.evaluation.scoring import evaluate

    prepare(name="tiny", config=PrepareConfig(split="50/50", size="32", seed=9), overwrite=True, force=True)
    with pytest.raises(DataError, match="changed since training"):
        evaluate("tiny-lenet")


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_batch_norm_folding_keeps_every_architectures_outputs(arch):
    import copy

    from hamcli.models.fold import fold_batchnorm

    torch.manual_seed(0)
    model = build_model(arch)[0].eval()
    with torch.no_grad():  # non-trivial batch-norm statistics, so folding really changes the weights
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    folded = copy.deepcopy(model)
    count = fold_batchnorm(folded)
    norms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert (count > 0) == (norms > 0)  # wherever there is batch norm after a convolution, some is folded
    assert {n for n, _ in folded.named_modules()} == {n for n, _ in model.named_modules()}  # names kept
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        np.testing.assert_allclose(folded(x).softmax(1), model(x).softmax(1), atol=1e-5)


def test_one_image_one_answer_in_every_batch_size_and_through_every_door(tmp_path):
    """Same image, same probabilities: alone, in one batch, in batches of 3 and 64, from a path or a PIL image,
    through serve's handler (1e-6) and an exported ONNX file (1e-5), on whatever CPU runs the tests."""
    from PIL import Image, ImageOps
    from starlette.testclient import TestClient

    from hamcli.data.importers import SAMPLES_DIR, index_images
    from hamcli.serve.app import create_app
    from hamcli.serve.onnx import export_onnx

    files = sorted(index_images(SAMPLES_DIR).values())
    pictures = [Image.open(f).convert("RGB") for f in files]
    pictures += [ImageOps.mirror(p) for p in pictures[:20 - len(pictures)]]  # 20 images in all
    model = hamcli.load_model("bundled")

    def table(rows):  # noqa: ANN001, ANN202
        return np.array([[r.probabilities[c] for c in CLASS_CODES] for r in rows])

    alone = table([model.predict(p) for p in pictures])
    assert np.abs(table(model.predict(pictures)) - alone).max() < 1e-6
    arrays, _, _ = model.decode(pictures)
    for batch in (3, 64):
        assert np.abs(model.probabilities(arrays, batch_size=batch) - alone).max() < 1e-6
    paths = []
    for i, picture in enumerate(pictures):
        paths.append(tmp_path / f"p{i}.png")
        picture.save(paths[-1])
    assert np.abs(table(model.predict(paths)) - alone).max() < 1e-6
    # The original JPEG files (600x450) by path, opened lazily, and as arrays made from them: what the converted
    # pictures got (a JPEG decoded at reduced scale would differ by up to 0.1).
    n = len(files)
    assert np.abs(table(model.predict(files)) - alone[:n]).max() < 1e-6
    assert np.abs(table(model.predict([Image.open(f) for f in files])) - alone[:n]).max() < 1e-6
    assert np.abs(table(model.predict([Image.fromarray(np.asarray(p)) for p in pictures[:n]])) - alone[:n]).max() < 1e-6
    client = TestClient(create_app("bundled", allowed_hosts=("testserver",)))
    served = []
    for path in paths:
        reply = client.post("/api/predict", files={"file": (path.name, path.read_bytes(), "image/png")})
        served.append([reply.json()[0]["probabilities"][c] for c in CLASS_CODES])
    assert np.abs(np.array(served) - alone).max() < 1e-6
    jpeg = client.post("/api/predict", files={"file": (files[0].name, files[0].read_bytes(), "image/jpeg")})
    assert np.abs(np.array([jpeg.json()[0]["probabilities"][c] for c in CLASS_CODES]) - alone[0]).max() < 1e-6
    export_onnx("bundled", tmp_path / "bundled.onnx")
    exported = hamcli.load_model(tmp_path / "bundled.onnx")
    assert np.abs(table(exported.predict(paths)) - alone).max() < 1e-5
    assert {r.precision for r in model.predict(pictures[:2])} == {"fp32 + channels-last"}


def test_predict_top_k_batch_size_and_tta(trained_run, images):
    rows = json.loads(runner.invoke(app, ["predict", str(images), "-f", "json", "--top-k", "2"]).stdout)
    assert all(len(r["top_k"]) == 2 and r["top_k"][0]["code"] == r["code"] for r in rows)
    one = json.loads(runner.invoke(app, ["predict", str(images), "-f", "json", "--batch-size", "1"]).stdout)
    assert all(np.allclose(list(a["probabilities"].values()), list(b["probabilities"].values()), atol=1e-5)
               for a, b in zip(rows, one, strict=True))
    ramp = np.zeros((45, 60, 3), dtype=np.uint8)  # not symmetric: its flips look different to the model
    ramp[:, :, 0] = np.linspace(0, 255, 60)[None, :]
    ramp[:30, :, 2] = 200
    Image.fromarray(ramp).save(images / "ramp.png")
    plain = json.loads(runner.invoke(app, ["predict", str(images / "ramp.png"), "-f", "json"]).stdout)[0]
    tta = json.loads(runner.invoke(app, ["predict", str(images / "ramp.png"), "-f", "json", "--tta"]).stdout)[0]
    assert abs(sum(tta["probabilities"].values()) - 1) < 1e-4
    assert max(abs(plain["probabilities"][c] - tta["probabilities"][c]) for c in CLASS_CODES) > 1e-4


def test_format_1_checkpoint_of_hamcli_0_1_still_loads(tmp_path, images):
    """Checkpoints written before the layout change used anonymous layer indices and no preprocess record."""
    from hamcli.models.small import LEGACY_KEYS

    torch.manual_seed(0)
    model = build_model("lenet")[0].eval()
    old_names = {new: old for old, new in LEGACY_KEYS["lenet"].items()}
    state = {}
    for key, value in model.state_dict().items():
        prefix = next(p for p in sorted(old_names, key=len, reverse=True) if key.startswith(p))
        state[old_names[prefix] + key[len(prefix):]] = value
    assert "0.0.weight" in state and "6.bias" in state
    old = tmp_path / "old.pt"
    torch.save({"format_version": 1, "hamcli_version": "0.1.0", "classes": list(CLASS_CODES), "arch": "lenet",
                "input_size": 32, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "state_dict": state,
                "config": {}, "data": {"name": "x", "fingerprint": "y"}}, old)
    loaded = hamcli.load_model(old)
    assert loaded.input_size == (32, 32)
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(loaded.model(x), model(x))
    assert loaded.predict(images / "img0.jpg").code in CLASS_CODES


def test_same_probabilities_from_a_path_or_an_opened_image_and_at_any_batch_size(trained_run, images):
    model = hamcli.load_model()
    path = images / "img0.jpg"
    from_path = model.predict(path).probabilities
    from_image = model.predict(Image.open(path)).probabilities
    assert max(abs(from_path[c] - from_image[c]) for c in CLASS_CODES) < 1e-6
    paths = sorted(images.glob("*.jpg")) * 3  # 15 images: the batched path
    runs = [model.predict_many(paths, batch_size=b) for b in (1, 4, 64)]
    for rows in runs[1:]:
        for a, b in zip(runs[0], rows, strict=True):
            assert max(abs(a.probabilities[c] - b.probabilities[c]) for c in CLASS_CODES) < 1e-6


def test_python_api_runs_the_whole_pipeline(dataset_folder, tmp_path):
    dataset = hamcli.download(from_path=dataset_folder)
    assert dataset.report["images"] == 28
    prepared = hamcli.prepare(split="50/25/25", size=32)
    run = hamcli.train(arch="lenet", data=prepared.name, epochs=1, batch_size=8, precision="fp32", name="api")
    scored = hamcli.evaluate(run.name)
    assert scored["metrics"]["images"] == sum(prepared.summary["counts"]["test"].values())
    model = hamcli.load_model(run.name)
    result = hamcli.gradcam(model, next((dataset_folder / "images").iterdir()))
    assert result.heatmap.shape == (30, 40) and result.predicted in CLASS_CODES
    assert {"load_model", "prepare", "train", "evaluate", "gradcam", "download"} <= set(hamcli.__all__)


def test_the_python_api_says_what_it_takes(trained_run, images, tmp_path):
    from hamcli.errors import NotFoundError, UsageError

    model = hamcli.load_model()
    for wrong in (None, 3, b"bytes", np.zeros((32, 32, 3), dtype=np.uint8), [images / "img0.jpg", 7]):
        with pytest.raises(UsageError, match="predict\\(\\) takes a path, a PIL image"):
            model.predict(wrong)
    with pytest.raises(UsageError, match="probabilities\\(\\)"):
        model.predict(np.zeros((2, 32, 32, 3), dtype=np.uint8))
    for shape, dtype in (((32, 32, 3), np.uint8), ((2, 64, 64, 3), np.uint8), ((2, 32, 32, 3), np.float32)):
        with pytest.raises(UsageError, match="uint8 array of shape \\(N, 32, 32, 3\\)"):
            model.probabilities(np.zeros(shape, dtype=dtype))
    for k in (0, -1, 2.5):
        with pytest.raises(UsageError, match="top_k"):
            model.predict(images / "img0.jpg", top_k=k)
    with pytest.raises(NotFoundError, match="no such file or folder"):
        hamcli.load_model(tmp_path / "nope.pt")
    # Errors name the keywords a Python caller passed, not the command line's options; commands to run keep theirs.
    with pytest.raises(UsageError, match=r"^target 'melanoma': choose pred") as wrong_class:
        hamcli.gradcam(model, images / "img0.jpg", target="melanoma")
    with pytest.raises(UsageError, match=r"epochs 0: must be at least 1") as wrong_epochs:
        hamcli.train(arch="lenet", data="tiny", epochs=0)
    assert "--" not in str(wrong_class.value) + str(wrong_epochs.value)
    with pytest.raises(UsageError, match=r"^limit 5 is too low; run `hamcli prepare --limit 70` \(or `--limit 90`\)$"):
        with hamcli._in_python_words():
            raise UsageError("--limit 5 is too low; run `hamcli prepare --limit 70` (or `--limit 90`)")
    fast = hamcli.load_model("bundled", precision="bf16")  # the documented keyword
    assert "bf16" in fast.precision and "bf16" in fast.predict(images / "img0.jpg").precision
