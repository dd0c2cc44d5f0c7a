"""Grad-CAM: a known answer, the textbook definition, every architecture, clean hooks, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import hamcli
import hamcli.explain.maps as explain
import hamcli.models.zoo as zoo
from conftest import class_image, predictor_for
from hamcli.classes import CLASS_INDEX
from hamcli.cli.app import app
from hamcli.data.preprocess import ImageReadError
from hamcli.errors import UsageError
from hamcli.explain.methods import METHODS, GradCAM
from hamcli.explain.overlay import overlay
from hamcli.models.build import build_model

runner = CliRunner()
MEL, NV = CLASS_INDEX["mel"], CLASS_INDEX["nv"]


def _patch_batch(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """32x32 noise; label mel when a bright 8x8 patch sits in the top-left corner, else nv."""
    x = torch.rand(n, 3, 32, 32, generator=g) * 0.4
    y = torch.where(torch.rand(n, generator=g) < 0.5, MEL, NV)
    x[y == MEL, :, 2:10, 2:10] = 1.0
    return x, y


def test_heat_map_finds_the_bright_corner_patch():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = build_model("lenet")[0]
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(60):
        x, y = _patch_batch(32, g)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x, y = _patch_batch(64, g)
    assert (model(x).argmax(1) == y).float().mean() > 0.95  # it learned the patch
    arr = (np.full((32, 32, 3), 60) + np.random.default_rng(1).integers(0, 40, (32, 32, 3))).astype(np.uint8)
    arr[2:10, 2:10] = 255
    predictor = predictor_for(model, size=32)
    result = explain.explain(predictor, Image.fromarray(arr), target="mel")
    heat = result.heatmap
    assert heat.shape == (32, 32) and heat.max() == pytest.approx(1.0)
    assert heat[:16, :16].sum() / heat.sum() > 0.5


def test_matches_the_gradcam_definition_computed_independently():
    torch.manual_seed(1)
    model = build_model("lenet")[0].eval()
    x = torch.randn(1, 3, 32, 32)
    features, rest = model[0][:8], torch.nn.Sequential(model[0][8:], *model[1:])
    checked = 0
    for target in range(7):
        acts = features(x).detach().requires_grad_(True)
        (grads,) = torch.autograd.grad(rest(acts)[0, target], acts)
        raw = torch.relu((grads.mean(dim=(2, 3), keepdim=True) * acts).sum(1))[0].detach()
        if raw.max() <= 0:
            continue  # random weights: this class's map is empty (covered by the all-zero test)
        maps, probs = GradCAM(model, "features.relu3")(x, torch.tensor([target]))  # in the layer's own units
        assert torch.allclose(maps[0], raw, atol=1e-6, rtol=1e-4)
        assert torch.allclose(probs, model(x).softmax(1), atol=1e-6)
        checked += 1
    assert checked >= 2


@pytest.mark.parametrize("arch", list(zoo.MODELS))
def test_every_architecture_gives_a_finite_map_of_image_size_and_leaves_no_trace(arch):
    torch.manual_seed(0)
    model = build_model(arch)[0].eval()
    predictor = predictor_for(model, size=64, arch=arch)
    img = class_image(2, 0, (90, 70))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    maps = 0
    for method in METHODS:
        for target in ("pred", *CLASS_INDEX):
            try:
                heat = explain.heatmap(predictor, img, method=method, target=target)
            except explain.EmptyMapError:  # random weights can leave a class's score independent of the layer
                continue
            assert heat.shape == (70, 90) and np.isfinite(heat).all()
            assert heat.min() >= 0 and heat.max() == pytest.approx(1.0)
            assert (heat[:, :10] == 0).all()  # outside the centre square the model saw nothing
            maps += 1
            break
    assert maps > 0
    # the default layer is the deepest one whose map is larger than 2x2 at this input size
    sizes = explain.feature_map_sizes(model, (64, 64), zoo.get_spec(arch).cam_layers)
    layer, size = explain.default_layer(predictor)
    assert min(size) >= 3 and layer in zoo.get_spec(arch).cam_layers and sizes[layer] == size
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    for module in model.modules():
        assert not module._forward_hooks and not module._backward_hooks
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_too_small_a_map_falls_back_to_a_shallower_layer_and_says_which():
    torch.manual_seed(0)
    model = build_model("resnet18")[0].eval()
    img = class_image(2, 0, (64, 64))
    at64 = explain.explain(predictor_for(model, size=64, arch="resnet18"), img)
    at32 = explain.explain(predictor_for(model, size=32, arch="resnet18"), img)
    assert (at64.layer, at64.map_size) == ("layer3", (4, 4))  # layer4 is 2x2 at 64 px
    assert (at32.layer, at32.map_size) == ("layer2", (4, 4))  # layer4 1x1, layer3 2x2 at 32 px
    explicit = explain.explain(predictor_for(model, size=64, arch="resnet18"), img, layer="layer4")
    assert explicit.map_size == (2, 2)


def test_training_mode_is_restored_and_hooks_removed_after_error():
    model = build_model("cnn")[0].train()
    cam = GradCAM(model, "features.block4")
    with pytest.raises(RuntimeError):
        cam(torch.randn(1, 3, 32, 32), torch.tensor([99]))  # no class 99: gather fails mid-way
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())


def test_a_map_that_cannot_be_computed_is_an_error_that_says_why_and_what_to_do(trained_run, tmp_path):
    model = build_model("lenet")[0].eval()
    with torch.no_grad():
        model.classifier.weight.zero_()  # the score no longer depends on the features
    predictor = predictor_for(model)
    with pytest.raises(explain.EmptyMapError, match="zero everywhere.*--method layercam, or another --layer"):
        explain.heatmap(predictor, class_image(0, 0, (32, 32)))
    one = predictor_for(build_model("resnet18")[0].eval(), size=32, arch="resnet18")
    with pytest.raises(UsageError, match="1x1 at this model's input size.*e.g. layer2"):
        explain.explain(one, class_image(0, 0, (32, 32)), layer="layer4")
    image = tmp_path / "x.jpg"
    class_image(2, 2, (40, 40)).save(image)
    result = runner.invoke(app, ["gradcam", str(image), "-o", str(tmp_path / "x.png"), "--layer", "features.relu3"])
    assert result.exit_code == 0 or "Error:" in result.stderr and "Traceback" not in result.output


def test_the_panel_has_a_colour_bar_and_marks_what_the_model_never_saw(tmp_path):
    """The bundled model at its centre square, on a 4:3 sample: margins hatched, and a scale beside the maps."""
    from hamcli.explain.overlay import panel, unseen_mask

    sample = sorted((Path(hamcli.__file__).parent / "samples" / "images").glob("*.jpg"))[0]
    model = hamcli.load_model("bundled")
    result = explain.explain(model, sample)
    w, h = result.image.size
    assert result.box[2] - result.box[0] == h < w  # the model saw the centre square only
    picture = np.asarray(panel(result).convert("RGB"), dtype=np.int16)
    label_h = int(max(14, min(w, h) // 22) * 1.8)
    heat_column = picture[label_h:label_h + h, w:2 * w]
    mask = unseen_mask(h, w, result.box)
    margin = heat_column[mask]
    assert (np.abs(margin[:, 0] - margin[:, 2]) < 4).all()  # grey, not the colormap's blue "unimportant"
    assert len(np.unique(margin[:, 0])) >= 2  # hatched: stripes, not a flat fill
    bar = picture[label_h:label_h + h, 3 * w:]
    top, bottom = bar[2], bar[-3]
    assert (np.abs(top - bottom).sum(axis=1) > 100).any()  # a bar runs from one colour to another
    assert picture.shape[1] > 3 * w  # room for the bar beside the three columns


def test_a_small_image_s_panel_wraps_its_caption_inside_the_picture():
    from PIL import Image

    from hamcli.explain.overlay import panel

    sample = sorted((Path(hamcli.__file__).parent / "samples" / "images").glob("*.jpg"))[0]
    small = Image.open(sample).convert("RGB").resize((200, 150))
    result = explain.explain(hamcli.load_model("bundled"), small)
    picture = np.asarray(panel(result).convert("L"), dtype=np.int16)
    caption = picture[150 + int(14 * 1.8):]
    ink = np.where((caption < 128).any(axis=0))[0]
    assert len(ink) and ink.max() < picture.shape[1] - 4  # no word runs off the right edge
    rows = np.where((caption < 128).any(axis=1))[0]
    assert rows.max() < caption.shape[0] - 2 and len(rows) > 4 * 14  # four lines or more, all inside


def _saved(tmp_path, count: int, size: tuple[int, int]) -> list[str]:  # noqa: ANN001
    """`count` class images of `size` (width, height) saved as in0.jpg, in1.jpg, ...; their paths."""
    paths = []
    for i in range(count):
        paths.append(str(tmp_path / f"in{i}.jpg"))
        class_image(i, i, size).save(paths[-1])
    return paths


def test_shared_scale_makes_maps_comparable_across_images(trained_run, tmp_path):
    inputs = _saved(tmp_path, 2, (64, 48))
    out = runner.invoke(app, ["gradcam", *inputs, "-o", str(tmp_path / "cams/"), "--scale", "shared", "--json"])
    assert out.exit_code == 0, out.output
    from hamcli.explain.maps import explain as explain_one

    model = hamcli.load_model()
    results = [explain_one(model, p) for p in inputs]
    peak = max(r.scale for r in results)
    shared = [r.normalised(peak) for r in results]
    assert max(r.heatmap.max() for r in shared) == pytest.approx(1.0)
    lower = min(range(2), key=lambda i: results[i].scale)
    assert shared[lower].heatmap.max() == pytest.approx(results[lower].scale / peak, rel=1e-5)


def test_errors_for_bad_class_layer_method_and_image(tmp_path):
    predictor = predictor_for(build_model("lenet")[0])
    img = class_image(0, 0, (32, 32))
    with pytest.raises(UsageError, match="--class"):
        explain.explain(predictor, img, target="melanoma")
    with pytest.raises(UsageError, match="--layer"):
        explain.explain(predictor, img, layer="nope")
    with pytest.raises(UsageError, match="--method"):
        explain.explain(predictor, img, method="cam")
    with pytest.raises(UsageError, match="feature map"):
        explain.explain(predictor, img, layer="flatten")  # not a feature map
    bad = tmp_path / "bad.jpg"
    bad.write_text("nope")
    with pytest.raises(ImageReadError, match="bad.jpg"):
        explain.explain(predictor, bad)
    with pytest.raises(UsageError, match="\\[0, 1\\]"):
        overlay(img, np.full((32, 32), 2.0))


def test_cli_single_file_several_to_folder_panel_json(trained_run, tmp_path):
    inputs = _saved(tmp_path, 3, (80, 60))
    one = runner.invoke(app, ["gradcam", inputs[0], "-o", str(tmp_path / "one.png")])
    assert one.exit_code == 0, one.output
    assert Image.open(tmp_path / "one.png").size == (80, 60)
    out = runner.invoke(app, ["gradcam", *inputs, "-o", str(tmp_path / "cams"), "--panel", "--json",
                              "--method", "gradcam++", "--class", "mel"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)
    assert [r["explained"] for r in rows] == ["mel"] * 3
    for i in range(3):
        panel = Image.open(tmp_path / "cams" / f"in{i}.png")
        assert panel.width > 3 * 80 and panel.height > 60  # three columns and the colour bar
    layers = runner.invoke(app, ["gradcam", "--list-layers"])
    assert "features.relu3" in layers.stdout and "(default)" in layers.stdout


def test_cli_bad_image_exits_1_and_keeps_going(trained_run, tmp_path):
    good = tmp_path / "good.jpg"
    class_image(1, 1, (40, 40)).save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_text("x")
    out = runner.invoke(app, ["gradcam", str(bad), str(good), "-o", str(tmp_path / "o")])
    assert out.exit_code == 1 and "bad.jpg" in out.stderr
    assert (tmp_path / "o" / "good.png").exists()


def test_cli_layer_and_alpha(trained_run, tmp_path):
    path = tmp_path / "in.jpg"
    class_image(3, 3, (64, 48)).save(path)
    out = runner.invoke(app, ["gradcam", str(path), "-o", str(tmp_path / "a0.png"), "--alpha", "0",
                              "--layer", "features.relu2", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)[0]["layer"] == "features.relu2"
    original = np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)
    assert np.abs(np.asarray(Image.open(tmp_path / "a0.png"), dtype=np.int16) - original).max() == 0  # alpha 0
    full = runner.invoke(app, ["gradcam", str(path), "-o", str(tmp_path / "a1.png"), "--alpha", "1"])
    assert full.exit_code == 0
    assert np.abs(np.asarray(Image.open(tmp_path / "a1.png"), dtype=np.int16) - original).max() > 50
    bad = runner.invoke(app, ["gradcam", str(path), "-o", str(tmp_path / "x.png"), "--alpha", "2"])
    assert bad.exit_code == 2 and "--alpha" in bad.output
