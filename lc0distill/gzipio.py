"""Inflating gzip files with a bound: chunks and nets are read through here, so a small file that inflates to
gigabytes is refused once its output passes the bound, never after the gigabytes. Every member of a
multi-member file is read (as zlib's gzread does, which lc0 uses); bytes after the last member that are not
gzip are an error. Callers turn GzipError into their own error naming the file."""

from __future__ import annotations

import zlib
from types import ModuleType

GZIP_MAGIC = b"\x1f\x8b"
_STEP = 4 << 20  # bytes inflated per call: the bound is checked at least this often


class GzipError(Exception):
    """kind: "corrupt", "truncated", "trailing" (non-gzip bytes after a member) or "too_big"."""

    def __init__(self, kind: str, detail: str = ""):
        self.kind = kind
        self.detail = detail
        super().__init__(f"{kind}: {detail}" if detail else kind)


def gunzip(data: bytes, max_bytes: int | None = None, inflater: ModuleType = zlib) -> bytes:
    """The inflated bytes of every member of a gzip file; GzipError("too_big") past `max_bytes` bytes.
    `inflater`: zlib or a module with its interface (zlib-ng inflates the same streams faster)."""
    parts, total = [], 0
    while data:
        stream = inflater.decompressobj(wbits=31)
        pending = data
        try:
            while True:
                step = _STEP if max_bytes is None else min(_STEP, max_bytes - total + 1)
                piece = stream.decompress(pending, step)
                parts.append(piece)
                total += len(piece)
                if max_bytes is not None and total > max_bytes:
                    raise GzipError("too_big", f"more than {max_bytes:,} bytes")
                pending = stream.unconsumed_tail
                if stream.eof or not pending:
                    break
        except inflater.error as error:
            raise GzipError("corrupt", str(error)) from None
        if not stream.eof:
            raise GzipError("truncated", "the file ends before the gzip trailer")
        data = stream.unused_data
        if data and not data.startswith(GZIP_MAGIC):
            raise GzipError("trailing", "bytes after the end of the gzip stream are not gzip data")
    return parts[0] if len(parts) == 1 else b"".join(parts)
