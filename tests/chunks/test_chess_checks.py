"""Records that are not a chess position are bad records (issue 26): real lc0 records, each corrupted in one way by
hand, are named with their record and field; every record lc0 wrote (all nine folders of ../shared/lc0-data and
the maia self-play games) passes. Through the commands: `data inspect`/`stats`/`games` name them (exit 2), the
loader skips and counts them, strict mode stops on the first; the good chunk beside a bad one is still read."""

from __future__ import annotations

import glob
import json

import numpy as np
import pytest

from lc0distill.chunks.reader import read_chunk
from lc0distill.chunks.validate import find_bad_records
from lc0distill.chunks.writer import write_chunk
from tests.conftest import LC0_DATA
from tests.robustness.support import assert_user_error, run_cli

RANK_8 = 56  # bits 56..63: rank 8 (FORMATS.md §1.2)


def _records(folder: str) -> np.ndarray:
    return read_chunk(sorted(glob.glob(str(LC0_DATA / folder / "*.gz")))[0]).records.copy()


@pytest.fixture(scope="module")
def fmt1(lc0_data) -> np.ndarray:
    return _records("v6-fmt1-maia1900")


@pytest.fixture(scope="module")
def fmt3(lc0_data) -> np.ndarray:
    return _records("v6-fmt3-maia1100")


def _empty_squares(record: np.void, slot: int = 0) -> list[int]:
    union = 0
    for plane in range(12):
        union |= int(record["planes"][13 * slot + plane])
    return [square for square in range(64) if not union >> square & 1]


def _only_bad(records: np.ndarray, index: int) -> tuple[str, str]:
    bad = find_bad_records(records)
    assert bad.indices.tolist() == [index], bad.describe("chunk", 10)
    return bad.fields[0], bad.reasons[0]


def test_every_record_lc0_wrote_is_a_chess_position(lc0_data, selfplay_dir):
    paths = glob.glob(str(lc0_data / "**" / "*.gz"), recursive=True) + glob.glob(str(selfplay_dir / "*.gz"))
    assert len(paths) > 300
    for path in paths:
        assert len(find_bad_records(read_chunk(path).records)) == 0, path


def test_a_piece_on_a_square_another_holds(fmt1):
    records = fmt1.copy()
    records["planes"][3, 1] |= records["planes"][3, 5]  # a knight of ours on our king's square
    assert _only_bad(records, 3) == ("planes", "two pieces on one square")


@pytest.mark.parametrize("case", ["no_king", "eight_kings", "their_king_missing_in_history"])
def test_not_one_king_a_side(fmt1, case):
    records = fmt1.copy()
    index = 10
    if case == "no_king":
        records["planes"][index, 11] = 0
    elif case == "eight_kings":
        for square in _empty_squares(records[index])[:7]:
            records["planes"][index, 5] |= np.uint64(1 << square)
    else:  # slot 1 (the position before) keeps our king and loses theirs
        assert records["planes"][index, 13 + 5] and records["planes"][index, 13 + 11]
        records["planes"][index, 13 + 11] = 0
    assert _only_bad(records, index) == ("planes", "not one king a side")


def test_an_empty_history_slot_before_the_game_start_is_fine(fmt1):
    records = fmt1.copy()
    records["planes"][4, 13 * 7: 13 * 8] = 0  # the oldest slot empty, as before a game's first move
    assert len(find_bad_records(records)) == 0


def test_a_pawn_on_the_last_rank(fmt1):
    records = fmt1.copy()
    square = next(s for s in _empty_squares(records[6]) if s >= RANK_8)
    records["planes"][6, 6] |= np.uint64(1 << square)  # one of their pawns on rank 8
    assert _only_bad(records, 6) == ("planes", "a pawn on the first or last rank")


def test_random_bitboards_are_all_bad(fmt1):
    records = fmt1.copy()
    rng = np.random.default_rng(0)
    records["planes"] = rng.integers(0, 2**63, size=records["planes"].shape, dtype=np.uint64)
    bad = find_bad_records(records)
    assert len(bad) == len(records) and set(bad.fields) == {"planes"}


@pytest.mark.parametrize(("field", "value", "fit"), [
    ("castling_us_oo", 0xFF, False), ("castling_them_ooo", 2, False), ("castling_us_oo", 1, True),
    ("side_to_move_or_enpassant", 0xFF, False), ("side_to_move_or_enpassant", 1, True),
    ("invariance_info", 0xFF, False), ("invariance_info", 0x80, False), ("invariance_info", 0x38, True),
    ("rule50_count", 255, False), ("rule50_count", 151, False), ("rule50_count", 150, True),
])
def test_scalar_bytes_in_format_1(fmt1, field, value, fit):
    records = fmt1.copy()
    records[field][8] = value
    if fit:
        assert len(find_bad_records(records)) == 0
    else:
        name, _ = _only_bad(records, 8)
        assert name == ("castling" if field.startswith("castling") else field)


@pytest.mark.parametrize(("field", "value", "fit"), [
    ("castling_us_oo", 0x80, True), ("castling_us_oo", 0x81, False), ("castling_them_ooo", 0xFF, False),
    ("side_to_move_or_enpassant", 0x20, True), ("side_to_move_or_enpassant", 0x21, False),
    ("invariance_info", 0xFF, True),  # every transform and flag is a canonical record's to set
])
def test_scalar_bytes_in_a_canonical_format(fmt3, field, value, fit):
    records = fmt3.copy()
    records[field][2] = value
    assert (len(find_bad_records(records)) == 0) == fit


def test_a_chunk_mixing_input_formats(fmt1):
    records = fmt1.copy()
    records["input_format"][5] = 2
    assert _only_bad(records, 5) == ("input_format", "not the chunk's input format (1, its first record's)")


# ---------------------------------------------------------------------------------------------- the commands


@pytest.fixture()
def folder(tmp_path, fmt1, lc0_data):
    """A good lc0 chunk and one whose records 2 and 5 are not chess (no king; castling 0xff)."""
    data = tmp_path / "data"
    data.mkdir()
    good = sorted(glob.glob(str(LC0_DATA / "v6-fmt1-maia1900" / "*.gz")))[1]
    (data / "good.gz").write_bytes(open(good, "rb").read())
    records = fmt1.copy()
    records["planes"][2, 5] = 0
    records["castling_us_oo"][5] = 0xFF
    write_chunk(data / "bad.gz", records)
    return data


def test_inspect_and_stats_name_the_records_and_count_them(folder, capsys, fmt1):
    run = run_cli(capsys, ["data", "inspect", folder, "--json"])
    assert run.code == 2
    lines = [line for line in run.error_lines() if "bad.gz" in line]
    assert "record 2: field planes: not one king a side" in lines[0] and "record 5: field castling" in lines[1]
    assert len(json.loads(run.out)["files"]) == 2
    run = run_cli(capsys, ["data", "stats", folder, "--json"])
    stats = json.loads(run.out)
    assert run.code == 2 and stats["bad_records"] == 2
    assert stats["positions"] == len(fmt1) + len(read_chunk(str(folder / "good.gz")).records)  # read, 2 left out of the sums


def test_games_skips_a_chunk_of_bad_records_naming_them_and_rebuilds_the_good_one(folder, capsys):
    run = run_cli(capsys, ["data", "games", folder, "--json"])
    assert run.code == 2
    games = json.loads(run.out)
    assert [g["path"].rsplit("/", 1)[-1] for g in games] == ["good.gz"]
    assert any("bad.gz: record 2: field planes" in line for line in run.error_lines())


def test_training_skips_and_counts_them_and_strict_mode_stops(folder, capsys, tmp_path):
    base = ["train", f"data.paths=[{folder}]", "data.workers=0", "net.size=8x1", "data.sample_rate=1",
            "data.batch_size=16", "data.shuffle_buffer=64", "train.eval_positions=64", "export.lc0=false",
            "train.steps=12", "train.log_every=4", "data.test_ratio=0"]
    run = run_cli(capsys, [*base, f"train.run_dir={tmp_path / 'run'}", f"data.test_paths=[{folder / 'good.gz'}]"])
    assert run.code == 0, run.err
    said = run.out + run.err
    assert "2 bad records skipped" in said and "bad.gz: record 2: field planes: not one king a side" in said
    run = run_cli(capsys, [*base, f"train.run_dir={tmp_path / 'strict'}", "data.strict=true",
                           f"data.test_paths=[{folder / 'good.gz'}]"])
    assert_user_error(run, "bad.gz", "record 2", "field planes")
