"""Writing files so that readers never see a partial one, whoever writes them (chunks, nets, checkpoints)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from lc0distill.errors import Lc0DistillError


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file in the same folder (`.NAME.*.tmp`), flush it to disk, then rename it over
    `path`: a killed process leaves either the old file or the new one, never a partial file."""
    path = Path(path)
    if path.is_dir():
        raise Lc0DistillError(f"{path}: is a folder, not a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise Lc0DistillError(f"{path}: cannot write ({error.strerror or error})") from None
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
