"""The streaming loader: every record once, determinism, sharding, bad chunks, the Batch contract."""

import logging
import os

import numpy as np
import pytest
import torch

from lc0distill.chess.expand import Rule50Scale, expand_records
from lc0distill.chunks.batch import expand_planes_torch, make_batch, _to_tensors
from lc0distill.chunks.config import DataConfig, make_loader, select_sources
from lc0distill.chunks.dataset import BatchLoader, ShuffleBuffer, StreamSpec, shard_order
from lc0distill.chunks.packed import POSITION_DTYPE, dense_policy, pack_records
from lc0distill.chunks.reader import read_chunk
from lc0distill.chunks.selection import ChunkOrder, newest_chunks, split_train_test
from lc0distill.chunks.sources import find_chunks
from lc0distill.chunks.targets import policy_target, search_wdl, z_wdl
from lc0distill.errors import ChunkError, Lc0DistillError


@pytest.fixture(scope="module")
def sources(lc0_data):
    return tuple(find_chunks([lc0_data]))


@pytest.fixture(scope="module")
def all_records(sources):
    return np.concatenate([read_chunk(s).records for s in sources])


PROVENANCE = ("chunk", "record")


def _multiset(packed: np.ndarray) -> list[bytes]:
    """The positions' contents, whatever their order (provenance left out: see _assert_provenance)."""
    content = packed.copy()
    for name in PROVENANCE:
        content[name] = 0
    return sorted(p.tobytes() for p in content)


def _assert_provenance(packed: np.ndarray, sources) -> None:
    """Every position names the chunk and record it came from: each (chunk, record) once, and the planes
    stored there are the record's."""
    pairs = set(zip(packed["chunk"].tolist(), packed["record"].tolist()))
    assert len(pairs) == len(packed)
    expected = {(i, r) for i, source in enumerate(sources) for r in range(len(read_chunk(source).records))}
    assert pairs == expected
    for position in packed[:: max(len(packed) // 50, 1)]:
        record = read_chunk(sources[int(position["chunk"])]).records[int(position["record"])]
        assert np.array_equal(position["planes"], record["planes"])


def _stream(spec: StreamSpec, workers: int) -> list[np.ndarray]:
    return list(BatchLoader(spec, workers=workers).packed_batches())


def test_packed_position_size_is_documented():
    assert POSITION_DTYPE.itemsize == 2232


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_every_record_exactly_once(sources, all_records, workers):
    spec = StreamSpec(sources, batch_size=300, sample_rate=1, shuffle_buffer=2000, passes=1, seed=3)
    batches = _stream(spec, workers)
    assert sum(len(b) < 300 for b in batches) <= workers  # each worker's last batch may be short
    assert _multiset(np.concatenate(batches)) == _multiset(pack_records(all_records))
    _assert_provenance(np.concatenate(batches), sources)


def test_two_ranks_split_the_chunks(sources, all_records):
    streams = [np.concatenate(_stream(StreamSpec(sources, batch_size=256, sample_rate=1, shuffle_buffer=500,
                                                 passes=1, rank=rank, world_size=2), workers=1))
               for rank in (0, 1)]
    assert _multiset(np.concatenate(streams)) == _multiset(pack_records(all_records))
    # No chunk is read by two shards (ranks x workers), in every pass.
    spec = StreamSpec(sources, batch_size=1, world_size=2)
    for pass_index in range(3):
        shards = [shard_order(spec, pass_index, shard, 4) for shard in range(4)]
        names = [sources[i].name for shard in shards for i in shard]
        assert sorted(names) == sorted(s.name for s in sources)


def test_same_seed_same_batches_other_seed_other_order(sources):
    def run(seed):
        spec = StreamSpec(sources, batch_size=128, sample_rate=4, shuffle_buffer=1000, passes=1, seed=seed)
        return [b.tobytes() for b in _stream(spec, workers=2)]

    first, again, other = run(7), run(7), run(8)
    assert first == again
    assert first != other


def test_sampling_keeps_about_one_in_n(sources, all_records):
    spec = StreamSpec(sources, batch_size=64, sample_rate=8, shuffle_buffer=100, passes=4)
    kept = sum(len(b) for b in _stream(spec, workers=0))
    expected = 4 * len(all_records) / 8
    assert abs(kept - expected) < 4 * np.sqrt(expected)


def test_shuffle_buffer_mixes_games(sources):
    spec = StreamSpec(sources, batch_size=64, sample_rate=1, shuffle_buffer=1000, passes=1)
    first = next(iter(_stream(spec, workers=0)))
    plies = first["plies_left"]
    assert len(set(plies.tolist())) > 32  # positions from many games and moments, not one game in order


def test_shuffle_buffer_replaces_and_drains():
    rng = np.random.default_rng(0)
    buffer = ShuffleBuffer(10, rng)
    items = np.zeros(25, POSITION_DTYPE)
    items["visits"] = np.arange(25)
    emitted = buffer.push(items)
    assert len(emitted) == 15 and buffer.size == 10
    rest = buffer.drain()
    assert sorted(np.concatenate([emitted, rest])["visits"].tolist()) == list(range(25))


def test_infinite_stream_keeps_going(sources):
    spec = StreamSpec(sources, batch_size=512, sample_rate=1, shuffle_buffer=100, passes=None)
    seen = 0
    for batch in BatchLoader(spec, workers=0).packed_batches():
        seen += len(batch)
        if seen > 3 * 3946:
            break
    assert seen > 3 * 3946


def test_batch_contract(sources, all_records):
    packed = pack_records(all_records[:300])
    batch = make_batch(packed, "cpu")
    assert batch.planes.shape == (300, 112, 8, 8) and batch.planes.dtype == torch.float32
    assert torch.equal(batch.planes, torch.from_numpy(expand_records(all_records[:300])))
    policy, legal = policy_target(all_records[:300])
    assert torch.equal(batch.policy, torch.from_numpy(policy)) and torch.equal(batch.legal, torch.from_numpy(legal))
    assert torch.allclose(batch.z, torch.from_numpy(z_wdl(all_records[:300])))
    assert torch.allclose(batch.q, torch.from_numpy(search_wdl(all_records[:300])))
    assert torch.equal(batch.played_idx, torch.from_numpy(all_records["played_idx"][:300].astype(np.int64)))
    assert batch.moves_left.shape == (300,)


@pytest.mark.parametrize("rule50", list(Rule50Scale))
def test_device_expansion_equals_numpy_expansion(all_records, rule50):
    """The torch path (used on GPUs) computes the same planes as numpy, over every input format."""
    packed = pack_records(all_records)
    on_device = expand_planes_torch(_to_tensors(packed, torch.device("cpu")), rule50)
    assert torch.equal(on_device, torch.from_numpy(expand_records(all_records, rule50)))


def test_dense_policy_roundtrip(all_records):
    policy, legal = dense_policy(pack_records(all_records))
    reference_policy, reference_legal = policy_target(all_records)
    assert np.array_equal(policy, reference_policy) and np.array_equal(legal, reference_legal)


def test_v3_policy_without_illegal_marks_is_all_legal(all_records):
    records = all_records[:5].copy()
    probs = records["probabilities"]
    probs[probs < 0] = 0.0  # V3's marker
    records["probabilities"] = probs
    policy, legal = dense_policy(pack_records(records))
    assert legal.all() and np.allclose(policy, records["probabilities"])


def _corrupt(tmp_path, lc0_data):
    good = sorted((lc0_data / "v6-fmt1-maia1900").glob("*.gz"))[:6]
    for path in good:
        os.symlink(path, tmp_path / path.name)
    bad = tmp_path / "game_999999.gz"
    bad.write_bytes(good[0].read_bytes()[:3000])
    return tuple(find_chunks([tmp_path])), good, bad


def test_corrupt_chunk_is_skipped_named_and_counted(tmp_path, lc0_data, caplog):
    sources, good, bad = _corrupt(tmp_path, lc0_data)
    loader = BatchLoader(StreamSpec(sources, batch_size=100, sample_rate=1, shuffle_buffer=50, passes=1), workers=0)
    with caplog.at_level(logging.WARNING, logger="lc0distill.data"):
        total = sum(len(b) for b in loader.packed_batches())
    assert total == sum(len(read_chunk(str(p)).records) for p in good)
    assert len(loader.bad_chunks) == 1 and str(bad) in loader.bad_chunks[0]
    assert str(bad) in caplog.text


def test_corrupt_chunk_with_workers_is_reported(tmp_path, lc0_data):
    sources, good, bad = _corrupt(tmp_path, lc0_data)
    loader = BatchLoader(StreamSpec(sources, batch_size=100, sample_rate=1, shuffle_buffer=50, passes=1), workers=2)
    total = sum(len(b) for b in loader.packed_batches())
    assert total == sum(len(read_chunk(str(p)).records) for p in good)
    assert len(loader.bad_chunks) == 1 and str(bad) in loader.bad_chunks[0]


def test_strict_mode_raises(tmp_path, lc0_data):
    sources, _, bad = _corrupt(tmp_path, lc0_data)
    loader = BatchLoader(StreamSpec(sources, batch_size=100, sample_rate=1, passes=1, strict=True), workers=0)
    with pytest.raises(ChunkError, match="game_999999"):
        list(loader.packed_batches())


def test_strict_mode_with_workers_says_the_same_one_line(tmp_path, lc0_data):
    sources, _, bad = _corrupt(tmp_path, lc0_data)
    spec = StreamSpec(sources, batch_size=100, sample_rate=1, passes=1, strict=True)
    with pytest.raises(ChunkError) as in_process:
        list(BatchLoader(spec, workers=0).packed_batches())
    with pytest.raises(Lc0DistillError) as from_worker:
        list(BatchLoader(spec, workers=2).packed_batches())
    # the worker's error is carried as it was made, not parsed back out of a traceback's text
    assert str(from_worker.value) == str(in_process.value) and "\n" not in str(from_worker.value)


def test_newest_chunks_and_split(lc0_data, tmp_path):
    sources = list(find_chunks([lc0_data]))
    by_number = newest_chunks(sources, 5, ChunkOrder.NUMBER)
    assert len(by_number) == 5 and all(s.name.endswith(("38.gz", "36.gz", "34.gz", "32.gz", "30.gz")) for s in by_number)
    for i, source in enumerate(sources[:4]):
        os.utime(source.path, (1_000_000 + i, 1_000_000 + i))
    assert newest_chunks(sources, None, ChunkOrder.MTIME)[0].name == sources[0].name
    train, test = split_train_test(sources, 0.3)
    assert sorted(s.name for s in train + test) == sorted(s.name for s in sources)
    assert 3 <= len(test) <= 25
    assert split_train_test(sources[::-1], 0.3)[1] == sorted(test, key=lambda s: [x.name for x in sources[::-1]].index(s.name))


def test_data_config_rejects_unknown_keys_and_builds_loaders(lc0_data):
    with pytest.raises(Exception, match="shuffle_bufer"):
        DataConfig(paths=[str(lc0_data)], shuffle_bufer=10)
    config = DataConfig(paths=[str(lc0_data)], batch_size=200, workers=0, test_ratio=0.2, shuffle_buffer=300)
    train, test = select_sources(config)
    assert len(train) + len(test) == 46 and test
    batch = next(iter(make_loader(config, train, passes=1, sample_rate=1)))
    assert len(batch) == 200


def _bits(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor's bytes (NaN equal to the same NaN: a bit-for-bit comparison)."""
    return tensor.contiguous().view(torch.uint8) if tensor.dtype != torch.bool else tensor


def test_the_device_path_equals_the_cpu_path_bit_for_bit(all_records):
    """The GPU path (the packed bytes in one copy, every field a view of them, planes and policy expanded by
    torch) builds the same batch as the CPU path (numpy), field for field and bit for bit, over every input
    format, V3 rows that mark no illegal move, and a NaN target; the host's legal-move index agrees with the mask."""
    from dataclasses import fields

    from lc0distill.chunks.batch import fields_of_bytes, packed_bytes

    records = all_records[:700].copy()
    records["probabilities"][:5][records["probabilities"][:5] < 0] = 0.0  # V3's marker: every move counts as legal
    records["best_q"][7] = np.nan
    packed = pack_records(records)
    raw = packed_bytes(packed, torch.device("cpu"))
    viewed, copied = fields_of_bytes(raw), _to_tensors(packed, torch.device("cpu"))
    for name in copied:
        assert viewed[name].dtype == copied[name].dtype and torch.equal(_bits(viewed[name]), _bits(copied[name])), name
    for rule50 in Rule50Scale:
        on_device = make_batch(packed, "cpu", rule50=rule50, expand_on_device=True)
        on_host = make_batch(packed, "cpu", rule50=rule50, expand_on_device=False)
        for field in fields(on_host):
            a, b = getattr(on_device, field.name), getattr(on_host, field.name)
            assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(_bits(a), _bits(b)), field.name
    assert bool(on_host.legal[:5].all()) and not bool(on_host.legal[5:].all())
    assert torch.equal(on_host.legal_flat, torch.nonzero(on_host.legal.reshape(-1)).flatten())
    assert torch.equal(on_host.legal_count, on_host.legal.sum(dim=1))
