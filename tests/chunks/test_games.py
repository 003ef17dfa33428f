"""Games rebuilt from records equal what lc0 played (games.jsonl, written by lc0 while playing)."""

import json

import chess
import numpy as np

from lc0distill.chess.policy_index import index_to_move
from lc0distill.chunks.decode import record_to_board, record_transform
from lc0distill.chunks.games import reconstruct_games
from lc0distill.chunks.reader import read_chunk


def _check_games(folder, games):
    exact = ambiguous = 0
    for expected in games:
        chunk = read_chunk(str(folder / expected["file"]))
        found = reconstruct_games(chunk.records)
        assert len(found) == 1, expected["file"]
        game = found[0]
        assert game.result == expected["result"], expected["file"]
        moves = game.uci_moves
        assert len(moves) == len(expected["moves"]) == len(chunk.records)
        if game.final_move_ambiguous:
            # V3..V5 do not store the played move; lc0 picked one of several mates/draws by temperature.
            assert chunk.version < 6
            assert moves[:-1] == expected["moves"][:-1], expected["file"]
            assert expected["moves"][-1] in [m.uci() for m in game.final_move_candidates]
            ambiguous += 1
        else:
            assert moves == expected["moves"], expected["file"]
            exact += 1
    return exact, ambiguous


def test_games_equal_what_lc0_played(lc0_data, lc0_games):
    exact, ambiguous = _check_games(lc0_data, lc0_games)
    assert exact + ambiguous == len(lc0_games) == 46
    # V4 games 2 and 6, V5 games 2 and 4 end with several mating moves; in all other games every move is exact.
    assert ambiguous == 4


def test_selfplay_games_equal_what_lc0_played(selfplay_dir):
    games = [json.loads(line) for line in (selfplay_dir / "games.jsonl").read_text().splitlines() if line.strip()]
    exact, ambiguous = _check_games(selfplay_dir, games)
    assert exact == len(games) == 316 and ambiguous == 0


def test_every_played_and_best_index_is_a_legal_move(lc0_data, selfplay_dir):
    checked = 0
    for path in sorted(lc0_data.glob("v6-*/*.gz")) + sorted(selfplay_dir.glob("*.gz"))[:40]:
        records = read_chunk(str(path)).records
        game = reconstruct_games(records)[0]
        for record, fen in zip(records, game.fens):
            board = chess.Board(fen)
            for field in ("played_idx", "best_idx"):
                move = index_to_move(board, int(record[field]), record_transform(record))  # raises if illegal
                assert move in board.legal_moves
                checked += 1
            assert record["probabilities"][record["best_idx"]] >= 0
    assert checked > 10000


def test_record_to_board_matches_game_positions(lc0_data, lc0_games):
    """The position decoded from one record alone equals the game's position (pieces, side, rights, e.p.)."""
    for expected in lc0_games:
        chunk = read_chunk(str(lc0_data / expected["file"]))
        board = chess.Board()
        for record, uci in zip(chunk.records, expected["moves"]):
            decoded = record_to_board(record)
            assert decoded.board_fen() == board.board_fen() and decoded.turn == board.turn
            assert decoded.castling_rights == board.castling_rights
            assert decoded.halfmove_clock == board.halfmove_clock
            assert decoded.has_legal_en_passant() == board.has_legal_en_passant()
            board.push_uci(uci)


def test_two_games_in_one_chunk_are_split(lc0_data):
    first = read_chunk(str(lc0_data / "v6-fmt1-maia1900" / "game_000000.gz")).records
    second = read_chunk(str(lc0_data / "v6-fmt1-maia1900" / "game_000002.gz")).records
    games = reconstruct_games(np.concatenate([first, second]))
    assert [len(g.moves) for g in games] == [len(first), len(second)]
    assert games[1].first_record == len(first)
