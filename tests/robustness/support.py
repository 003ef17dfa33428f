"""What every robustness test checks, and the ways its bad files are made.

The contract of the `lc0distill` command on bad input (README, issue 10): no traceback; each problem is one
line `lc0distill: error: FILE: ...` (or `lc0distill: warning: ...` for what a command skips and goes on
without) naming the file; the good files of the same run are still processed; exit code 2 when anything
was wrong; memory bounded and no hang whatever the file. Bad files are seeded mutations of lc0's own files
from ../shared, written into tmp_path only.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import random
import signal
import tarfile
import traceback
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pytest

from lc0distill.chunks.layouts import LAYOUTS, RECORD_SIZES
from lc0distill.cli import main

ERROR = "lc0distill: error: "
WARNING = "lc0distill: warning: "
PREFIXES = (ERROR, WARNING)
STARTPOS = "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1"
# Words that betray a message not meant for the user: a traceback, a Python warning, an exception's repr.
LEAKS = ("Traceback", "Warning:", "Error:", "Exception", 'File "/')


# ---------------------------------------------------------------------------------------------- running


@dataclass
class CliRun:
    argv: list[str]
    code: int
    out: str
    err: str

    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith(PREFIXES)]


class Hang(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: int, what: str):
    """Fail (instead of hanging the suite) when the block takes longer than `seconds`: a FIFO or a device
    read as a file never ends. SIGALRM interrupts the blocking read itself."""

    def expire(signum, frame):
        raise Hang(f"{what}: still running after {seconds} s (a hang)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run_cli(capsys, argv: Sequence[str], timeout: int = 120) -> CliRun:
    """`lc0distill ARGV` in this process. Any exception out of main() (which turns user errors into exit code
    2) is a traceback the user would see: the test fails, showing it and the command."""
    argv = [str(a) for a in argv]
    capsys.readouterr()
    try:
        with time_limit(timeout, f"lc0distill {' '.join(argv)}"):
            code = main(argv)
    except SystemExit as exit_:  # argparse: usage errors are its own one-line messages
        code = exit_.code if isinstance(exit_.code, int) else 2
    except Hang as hang:
        pytest.fail(str(hang))
    except BaseException:  # noqa: BLE001 - the point is to see it
        out, err = capsys.readouterr()
        pytest.fail(f"traceback from lc0distill {' '.join(argv)}:\n{traceback.format_exc()}\nstderr: {err[-2000:]}")
    out, err = capsys.readouterr()
    return CliRun(argv, code, out, err)


# ---------------------------------------------------------------------------------------------- checking


def assert_clean_stderr(run: CliRun, names: Iterable[str] = ()) -> None:
    """No traceback or Python warning on stderr; every line that is not a progress line starts with
    `lc0distill: error:` / `lc0distill: warning:`; every error line names a file (one of `names` when given)."""
    names = [str(n) for n in names]
    for line in run.err.splitlines():
        if line.startswith(PREFIXES):
            if names:
                assert any(name in line for name in names), f"{run.argv}: error line names no file: {line}"
            continue
        assert not any(word in line for word in LEAKS), f"{run.argv}: not a one-line error: {line}\n{run.err}"
        assert not any(name in line for name in names), f"{run.argv}: a file named without the prefix: {line}"


def assert_user_error(run: CliRun, name: str | Path, *fragments: str, lines: int | None = 1) -> str:
    """Exit code 2 and an error line naming `name` (holding `fragments`); `lines`: how many error lines."""
    name = str(name)
    assert run.code == 2, f"{run.argv}: exit code {run.code}\nstdout: {run.out[-1000:]}\nstderr: {run.err[-2000:]}"
    assert_clean_stderr(run)
    errors = [line for line in run.error_lines() if line.startswith(ERROR)]
    if lines is not None:
        assert len(errors) == lines, f"{run.argv}: {len(errors)} error lines, expected {lines}:\n{run.err}"
    naming = [line for line in errors if name in line]
    assert naming, f"{run.argv}: no error line names {name}:\n{run.err}"
    line = naming[0]
    for fragment in fragments:
        assert fragment in line, f"{run.argv}: {fragment!r} not in {line!r}"
    return line


def reported(run: CliRun, name: str | Path) -> list[str]:
    """The error / warning lines that name `name`."""
    return [line for line in run.error_lines() if str(name) in line]


def _refuse_constant(constant: str):
    raise ValueError(f"{constant} is not JSON")


def strict_json(text: str):
    """json.loads that refuses NaN, Infinity and -Infinity (Python writes them; JSON has no such numbers)."""
    return json.loads(text, parse_constant=_refuse_constant)


# ---------------------------------------------------------------------------------------------- chunks


def payload(path: Path) -> bytes:
    return gzip.decompress(Path(path).read_bytes())


def gz(raw: bytes) -> bytes:
    return gzip.compress(raw, compresslevel=1, mtime=0)


def version_of(raw: bytes) -> int:
    return int.from_bytes(raw[:4], "little")


def record_count(raw: bytes) -> int:
    return len(raw) // RECORD_SIZES[version_of(raw)]


def field_offset(version: int, field: str, index: int = 0) -> tuple[np.dtype, int]:
    """(dtype of one element, byte offset in a record) of `field` (element `index` of an array field)."""
    dtype, offset = LAYOUTS[version].fields[field][:2]
    base = dtype.base if dtype.shape else dtype
    return base, offset + index * base.itemsize


def read_field(raw: bytes, record: int, field: str, index: int = 0):
    version = version_of(raw)
    dtype, offset = field_offset(version, field, index)
    start = record * RECORD_SIZES[version] + offset
    return np.frombuffer(raw, dtype=dtype, count=1, offset=start)[0]


def read_policy(raw: bytes, record: int) -> np.ndarray:
    version = version_of(raw)
    _, offset = field_offset(version, "probabilities")
    return np.frombuffer(raw, dtype="<f4", count=1858, offset=record * RECORD_SIZES[version] + offset)


def set_field(raw: bytes, record: int, field: str, value, index: int = 0) -> bytes:
    """`raw` (one version's records) with one element of one field of one record overwritten."""
    version = version_of(raw)
    dtype, offset = field_offset(version, field, index)
    start = record * RECORD_SIZES[version] + offset
    encoded = np.array([value], dtype=dtype).tobytes()
    return raw[:start] + encoded + raw[start + len(encoded):]


def set_policy(raw: bytes, record: int, policy: np.ndarray) -> bytes:
    version = version_of(raw)
    _, offset = field_offset(version, "probabilities")
    start = record * RECORD_SIZES[version] + offset
    return raw[:start] + policy.astype("<f4").tobytes() + raw[start + policy.size * 4:]


def flip_bits(data: bytes, rng: random.Random, flips: int, start: int = 0) -> bytes:
    out = bytearray(data)
    for _ in range(flips):
        out[rng.randrange(start, len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def gzip_bomb(total: int, head: bytes = b"") -> bytes:
    """A gzip stream of `head` then zeros, `total` bytes inflated, from about total / 1000 bytes: one deflate
    block of 16 MiB of zeros, flushed to a byte boundary and repeated (so building it costs nothing). The
    trailer's CRC does not match: a reader that stops at its limit never gets there."""
    piece = 1 << 24
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    first = compressor.compress(head + bytes(piece - len(head))) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(bytes(piece)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return first + again * (total // piece - 1) + compressor.flush()


def add_member(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 1_600_000_000
    archive.addfile(info, io.BytesIO(data))


def tar_bytes(members: dict[str, bytes], mode: str = "w") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, data in members.items():
            add_member(archive, name, data)
    return buffer.getvalue()


def make_fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def symlink(path: Path, target: str | Path) -> Path:
    path.symlink_to(target)
    return path
