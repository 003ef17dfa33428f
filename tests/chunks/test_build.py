"""Records built from a game's moves equal lc0's own records of the same game, field by field."""

import chess
import numpy as np
import pytest

from lc0distill.chunks.build import records_from_game
from lc0distill.chunks.games import reconstruct_games
from lc0distill.chunks.reader import read_chunk
from lc0distill.chunks.targets import z_wdl
from lc0distill.chunks.writer import write_chunk

SAME_FIELDS = ("planes", "castling_us_ooo", "castling_us_oo", "castling_them_ooo", "castling_them_oo",
               "side_to_move_or_enpassant", "rule50_count", "input_format", "played_idx", "result_q", "result_d")


@pytest.mark.parametrize("folder", ["v6-fmt1-maia1900", "v6-fmt3-maia1100", "v6-fmt133-maia1100"])
def test_built_records_match_lc0_records(lc0_data, lc0_games, folder, tmp_path):
    for game in (g for g in lc0_games if g["file"].startswith(folder + "/")):
        lc0 = read_chunk(str(lc0_data / game["file"])).records
        moves = [chess.Move.from_uci(u) for u in game["moves"]]
        built = records_from_game(moves, game["result"], int(lc0["input_format"][0]))
        for field in SAME_FIELDS:
            assert np.array_equal(built[field], lc0[field]), field
        # lc0 adds the search's moves-left estimate of the last position; a PGN has none, so it counts plies.
        assert np.array_equal(built["plies_left"], np.arange(len(moves), 0, -1))
        assert np.array_equal(built["invariance_info"], lc0["invariance_info"] & 0x87)
        # Legal moves: exactly the entries lc0 marked >= 0.
        assert np.array_equal(built["probabilities"] >= 0, lc0["probabilities"] >= 0)
        write_chunk(tmp_path / "g.gz", built)
        rebuilt = reconstruct_games(read_chunk(str(tmp_path / "g.gz")).records)
        assert len(rebuilt) == 1 and rebuilt[0].uci_moves == game["moves"] and rebuilt[0].result == game["result"]


def test_evaluations_fill_q_fields():
    moves = [chess.Move.from_uci(u) for u in ("e2e4", "e7e5", "g1f3")]
    records = records_from_game(moves, "1-0", white_q=[0.1, None, -0.5])
    assert np.allclose(records["best_q"], [0.1, -1.0, -0.5])  # q from the mover's view; None -> z
    assert np.allclose(z_wdl(records)[:, 0], [1, 0, 1])
    with pytest.raises(ValueError):
        records_from_game(moves, "*")
