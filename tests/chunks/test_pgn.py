"""`data from-pgn`: PGN games -> lc0 chunks -> the same games back, with policy, z, evals, skips and inputs."""

from __future__ import annotations

import argparse
import gzip
import json
import math
import random
import re

import chess
import chess.pgn
import numpy as np
import pytest
import zstandard

from lc0distill.chess.policy_index import move_to_index
from lc0distill.chunks.decode import record_transform
from lc0distill.chunks.games import reconstruct_games
from lc0distill.chunks.pgn import (
    SkipReason,
    cp_to_q,
    convert_pgn_files,
    next_chunk_index,
    score_to_q,
)
from lc0distill.chunks.reader import read_chunk
from lc0distill.cli import main
from lc0distill.cli.data_from_pgn import register
from lc0distill.errors import Lc0DistillError

PROMOTIONS = [chess.QUEEN, chess.KNIGHT, chess.BISHOP, chess.ROOK]


# ---------------------------------------------------------------------------------------------- games


def _sans(text: str) -> list[str]:
    return [token for token in text.split() if not token.endswith(".")]


def _play(sans: list[str]) -> list[chess.Move]:
    """The moves of a SAN sequence from the standard start; push_san fails on any illegal move."""
    board = chess.Board()
    return [board.push_san(san) for san in sans]


def _promotion_game(white_piece: int, black_piece: int) -> list[chess.Move]:
    """White's a-pawn takes b7 then the a8 rook, black's h-pawn takes g2 then the h1 rook, both promoting."""
    w, b = chess.piece_symbol(white_piece).upper(), chess.piece_symbol(black_piece).upper()
    return _play(_sans(f"1. a4 h5 2. a5 h4 3. a6 h3 4. axb7 hxg2 5. bxa8={w} gxh1={b} 6. Nf3 Nf6"))


def _fifty_move_game(seed: int = 0) -> list[chess.Move]:
    """An opening, then seeded non-capture, non-pawn, non-checking moves that never repeat a position
    until the 50-move rule applies (halfmove clock 100)."""
    rng = random.Random(seed)
    board = chess.Board()
    for san in _sans("1. e4 e5 2. Nf3 Nc6 3. Bc4 Bc5 4. d3 d6 5. Nc3 Nf6"):
        board.push_san(san)
    seen = {board.epd()}
    while board.halfmove_clock < 100:
        candidates = []
        for move in board.legal_moves:
            if board.is_capture(move) or board.piece_type_at(move.from_square) == chess.PAWN or board.gives_check(move):
                continue
            board.push(move)
            if board.epd() not in seen and not board.is_game_over():
                candidates.append(move)
            board.pop()
        assert candidates, "the seeded walk got stuck"
        board.push(rng.choice(candidates))
        seen.add(board.epd())
    assert board.is_fifty_moves() and not board.is_repetition(2)
    return list(board.move_stack)


def _feature_games() -> list[tuple[list[chess.Move], str]]:
    games = [
        (_play(_sans("1. e4 e5 2. Nf3 Nf6 3. Bc4 Bc5 4. O-O O-O 5. d3 d6")), "1/2-1/2"),  # O-O both
        (_play(_sans("1. d4 d5 2. Nc3 Nc6 3. Bf4 Bf5 4. Qd2 Qd7 5. O-O-O O-O-O 6. e3 e6")), "1-0"),  # O-O-O both
        (_play(_sans("1. e4 a6 2. e5 d5 3. exd6 b5 4. a3 b4 5. c4 bxc3 6. dxc7 cxb2")), "0-1"),  # e.p. both
        (_play(_sans("1. e4 e5 2. Bc4 Nc6 3. Qh5 Nf6 4. Qxf7#")), "1-0"),  # white mates
        (_play(_sans("1. f3 e5 2. g4 Qh4#")), "0-1"),  # black mates
        (_fifty_move_game(), "1/2-1/2"),
    ]
    for white, black in zip(PROMOTIONS, PROMOTIONS[1:] + PROMOTIONS[:1]):
        games.append((_promotion_game(white, black), "1-0"))
    return games


def _pgn_text(games: list[tuple[list[chess.Move], str]], comments: dict[int, dict[int, str]] | None = None) -> str:
    parts = []
    for number, (moves, result) in enumerate(games):
        game = chess.pgn.Game()
        game.headers["White"], game.headers["Black"], game.headers["Result"] = f"engine {number}", "other", result
        node = game
        for ply, move in enumerate(moves):
            node = node.add_variation(move)
            node.comment = (comments or {}).get(number, {}).get(ply, "")
        parts.append(str(game))
    return "\n\n".join(parts) + "\n"


def _features(games: list[tuple[list[chess.Move], str]]) -> dict[str, int]:
    counts: dict[str, int] = {}

    def add(key: str) -> None:
        counts[key] = counts.get(key, 0) + 1

    for moves, result in games:
        board = chess.Board()
        for move in moves:
            colour = "white" if board.turn else "black"
            if board.is_kingside_castling(move):
                add(f"{colour} O-O")
            if board.is_queenside_castling(move):
                add(f"{colour} O-O-O")
            if board.is_en_passant(move):
                add(f"{colour} en passant")
            if move.promotion:
                add(f"{colour} ={chess.piece_symbol(move.promotion).upper()}")
            board.push(move)
        if board.is_checkmate():
            add(f"checkmate {result}")
        if board.is_fifty_moves() and result == "1/2-1/2":
            add("50-move draw")
    return counts


# ---------------------------------------------------------------------------------------------- helpers


def _from_pgn(argv: list[str]) -> int:
    """The command through this module's register(), as `data` registers it."""
    parser = argparse.ArgumentParser(prog="lc0distill data")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["from-pgn", *argv])
    return args.run(args)


def _chunks(folder):
    return sorted(folder.glob("game_*.gz"))


def _games_back(folder) -> list[tuple[list[str], str]]:
    back = []
    for path in _chunks(folder):
        games = reconstruct_games(read_chunk(str(path)).records)
        assert len(games) == 1
        back.append((games[0].uci_moves, games[0].result))
    return back


def _uci(games):
    return [([m.uci() for m in moves], result) for moves, result in games]


@pytest.fixture(scope="module")
def feature_games():
    return _feature_games()


# ---------------------------------------------------------------------------------------------- tests


def test_feature_games_cover_what_they_claim(feature_games):
    counts = _features(feature_games)
    for colour in ("white", "black"):
        for feature in ("O-O", "O-O-O", "en passant", "=Q", "=N", "=B", "=R"):
            assert counts.get(f"{colour} {feature}", 0) >= 1, (colour, feature)
    assert counts["checkmate 1-0"] == 1 and counts["checkmate 0-1"] == 1 and counts["50-move draw"] == 1


def test_round_trip_policy_and_z(tmp_path, capsys, feature_games):
    pgn = tmp_path / "games.pgn"
    pgn.write_text(_pgn_text(feature_games))
    out = tmp_path / "chunks"
    assert _from_pgn([str(pgn), "--out", str(out)]) == 0
    summary = capsys.readouterr().out.strip()
    total = sum(len(moves) for moves, _ in feature_games)
    assert summary.endswith(f"wrote {len(feature_games)} games, {total} positions to {out} "
                            f"(game_000000.gz to game_{len(feature_games) - 1:06d}.gz); skipped: 0")
    assert [p.name for p in _chunks(out)] == [f"game_{i:06d}.gz" for i in range(len(feature_games))]
    assert _games_back(out) == _uci(feature_games)

    for path, (moves, result) in zip(_chunks(out), feature_games):
        chunk = read_chunk(str(path))
        records = chunk.records
        assert chunk.version == 6 and len(records) == len(moves)
        assert np.array_equal(records["plies_left"], np.arange(len(moves), 0, -1))
        white_z = {"1-0": 1.0, "0-1": -1.0, "1/2-1/2": 0.0}[result]
        board = chess.Board()
        for record, move in zip(records, moves):
            probs = record["probabilities"]
            played = move_to_index(board, move, record_transform(record))
            legal = {move_to_index(board, m, record_transform(record)) for m in board.legal_moves}
            assert int(record["played_idx"]) == played and probs[played] == 1.0
            assert all(probs[i] == 0.0 for i in legal - {played})
            others = np.ones(len(probs), dtype=bool)
            others[list(legal)] = False
            assert np.all(probs[others] == -1.0)
            mover_z = white_z if board.turn == chess.WHITE else -white_z
            assert record["result_q"] == mover_z and record["result_d"] == (1.0 if white_z == 0 else 0.0)
            assert record["best_q"] == mover_z  # no evals in this PGN: q from z
            board.push(move)


def test_games_json_through_the_cli(tmp_path, capsys, feature_games):
    pgn = tmp_path / "games.pgn"
    pgn.write_text(_pgn_text(feature_games))
    out = tmp_path / "chunks"
    assert main(["data", "from-pgn", str(pgn), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["data", "games", str(out), "--json"]) == 0
    back = json.loads(capsys.readouterr().out)
    assert [(g["moves"], g["result"]) for g in back] == _uci(feature_games)


def test_cp_to_q_is_lc0s_formula():
    assert cp_to_q(90) == pytest.approx(math.atan(1) / 1.5637541897)
    assert 90 * math.tan(1.5637541897 * cp_to_q(123)) == pytest.approx(123)
    assert cp_to_q(-250) == pytest.approx(-cp_to_q(250)) and cp_to_q(0) == 0.0
    assert cp_to_q(10**6) == 1.0 and cp_to_q(-(10**6)) == -1.0  # atan / 1.5637... slightly exceeds 1: clipped
    assert score_to_q(chess.engine.Mate(3)) == 1.0 and score_to_q(chess.engine.Mate(-2)) == -1.0


def test_evals_fill_q_of_the_next_position(tmp_path, capsys):
    moves = _play(_sans("1. e4 e5 2. Nf3 Nc6 3. Bb5 a6"))
    # The comment after ply k evaluates the position after that move, i.e. record k + 1 (white's view).
    comments = {0: {0: "[%eval 0.9]", 1: "[%eval #3]", 3: "[%eval -1.5]", 4: "[%eval #-2]", 5: "[%eval 0.3]"}}
    pgn = tmp_path / "evals.pgn"
    pgn.write_text(_pgn_text([(moves, "1-0")], comments))
    out = tmp_path / "chunks"
    assert _from_pgn([str(pgn), "--out", str(out)]) == 0
    records = read_chunk(str(out / "game_000000.gz")).records
    expected = [
        1.0,                                          # start: no eval -> z (white wins, white to move)
        -math.atan(90 / 90) / 1.5637541897,           # after 1.e4 (+0.90): black to move
        1.0,                                          # after 1...e5 (#3 for white): white to move
        -1.0,                                         # after 2.Nf3: no eval -> z for black
        math.atan(-150 / 90) / 1.5637541897,          # after 2...Nc6 (-1.50): white to move
        1.0,                                          # after 3.Bb5 (#-2, black mates): black to move
    ]                                                 # the eval after 3...a6 has no record
    for field in ("root_q", "best_q", "played_q"):
        assert np.allclose(records[field], expected, atol=1e-6), field
    with_eval = [1, 2, 4, 5]
    assert np.allclose(records["best_d"][with_eval], 1 - np.abs(np.array(expected)[with_eval]), atol=1e-6)
    assert np.array_equal(records["best_d"][[0, 3]], [0.0, 0.0])  # from z (decisive)
    assert np.array_equal(records["result_q"], [1, -1, 1, -1, 1, -1])  # z is untouched by evals


SKIP_PGN = """[Event "good 1"]
[Result "1-0"]

1. e4 e5 2. Bc4 Nc6 3. Qh5 Nf6 4. Qxf7# 1-0

[Event "illegal"]
[Result "0-1"]

1. e4 e5 2. Ke3 Nc6 0-1

[Event "unfinished"]
[Result "*"]

1. d4 d5 2. c4 *

[Event "from a position"]
[SetUp "1"]
[FEN "4k3/8/8/8/8/8/4P3/4K3 w - - 0 1"]
[Result "1/2-1/2"]

1. e4 Kd7 1/2-1/2

[Event "good 2"]
[Result "0-1"]

1. f3 e5 2. g4 Qh4# 0-1
"""


def test_bad_games_are_skipped_with_reasons(tmp_path, capsys):
    pgn = tmp_path / "mixed.pgn"
    pgn.write_text(SKIP_PGN)
    out = tmp_path / "chunks"
    assert _from_pgn([str(pgn), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().endswith(
        "skipped: 3 (illegal move: 1, unknown result: 1, non-standard start: 1)")
    file_line, total_line = captured.out.splitlines()
    assert file_line == f"{pgn}: 2 games, 11 positions (q from evals: 0, from z: 11); skipped: 3"
    assert total_line.startswith("wrote 2 games, 11 positions")
    assert "game 2" in captured.err and "Ke3" in captured.err and "game 4" in captured.err
    assert _games_back(out) == [("e2e4 e7e5 f1c4 b8c6 d1h5 g8f6 h5f7".split(), "1-0"),
                                ("f2f3 e7e5 g2g4 d8h4".split(), "0-1")]
    items = list(convert_pgn_files([pgn]))
    assert [getattr(item, "reason", None) for item in items] == [
        None, SkipReason.ILLEGAL_MOVE, SkipReason.UNKNOWN_RESULT, SkipReason.NON_STANDARD_START, None]


def test_more_skips_and_standard_fen(tmp_path):
    pgn = tmp_path / "more.pgn"
    pgn.write_text(
        '[Variant "Chess960"]\n[Result "1-0"]\n\n1. e4 1-0\n\n'
        '[Result "1-0"]\n\n1-0\n\n'
        '[Event "no result header"]\n\n1. e4 e5\n\n'
        f'[Variant "From Position"]\n[SetUp "1"]\n[FEN "{chess.STARTING_FEN}"]\n[Result "1-0"]\n\n1. e4 1-0\n')
    reasons = [getattr(item, "reason", None) for item in convert_pgn_files([pgn])]
    assert reasons == [SkipReason.VARIANT, SkipReason.NO_MOVES, SkipReason.UNKNOWN_RESULT, None]


def test_compressed_inputs_give_identical_chunks(tmp_path, capsys, feature_games):
    text = _pgn_text(feature_games[:4], {0: {2: "[%eval 0.4]"}})
    plain = tmp_path / "g.pgn"
    plain.write_text(text)
    (tmp_path / "g.pgn.gz").write_bytes(gzip.compress(text.encode()))
    compressor = zstandard.ZstdCompressor()
    half = len(text) // 2  # two frames: the reader must go across frames
    (tmp_path / "g.pgn.zst").write_bytes(compressor.compress(text[:half].encode())
                                         + compressor.compress(text[half:].encode()))
    outputs = {}
    for name in ("g.pgn", "g.pgn.gz", "g.pgn.zst"):
        out = tmp_path / f"out-{name}"
        assert _from_pgn([str(tmp_path / name), "--out", str(out)]) == 0
        outputs[name] = [(p.name, p.read_bytes()) for p in _chunks(out)]
    assert len(outputs["g.pgn"]) == 4
    assert outputs["g.pgn.gz"] == outputs["g.pgn"] == outputs["g.pgn.zst"]


def test_numbering_continues_and_several_files(tmp_path, capsys, feature_games):
    first, second = tmp_path / "a.pgn", tmp_path / "b.pgn"
    first.write_text(_pgn_text(feature_games[:2]))
    second.write_text(_pgn_text(feature_games[2:5]))
    out = tmp_path / "chunks"
    assert _from_pgn([str(first), "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in _chunks(out)}
    assert next_chunk_index(out) == 2
    assert _from_pgn([str(second), str(first), "--out", str(out)]) == 0
    assert "(game_000002.gz to game_000006.gz)" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in _chunks(out)[:2]} == before  # not overwritten
    assert _games_back(out) == _uci(feature_games[:2] + feature_games[2:5] + feature_games[:2])


def test_input_format_3_round_trips(tmp_path, capsys, feature_games):
    pgn = tmp_path / "games.pgn"
    pgn.write_text(_pgn_text(feature_games))
    out = tmp_path / "chunks"
    assert _from_pgn([str(pgn), "--out", str(out), "--input-format", "3"]) == 0
    assert all(set(read_chunk(str(p)).records["input_format"]) == {3} for p in _chunks(out))
    assert _games_back(out) == _uci(feature_games)


def test_user_errors_are_one_line(tmp_path, capsys):
    pgn = tmp_path / "games.pgn"
    pgn.write_text(SKIP_PGN)
    assert main(["data", "from-pgn", str(pgn), "--out", str(tmp_path / "o"), "--input-format", "7"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--input-format 7" in err and "133" in err
    missing = tmp_path / "nope.pgn"
    assert main(["data", "from-pgn", str(pgn), str(missing), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(missing) in err
    assert not (tmp_path / "o").exists()  # checked before anything is written
    with pytest.raises(Lc0DistillError, match="input format"):
        _from_pgn([str(pgn), "--out", str(tmp_path / "o"), "--input-format", "x"])


def test_corrupt_compressed_file_is_reported_and_others_converted(tmp_path, capsys):
    good = tmp_path / "good.pgn"
    good.write_text(SKIP_PGN)
    bad = tmp_path / "bad.pgn.gz"
    bad.write_bytes(gzip.compress(SKIP_PGN.encode())[:-30])
    out = tmp_path / "chunks"
    assert _from_pgn([str(bad), str(good), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert re.search(rf"error: {re.escape(str(bad))}: ", captured.err)
    assert len(_chunks(out)) >= 2


def test_parallel_jobs_write_the_same_files_in_the_same_order(tmp_path, capsys, feature_games):
    (tmp_path / "g.pgn").write_text(_pgn_text(feature_games + [([], "1-0")], {1: {3: "[%eval -1.5]"}}))
    outputs = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"out-{jobs}"
        assert _from_pgn([str(tmp_path / "g.pgn"), "--out", str(out), "--jobs", jobs]) == 0
        outputs[jobs] = [(p.name, p.read_bytes()) for p in _chunks(out)]
    assert len(outputs["1"]) == len(feature_games) and outputs["1"] == outputs["2"]
    assert "no moves" in capsys.readouterr().out
