"""Errors the user can act on. The CLI prints these as one line, without a traceback."""

from __future__ import annotations


class Lc0DistillError(Exception):
    """Base class for errors caused by input (files, options), not by a bug."""


class ChunkError(Lc0DistillError):
    """A training chunk that cannot be read: names the file, and the record and field when known."""

    def __init__(self, path: str, message: str, record: int | None = None, field: str | None = None):
        self.path = path
        self.record = record
        self.field = field
        self.reason = message
        where = path
        if record is not None:
            where += f": record {record}"
        if field is not None:
            where += f": field {field}"
        super().__init__(f"{where}: {message}")
