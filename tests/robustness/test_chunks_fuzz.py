"""Seeded mutations of lc0's own chunks through `data inspect`, `data stats --json`, `data games`, the loader and
a short training run, next to good chunks in the same run.

Each corpus is a folder of bad files made from the real chunks of ../shared/lc0-data and
../shared/lc0-selfplay-maia1900: truncations, bit flips in the gzip stream and in the inflated records,
version fields rewritten, versions mixed, NaN / infinite / huge values in the float fields, more than 218
non-negative policy entries, a gzip bomb, empty files, FIFOs and /dev/zero named `.gz`, broken links, tar
archives truncated or corrupted and a truncated `.tar.gz`. What each case must give:

- unreadable: one error line naming it (and the record and field where there is one), nothing read from it;
- bad records: the file is read, its bad records are named (file, record, field) and left out;
- good (the members of a damaged archive before the damage): read;
- maybe (random flips): either read, or an error naming it;

and in every run the good files are read, stats stay strict JSON, the loader's batches stay finite.
"""

from __future__ import annotations

import random
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from lc0distill.chunks.config import DataConfig, make_loader, select_sources
from lc0distill.chunks.layouts import LAYOUTS
from lc0distill.chunks.packed import MAX_LEGAL_MOVES
from lc0distill.chunks.probe import probe_chunks
from lc0distill.chunks.reader import max_chunk_bytes, read_chunk
from lc0distill.chunks.sources import ChunkSource
from lc0distill.errors import ChunkError
from lc0distill.models.store import load_model
from tests.robustness.support import (
    ERROR, assert_clean_stderr, assert_user_error, flip_bits, gz, gzip_bomb, make_fifo, payload, read_policy,
    record_count, reported, run_cli, set_field, set_policy, strict_json, symlink, tar_bytes, time_limit,
    version_of,
)

FMT1 = "v6-fmt1-maia1900"
FOLDERS = ("v4-maia1100", "v5-maia1100", FMT1, "v6-fmt2-maia1100", "v6-fmt3-maia1100", "v6-fmt4-maia1100",
           "v6-fmt5-maia1100", "v6-fmt132-maia1100", "v6-fmt133-maia1100")
# The fields record validation checks (FORMATS.md §1.5), by the first version that stores them, and the values
# written into them. orig_q may be NaN (lc0 did not store it): there only infinities are bad whatever orig_d.
FLOAT_FIELDS = {"probabilities": 3, "result_q": 6, "result_d": 6, "root_q": 4, "root_d": 4, "best_q": 4, "best_d": 4,
                "played_q": 6, "played_d": 6, "orig_q": 6, "plies_left": 5}
BAD_VALUES = [np.nan, np.inf, -np.inf, 1e30, -1e30]
ORIG_BAD_VALUES = [np.inf, -np.inf]
MEMORY_LIMIT = 300 << 20


@dataclass
class Case:
    path: Path
    kind: str
    expect: str  # "unreadable", "bad_records", "good" or "maybe"
    field: str | None = None
    record: int | None = None

    @property
    def name(self) -> str:
        return str(self.path)


# ---------------------------------------------------------------------------------------------- the corpora


@pytest.fixture(scope="module")
def real_chunks(lc0_data, selfplay_dir) -> list[Path]:
    files = [f for folder in FOLDERS for f in sorted((lc0_data / folder).glob("game_*.gz"))[:2]]
    return files + sorted(selfplay_dir.glob("game_*.gz"))[:6]


@pytest.fixture(scope="module")
def good_chunks(lc0_data, selfplay_dir) -> list[Path]:
    """Untouched real chunks given in the same runs (read from ../shared, never copied)."""
    return [lc0_data / "v4-maia1100" / "game_000002.gz", lc0_data / "v5-maia1100" / "game_000002.gz",
            lc0_data / FMT1 / "game_000004.gz", selfplay_dir / "game_000002.gz"]


def _bad_value_case(raw: bytes, rng: random.Random) -> tuple[bytes, str, int]:
    """One record's validated float field set to NaN, an infinity or a huge value: (raw, field, record)."""
    version = version_of(raw)
    field = rng.choice([f for f, since in FLOAT_FIELDS.items() if version >= since and f in LAYOUTS[version].names])
    record = rng.randrange(record_count(raw))
    value = rng.choice(ORIG_BAD_VALUES if field == "orig_q" else BAD_VALUES)
    index = int(np.argmax(read_policy(raw, record))) if field == "probabilities" else 0  # its most visited move
    return set_field(raw, record, field, value, index), field, record


def _too_many_moves(raw: bytes, rng: random.Random) -> tuple[bytes, int]:
    """One record whose policy has more non-negative entries than any chess position has legal moves."""
    record = rng.randrange(record_count(raw))
    count = rng.choice([MAX_LEGAL_MOVES + 1, 300, 1858])
    policy = np.full(1858, -1.0, np.float32)
    policy[:count] = 1.0 / count
    return set_policy(raw, record, policy), record


def _other_version(raw: bytes, rng: random.Random) -> tuple[bytes, int]:
    record = rng.randrange(record_count(raw))
    value = rng.choice([v for v in (0, 1, 2, 3, 4, 5, 6, 7, 8, 255, 2**32 - 1) if v != version_of(raw)])
    return set_field(raw, record, "version", value), record


def build_corpus(folder: Path, sources: list[Path], seed: int, random_flips: bool = True) -> list[Case]:
    """About 35 bad files in `folder`, made from `sources` with a seeded generator."""
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    cases: list[Case] = []
    counter = iter(range(10_000))

    def new(kind: str, data: bytes, expect: str, field: str | None = None, record: int | None = None,
            name: str | None = None) -> None:
        path = folder / (name or f"game_{next(counter):03d}_{kind}.gz")
        path.write_bytes(data)
        cases.append(Case(path, kind, expect, field, record))

    def pick() -> Path:
        return rng.choice(sources)

    for _ in range(4):
        data = pick().read_bytes()
        new("truncated", data[: rng.randrange(len(data))], "unreadable")
    if random_flips:
        for _ in range(3):
            data = pick().read_bytes()
            new("gzip_flips", flip_bits(data, rng, rng.randint(1, 4), start=10), "maybe")
        for _ in range(4):
            new("record_flips", gz(flip_bits(payload(pick()), rng, rng.randint(1, 30))), "maybe")
    for _ in range(8):
        raw, field, record = _bad_value_case(payload(pick()), rng)
        new("bad_value", gz(raw), "bad_records", field, record)
    for _ in range(2):
        raw, record = _too_many_moves(payload(rng.choice([s for s in sources if "v4" not in str(s)])), rng)
        new("over_218_moves", gz(raw), "bad_records", "probabilities", record)
    for _ in range(2):
        raw, record = _other_version(payload(pick()), rng)
        new("version_field", gz(raw), "unreadable", "version")
    older = [s for s in sources if version_of(payload(s)) in (4, 5)]
    if older:
        v6 = payload(rng.choice([s for s in sources if version_of(payload(s)) == 6]))
        new("mixed_versions", gz(v6 + payload(rng.choice(older))), "unreadable", "version")
    new("zero_length", b"", "unreadable")
    new("empty_gzip", gz(b""), "unreadable")
    new("bomb", gzip_bomb(max_chunk_bytes() + (64 << 20), (6).to_bytes(4, "little")), "unreadable")
    raw = payload(pick())
    new("raw_partial_record", raw[: len(raw) - rng.randrange(1, 100)], "unreadable", name="training.17")
    make_fifo(folder / "game_fifo.gz")
    cases.append(Case(folder / "game_fifo.gz", "fifo", "unreadable"))
    cases.append(Case(symlink(folder / "game_zero.gz", "/dev/zero"), "dev_zero", "unreadable"))
    cases.append(Case(symlink(folder / "game_gone.gz", folder / "deleted.gz"), "broken_link", "unreadable"))
    cases += _archives(folder, sources, rng)
    return cases


def _archives(folder: Path, sources: list[Path], rng: random.Random) -> list[Case]:
    """A .tar cut inside its third member, a .tar with a member's header scribbled over, a truncated .tar.gz:
    the members before the damage are read, the damage is named."""
    members = {f"training.{i}.gz": source.read_bytes() for i, source in enumerate(rng.sample(sources, 3), start=1)}
    plain = tar_bytes(members)
    cases = []
    cut = folder / "cut.tar"
    third = plain.index(members["training.3.gz"][:64])
    cut.write_bytes(plain[: third + len(members["training.3.gz"]) // 2])
    cases += [Case(Path(f"{cut}:training.1.gz"), "tar_member", "good"),
              Case(Path(f"{cut}:training.2.gz"), "tar_member", "good"),
              Case(Path(f"{cut}:training.3.gz"), "tar_cut_member", "unreadable")]
    header = folder / "header.tar"
    second = plain.index(members["training.2.gz"][:64]) - 512
    scribbled = bytearray(plain)
    scribbled[second + 100 : second + 160] = bytes(rng.randrange(256) for _ in range(60))  # mode, ids, size, mtime
    header.write_bytes(bytes(scribbled))
    cases += [Case(Path(f"{header}:training.1.gz"), "tar_member", "good"), Case(header, "tar_header", "unreadable")]
    compressed = folder / "cut.tar.gz"
    data = tar_bytes(members, "w:gz")
    compressed.write_bytes(data[: len(data) * 2 // 3])
    cases.append(Case(compressed, "tar_gz_cut", "unreadable"))
    return cases


@pytest.fixture(scope="module", params=[11, 23], ids=lambda seed: f"seed{seed}")
def corpus(request, tmp_path_factory, real_chunks) -> list[Case]:
    return build_corpus(tmp_path_factory.mktemp("corpus") / "data", real_chunks, request.param)


def _folder(cases: list[Case]) -> Path:
    return next(c.path.parent for c in cases if c.kind == "zero_length")


def _good_records(good_chunks: list[Path]) -> int:
    return sum(len(read_chunk(str(path)).records) for path in good_chunks)


# ---------------------------------------------------------------------------------------------- the CLI


def test_inspect_names_every_bad_file_and_reads_the_good_ones(capsys, corpus, good_chunks):
    run = run_cli(capsys, ["data", "inspect", _folder(corpus), *good_chunks])
    assert run.code == 2
    assert_clean_stderr(run, names=[_folder(corpus)])  # every error line names a file of the corpus
    for good in good_chunks:
        assert f"{good}: V" in run.out, good
    for case in corpus:
        read, named = f"{case.name}: V" in run.out, reported(run, case.name)
        if case.expect == "unreadable":
            assert named and not read, (case, named)
            assert all(line.startswith(ERROR) for line in named)
            if case.field:
                assert f"field {case.field}" in named[0], (case, named)
        elif case.expect == "bad_records":
            assert read, case
            expected = f"{case.name}: record {case.record}: field {case.field}: "
            assert any(line.startswith(ERROR + expected) for line in named), (case, named)
        elif case.expect == "good":
            assert read and not named, (case, named)
        else:
            assert read or named, case


def test_stats_json_is_strict_and_counts_the_good_files(capsys, corpus, good_chunks):
    run = run_cli(capsys, ["data", "stats", "--json", _folder(corpus), *good_chunks])
    assert run.code == 2
    assert_clean_stderr(run, names=[_folder(corpus)])
    report = strict_json(run.out)  # no NaN, no Infinity: one bad record must not spoil the report
    bad_paths = {bad["path"] for bad in report["bad_files"]}
    for case in corpus:
        if case.expect == "unreadable":
            assert case.name in bad_paths or any(path.startswith(case.name) for path in bad_paths), case
        if case.expect in ("bad_records", "good"):
            assert case.name not in bad_paths, case
    assert report["bad_records"] >= sum(c.expect == "bad_records" for c in corpus)
    assert report["positions"] >= _good_records(good_chunks) + report["bad_records"]
    assert report["versions"].keys() >= {"4", "5", "6"}
    for key in ("mean_abs_q_minus_z", "policy_entropy", "mean_plies_per_game", "share_with_orig_q", "mean_visits"):
        assert report[key] is not None and np.isfinite(report[key]), key
    for line in run.error_lines():
        assert line.startswith(ERROR)


def test_games_of_the_good_files_are_rebuilt(capsys, corpus, good_chunks):
    run = run_cli(capsys, ["data", "games", "--json", _folder(corpus), *good_chunks])
    assert run.code == 2
    assert_clean_stderr(run, names=[_folder(corpus)])
    games = strict_json(run.out)
    paths = {game["path"] for game in games}
    assert {str(g) for g in good_chunks} <= paths
    for case in corpus:
        if case.expect == "unreadable":
            assert case.name not in paths and reported(run, case.name), case
        if case.expect == "bad_records":  # the moves are in the planes: its game is still there
            assert case.name in paths, case


def test_loader_skips_and_counts_what_is_bad_and_yields_finite_batches(corpus, good_chunks):
    config = DataConfig(paths=[str(_folder(corpus)), *map(str, good_chunks)], workers=0, batch_size=64,
                        sample_rate=1, shuffle_buffer=256, test_ratio=0.0)
    selected = select_sources(config)
    loader = make_loader(config, selected.train, passes=1, needs_q=True)
    seen = set()
    with time_limit(60, "the loader"):
        for batch in loader:
            for name in ("z", "q", "moves_left"):  # (planes are bits: always finite)
                assert torch.isfinite(getattr(batch, name)).all(), name
            assert torch.isfinite(batch.policy.sum()), "policy"  # one NaN or infinity makes the sum so
            seen |= {loader.source_name(int(i)) for i in batch.chunk_index.unique()}
    assert {str(g) for g in good_chunks} <= seen
    skipped = selected.unreadable + loader.bad_chunks
    for case in corpus:
        if case.expect == "unreadable":
            assert case.name not in seen and any(case.name in problem for problem in skipped), case
        if case.expect == "good":
            assert case.name in seen, case
    assert loader.bad_records >= sum(c.expect == "bad_records" for c in corpus)
    assert len(loader.bad_record_examples) == 3 and all("field" in e for e in loader.bad_record_examples)


def test_strict_loader_raises_a_chunk_error_naming_the_file(corpus):
    bad = next(c for c in corpus if c.expect == "bad_records")
    config = DataConfig(paths=[bad.name], workers=0, batch_size=64, sample_rate=1, shuffle_buffer=0,
                        test_ratio=0.0, strict=True)
    with pytest.raises(ChunkError) as raised:
        for _ in make_loader(config, select_sources(config).train, passes=1):
            pass
    assert str(raised.value).startswith(f"{bad.name}: record ")


# ---------------------------------------------------------------------------------------------- training


TINY = ["data.workers=0", "net.size=8x1", "train.steps=3", "data.sample_rate=1", "data.batch_size=32",
        "data.shuffle_buffer=128", "train.eval_positions=64", "export.lc0=false", "train.log_every=1"]


def _finite_net(path: Path) -> bool:
    return all(torch.isfinite(t).all() for t in load_model(path).state_dict().values() if t.is_floating_point())


def test_training_next_to_bad_chunks_finishes_with_finite_weights(tmp_path, capsys, lc0_data, selfplay_dir):
    sources = sorted((lc0_data / FMT1).glob("game_*.gz"))[:6] + sorted(selfplay_dir.glob("game_*.gz"))[:4]
    cases = build_corpus(tmp_path / "bad", sources, seed=5, random_flips=False)  # all input format 1
    run_dir = tmp_path / "run"
    run = run_cli(capsys, ["train", f"data.paths=[{tmp_path / 'bad'},{lc0_data / FMT1}]", *TINY,
                           f"train.run_dir={run_dir}", "data.test_ratio=0.2"])
    assert run.code == 0, run.err[-3000:]
    assert_clean_stderr(run)
    assert "Traceback" not in run.out
    for case in cases:
        if case.kind in ("fifo", "dev_zero", "broken_link", "tar_gz_cut", "tar_header"):  # unreadable when listed
            assert f"warning: skipped: {case.name}" in run.out, case
    assert _finite_net(run_dir / "final.pt")


def test_training_on_nothing_but_bad_chunks_stops_with_an_error(tmp_path, capsys, lc0_data):
    sources = sorted((lc0_data / FMT1).glob("game_*.gz"))[:4]
    folder = tmp_path / "bad"
    folder.mkdir()
    for i, source in enumerate(sources):
        data = source.read_bytes()
        (folder / f"game_{i}.gz").write_bytes(data[: len(data) // 2])
    run = run_cli(capsys, ["train", f"data.paths=[{folder}]", *TINY, f"train.run_dir={tmp_path / 'run'}",
                           "data.test_ratio=0"], timeout=60)
    assert_user_error(run, str(folder), "chunks", "can be read")


def test_training_on_chunks_whose_records_are_all_bad_stops_with_an_error(tmp_path, capsys, lc0_data):
    folder = tmp_path / "nan"
    folder.mkdir()
    for i, source in enumerate(sorted((lc0_data / FMT1).glob("game_*.gz"))[:3]):
        raw = payload(source)
        for record in range(record_count(raw)):
            raw = set_field(raw, record, "best_q", np.nan)
        (folder / f"game_{i}.gz").write_bytes(gz(raw))
    run = run_cli(capsys, ["train", f"data.paths=[{folder}]", *TINY, f"train.run_dir={tmp_path / 'run'}",
                           "data.test_ratio=0", "loss.q_ratio=0.5"], timeout=60)
    assert_user_error(run, "training data", "usable position")


# ---------------------------------------------------------------------------------------------- bounds


def _peak_while(call) -> int:
    """Peak bytes Python and numpy allocate during `call()` (tracemalloc sees both)."""
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, Path]:
    """3 GiB of 'V6 records' in 3 MB, loose and as a member of a .tar; a sparse 1 GiB raw 'chunk'."""
    folder = tmp_path_factory.mktemp("bombs")
    bomb = gzip_bomb(3 << 30, (6).to_bytes(4, "little") + (1).to_bytes(4, "little"))
    assert len(bomb) < 4 << 20
    (folder / "game_bomb.gz").write_bytes(bomb)
    (folder / "bomb.tar").write_bytes(tar_bytes({"training.1.gz": bomb}))
    with open(folder / "training.9", "wb") as handle:  # sparse: takes no disk
        handle.truncate(1 << 30)
    return {"gz": folder / "game_bomb.gz", "tar": folder / "bomb.tar", "raw": folder / "training.9"}


@pytest.mark.parametrize("command", [["data", "inspect"], ["data", "stats", "--json"], ["data", "games"]])
def test_gzip_bombs_and_huge_files_are_refused_within_bounded_memory(capsys, bombs, command):
    runs = []
    peak = _peak_while(lambda: runs.append(run_cli(capsys, [*command, *bombs.values()], timeout=60)))
    run = runs[0]
    assert run.code == 2
    assert_clean_stderr(run)
    assert peak < MEMORY_LIMIT, f"{peak / 2**20:.0f} MiB"
    problems = [f"{bad['path']}: {bad['error']}" for bad in strict_json(run.out)["bad_files"]] \
        if command[1] == "stats" else run.error_lines()
    for path in bombs.values():
        assert any(str(path) in line and "more than" in line for line in problems), (path, problems)


def test_the_loader_and_the_probe_refuse_bombs_within_bounded_memory(bombs, lc0_data):
    good = str(lc0_data / FMT1 / "game_000000.gz")
    config = DataConfig(paths=[*map(str, bombs.values()), good], workers=0, batch_size=32, sample_rate=1,
                        shuffle_buffer=0, test_ratio=0.0)
    loader = make_loader(config, select_sources(config).train, passes=1)
    positions = []
    peak = _peak_while(lambda: positions.extend(len(b) for b in loader))
    assert peak < MEMORY_LIMIT, f"{peak / 2**20:.0f} MiB"
    assert sum(positions) == len(read_chunk(good).records)
    assert len(loader.bad_chunks) == 3
    # The header probe made before a run reads 8 bytes of each sampled chunk, never a whole huge file.
    peak = _peak_while(lambda: probe_chunks([ChunkSource(str(p)) for p in bombs.values()]))
    assert peak < 64 << 20, f"{peak / 2**20:.0f} MiB"


def test_fifos_devices_and_list_files_never_hang(tmp_path, capsys, lc0_data):
    good = lc0_data / FMT1 / "game_000000.gz"
    odd = [make_fifo(tmp_path / "game_fifo.gz"), make_fifo(tmp_path / "fifo.tar"), make_fifo(tmp_path / "training.3"),
           symlink(tmp_path / "zero.gz", "/dev/zero"), symlink(tmp_path / "zero.tar", "/dev/zero"),
           symlink(tmp_path / "game_null.gz", "/dev/null")]
    listing = make_fifo(tmp_path / "list.txt")
    for command in (["data", "inspect"], ["data", "stats"], ["data", "games"]):
        run = run_cli(capsys, [*command, *odd, f"@{listing}", good], timeout=20)
        assert run.code == 2
        assert_clean_stderr(run)
        for path in [*odd, listing]:
            assert reported(run, path), (command, path)
        if command[1] != "stats":
            assert str(good) in run.out
    config = DataConfig(paths=[str(tmp_path), str(good)], workers=0, batch_size=32, sample_rate=1, shuffle_buffer=0,
                        test_ratio=0.0)
    with time_limit(20, "the loader on FIFOs"):
        selected = select_sources(config)
        assert sum(len(b) for b in make_loader(config, selected.train, passes=1)) == len(read_chunk(str(good)).records)
    assert len(selected.unreadable) == 6
