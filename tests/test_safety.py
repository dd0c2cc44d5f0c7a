"""Never lose data, never crash: names, claims, crash-safe replacement, verified downloads, hostile inputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import hamcli
import hostile
from conftest import make_dataset_folder
from hamcli.cli.app import app
from hamcli.data.download import RetryPolicy, fetch
from hamcli.data.sources import RemoteFile
from hamcli.errors import DownloadError

runner = CliRunner()
FAST = RetryPolicy(attempts=2, backoff_s=0.01, timeout_s=5, window_s=0.5, min_bytes_per_s=2000)


def one_line_error(result, code: int | None = None) -> str:
    """The result failed with one 'Error:' line on stderr and no traceback; returns that line."""
    assert result.exit_code != 0, result.output
    if code is not None:
        assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


# -- names ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../runs", ".", "..", "a/b", "", "-x", "x" * 101, "a\nb"])
def test_names_are_one_folder_name_and_nothing_is_touched(prepared_tiny, hamcli_home, name):
    before = sorted(p.relative_to(hamcli_home) for p in hamcli_home.rglob("*"))
    for args in (["prepare", "--name", name, "--size", "16"], ["train", "--data", "tiny", "--name", name],
                 ["download", "samples", "--name", name]):
        line = one_line_error(runner.invoke(app, args), code=2)
        assert "--name" in line
    assert sorted(p.relative_to(hamcli_home) for p in hamcli_home.rglob("*")) == before


# -- claims, overwrite, crash safety ------------------------------------------------------------------

FAST_TRAIN = ["--data", "tiny", "--epochs", "1", "--batch-size", "8", "--precision", "fp32", "-q"]


def test_an_existing_run_is_refused_with_the_ways_out_and_overwrite_replaces_it_once_done(prepared_tiny):
    assert runner.invoke(app, ["train", *FAST_TRAIN, "--name", "same"]).exit_code == 0
    first = (prepared_tiny.root.parent.parent / "runs" / "same" / "best.pt").read_bytes()
    line = one_line_error(runner.invoke(app, ["train", *FAST_TRAIN, "--name", "same"]), code=2)
    assert "finished" in line and "--resume" not in line and "--overwrite" in line and "--name" in line
    # a replacement that fails leaves the old run whole
    failing = runner.invoke(app, ["train", *FAST_TRAIN, "--name", "same", "--overwrite", "--weights", "/nope.pt"])
    assert failing.exit_code == 1
    assert (prepared_tiny.root.parent.parent / "runs" / "same" / "best.pt").read_bytes() == first
    assert runner.invoke(app, ["train", *FAST_TRAIN, "--name", "same", "--overwrite", "--seed", "7"]).exit_code == 0
    assert (prepared_tiny.root.parent.parent / "runs" / "same" / "best.pt").read_bytes() != first


def test_replacing_a_prepared_dataset_that_runs_use_needs_force(trained_run):
    args = ["prepare", "--name", "tiny", "--split", "50/25/25", "--size", "32", "-q"]
    assert "--overwrite" in one_line_error(runner.invoke(app, args), code=2)
    line = one_line_error(runner.invoke(app, [*args, "--overwrite"]), code=2)
    assert "tiny-lenet" in line and "--force" in line
    assert runner.invoke(app, [*args, "--overwrite", "--force"]).exit_code == 0


def test_download_from_another_csv_does_not_replace_the_dataset(dataset_folder, tmp_path):
    assert runner.invoke(app, ["download", "--from", str(dataset_folder)]).exit_code == 0
    other = tmp_path / "other"
    make_dataset_folder(other, per_class=1)
    assert "--overwrite" in one_line_error(runner.invoke(app, ["download", "--from", str(other)]), code=2)


def _hamcli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hamcli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_two_concurrent_trainings_of_one_name_one_fails_fast(prepared_tiny):
    first = _hamcli("train", "--data", "tiny", "--epochs", "300", "--batch-size", "8", "--precision", "fp32",
                    "--name", "race", "-q")
    last = prepared_tiny.root.parent.parent / "runs" / "race" / "config.json"
    deadline = time.monotonic() + 60
    while not last.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    second = _hamcli("train", "--data", "tiny", "--epochs", "1", "--name", "race", "--overwrite", "-q")
    _, err = second.communicate(timeout=60)
    first.send_signal(signal.SIGINT)
    first.communicate(timeout=60)
    assert second.returncode == 1 and "being written by another hamcli process" in err


def test_sigkill_during_prepare_keeps_the_old_version_and_the_next_run_cleans_up(prepared_tiny):
    before = (prepared_tiny.root / "manifest.csv").read_bytes()
    proc = _hamcli("prepare", "--name", "tiny", "--split", "50/50", "--size", "256", "--overwrite", "--force",
                   "--workers", "1", "-q")
    versions = prepared_tiny.root.parent.parent / "prepared" / ".versions"
    deadline = time.monotonic() + 30
    while not list(versions.glob("tiny@*.tmp")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    from hamcli.data.cache import PreparedDataset

    again = PreparedDataset.open("tiny")
    assert (again.root / "manifest.csv").read_bytes() == before  # the old version, whole and found
    info = json.loads(runner.invoke(app, ["info", "--format", "json"]).stdout)
    assert [p["name"] for p in info["prepared"]] == ["tiny"]
    assert runner.invoke(app, ["prepare", "--name", "tiny", "--split", "50/50", "--size", "16", "--overwrite",
                               "--force", "-q"]).exit_code == 0
    assert not list(versions.glob("*.tmp"))  # the killed run's leftover is gone


def test_sigkill_during_import_leaves_no_dataset_behind(tmp_path, hamcli_home):
    big = tmp_path / "big"
    make_dataset_folder(big, per_class=40, size=(600, 450))
    proc = _hamcli("download", "--from", str(big), "--name", "killed")
    versions = hamcli_home / "data" / "datasets" / ".versions"
    deadline = time.monotonic() + 30
    while not list(versions.glob("killed@*.tmp")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    info = json.loads(runner.invoke(app, ["info", "--format", "json"]).stdout)
    assert "killed" not in [d["name"] for d in info["datasets"]]
    assert runner.invoke(app, ["prepare", "--source", "killed"]).exit_code == 1  # not found, not half-read


# -- downloads: verified before trusted ---------------------------------------------------------------

def test_a_file_without_checksum_that_is_an_html_page_is_refused(file_server, tmp_path):
    file_server.files["/data.zip"] = b"<!DOCTYPE html><html><body>Please log in</body></html>"
    with pytest.raises(DownloadError, match="web page"):
        fetch(RemoteFile("data.zip", f"{file_server.base}/data.zip"), tmp_path / "data.zip", policy=FAST)
    assert not (tmp_path / "data.zip").exists()


def test_a_zip_cut_short_without_content_length_is_refused_and_a_changed_file_is_verified_again(
        file_server, tmp_path):
    from hamcli.data.verify import is_verified

    whole = hostile.zip_file_then_folder(tmp_path)
    file_server.files["/a.zip"] = whole.read_bytes()[:-40]
    remote = RemoteFile("a.zip", f"{file_server.base}/a.zip")
    with pytest.raises(DownloadError, match="not a complete zip"):
        fetch(remote, tmp_path / "a.zip", policy=FAST)
    file_server.files["/a.zip"] = whole.read_bytes()
    dest = fetch(remote, tmp_path / "a.zip", policy=FAST)
    assert is_verified(remote, dest)
    dest.write_bytes(dest.read_bytes()[:-40])  # damaged after the fact: no longer "already present"
    assert not is_verified(remote, dest)


def test_a_server_that_trickles_is_given_up_on(tmp_path):
    import http.server
    import threading

    class Trickle(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.end_headers()
            try:
                for _ in range(200):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.05)
            except OSError:
                pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        start = time.monotonic()
        with pytest.raises(DownloadError, match="bytes/s"):
            fetch(RemoteFile("t.bin", f"http://127.0.0.1:{server.server_address[1]}/t.bin"), tmp_path / "t.bin",
                  policy=FAST)
        assert time.monotonic() - start < 5
    finally:
        server.shutdown()


# -- hostile inputs: one line, never a traceback ---------------------------------------------------------

@pytest.mark.parametrize("make", hostile.IMPORT_CASES, ids=lambda f: f.__name__)
def test_hostile_archives_and_arrays_end_in_one_line(tmp_path, make):
    line = one_line_error(runner.invoke(app, ["download", "--from", str(make(tmp_path)), "--name", "hostile"]))
    assert "hostile" not in [p.name for p in (Path(os.environ["HAMCLI_HOME"]) / "data" / "datasets").glob("*")
                             if not p.name.startswith(".")]
    assert len(line) < 400


def test_isic_rows_that_are_not_one_hot_are_left_out_not_called_mel(tmp_path):
    folder = tmp_path / "isic"
    table = make_dataset_folder(folder, per_class=1)
    (folder / "HAM10000_metadata.csv").unlink()
    codes = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    rows = ["image," + ",".join(codes)]
    for i, r in enumerate(table.itertuples()):
        values = ["0.0"] * 7 if i == 0 else ["1.0" if c.lower() == r.dx else "0.0" for c in codes]
        rows.append(f"{r.image_id}," + ",".join(values))
    (folder / "ISIC2018_Task3_Test_GroundTruth.csv").write_text("\n".join(rows) + "\n")
    result = runner.invoke(app, ["download", "--from", str(folder), "--name", "isic", "--format", "json"])
    report = json.loads(result.stdout)
    assert report["images"] == 6 and report["per_class"][table.dx.iloc[0]] == 0
    assert "(not one-hot)" in json.dumps(report["problems"])


def test_a_folder_with_images_and_an_unrelated_zip_keeps_its_images(dataset_folder, tmp_path):
    import zipfile

    with zipfile.ZipFile(dataset_folder / "notes.zip", "w") as zf:
        zf.writestr("readme.txt", "unrelated")
    report = json.loads(runner.invoke(app, ["download", "--from", str(dataset_folder), "-f", "json"]).stdout)
    assert report["images"] == 28


def test_markup_escapes_and_formulas_in_names_print_as_plain_text(trained_run, tmp_path, monkeypatch):
    weird = hostile.image_with_markup_and_escapes(tmp_path)
    formula = hostile.image_named_like_a_formula(tmp_path)
    table = runner.invoke(app, ["predict", str(weird), str(formula)])
    assert table.exit_code == 0 and "\x1b" not in table.stdout and "x[/y]" in table.stdout
    monkeypatch.chdir(formula.parent)
    rows = runner.invoke(app, ["predict", formula.name, "-f", "csv"]).stdout.splitlines()
    assert rows[1].startswith("'=HYPERLINK")  # a spreadsheet shows it as text, never runs it
    missing = runner.invoke(app, ["predict", str(tmp_path / "x[" / "nope]1.jpg")])  # read as a glob
    assert "x[/nope]1.jpg' matched no file" in one_line_error(missing, code=2)
    imported = runner.invoke(app, ["download", "--from", str(hostile.folder_with_markup_names(tmp_path)),
                                   "--name", "markup"])
    assert imported.exit_code == 0 and "Traceback" not in imported.output
    assert "'x[bold]y'" in imported.stderr  # reported as a bad id, printed as it is


def test_a_fifo_is_skipped_not_waited_on(trained_run, tmp_path):
    fifo = hostile.fifo_named_jpg(tmp_path)
    good = hostile.sixteen_bit_png(tmp_path)
    result = runner.invoke(app, ["predict", str(fifo), str(good), "-f", "json"])
    assert result.exit_code == 1 and "not a regular file" in result.stderr
    rows = json.loads(result.stdout)
    assert "not a regular file" in rows[0]["error"] and rows[1]["code"] in hamcli.CLASS_CODES


@pytest.mark.parametrize("change, match", [
    (lambda c: c["preprocess"].update(size=[60000, 60000]), "outside 8..1024"),
    (lambda c: c["preprocess"].update(size=[0, 0]), "outside 8..1024"),
    (lambda c: c["preprocess"].update(mean=[0.5]), "three finite values"),
    (lambda c: c["preprocess"].update(std=[0.0, 0.0, 0.0]), "std > 0"),
    (lambda c: c.update(state_dict={k: v.double() for k, v in c["state_dict"].items()}), "float32"),
    (lambda c: c.update(state_dict={k: v.fill_(float("nan")) if v.is_floating_point() else v
                                    for k, v in c["state_dict"].items()}), "NaN"),
    (lambda c: c["state_dict"].pop("classifier.weight"), "do not fit"),
    (lambda c: c.pop("arch"), "not a hamcli checkpoint"),
    (lambda c: c.update(format_version="2"), "format_version"),
    (lambda c: c.update(postprocess={"temperature": -1.0}), "postprocess"),
    (lambda c: c.update(postprocess={"temperature": 1e-300}), "temperature"),
    (lambda c: c.update(postprocess={"bias": [0, 0, 0, 0, 1e300, 0, 0]}), "offsets"),
    (lambda c: c.update(postprocess={"tau": 1e300, "log_prior": [-2.0] * 7}), "tau"),
    (lambda c: c["state_dict"]["classifier.weight"].fill_(1e38), "beyond any trained weight"),
    (lambda c: c.update(classes=["nv", "akiec", "bcc", "bkl", "df", "mel", "vasc"]), "differ from hamcli's"),
])
def test_damaged_checkpoints_are_refused_before_anything_is_allocated(trained_run, tmp_path, change, match):
    ckpt = torch.load(trained_run / "best.pt", weights_only=True)
    change(ckpt)
    path = tmp_path / "damaged.pt"
    torch.save(ckpt, path)
    line = one_line_error(runner.invoke(app, ["predict", str(tmp_path), "--model", str(path)]), code=1)
    assert match in line


def test_damaged_state_files_end_in_one_line(trained_run, tmp_path, hamcli_home, monkeypatch):
    prepared = hamcli_home / "data" / "prepared" / "tiny"
    (prepared / "summary.json").write_text("{not json")
    assert "summary.json" in one_line_error(runner.invoke(app, ["evaluate", "tiny-lenet"]), code=1)
    (prepared / "summary.json").write_text("{}")
    assert "incomplete" in one_line_error(runner.invoke(app, ["train", "--data", "tiny", "--name", "x"]), code=1)
    (hamcli_home / "cache").mkdir(exist_ok=True)
    (hamcli_home / "cache" / "precision.json").write_text("[1, 2")
    (hamcli_home / "data" / "datasets" / "ham10000" / "report.json").write_text("nope")
    assert runner.invoke(app, ["info"]).exit_code == 0
    a_file = tmp_path / "file"
    a_file.write_text("x")
    monkeypatch.setenv("HAMCLI_HOME", str(a_file))
    assert "HAMCLI_HOME" in one_line_error(runner.invoke(app, ["info"]), code=2)


@pytest.mark.parametrize("args, option", [
    (["train", "--batch-size", "0"], "--batch-size"), (["train", "--lr", "nan"], "--lr"),
    (["train", "--lr", "-1"], "--lr"), (["prepare", "--workers", "-1"], "--workers"),
    (["prepare", "--split", "100/0"], "--split"), (["prepare", "--size", "0"], "--size"),
    (["predict", "x.jpg", "--top-k", "0"], "--top-k"), (["gradcam", "x.jpg", "--alpha", "2"], "--alpha"),
    (["evaluate", "--bootstrap", "0"], "--bootstrap"),
])
def test_bad_option_values_name_the_option_and_exit_2(prepared_tiny, args, option):
    assert option in one_line_error(runner.invoke(app, args), code=2)


def _one_file_ensemble(trained_run, tmp_path, change):  # noqa: ANN001, ANN202
    ckpt = torch.load(trained_run / "best.pt", weights_only=True)
    members = [{"member": f"m{i}", "state_dict": ckpt["state_dict"], "postprocess": ckpt.get("postprocess")}
               for i in range(2)]
    bundle = {k: v for k, v in ckpt.items() if k not in ("state_dict", "postprocess")} | {"members": members}
    change(bundle)
    path = tmp_path / "ensemble.pt"
    torch.save(bundle, path)
    return path


@pytest.mark.parametrize("change, match", [
    (lambda b: b["members"][1].update(classes=["vasc", "bcc", "bkl", "df", "mel", "nv", "akiec"]),
     "member 2 has classes"),
    (lambda b: b["members"][0].update(member="../../outside"), "not a plain name"),
    (lambda b: b["members"][0].update(member="/etc/passwd"), "not a plain name"),
    (lambda b: b.update(members=b["members"] * 20), "more than hamcli loads"),
    (lambda b: b["members"][0].update(postprocess={"temperature": 1e-300}), "temperature"),
    (lambda b: b["members"][0].update(arch="resnet9000"), "not in this hamcli's zoo"),
])
def test_hostile_one_file_ensembles_are_refused_by_every_command(trained_run, tmp_path, hamcli_home, change, match):
    path = _one_file_ensemble(trained_run, tmp_path, change)
    image = hostile.sixteen_bit_png(tmp_path)
    assert match in one_line_error(runner.invoke(app, ["predict", str(image), "--model", str(path)]), code=1)
    line = one_line_error(runner.invoke(app, ["ensemble", str(path), "tiny-lenet", "--name", "e"]), code=1)
    assert match in line and not (hamcli_home / "data" / "runs" / "e").exists()
    assert not list(tmp_path.parent.glob("outside*")) and not (hamcli_home.parent / "outside").exists()


def test_a_good_one_file_ensemble_still_loads(trained_run, tmp_path):
    path = _one_file_ensemble(trained_run, tmp_path, lambda b: None)
    image = hostile.sixteen_bit_png(tmp_path)
    assert runner.invoke(app, ["predict", str(image), "--model", str(path)]).exit_code == 0


def _exported(trained_run, tmp_path):  # noqa: ANN001, ANN202
    import onnx

    from hamcli.serve.onnx import export_onnx

    export_onnx("tiny-lenet", tmp_path / "good.onnx")
    return onnx.load(str(tmp_path / "good.onnx"))


def _relu_ending(graph) -> None:  # noqa: ANN001
    for node in graph.graph.node:
        if node.op_type == "Softmax":
            node.op_type = "Relu"
            del node.attribute[:]


def _nan_weights(graph) -> None:  # noqa: ANN001
    from onnx import numpy_helper

    first = graph.graph.initializer[0]
    first.CopyFrom(numpy_helper.from_array(np.full(numpy_helper.to_array(first).shape, np.nan, dtype=np.float32),
                                           first.name))


def _permuted_classes(graph) -> None:  # noqa: ANN001
    for prop in graph.metadata_props:
        if prop.key == "classes":
            prop.value = json.dumps(["vasc", "bcc", "bkl", "df", "mel", "nv", "akiec"])


@pytest.mark.parametrize("change, match", [
    (_relu_ending, "not 7 probabilities that sum to 1"),
    (_nan_weights, "not 7 probabilities that sum to 1"),
    (_permuted_classes, "wrong classes"),
])
def test_hostile_onnx_files_are_refused(trained_run, tmp_path, change, match):
    import onnx

    graph = _exported(trained_run, tmp_path)
    change(graph)
    path = tmp_path / "hostile.onnx"
    onnx.save(graph, str(path))
    image = hostile.sixteen_bit_png(tmp_path)
    assert match in one_line_error(runner.invoke(app, ["predict", str(image), "--model", str(path)]), code=1)
    assert runner.invoke(app, ["predict", str(image), "--model", str(tmp_path / "good.onnx")]).exit_code == 0
