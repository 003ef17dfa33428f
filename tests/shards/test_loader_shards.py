"""Shard folders as loader sources (shards/select.py, shards/index.py, chunks/dataset.py): the same positions and
batches as the chunks they were repacked from, determinism, workers and ranks, provenance, damaged shards, and
the run config checks."""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch

from lc0distill.chunks.batch import Batch
from lc0distill.chunks.config import DataConfig, make_loader
from lc0distill.chunks.probe import probe_chunks
from lc0distill.chunks.sources import find_chunks
from lc0distill.errors import ChunkError, Lc0DistillError
from lc0distill.shards.format import decode_block
from lc0distill.shards.index import ShardBlock, ShardError, read_index
from lc0distill.shards.select import every_source, is_shard_block, select_sources
from tests.shards.helpers import TEST_RATIO

TENSORS = ("planes", "policy", "legal", "z", "q", "moves_left", "moves_left_known", "orig_q", "policy_kld",
           "played_idx", "best_idx", "record_index", "fingerprint")


def _config(*paths, **changes) -> DataConfig:
    settings = dict(paths=[str(p) for p in paths], sample_rate=1, shuffle_buffer=0, workers=0, batch_size=256,
                    test_ratio=TEST_RATIO)
    settings.update(changes)
    return DataConfig(**settings)


def _loader(config: DataConfig, selected, sources=None, **kwargs):
    sources = list(selected.train) + list(selected.test) if sources is None else sources
    return make_loader(config, sources, passes=1, origin_name=selected.origin_name, **kwargs)


def _packed(loader) -> np.ndarray:
    parts = list(loader.packed_batches())
    return np.concatenate(parts) if parts else np.empty(0)


def _origins(loader, packed: np.ndarray) -> list[tuple[str, int]]:
    return [(loader.source_name(int(c)), int(r)) for c, r in zip(packed["chunk"], packed["record"])]


def _sorted_batch(loader) -> tuple[Batch, list[tuple[str, int]]]:
    """All the loader's batches as one, sorted by (source chunk name, record)."""
    batches = list(loader)
    whole = Batch(**{f.name: torch.cat([getattr(b, f.name) for b in batches]) for f in fields(Batch)})
    keys = [(loader.source_name(int(c)), int(r)) for c, r in zip(whole.chunk_index, whole.record_index)]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    index = torch.tensor(order)
    return Batch(**{f.name: getattr(whole, f.name)[index] for f in fields(Batch)}), [keys[i] for i in order]


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.is_floating_point():
        return torch.equal(torch.isnan(a), torch.isnan(b)) and torch.equal(a.nan_to_num(7.0), b.nan_to_num(7.0))
    return torch.equal(a, b)


@pytest.fixture(scope="module")
def selected(rate1):
    return select_sources(_config(rate1.out))


# ----------------------------------------------------------------------------------------------- same data

def test_the_run_sees_the_shards_blocks(rate1, selected):
    index = rate1.index
    assert all(is_shard_block(s) for s in (*selected.train, *selected.test))
    assert len(selected.train) == sum(len(s["blocks"]) for s in index["shards"]["train"])
    assert len(selected.test) == sum(len(s["blocks"]) for s in index["shards"]["test"])
    assert sum(b.positions for b in selected.train) == index["positions"]["train"]
    assert {Path(b.path).parent.name for b in selected.train} == {"train"}
    assert {Path(b.path).parent.name for b in selected.test} == {"test"}


def test_shards_give_the_batches_of_the_chunks_they_were_repacked_from(rate1, selected, chunk_files, sources):
    shard_batch, shard_keys = _sorted_batch(_loader(_config(rate1.out), selected))
    chunk_config = _config(*chunk_files)
    chunk_batch, chunk_keys = _sorted_batch(make_loader(chunk_config, sources, passes=1))
    assert shard_keys == chunk_keys and len(set(chunk_keys)) == len(chunk_keys) == rate1.index["records_read"]
    assert all(re.search(r"game_\d{6}\.gz$", name) for name, _ in shard_keys)
    for name in TENSORS:
        assert _same(getattr(shard_batch, name), getattr(chunk_batch, name)), name


def test_the_same_seed_gives_the_same_batches(rate4):
    config = _config(rate4.out, shuffle_buffer=500, batch_size=64, seed=3)
    chosen = select_sources(config)
    runs = [[b.tobytes() for b in _loader(config, chosen, chosen.train).packed_batches()] for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0]) > 3
    other = select_sources(config.model_copy(update={"seed": 4}))
    assert [b.tobytes() for b in _loader(config.model_copy(update={"seed": 4}), other, other.train)
            .packed_batches()] != runs[0]


def test_worker_processes_give_the_same_positions(rate4):
    config = _config(rate4.out, shuffle_buffer=300, batch_size=100)
    chosen = select_sources(config)
    alone = _packed(_loader(config, chosen, chosen.train))
    shared = _packed(_loader(config.model_copy(update={"workers": 2}), chosen, chosen.train))
    assert len(alone) == rate4.index["positions"]["train"]
    assert sorted(p.tobytes() for p in alone) == sorted(p.tobytes() for p in shared)


def test_two_ranks_read_disjoint_positions_that_make_up_all(rate1, selected):
    config = _config(rate1.out)
    ranks = [_packed(_loader(config, selected, selected.train, rank=rank, world_size=2)) for rank in (0, 1)]
    pairs = [set(zip(p["chunk"].tolist(), p["record"].tolist())) for p in ranks]
    assert all(len(p) for p in pairs) and not pairs[0] & pairs[1]
    everything = _packed(_loader(config, selected, selected.train))
    assert pairs[0] | pairs[1] == set(zip(everything["chunk"].tolist(), everything["record"].tolist()))
    assert len(ranks[0]) + len(ranks[1]) == rate1.index["positions"]["train"]


def test_source_names_are_the_original_chunks(rate4, sources):
    config = _config(rate4.out)
    chosen = select_sources(config)
    loader = _loader(config, chosen)
    packed = _packed(loader)
    names = [entry[0] for entry in read_index(rate4.out)["chunks"]]
    offset = len(chosen.train) + len(chosen.test)
    assert (packed["chunk"] >= offset).all()
    for (name, record), number in zip(_origins(loader, packed), packed["chunk"]):
        assert re.search(r"game_\d{6}\.gz$", name) and name == names[int(number) - offset]
    assert {name for name, _ in _origins(loader, packed)} == {s.name for s in sources}


def test_chunks_and_shard_folders_share_one_stream(rate4, other_chunk_files):
    """Chunk paths beside a shard folder: positions of both kinds, each named by its own chunk."""
    config = _config(*other_chunk_files, rate4.out, test_ratio=TEST_RATIO)
    chosen = select_sources(config)
    chunk_sources = [s for s in chosen.train if not is_shard_block(s)]
    assert len(chunk_sources) >= 5 and any(is_shard_block(s) for s in chosen.train)
    loader = _loader(config, chosen, chosen.train)
    names = {name for name, _ in _origins(loader, _packed(loader))}
    assert {s.name for s in chunk_sources} <= names
    shard_names = {name for name, _, _, side in rate4.index["chunks"] if side == "train"}
    assert names - {s.name for s in chunk_sources} == shard_names
    assert all(n in {str(p) for p in other_chunk_files} | shard_names for n in names)


def test_two_shard_folders_keep_their_own_chunk_tables(rate1, rate4):
    config = _config(rate4.out, rate1.out)
    chosen = select_sources(config)
    loader = _loader(config, chosen, chosen.train)
    packed = _packed(loader)
    assert len(packed) == rate4.index["positions"]["train"] + rate1.index["positions"]["train"]
    origins = _origins(loader, packed)
    assert len(set(origins)) < len(origins)  # the same record, once from each folder
    assert len(set(zip(packed["chunk"].tolist(), packed["record"].tolist()))) == len(packed)  # told apart
    assert all(re.search(r"game_\d{6}\.gz$", name) for name, _ in origins)


def test_needs_q_keeps_every_v6_position(rate1, selected):
    loader = _loader(_config(rate1.out), selected, selected.train, needs_q=True)
    assert len(_packed(loader)) == rate1.index["positions"]["train"] and loader.bad_records == 0


def test_the_data_probe_reads_shard_blocks(rate1, selected):
    probe = probe_chunks(selected.train)
    assert probe.versions == {6: min(32, len(selected.train))}
    formats = {int(k) for k in rate1.index["shards"]["train"][0]["input_formats"]}
    assert set(probe.input_formats) == formats
    assert "block" in next(iter(probe.examples.values()))


def test_every_source_gives_both_sides_of_a_shard_folder(rate1):
    everything = every_source([str(rate1.out)])
    assert everything.train == []
    assert sum(b.positions for b in everything.test) == rate1.index["records_read"]
    loader = make_loader(_config(rate1.out), everything.test, passes=1, origin_name=everything.origin_name)
    assert len(_packed(loader)) == rate1.index["records_read"]


# ----------------------------------------------------------------------------------------------- damaged shards

@pytest.fixture
def damaged(rate1, tmp_path) -> Path:
    """A copy of the sample-rate-1 folder, to damage."""
    return Path(shutil.copytree(rate1.out, tmp_path / "shards"))


def test_a_shard_cut_short_is_an_error_naming_it(damaged):
    victim = damaged / "train" / "shard-000001.zst"
    victim.write_bytes(victim.read_bytes()[:-10])
    with pytest.raises(Lc0DistillError, match="cut short") as caught:
        select_sources(_config(damaged))
    assert str(victim) in str(caught.value)


def test_a_missing_shard_is_an_error_naming_it(damaged):
    victim = damaged / "test" / "shard-000000.zst"
    victim.unlink()
    with pytest.raises(Lc0DistillError, match="missing") as caught:
        select_sources(_config(damaged))
    assert str(victim) in str(caught.value)


def test_a_shard_cut_short_after_the_run_started_is_a_bad_block(damaged):
    blocks = select_sources(_config(damaged)).train
    last = max(blocks, key=lambda b: (b.path, b.block))
    Path(last.path).write_bytes(Path(last.path).read_bytes()[: last.offset + last.size // 2])
    with pytest.raises(ShardError, match="cut short") as caught:
        last.read_packed()
    assert isinstance(caught.value, ChunkError) and f"block {last.block}" in str(caught.value)
    assert last.probe_header() is None


def _flip_inside(block: ShardBlock) -> None:
    """Flip one byte of the block (the file keeps its size), one that the block's checksum catches."""
    data = bytearray(Path(block.path).read_bytes())
    for where in range(block.offset + block.size // 2, block.offset + block.size):
        data[where] ^= 0x40
        try:
            decode_block(bytes(data[block.offset : block.offset + block.size]), block.name, block.positions)
        except ChunkError:
            Path(block.path).write_bytes(bytes(data))
            return
        data[where] ^= 0x40
    raise AssertionError("no flip of the block was noticed")


def test_a_damaged_block_is_skipped_and_named(damaged, rate1):
    config = _config(damaged)
    chosen = select_sources(config)
    victim = next(b for b in chosen.train if b.block == 1)
    size = Path(victim.path).stat().st_size
    _flip_inside(victim)
    assert Path(victim.path).stat().st_size == size
    expected = np.concatenate([b.read_packed() for b in chosen.train if b != victim])
    loader = _loader(config, chosen, chosen.train)
    packed = _packed(loader)
    assert len(loader.bad_chunks) == 1 and loader.bad_chunks[0].startswith(f"{victim.path}: block 1: ")
    assert len(packed) == rate1.index["positions"]["train"] - victim.positions
    assert sorted(p.tobytes() for p in packed) == sorted(p.tobytes() for p in _shifted(expected, len(chosen.train)))


def _shifted(packed: np.ndarray, offset: int) -> np.ndarray:
    """Positions as read straight from blocks, with the `chunk` number a loader over `offset` sources gives."""
    out = packed.copy()
    out["chunk"] += np.uint32(offset)
    return out


def test_a_damaged_block_with_workers_is_named_too(damaged):
    config = _config(damaged, workers=2)
    chosen = select_sources(config)
    victim = next(b for b in chosen.train if b.block == 2)
    _flip_inside(victim)
    loader = _loader(config, chosen, chosen.train)
    positions = len(_packed(loader))
    assert [e.split(": block")[0] for e in loader.bad_chunks] == [victim.path]
    assert ": block 2: " in loader.bad_chunks[0]
    assert positions == sum(b.positions for b in chosen.train) - victim.positions


@pytest.mark.parametrize("workers, error", [(0, ChunkError), (2, Lc0DistillError)])  # in-process, from a worker
def test_a_damaged_block_stops_a_strict_run(damaged, workers, error):
    config = _config(damaged, strict=True, workers=workers)
    chosen = select_sources(config)
    victim = next(b for b in chosen.train if b.block == 1)
    _flip_inside(victim)
    with pytest.raises(error) as caught:
        _packed(_loader(config, chosen, chosen.train))
    assert f"{victim.path}: block 1" in str(caught.value) and "Traceback" not in str(caught.value)


def test_a_damaged_index_is_an_error(damaged):
    (damaged / "lc0distill-shards.json").write_text("{not json")
    with pytest.raises(Lc0DistillError, match="not valid JSON"):
        select_sources(_config(damaged))


def _edit_index(folder: Path, change) -> None:
    path = folder / "lc0distill-shards.json"
    index = json.loads(path.read_text())
    change(index)
    path.write_text(json.dumps(index))


def test_an_index_of_another_version_or_format_is_an_error(damaged):
    _edit_index(damaged, lambda index: index.update(version=99))
    with pytest.raises(Lc0DistillError, match="version 99.*repack"):
        select_sources(_config(damaged))
    _edit_index(damaged, lambda index: index.update(format="something else", version=1))
    with pytest.raises(Lc0DistillError, match="not a shard index"):
        select_sources(_config(damaged))


def test_a_folder_without_an_index_is_not_a_shard_folder(damaged):
    (damaged / "lc0distill-shards.json").unlink()
    with pytest.raises(Lc0DistillError, match="no training chunks"):  # read as a chunk folder: it holds none
        select_sources(_config(damaged))
    with pytest.raises(Lc0DistillError, match="not a shard folder"):
        read_index(damaged)


def test_an_index_missing_an_entry_is_an_error_naming_it(damaged):
    _edit_index(damaged, lambda index: index.pop("sampling"))
    with pytest.raises(Lc0DistillError) as caught:
        select_sources(_config(damaged))
    assert "lc0distill-shards.json" in str(caught.value)


# ----------------------------------------------------------------------------------------------- run config checks

def test_another_test_ratio_is_an_error_naming_both(rate1):
    with pytest.raises(Lc0DistillError) as caught:
        select_sources(_config(rate1.out, test_ratio=0.05))
    message = str(caught.value)
    assert "0.2" in message and "0.05" in message and str(rate1.out) in message


def test_another_test_ratio_is_fine_with_test_paths(rate1, other_chunk_files):
    """Held-out data given apart: the folder's split does not matter (its held-out shards are not read)."""
    chosen = select_sources(_config(rate1.out, test_ratio=0.05, test_paths=[str(p) for p in other_chunk_files]))
    assert all(is_shard_block(s) for s in chosen.train) and len(chosen.test) == 10
    assert not any(is_shard_block(s) for s in chosen.test)


def test_a_shard_folder_as_test_paths_gives_both_its_sides(rate1, rate4):
    chosen = select_sources(_config(rate4.out, test_paths=[str(rate1.out)]))
    assert sum(b.positions for b in chosen.test) == rate1.index["records_read"]
    assert sum(b.positions for b in chosen.train) == rate4.index["positions"]["train"]


def test_num_chunks_is_an_error(rate1):
    with pytest.raises(Lc0DistillError, match="num_chunks"):
        select_sources(_config(rate1.out, num_chunks=10))


def test_another_sample_rate_is_a_warning_not_an_error(rate1, caplog):
    with caplog.at_level(logging.WARNING, logger="lc0distill.data"):
        chosen = select_sources(_config(rate1.out, sample_rate=32))
    assert chosen.train and any("sample rate 1" in r.getMessage() for r in caplog.records)
    # the positions are read as they were sampled: all of them, data.sample_rate notwithstanding
    loader = make_loader(_config(rate1.out, sample_rate=32), chosen.train, passes=1, origin_name=chosen.origin_name)
    assert len(_packed(loader)) == rate1.index["positions"]["train"]


def test_a_missing_path_beside_a_shard_folder_is_an_error(rate1, tmp_path):
    with pytest.raises(Lc0DistillError, match="no_such"):
        select_sources(_config(rate1.out, tmp_path / "no_such_folder"))


def test_chunk_paths_beside_a_shard_folder_are_split_as_data_test_ratio_says(rate1, other_chunk_files):
    chosen = select_sources(_config(*other_chunk_files, rate1.out))
    train_chunks = [s for s in chosen.train if not is_shard_block(s)]
    test_chunks = [s for s in chosen.test if not is_shard_block(s)]
    assert len(train_chunks) + len(test_chunks) == 10 and test_chunks


def test_chunk_paths_with_a_shard_folder_as_test_paths_all_train(rate1, other_chunk_files):
    chosen = select_sources(_config(*other_chunk_files, test_paths=[str(rate1.out)]))
    chunks = list(find_chunks([str(p) for p in other_chunk_files]))
    assert {s.name for s in chosen.train} == {s.name for s in chunks}  # as with chunk test_paths: no split
    assert all(is_shard_block(s) for s in chosen.test)
