"""Writing files so that readers never see a partial one, whoever writes them (chunks, nets, checkpoints)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from lc0distill.errors import Lc0DistillError


def file_sha256(path: str | os.PathLike) -> str:
    """The file's sha256 in hex, read a megabyte at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def current_umask() -> int:
    """The process's umask (os has no getter: set it and put it back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_folder(path: str | os.PathLike, what: str = "folder") -> Path:
    """mkdir -p, any OSError (a read-only place, /proc, a file in the way) one Lc0DistillError naming it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise Lc0DistillError(f"{path}: cannot create the {what} ({error.strerror or error})") from None
    return path


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file in the same folder (`.NAME.*.tmp`), flush it to disk, then rename it over
    `path`: a killed process leaves either the old file or the new one, never a partial file.

    The file gets the mode a plain open() would give it (0666 less the umask; mkstemp alone makes 0600).
    Any OSError (disk full, permissions, a read-only folder) leaves the previous file as it was and becomes
    one Lc0DistillError naming the file and what failed.
    """
    path = Path(path)
    if path.is_dir():
        raise Lc0DistillError(f"{path}: is a folder, not a file name")
    temporary = None
    stage = "create the folder for"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        stage = "create a temporary file for"
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(handle, "wb") as out:
            stage = "write"
            try:
                os.fchmod(out.fileno(), 0o666 & ~current_umask())
            except OSError:  # file systems without modes (vfat, some network shares): the file is still written
                pass
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        stage = "rename the finished temporary file to"
        os.replace(temporary, path)
    except OSError as error:
        _remove(temporary)
        kept = " (the previous file is kept)" if path.exists() else ""
        raise Lc0DistillError(f"{path}: cannot {stage} it: {error.strerror or error}{kept}") from None
    except BaseException:
        _remove(temporary)
        raise


def write_json(path: str | os.PathLike, value, allow_nan: bool = False) -> None:
    """`value` as indented JSON, written atomically (write_atomic). NaN or inf is an error unless `allow_nan`
    (then written as JSON's NaN/Infinity extension: an experiment's Elo of a match with every game lost)."""
    write_atomic(path, (json.dumps(value, indent=1, allow_nan=allow_nan) + "\n").encode())


def read_json(path: str | os.PathLike) -> dict:
    """A JSON object kept by write_json; {} when the file does not exist yet."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else {}


def _remove(temporary: str | None) -> None:
    if temporary is not None:
        try:
            Path(temporary).unlink(missing_ok=True)
        except OSError:  # the folder itself may be gone or read-only: nothing more to clean
            pass


def read_manifest_json(path: Path, *, what: str, max_bytes: int, form: str, version: int, remedy: str) -> dict:
    """A small JSON file that describes a folder (a shard index, a cache manifest): its size checked before it
    is read, its `format` and `version` checked after. `what` names it in errors; `remedy` says what to do
    about a version this lc0distill does not read."""
    if path.stat().st_size > max_bytes:
        raise Lc0DistillError(f"{path}: {path.stat().st_size:,} bytes: too large for a {what}")
    try:
        document = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise Lc0DistillError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(document, dict) or document.get("format") != form:
        raise Lc0DistillError(f"{path}: not a {what}")
    if document.get("version") != version:
        raise Lc0DistillError(f"{path}: {what} version {document.get('version')}, this lc0distill reads "
                              f"{version}: {remedy}")
    return document


def read_records(path: Path, kind: str) -> list[dict]:
    """The JSON-lines records of `kind` ({"kind": kind, ...}) in a run's metrics.jsonl, in order; a line a kill
    cut short (or any line that is not a JSON object) is passed over. [] when the file does not exist."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("kind") == kind:
            records.append(record)
    return records
