"""Atomic writes: all or nothing, and files get the mode a plain open() would give them."""

from __future__ import annotations

import os

import pytest

import hamcli.fsio as fsio


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), fsio.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_written_file_and_folder_follow_the_umask(tmp_path, umask_022):
    fsio.write_text(tmp_path / "a.txt", "x")
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    with fsio.atomic_dir(tmp_path / "d") as d:
        (d / "f").write_text("y")
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "d" / "f").read_text() == "y"
