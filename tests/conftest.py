"""Shared fixtures: an isolated HAMCLI_HOME, tiny synthetic datasets, a local HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

CODES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")


@pytest.fixture(autouse=True)
def hamcli_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("hamcli_home")
    monkeypatch.setenv("HAMCLI_HOME", str(home))
    monkeypatch.setenv("TORCH_HOME", str(home / "torch"))
    for var in ("HAMCLI_MIRROR", "HAMCLI_MIRROR_HAM10000"):
        monkeypatch.delenv(var, raising=False)
    return home


def class_image(code_index: int, seed: int, size: tuple[int, int] = (40, 30)) -> Image.Image:
    """A small image whose colour depends on its class, so that models can learn it."""
    rng = np.random.default_rng(seed)
    base = np.array([(code_index * 37) % 256, (code_index * 91) % 256, (255 - code_index * 30) % 256])
    arr = np.clip(base + rng.normal(0, 12, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def make_dataset_folder(root: Path, per_class: int = 4, images_per_lesion: int = 2,
                        size: tuple[int, int] = (40, 30), first_id: int = 0) -> pd.DataFrame:
    """A HAM10000-style folder: images/<image_id>.jpg and HAM10000_metadata.csv."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    n = first_id
    for ci, code in enumerate(CODES):
        for j in range(per_class):
            lesion = f"HAM_{ci:02d}{j // images_per_lesion:04d}"
            image_id = f"ISIC_{n:07d}"
            class_image(ci, n, size).save(root / "images" / f"{image_id}.jpg", quality=90)
            rows.append({"lesion_id": lesion, "image_id": image_id, "dx": code, "dx_type": "histo",
                         "age": "50.0", "sex": "male", "localization": "back"})
            n += 1
    table = pd.DataFrame(rows)
    table.to_csv(root / "HAM10000_metadata.csv", index=False)
    return table


@pytest.fixture
def dataset_folder(tmp_path: Path) -> Path:
    root = tmp_path / "ham"
    make_dataset_folder(root)
    return root


class FileServer:
    """Serves bytes by path on 127.0.0.1 with Range support and switchable misbehaviour."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.redirects: dict[str, str] = {}
        self.ignore_range = False
        self.cut_after: int | None = None  # close the connection after this many bytes, once
        self.always_cut_after: int | None = None  # ... on every request
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                if self.path in server.redirects:
                    self.send_response(302)
                    self.send_header("Location", server.redirects[self.path])
                    self.end_headers()
                    return
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if rng and not server.ignore_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                payload = body[start:]
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if server.cut_after is not None or server.always_cut_after is not None:
                    cut = server.cut_after if server.cut_after is not None else server.always_cut_after
                    server.cut_after = None
                    self.wfile.write(payload[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(payload)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> FileServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    server = FileServer().start()
    yield server
    server.stop()


def _build_home(home: Path, source: Path, train_run: bool) -> None:
    """Import, prepare (and train) the tiny dataset once, in a home of its own."""
    from hamcli.data.importers import import_dataset
    from hamcli.data.prepare import PrepareConfig, prepare
    from hamcli.training.config import TrainConfig
    from hamcli.training.runner import train

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HAMCLI_HOME", str(home))
        mp.setenv("TORCH_HOME", str(home / "torch"))
        make_dataset_folder(source, per_class=6, images_per_lesion=1)
        import_dataset(source)
        prepare(name="tiny", config=PrepareConfig(split="50/25/25", size="32", folds=2))
        if train_run:
            train(TrainConfig(arch="lenet", data="tiny", epochs=2, batch_size=8, precision="fp32",
                              name="tiny-lenet"))


@pytest.fixture(scope="session")
def _tiny_homes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Built once per session: a home with the tiny dataset prepared, and one with a run trained on it."""
    homes = {}
    for kind in ("prepared", "trained"):
        base = tmp_path_factory.mktemp(f"template-{kind}")
        _build_home(base / "home", base / "tiny", train_run=kind == "trained")
        homes[kind] = (base / "home", base / "tiny")
    return homes


def _copy_home(template: tuple[Path, Path], home: Path, tmp_path: Path) -> None:
    import shutil

    shutil.copytree(template[0], home, dirs_exist_ok=True)
    shutil.copytree(template[1], tmp_path / "tiny", dirs_exist_ok=True)  # the images, as a folder to score


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.fixture
def fake_ham_source(file_server, dataset_folder, monkeypatch):
    """A two-zip-plus-CSV source, like the Dataverse record, served on 127.0.0.1."""
    import hamcli.data.sources as sources
    from hamcli.data.sources import RemoteFile, Source

    images = sorted((dataset_folder / "images").iterdir())
    half = len(images) // 2
    part1 = zip_bytes({f"{p.name}": p.read_bytes() for p in images[:half]})
    part2 = zip_bytes({f"{p.name}": p.read_bytes() for p in images[half:]})
    meta = (dataset_folder / "HAM10000_metadata.csv").read_bytes()
    files = {"HAM10000_images_part_1.zip": part1, "HAM10000_images_part_2.zip": part2,
             "HAM10000_metadata.csv": meta}
    for name, body in files.items():
        file_server.files[f"/files/{name}"] = body
    table = tuple(RemoteFile(n, f"{file_server.base}/files/{n}", md5=hashlib.md5(b).hexdigest())
                  for n, b in files.items())
    source = Source("ham10000", "test", "http://example.invalid", "test licence", table, images=len(images))
    monkeypatch.setitem(sources.SOURCES, "ham10000", source)
    return file_server, len(images)


@pytest.fixture
def prepared_tiny(_tiny_homes, hamcli_home, tmp_path):
    """An imported and prepared synthetic dataset: 42 images, 32 px, train/val/test, 2 folds."""
    from hamcli.data.cache import PreparedDataset

    _copy_home(_tiny_homes["prepared"], hamcli_home, tmp_path)
    return PreparedDataset.open("tiny")


@pytest.fixture
def trained_run(_tiny_homes, hamcli_home, tmp_path):
    """A LeNet run trained for two epochs on the tiny prepared dataset (trained once per session)."""
    _copy_home(_tiny_homes["trained"], hamcli_home, tmp_path)
    return hamcli_home / "data" / "runs" / "tiny-lenet"


def predictor_for(model, size: int = 32, arch: str = "lenet"):
    """Wrap any model as a Predictor, without a checkpoint file."""
    from hamcli.data.preprocess import Preprocess
    from hamcli.inference.predictor import Predictor
    from hamcli.models.checkpoint import CheckpointInfo
    from hamcli.models.precision import Precision
    from hamcli.models.zoo import get_spec

    spec = get_spec(arch)
    card = CheckpointInfo(arch, CODES, Preprocess((size, size), spec.mean, spec.std), "none", "none",
                          Path("memory.pt"))
    return Predictor(model.eval(), card, {}, Precision("cpu", "fp32", False))
