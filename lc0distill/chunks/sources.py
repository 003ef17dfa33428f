"""Where chunks come from: loose files, directories searched recursively, and members of `.tar` archives.

A `ChunkSource` is a small picklable address (file, or archive + byte range) so that worker processes
can read any chunk by themselves; `.tar` members are read in place with one seek, never extracted.
"""

from __future__ import annotations

import glob
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from lc0distill.errors import ChunkError

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
_SKIPPED_MEMBER_NAMES = {"LICENSE"}


@dataclass(frozen=True)
class ChunkSource:
    """One chunk: a file, or a member of an uncompressed tar archive at [offset, offset + size)."""

    path: str
    member: str | None = None
    offset: int = 0
    size: int | None = None

    @property
    def name(self) -> str:
        """How errors and reports name the chunk: `file` or `archive.tar:member`."""
        return self.path if self.member is None else f"{self.path}:{self.member}"

    def read_bytes(self) -> bytes:
        try:
            if self.member is None:
                return Path(self.path).read_bytes()
            if self.size is None:  # a member of a compressed archive: no random access
                with tarfile.open(self.path, "r:*") as archive:
                    handle = archive.extractfile(self.member)
                    if handle is None:
                        raise ChunkError(self.name, "not a regular file")
                    return handle.read()
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read(self.size)
            if len(data) != self.size:
                raise ChunkError(self.name, f"archive ends inside the member ({len(data)} of {self.size} bytes)")
            return data
        except OSError as error:
            raise ChunkError(self.name, f"cannot read: {error.strerror or error}") from None


def is_tar_path(path: str | os.PathLike) -> bool:
    return str(path).endswith(TAR_SUFFIXES)


def _looks_like_chunk_file(path: Path) -> bool:
    """Chunk files in a directory: lc0's game_*.gz, the server's training.*.gz, raw training.* and tars."""
    name = path.name
    return name.endswith(".gz") or is_tar_path(name) or name.startswith("training.")


def tar_members(path: str | os.PathLike) -> list[ChunkSource]:
    """The chunk members of an archive, in archive order (directories, pax headers and LICENSE skipped)."""
    path = str(path)
    try:
        with tarfile.open(path, "r:*") as archive:
            members = [m for m in archive.getmembers() if m.isfile() and Path(m.name).name not in _SKIPPED_MEMBER_NAMES]
            # Members of an uncompressed archive are addressed by byte range, so workers can seek to them.
            raw = not _is_compressed(path)
            return [
                ChunkSource(path, m.name, m.offset_data, m.size) if raw else ChunkSource(path, m.name)
                for m in members
            ]
    except tarfile.TarError as error:
        reason = " ".join(str(error).split())  # tarfile's message may span several lines
        raise ChunkError(path, f"not a readable tar archive ({reason})") from None
    except OSError as error:
        raise ChunkError(path, f"cannot read: {error.strerror or error}") from None


def _is_compressed(path: str) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(6)
    return head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ"))


def find_chunks(paths: Iterable[str | os.PathLike],
                on_error: Callable[[ChunkError], None] | None = None) -> Iterator[ChunkSource]:
    """Chunk sources for files, directories (recursive, sorted), tar archives, glob patterns (`data/*.gz`,
    `runs/**/*.tar`) and `@list.txt` files naming one path or pattern per line, in a stable order.

    A missing path or unreadable archive raises ChunkError, or, with `on_error`, is passed to it and
    costs only itself: the other files of a directory are still found.
    """
    for path in _expand_patterns(paths, on_error):
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    candidate = Path(root) / name
                    if _looks_like_chunk_file(candidate):
                        yield from _sources_or_error(candidate, on_error)
        else:
            yield from _sources_or_error(path, on_error)


def _expand_patterns(paths: Iterable[str | os.PathLike],
                     on_error: Callable[[ChunkError], None] | None) -> Iterator[Path]:
    """Paths as given, glob patterns expanded (sorted), and `@list.txt` files read (one path per line)."""
    for given in paths:
        text = str(given)
        if text.startswith("@") and not Path(text).exists():
            listed = Path(text[1:])
            try:
                lines = listed.read_text().splitlines()
            except OSError as error:
                _report(ChunkError(str(listed), f"cannot read the list of chunks: {error.strerror or error}"), on_error)
                continue
            # Relative entries are relative to the list file, so a list can travel with its data.
            yield from _expand_patterns([str(listed.parent / line.strip()) for line in lines
                                         if line.strip() and not line.startswith("#")], on_error)
        elif not Path(text).exists() and glob.has_magic(text):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                _report(ChunkError(text, "no file matches this pattern"), on_error)
            yield from map(Path, matches)
        else:
            yield Path(text)


def _report(error: ChunkError, on_error: Callable[[ChunkError], None] | None) -> None:
    if on_error is None:
        raise error
    on_error(error)


def _sources_or_error(path: Path, on_error: Callable[[ChunkError], None] | None) -> list[ChunkSource]:
    try:
        if not path.exists():
            raise ChunkError(str(path), "no such file or directory")
        return list(_sources_of_file(path))
    except ChunkError as error:
        _report(error, on_error)
        return []


def _sources_of_file(path: Path) -> Iterator[ChunkSource]:
    if is_tar_path(path):
        yield from tar_members(path)
    else:
        yield ChunkSource(str(path))
