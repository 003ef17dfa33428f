"""Where chunks come from: loose files, directories searched recursively, and members of `.tar` archives.

A `ChunkSource` is a small picklable address (file, or archive + byte range) so that worker processes
can read any chunk by themselves; `.tar` members are read in place with one seek, never extracted.
"""

from __future__ import annotations

import glob
import os
import stat
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from lc0distill.errors import ChunkError


class MissingDataError(ChunkError):
    """A data path that names nothing (no such file, a pattern matching nothing): a user's mistake, not bad data."""

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

    def read_bytes(self, max_bytes: int | None = None) -> bytes:
        """The chunk's bytes as stored (compressed or not); a file or member larger than `max_bytes` is an
        error before anything is read (gzip never shrinks what it cannot compress by more than 0.1%)."""
        try:
            if self.member is None:
                return _read_regular_file(self.path, max_bytes)
            if self.size is None:  # a member of a compressed archive: no random access
                return _read_compressed_member(self, max_bytes)
            _check_size(self.name, self.size, max_bytes)
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read(self.size)
            if len(data) != self.size:
                raise ChunkError(self.name, f"archive ends inside the member ({len(data)} of {self.size} bytes)")
            return data
        except OSError as error:
            raise ChunkError(self.name, f"cannot read: {error.strerror or error}") from None
        except (tarfile.TarError, EOFError, zlib.error) as error:
            raise ChunkError(self.name, f"cannot read the member: {' '.join(str(error).split())}") from None


def _check_size(name: str, size: int, max_bytes: int | None) -> None:
    if max_bytes is not None and size > max_bytes + max_bytes // 1000 + 1024:
        raise ChunkError(name, f"{size:,} bytes is more than a chunk can hold ({max_bytes:,} bytes of records; "
                               "data.max_chunk_records sets it)")


def _read_regular_file(path: str, max_bytes: int | None) -> bytes:
    """A regular file's bytes: FIFOs, devices and sockets are refused before they are opened (they may never end)."""
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise ChunkError(path, "not a regular file (a FIFO, device, socket or folder): not read")
    _check_size(path, info.st_size, max_bytes)
    return Path(path).read_bytes()


def _read_compressed_member(source: "ChunkSource", max_bytes: int | None) -> bytes:
    """A member of a .tar.gz: the archive is read from its start up to the member (no index to seek by), so
    a truncated archive still gives the members before the damage."""
    with tarfile.open(source.path, "r:*") as archive:
        for member in archive:
            if member.name == source.member:
                if not member.isfile():
                    raise ChunkError(source.name, "not a regular file")
                _check_size(source.name, member.size, max_bytes)
                return archive.extractfile(member).read()
    raise ChunkError(source.name, "no such member in the archive")


def is_tar_path(path: str | os.PathLike) -> bool:
    return str(path).endswith(TAR_SUFFIXES)


def _looks_like_chunk_file(path: Path) -> bool:
    """Chunk files in a directory: lc0's game_*.gz, the server's training.*.gz, raw training.* and tars."""
    name = path.name
    return name.endswith(".gz") or is_tar_path(name) or name.startswith("training.")


def tar_members(path: str | os.PathLike, on_error: Callable[[ChunkError], None] | None = None) -> list[ChunkSource]:
    """The chunk members of an archive, in archive order (directories, pax headers and LICENSE skipped).

    A damaged archive (truncated, corrupt inside) gives the members before the damage; the damage itself is
    a ChunkError, passed to `on_error` when given (else raised when no member could be listed)."""
    path = str(path)
    members: list[tarfile.TarInfo] = []
    damage = None
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise ChunkError(path, "not a regular file (a FIFO, device, socket or folder): not read")
        raw = not _is_compressed(path)
        with tarfile.open(path, "r:*") as archive:
            try:
                for member in archive:  # iterating (not getmembers) keeps what precedes a damaged header
                    if member.isfile() and Path(member.name).name not in _SKIPPED_MEMBER_NAMES:
                        members.append(member)
                damage = _damaged_end(archive)
            except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
                damage = error
    except (tarfile.TarError, EOFError, zlib.error) as error:
        damage = error
    except OSError as error:
        raise ChunkError(path, f"cannot read: {error.strerror or error}") from None
    if damage is not None:
        reason = " ".join(str(damage).split()) or type(damage).__name__  # tarfile's message may span lines
        problem = ChunkError(path, f"not a readable tar archive ({reason}); {len(members)} members before the "
                                   "damage are read")
        if on_error is None and not members:
            raise problem
        if on_error is not None:
            on_error(problem)
    # Members of an uncompressed archive are addressed by byte range, so workers can seek to them.
    return [ChunkSource(path, m.name, m.offset_data, m.size) if raw else ChunkSource(path, m.name) for m in members]


def _damaged_end(archive: tarfile.TarFile) -> tarfile.TarError | None:
    """tarfile ends an archive without a word at a damaged header after the first member, dropping every member
    after it; the end proper is a block of zeros (or the end of the file)."""
    archive.fileobj.seek(archive.offset)
    block = archive.fileobj.read(tarfile.BLOCKSIZE)
    return tarfile.ReadError(f"a damaged member header at byte {archive.offset:,}") if block.strip(b"\0") else None


def _is_compressed(path: str) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(6)
    return head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ"))


def no_chunks_message(paths: Iterable[str | os.PathLike]) -> str:
    return (f"no chunks found in {', '.join(map(str, paths))} (chunk files: .gz or uncompressed lc0 records, "
            "or .tar archives of them)")


def find_chunks(paths: Iterable[str | os.PathLike],
                on_error: Callable[[ChunkError], None] | None = None) -> Iterator[ChunkSource]:
    """Chunk sources for files, directories (recursive, sorted), tar archives, glob patterns (`data/*.gz`,
    `runs/**/*.tar`) and `@list.txt` files naming one path or pattern per line, in a stable order.

    A missing path or unreadable archive raises ChunkError, or, with `on_error`, is passed to it and
    costs only itself: the other files of a directory are still found.
    """
    for path in _expand_patterns(paths, on_error):
        if path.is_dir():
            for root, dirs, files in os.walk(path, onerror=_folder_error(path, on_error)):
                dirs.sort()
                for name in sorted(files):
                    candidate = Path(root) / name
                    if _looks_like_chunk_file(candidate):
                        yield from _sources_or_error(candidate, on_error, in_folder=True)
        else:
            yield from _sources_or_error(path, on_error)


def _expand_patterns(paths: Iterable[str | os.PathLike],
                     on_error: Callable[[ChunkError], None] | None) -> Iterator[Path]:
    """Paths as given, glob patterns expanded (sorted), and `@list.txt` files read (one path per line)."""
    for given in paths:
        text = str(given)
        if text.startswith("@") and not Path(text).exists():
            listed = Path(text[1:])
            if listed.exists() and not listed.is_file():  # a FIFO or device may never end: not read
                _report(MissingDataError(str(listed), "cannot read the list of chunks: not a regular file (a folder, "
                                                      "FIFO or device)"), on_error)
                continue
            try:
                lines = listed.read_text().splitlines()
            except (OSError, UnicodeDecodeError) as error:
                reason = getattr(error, "strerror", None) or error
                _report(MissingDataError(str(listed), f"cannot read the list of chunks: {reason}"), on_error)
                continue
            # Relative entries are relative to the list file, so a list can travel with its data.
            yield from _expand_patterns([str(listed.parent / line.strip()) for line in lines
                                         if line.strip() and not line.startswith("#")], on_error)
        elif not Path(text).exists() and glob.has_magic(text):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                _report(MissingDataError(text, "no file matches this pattern"), on_error)
            yield from map(Path, matches)
        else:
            yield Path(text)


def _folder_error(top: Path, on_error: Callable[[ChunkError], None] | None) -> Callable[[OSError], None]:
    """os.walk's onerror: a folder it cannot list is reported, never skipped without a word (the folder given
    is missing data, a subfolder costs only its own files)."""
    def report(error: OSError) -> None:
        where = Path(error.filename) if error.filename else top
        reason = f"cannot read the folder: {error.strerror or error}"
        _report(MissingDataError(str(where), reason) if where == top else ChunkError(str(where), reason), on_error)
    return report


def _report(error: ChunkError, on_error: Callable[[ChunkError], None] | None) -> None:
    if on_error is None:
        raise error
    on_error(error)


def _sources_or_error(path: Path, on_error: Callable[[ChunkError], None] | None,
                      in_folder: bool = False) -> list[ChunkSource]:
    try:
        if not path.exists() and in_folder:  # a broken symbolic link among a folder's files costs only itself
            raise ChunkError(str(path), "a symbolic link to nothing (no such file): not read")
        if not path.exists():
            raise MissingDataError(str(path), "no such file or directory")
        if is_tar_path(path):
            return tar_members(path, on_error)
        if not path.is_file():
            raise ChunkError(str(path), "not a regular file (a FIFO, device or socket): not read")
        return [ChunkSource(str(path))]
    except ChunkError as error:
        _report(error, on_error)
        return []
