"""lc0 training chunks: record layouts, reading, writing, targets and game reconstruction."""

from lc0distill.chunks.layouts import RECORD_DTYPE, RECORD_SIZES
from lc0distill.chunks.reader import Chunk, read_chunk
from lc0distill.chunks.sources import ChunkSource, find_chunks
from lc0distill.chunks.writer import write_chunk

__all__ = ["RECORD_DTYPE", "RECORD_SIZES", "Chunk", "ChunkSource", "find_chunks", "read_chunk", "write_chunk"]
