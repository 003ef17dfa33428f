"""write_atomic: the old file or the new one, never a partial one; errors as one line; the user's umask."""

import errno
import os

import pytest

from lc0distill.errors import Lc0DistillError
from lc0distill.fileio import write_atomic


def test_a_full_disk_keeps_the_previous_file_and_says_so(tmp_path, monkeypatch):
    target = tmp_path / "net.pb.gz"
    write_atomic(target, b"old contents")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(Lc0DistillError) as raised:
        write_atomic(target, b"new contents, never complete")
    message = str(raised.value)
    assert message == f"{target}: cannot write it: No space left on device (the previous file is kept)"
    assert target.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["net.pb.gz"]  # no temporary left behind


def test_a_folder_that_cannot_be_made_is_one_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(Lc0DistillError, match=r"file/sub/out.pt: cannot create the folder for it"):
        write_atomic(blocker / "sub" / "out.pt", b"data")


def test_files_get_the_mode_open_would_give(tmp_path):
    old = os.umask(0o077)
    try:
        write_atomic(tmp_path / "private", b"x")
        os.umask(0o002)
        write_atomic(tmp_path / "shared", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "private").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "shared").stat().st_mode & 0o777 == 0o664


def test_write_json_refuses_nan_unless_allowed(tmp_path):
    from lc0distill.fileio import write_json

    with pytest.raises(ValueError):
        write_json(tmp_path / "a.json", {"elo": float("inf")})
    assert not (tmp_path / "a.json").exists()
    write_json(tmp_path / "a.json", {"elo": float("-inf"), "se": float("nan")}, allow_nan=True)
    assert (tmp_path / "a.json").read_text() == '{\n "elo": -Infinity,\n "se": NaN\n}\n'
