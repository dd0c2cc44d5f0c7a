"""Downloads against a local HTTP server on 127.0.0.1: never the internet."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import hamcli.data.download as download
import hamcli.data.sources as sources
from hamcli.cli.app import app
from hamcli.data.download import RetryPolicy, fetch
from hamcli.data.sources import RemoteFile, Source
from hamcli.errors import DownloadError

FAST = RetryPolicy(attempts=3, backoff_s=0.01, timeout_s=5)


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_full_download_verifies_and_renames(file_server, tmp_path):
    body = bytes(range(256)) * 4000
    file_server.files["/f.bin"] = body
    dest = tmp_path / "f.bin"
    fetch(RemoteFile("f.bin", f"{file_server.base}/f.bin", md5=_md5(body)), dest, policy=FAST)
    assert dest.read_bytes() == body
    assert not dest.with_name("f.bin.part").exists()


def test_resume_after_server_cuts_connection(file_server, tmp_path):
    body = b"0123456789" * 300_000
    file_server.files["/f.bin"] = body
    file_server.cut_after = 1_000_000
    dest = tmp_path / "f.bin"
    fetch(RemoteFile("f.bin", f"{file_server.base}/f.bin", md5=_md5(body)), dest, policy=FAST)
    assert dest.read_bytes() == body
    ranges = [r for _, r in file_server.requests]
    assert ranges[0] is None and ranges[1] == "bytes=1000000-"


def test_resume_of_partial_file_left_by_earlier_run(file_server, tmp_path):
    body = b"abcdefgh" * 10_000
    file_server.files["/f.bin"] = body
    dest = tmp_path / "f.bin"
    dest.with_name("f.bin.part").write_bytes(body[:30_000])
    fetch(RemoteFile("f.bin", f"{file_server.base}/f.bin", md5=_md5(body)), dest, policy=FAST)
    assert dest.read_bytes() == body
    assert file_server.requests == [("/f.bin", "bytes=30000-")]


def test_server_that_ignores_range_restarts_cleanly(file_server, tmp_path):
    body = b"xyz" * 50_000
    file_server.files["/f.bin"] = body
    file_server.ignore_range = True
    dest = tmp_path / "f.bin"
    dest.with_name("f.bin.part").write_bytes(b"garbage-prefix")
    fetch(RemoteFile("f.bin", f"{file_server.base}/f.bin", md5=_md5(body)), dest, policy=FAST)
    assert dest.read_bytes() == body


def test_checksum_mismatch_names_file_checksums_url_and_removes_partial(file_server, tmp_path):
    file_server.files["/f.bin"] = b"not what we expected"
    dest = tmp_path / "f.bin"
    url = f"{file_server.base}/f.bin"
    with pytest.raises(DownloadError) as info:
        fetch(RemoteFile("f.bin", url, md5="0" * 32), dest, policy=FAST)
    message = str(info.value)
    assert "f.bin" in message and "0" * 32 in message and _md5(b"not what we expected") in message
    assert url in message and "by hand" in message
    assert not dest.exists() and not dest.with_name("f.bin.part").exists()


def test_404_is_a_clear_error_without_retries(file_server, tmp_path):
    url = f"{file_server.base}/missing.zip"
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        fetch(RemoteFile("missing.zip", url), tmp_path / "missing.zip", policy=FAST)
    assert url in str(info.value)
    assert len(file_server.requests) == 1


def test_redirect_is_followed(file_server, tmp_path):
    body = b"redirected content"
    file_server.files["/real.bin"] = body
    file_server.redirects["/alias.bin"] = f"{file_server.base}/real.bin"
    dest = tmp_path / "out.bin"
    fetch(RemoteFile("out.bin", f"{file_server.base}/alias.bin", md5=_md5(body)), dest, policy=FAST)
    assert dest.read_bytes() == body


def test_unreachable_server_fails_after_retries_and_claims_no_partial(tmp_path):
    dest = tmp_path / "f.bin"
    with pytest.raises(DownloadError, match="3 attempts") as info:
        fetch(RemoteFile("f.bin", "http://127.0.0.1:9/f.bin"), dest, policy=FAST)
    assert "kept" not in str(info.value) and not list(tmp_path.iterdir())


def test_failing_server_keeps_the_partial_file_and_the_next_run_resumes_it(file_server, tmp_path):
    body = bytes(range(256)) * 400
    file_server.files["/f.bin"] = body
    file_server.always_cut_after = 1000  # every response stops after 1,000 bytes
    dest = tmp_path / "f.bin"
    remote = RemoteFile("f.bin", f"{file_server.base}/f.bin", md5=_md5(body))
    with pytest.raises(DownloadError, match="is kept") as info:
        fetch(remote, dest, policy=FAST)
    part = tmp_path / "f.bin.part"
    assert str(part) in str(info.value) and not dest.exists()
    kept = part.read_bytes()
    assert len(kept) == 3 * 1000 and kept == body[:3000]  # three attempts, each resumed where it stopped
    file_server.always_cut_after = None
    fetch(remote, dest, policy=FAST)
    assert dest.read_bytes() == body and file_server.requests[-1][1] == "bytes=3000-"


def test_mirror_variable_per_source_wins_over_the_general_one(monkeypatch):
    monkeypatch.setenv("HAMCLI_MIRROR", "http://general.example/")
    monkeypatch.setenv("HAMCLI_MIRROR_ISIC2018_TEST", "http://isic.example/")
    assert sources.mirror_base("isic2018-test") == "http://isic.example/"
    assert sources.mirror_base("ham10000") == "http://general.example/"
    monkeypatch.delenv("HAMCLI_MIRROR")
    assert sources.mirror_base("ham10000") is None


def test_download_source_imports_and_second_run_does_nothing(fake_ham_source):
    server, n_images = fake_ham_source
    ds, fetched = download.download_source("ham10000", policy=FAST)
    assert fetched and ds.report["images"] == n_images
    assert sum(ds.report["per_class"].values()) == n_images
    before = len(server.requests)
    ds2, fetched2 = download.download_source("ham10000", policy=FAST)
    assert not fetched2 and ds2.root == ds.root
    assert len(server.requests) == before


def test_cli_download_with_mirror_url(fake_ham_source, file_server):
    server, n_images = fake_ham_source
    # The table's URLs point nowhere useful; --url must be what is used.
    src = sources.SOURCES["ham10000"]
    broken = tuple(RemoteFile(f.name, "http://127.0.0.1:9/" + f.name, md5=f.md5) for f in src.files)
    sources.SOURCES["ham10000"] = Source(src.name, src.title, src.homepage, src.licence, broken, src.images)
    result = CliRunner().invoke(app, ["download", "--url", f"{server.base}/files", "--quiet", "--json"])
    assert result.exit_code == 0, result.output
    assert f'"images": {n_images}' in result.stdout


def test_cli_download_list_names_every_source():
    result = CliRunner().invoke(app, ["download", "--list"])
    assert result.exit_code == 0
    for name in ("ham10000", "isic2018-test", "dermamnist", "samples"):
        assert name in result.stdout
    listed = json.loads(CliRunner().invoke(app, ["download", "--list", "--json"]).stdout)
    assert listed["ham10000"]["files"][0]["md5"] == "4639bfa73ab251610530a97c898e6e46"
    assert listed["dermamnist"]["sizes"] == ["28", "64", "128", "224"]


def test_cli_download_failure_is_one_line_without_traceback(file_server):
    result = CliRunner().invoke(app, ["download", "dermamnist", "--url", f"{file_server.base}/nothing", "-q"])
    assert result.exit_code == 1
    assert "HTTP 404" in result.output and "Traceback" not in result.output
    assert "dermamnist.npz" in result.output


def test_unknown_source_lists_valid_ones():
    result = CliRunner().invoke(app, ["download", "imagenet"])
    assert result.exit_code == 1
    assert "ham10000" in result.output and "dermamnist" in result.output


def test_partial_file_is_written_under_cache_not_dataset(fake_ham_source, hamcli_home: Path):
    download.download_source("ham10000", policy=FAST)
    assert (hamcli_home / "cache" / "downloads" / "ham10000" / "HAM10000_images_part_1.zip").is_file()
    assert not list((hamcli_home / "cache").rglob("*.part"))
