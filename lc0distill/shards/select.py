"""A run's data paths, where any of them may be a shard folder (data repack) instead of chunks.

A shard folder in data.paths gives its training shards, and, when data.test_paths is empty, its held-out shards
as the held-out data (split by chunk name when it was repacked: the run's data.test_ratio must be the one the
shards were split with, or a held-out chunk could have been trained on). In data.test_paths it gives all its
shards. Chunk paths beside it are selected as always (chunks/config.py). Shard positions were sampled when they
were repacked: they are read as they are, and a run whose data.sample_rate differs is told so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from lc0distill.chunks.config import DataConfig, SelectedSources, select_sources as select_chunk_sources
from lc0distill.chunks.sources import MissingDataError, find_chunks
from lc0distill.errors import ChunkError, Lc0DistillError
from lc0distill.shards.index import ShardBlock, chunk_names, folder_blocks, is_shard_folder, read_index

log = logging.getLogger("lc0distill.data")


@dataclass(frozen=True)
class _Folder:
    path: str
    index: dict
    offset: int  # its chunk table's first number among the run's shard folders


def _folders(paths: list[str], known: dict[str, _Folder]) -> list[_Folder]:
    found = []
    for path in paths:
        key = str(Path(path).resolve())
        if key not in known:
            offset = sum(len(f.index["chunks"]) for f in known.values())
            known[key] = _Folder(key, read_index(key), offset)
        found.append(known[key])
    return found


def select_sources(config: DataConfig) -> SelectedSources:
    """(train, test) sources of a run: chunks and shard blocks (see the module docstring)."""
    shard_paths = [p for p in config.paths if is_shard_folder(p)]
    shard_test_paths = [p for p in config.test_paths if is_shard_folder(p)]
    if not shard_paths and not shard_test_paths:
        return select_chunk_sources(config)
    if config.num_chunks is not None:
        raise Lc0DistillError("data.num_chunks chooses the newest chunks, and a shard folder is read whole: leave "
                              "num_chunks out, or repack only the chunks to use")
    known: dict[str, _Folder] = {}
    train_folders, test_folders = _folders(shard_paths, known), _folders(shard_test_paths, known)
    for folder in train_folders + test_folders:
        _check_folder(folder, config, held_out_here=not config.test_paths)
    chunk_paths = [p for p in config.paths if p not in shard_paths]
    chunk_test_paths = [p for p in config.test_paths if p not in shard_test_paths]
    selected = SelectedSources([], [])
    if chunk_paths:
        # held-out data named in test_paths (shard folders or chunks) means the chunk paths all train, unsplit
        ratio = 0.0 if config.test_paths else config.test_ratio
        selected = select_chunk_sources(config.model_copy(update={"paths": chunk_paths, "test_ratio": ratio,
                                                                  "test_paths": chunk_test_paths}))
    elif chunk_test_paths:
        selected = _held_out_chunks(chunk_test_paths)
    train: list = list(selected.train)
    test: list = list(selected.test)
    for folder in train_folders:
        train += folder_blocks(folder.path, folder.index, "train", folder.offset)
        if not config.test_paths:
            test += folder_blocks(folder.path, folder.index, "test", folder.offset)
    for folder in test_folders:
        test += folder_blocks(folder.path, folder.index, "train", folder.offset)
        test += folder_blocks(folder.path, folder.index, "test", folder.offset)
    if not train:
        raise Lc0DistillError(f"no training positions in {', '.join(config.paths)} (the shard folders hold no "
                              "training shard)")
    tables = sorted((f.offset, f.path) for f in known.values())
    return SelectedSources(train, test, selected.unreadable, origin_name=_namer(tables))


def every_source(paths: list[str]) -> SelectedSources:
    """Everything `paths` holds, unsplit (what `evaluate --data` reads): every chunk, and every block of both
    sides of each shard folder; the sources come as `test` (held-out data), `train` is empty."""
    known: dict[str, _Folder] = {}
    folders = _folders([p for p in paths if is_shard_folder(p)], known)
    chunk_paths = [p for p in paths if not is_shard_folder(p)]
    selected = _held_out_chunks(chunk_paths) if chunk_paths else SelectedSources([], [])
    for folder in folders:
        for side in ("train", "test"):
            selected.test += folder_blocks(folder.path, folder.index, side, folder.offset)
    selected.origin_name = _namer(sorted((f.offset, f.path) for f in known.values()))
    return selected


def _held_out_chunks(paths: list[str]) -> SelectedSources:
    """Chunk paths given as held-out data only: every chunk they name (a missing path is an error)."""
    unreadable: list[str] = []

    def skip(error: ChunkError) -> None:
        if isinstance(error, MissingDataError):
            raise error
        unreadable.append(str(error))

    return SelectedSources([], list(find_chunks(paths, on_error=skip)), unreadable)


def _check_folder(folder: _Folder, config: DataConfig, held_out_here: bool) -> None:
    sampling = folder.index["sampling"]
    if held_out_here and folder.index["positions"]["test"] and sampling["test_ratio"] != config.test_ratio:
        raise Lc0DistillError(f"{folder.path}: its chunks were split at test_ratio {sampling['test_ratio']:g} when "
                              f"they were repacked, the run's data.test_ratio is {config.test_ratio:g}: set "
                              f"data.test_ratio: {sampling['test_ratio']:g} (the split is fixed in the shards), or "
                              "repack with --test-ratio")
    if sampling["sample_rate"] != config.sample_rate:
        log.warning("%s was repacked at sample rate %d and is read as it is; data.sample_rate %d applies to "
                    "chunks only", folder.path, sampling["sample_rate"], config.sample_rate)


def _namer(tables: list[tuple[int, str]]):
    def name(number: int) -> str:
        for offset, folder in reversed(tables):
            if number >= offset:
                names = chunk_names(folder)
                local = number - offset
                return names[local] if local < len(names) else f"{folder}: chunk {local} (not in its index)"
        return f"chunk {number}"
    return name


def is_shard_block(source) -> bool:
    return isinstance(source, ShardBlock)
