"""What a data set holds, from a sample of its chunk headers: record versions and input formats.

Read before a run starts, so that a run whose targets the data cannot give (q_source=played on V5 data) or
whose net cannot read the data (a format-3 student on format-1 chunks) stops at once and says why, instead
of training on fake targets. Only the first 8 bytes of each sampled chunk are inflated.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from lc0distill.chess.input_formats import SUPPORTED_INPUT_FORMATS
from lc0distill.chunks.layouts import RECORD_SIZES
from lc0distill.chunks.reader import GZIP_MAGIC, inflater, max_chunk_bytes
from lc0distill.chunks.sources import ChunkSource
from lc0distill.errors import ChunkError

PROBED_CHUNKS = 32


@dataclass
class DataProbe:
    versions: Counter = field(default_factory=Counter)  # record version -> chunks
    input_formats: Counter = field(default_factory=Counter)  # input format -> chunks
    examples: dict[tuple[str, int], str] = field(default_factory=dict)  # ("version" | "format", value) -> a chunk

    @property
    def probed(self) -> int:
        return sum(self.versions.values())

    def describe(self, kind: str, only=None) -> str:
        """e.g. "format 3 (2 of 32 chunks probed, e.g. data/game_000004.gz)"; `only`: the values to name."""
        counts = self.versions if kind == "version" else self.input_formats
        label = "V" if kind == "version" else "format "
        return ", ".join(f"{label}{value} ({count} of {self.probed} chunks probed, e.g. {self.examples[(kind, value)]})"
                         for value, count in sorted(counts.items()) if only is None or value in only)


def _header(source: ChunkSource) -> tuple[int, int] | None:
    """(version, input format) of a chunk's first record; None when it cannot be read (the loader reports it)."""
    if hasattr(source, "probe_header"):  # a source of packed positions (a shard block) knows its own
        return source.probe_header()
    try:
        data = source.read_bytes(max_chunk_bytes())  # a file too large to be a chunk is refused, not read
    except ChunkError:
        return None
    if data.startswith(GZIP_MAGIC):
        try:
            data = inflater.decompressobj(wbits=31).decompress(data, 8)
        except inflater.error:
            return None
    if len(data) < 8:
        return None
    version, fmt = np.frombuffer(data[:8], dtype="<u4").tolist()
    fmt = fmt if version >= 5 else 1  # V3/V4 have no input_format field: classical
    if version not in RECORD_SIZES or fmt not in SUPPORTED_INPUT_FORMATS:
        return None  # not a chunk's first record (the loader reports the file): it says nothing about the data
    return version, fmt


def probe_chunks(sources: list[ChunkSource], count: int = PROBED_CHUNKS) -> DataProbe:
    """Versions and input formats of up to `count` chunks spread evenly over `sources`."""
    probe = DataProbe()
    picks = np.unique(np.linspace(0, len(sources) - 1, num=min(count, len(sources))).round().astype(int)) if sources else []
    for index in picks:
        header = _header(sources[index])
        if header is None:
            continue
        version, fmt = header
        probe.versions[version] += 1
        probe.input_formats[fmt] += 1
        probe.examples.setdefault(("version", version), sources[index].name)
        probe.examples.setdefault(("format", fmt), sources[index].name)
    return probe
