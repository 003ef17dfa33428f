"""Our plane encoder against lc0's own encodings: every stored record, and the engine's oracle planes."""

import chess
import numpy as np
import pytest

from lc0distill.chess.encoding import GameHistory, HistoryFill, encode_board
from lc0distill.chess.expand import PackedPlanes, Rule50Scale, expand_planes, expand_records
from lc0distill.chess.policy_index import move_to_index
from lc0distill.chunks.reader import read_chunk

FIELDS = ("castling_us_ooo", "castling_us_oo", "castling_them_ooo", "castling_them_oo",
          "side_to_move_or_enpassant", "rule50_count")
ENCODER_INVARIANCE_BITS = 0x87  # transform bits and black-to-move; bits 3-5 are game-level facts


def _packed(encoded) -> PackedPlanes:
    castling = [encoded.castling_us_ooo, encoded.castling_us_oo, encoded.castling_them_ooo, encoded.castling_them_oo]
    return PackedPlanes(encoded.stored_planes[None], np.array([castling], np.uint8),
                        np.array([encoded.side_to_move_or_enpassant], np.uint8), np.array([encoded.rule50_count], np.uint8),
                        np.array([encoded.invariance_info], np.uint8), np.array([encoded.input_format], np.uint32))


def test_reencoding_reproduces_every_stored_record(lc0_data, lc0_games):
    """Replaying lc0's moves, each position's encoding equals the record lc0 wrote, byte for byte."""
    formats_seen = set()
    positions = 0
    for game in lc0_games:
        chunk = read_chunk(str(lc0_data / game["file"]))
        records = chunk.records
        assert len(records) == len(game["moves"])
        history = GameHistory()
        for record, uci in zip(records, game["moves"]):
            fmt = int(record["input_format"])
            encoded = history.encode(fmt)
            where = f"{game['file']} ply {positions}"
            assert np.array_equal(encoded.stored_planes, record["planes"]), where
            for field in FIELDS:
                assert getattr(encoded, field) == record[field], (where, field)
            assert encoded.invariance_info == record["invariance_info"] & ENCODER_INVARIANCE_BITS, where
            move = chess.Move.from_uci(uci)
            if chunk.version >= 6:
                assert move_to_index(history.board, move, encoded.transform) == record["played_idx"], where
            history.push(move)
            formats_seen.add(fmt)
            positions += 1
    assert formats_seen == {1, 2, 3, 4, 5, 132, 133}
    assert positions > 3000


def test_canonical_transforms_occur_in_the_real_data(lc0_data):
    """The real data exercises flips (and more) so the test above covers the transform code."""
    transforms = set()
    for path in sorted(lc0_data.glob("v6-fmt[3-5]*/*.gz")) + sorted(lc0_data.glob("v6-fmt13*/*.gz")):
        transforms |= set((read_chunk(str(path)).records["invariance_info"] & 7).tolist())
    assert 1 in transforms


def _oracle_board(position) -> chess.Board:
    board = chess.Board() if position["start"] == "startpos" else chess.Board(position["start"])
    for uci in position["moves_played_from_start"]:
        board.push_uci(uci)
    return board


def test_expanded_planes_equal_lc0_engine_input(oracle_positions):
    """lc0's own 112-plane input for 20 positions (history, FEN fill, e.p., repetitions, raw rule50)."""
    for position in oracle_positions:
        board = _oracle_board(position)
        assert board.fen() == position["fen"]
        planes = expand_planes(_packed(encode_board(board, 1)))[0].reshape(112, 64)
        masks = [int(m, 16) for m in position["input_planes"]["masks_hex"]]
        values = position["input_planes"]["values"]
        bits = (np.array(masks, dtype=np.uint64)[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)
        expected = bits.astype(np.float32) * np.array(values, np.float32)[:, None]
        assert np.array_equal(planes, expected), position["category"]


def test_history_fill_options_for_a_fen_start():
    board = chess.Board("8/8/4k3/8/8/3K4/8/8 w - - 12 40")
    fen_only = encode_board(board, 1, HistoryFill.FEN_ONLY).planes
    never = encode_board(board, 1, HistoryFill.NO).planes
    assert all(np.array_equal(fen_only[13 * s : 13 * s + 12], fen_only[:12]) for s in range(8))
    assert never[13:].sum() == 0 and np.array_equal(never[:13], fen_only[:13])
    start = encode_board(chess.Board(), 1, HistoryFill.FEN_ONLY).planes
    assert start[13:].sum() == 0 and encode_board(chess.Board(), 1, HistoryFill.ALWAYS).planes[13:].sum() > 0


def test_expansion_of_aux_planes_for_each_format():
    board = chess.Board()
    for uci in ("e2e4", "c7c5", "e4e5", "d7d5"):  # white to move, e.p. on d6, all castling rights
        board.push_uci(uci)
    board.halfmove_clock = 0
    for fmt, rule50 in ((1, 0.0), (2, 0.0), (3, 0.0), (4, 0.0), (132, 0.0)):
        planes = expand_planes(_packed(encode_board(board, fmt)))[0]
        if fmt == 1:
            assert planes[104:108].min() == 1.0 and planes[108].max() == 0.0
        else:
            assert planes[104, 0].tolist() == [1, 0, 0, 0, 0, 0, 0, 0] and planes[104, 7, 0] == 1
            assert planes[105, 0, 7] == 1 and planes[106:108].max() == 0
        if fmt >= 3:  # e.p. file d on rank 8 of plane 108
            assert planes[108, 7].tolist() == [0, 0, 0, 1, 0, 0, 0, 0] and planes[108, :7].max() == 0
        assert planes[109].max() == rule50 and planes[111].min() == 1.0


def test_rule50_scaling_conventions(lc0_data):
    records = read_chunk(str(next((lc0_data / "v6-fmt1-maia1900").glob("*.gz")))).records
    late = records[records["rule50_count"] > 0][:5]
    engine = expand_records(late, Rule50Scale.ENGINE)[:, 109, 0, 0]
    trainer = expand_records(late, Rule50Scale.TRAINER)[:, 109, 0, 0]
    assert np.array_equal(engine, late["rule50_count"].astype(np.float32))
    assert np.allclose(trainer, late["rule50_count"] / 99.0)
    hecto = read_chunk(str(next((lc0_data / "v6-fmt4-maia1100").glob("*.gz")))).records
    hecto = hecto[hecto["rule50_count"] > 0][:5]
    assert np.allclose(expand_records(hecto)[:, 109, 0, 0], hecto["rule50_count"] / 100.0)


def test_armageddon_plane_when_black_to_move(lc0_data):
    records = read_chunk(str(next((lc0_data / "v6-fmt132-maia1100").glob("*.gz")))).records
    planes = expand_records(records[:2])
    assert planes[0, 110].max() == 0.0 and planes[1, 110].min() == 1.0


@pytest.mark.parametrize("fmt", [1, 2, 3, 4, 5, 132, 133])
def test_vectorised_expansion_equals_one_by_one(lc0_data, fmt):
    """Mixed batches expand exactly as each record alone does."""
    folder = "v6-fmt1-maia1900" if fmt == 1 else f"v6-fmt{fmt}-maia1100"
    records = read_chunk(str(next((lc0_data / folder).glob("*.gz")))).records[:40]
    batch = expand_records(records)
    for i in range(len(records)):
        assert np.array_equal(batch[i], expand_records(records[i : i + 1])[0])


def test_only_repeats_formats_end_for_a_fen_start_with_a_rule50_count():
    """Formats 5 and 133 skip non-repeated history: before a FEN start nothing can repeat, so encoding stops."""
    board = chess.Board("8/8/4k3/8/2R5/8/4K3/8 w - - 99 140")
    for input_format in (5, 133):
        encoded = encode_board(board, input_format)
        assert encoded.rule50_count == 99
        assert int(np.count_nonzero(encoded.stored_planes[13:])) == 0  # only the current position is written
