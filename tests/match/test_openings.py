"""Openings: the built-in suite (size, legality, history, recorded balance, reproducible q) and read_openings
on EPD and PGN files, plain and gzip, good and bad (each bad input one error naming the file and line/game)."""

from __future__ import annotations

import gzip
import io
import logging
import re
import tomllib
from dataclasses import FrozenInstanceError
from pathlib import Path

import chess
import chess.pgn
import pytest

from lc0distill.errors import Lc0DistillError
from lc0distill.match.openings import (
    BUILTIN_RESOURCE,
    Opening,
    builtin_openings,
    builtin_text,
    position_key,
    read_openings,
)
from tests.conftest import PROJECT_ROOT, SHARED

MAIA_1900 = SHARED / "nets" / "maia-1900.pb.gz"
BOUND = 0.10  # the bound tools/make_openings.py applies (its docstring and the file's header say so)


# ---------------------------------------------------------------------------------------------- built-in


@pytest.fixture(scope="module")
def suite() -> list[Opening]:
    return builtin_openings()


@pytest.fixture(scope="module")
def tagged() -> list[chess.pgn.Headers]:
    """The shipped file's games' tags, read with python-chess alone (not through our reader)."""
    stream, headers = io.StringIO(builtin_text()), []
    while (game := chess.pgn.read_game(stream)) is not None:
        headers.append(game.headers)
    return headers


def test_builtin_suite_is_large_legal_and_has_history(suite):
    assert len(suite) >= 150
    assert len({position_key(o.board()) for o in suite}) == len(suite)  # distinct end positions
    assert len({o.end_fen for o in suite}) == len(suite)
    for opening in suite:
        board = opening.board()
        assert opening.fen == chess.STARTING_FEN, opening.name
        assert 6 <= len(opening.moves) <= 10, opening.name
        assert [m.uci() for m in board.move_stack] == list(opening.moves)  # the history is there
        assert board.root() == chess.Board()
        assert board.is_valid(), opening.name
        assert not board.is_game_over(), opening.name
        assert re.fullmatch(r"[A-E]\d\d \S.*: \S.*", opening.name), opening.name  # "C65 Ruy Lopez: Berlin ..."
        assert opening.source.startswith(f"built-in {BUILTIN_RESOURCE}: game ")


def test_builtin_suite_is_cached_but_each_call_gets_its_own_list(suite):
    again = builtin_openings()
    assert again == suite and again is not suite
    again.clear()
    assert len(builtin_openings()) == len(suite)


def test_recorded_balance_holds_for_every_opening(suite, tagged):
    header = [line for line in builtin_text().splitlines() if line.startswith("%")]
    kept = next(line for line in header if line.startswith("% Kept:"))
    count, bound = re.search(r"Kept: (\d+) lines with \|q\| <= ([\d.]+) for both", kept).groups()
    assert int(count) == len(suite) == len(tagged)
    assert float(bound) == BOUND
    assert any("does NOT show balance" in line for line in header)  # the file says what the check is worth
    for opening, tags in zip(suite, tagged):
        assert f"{tags['ECO']} {tags['Opening']}: {tags['Variation']}" == opening.name
        assert int(tags["PlyCount"]) == len(opening.moves)
        assert abs(float(tags["Maia1900WhiteQ"])) <= BOUND, opening.name
        assert abs(float(tags["Lc0WhiteQ"])) <= BOUND, opening.name


def test_builtin_file_is_small_text_and_shipped_as_package_data():
    path = PROJECT_ROOT / "lc0distill" / "match" / BUILTIN_RESOURCE
    data = path.read_bytes()
    assert len(data) < 200_000 and b"\x00" not in data  # FENs, moves, names, q values: no net in it
    data.decode("ascii")
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["lc0distill.match"]
    assert any(Path(BUILTIN_RESOURCE).match(pattern) for pattern in patterns)


def _white_q(board: chess.Board, q: float) -> float:
    return q if board.turn == chess.WHITE else -q


def test_recorded_maia_q_is_reproduced(suite, tagged):
    if not MAIA_1900.exists():
        pytest.skip(f"reference artifact {MAIA_1900} is absent (../shared holds lc0's own files; see README)")
    from lc0distill.models.inference import evaluate_boards
    from lc0distill.nets import load_inference_net

    sample = list(range(0, len(suite), len(suite) // 10))[:10]
    boards = [suite[i].board() for i in sample]
    evaluations = evaluate_boards(load_inference_net(MAIA_1900), boards)
    for index, board, evaluation in zip(sample, boards, evaluations):
        recorded = float(tagged[index]["Maia1900WhiteQ"])
        assert _white_q(board, evaluation.q) == pytest.approx(recorded, abs=1e-4), suite[index].name


@pytest.mark.engine
@pytest.mark.slow
def test_recorded_lc0_q_is_reproduced(suite, tagged):
    """The same search as tools/make_openings.py on 3 openings gives the recorded q (lc0, 1 thread, fixed
    nodes: deterministic up to float noise in batched evaluation, hence 0.01 and not 0.001)."""
    from lc0distill.engine.locate import EngineNotFound, find_engine

    if not MAIA_1900.exists():
        pytest.skip(f"reference artifact {MAIA_1900} is absent (../shared holds lc0's own files; see README)")
    try:
        binary = find_engine()
    except EngineNotFound as error:
        pytest.skip(f"the lc0 engine is not installed: {error}")
    import chess.engine

    nodes = int(re.search(r"go nodes (\d+)", builtin_text()).group(1))
    with open("/dev/null", "w") as quiet:
        engine = chess.engine.SimpleEngine.popen_uci([str(binary), "--backend=blas"], stderr=quiet)
    try:
        engine.configure({"WeightsFile": str(MAIA_1900), "Threads": 1, "SmartPruningFactor": 0,
                          "UCI_ShowWDL": True})
        for index in (0, len(suite) // 2, len(suite) - 1):
            info = engine.analyse(suite[index].board(), chess.engine.Limit(nodes=nodes), game=index)
            wdl = info["wdl"].white()
            assert (wdl.wins - wdl.losses) / 1000 == pytest.approx(float(tagged[index]["Lc0WhiteQ"]), abs=0.01)
    finally:
        engine.quit()


# ---------------------------------------------------------------------------------------------- Opening


def test_opening_board_keeps_history_and_is_a_fresh_copy():
    opening = Opening("test", chess.STARTING_FEN, ("e2e4", "c7c5", "g1f3"), "here")
    board = opening.board()
    assert [m.uci() for m in board.move_stack] == ["e2e4", "c7c5", "g1f3"]
    board.push_san("d6")
    assert len(opening.board().move_stack) == 3
    assert opening.end_fen == "rnbqkbnr/pp1ppppp/8/2p5/4P3/5N2/PPPP1PPP/RNBQKB1R b KQkq - 1 2"
    assert opening.plies == 3
    with pytest.raises(FrozenInstanceError):
        opening.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize("fen, moves, said", [
    (chess.STARTING_FEN, ("e2e5",), "move 1 e2e5 is illegal"),
    (chess.STARTING_FEN, ("e2e4", "zz"), "move 2 'zz' is not a UCI move"),
    (chess.STARTING_FEN, ("0000",), "move 1 0000 is illegal"),
    ("not a fen", (), "invalid FEN"),
])
def test_opening_refuses_bad_moves_and_fens(fen, moves, said):
    with pytest.raises(Lc0DistillError, match=re.escape(said)) as caught:
        Opening("x", fen, moves, "somewhere: game 3")
    assert str(caught.value).startswith("somewhere: game 3: ")


# ---------------------------------------------------------------------------------------------- EPD

EPD = """# a comment, then a blank line

rnbqkbnr/pppppppp/8/8/4P3/8/PPPP1PPP/RNBQKBNR b KQkq e3 id "King's pawn"; c0 "ignored when id is there";
rnbqkbnr/pppppppp/8/8/3P4/8/PPP1PPPP/RNBQKBNR b KQkq - c0 "Queen's pawn";
rnbqkbnr/pppppppp/8/8/2P5/8/PP1PPPPP/RNBQKBNR b KQkq -
rnbqkbnr/pppppppp/8/8/8/5N2/PPPPPPPP/RNBQKB1R b KQkq - 1 1 id "full FEN";
rnbqkbnr/pppppppp/8/8/8/6P1/PPPPPP1P/RNBQKBNR b KQkq - hmvc 0; fmvn 1; bm e5;
"""


def _write(path: Path, text: str, compress: bool = False) -> Path:
    path.write_bytes(gzip.compress(text.encode()) if compress else text.encode())
    return path


@pytest.mark.parametrize("name, compress", [("suite.epd", False), ("suite.epd.gz", True), ("suite.txt", False)])
def test_read_epd(tmp_path, name, compress):
    path = _write(tmp_path / name, EPD, compress)
    openings = read_openings(path)
    assert [o.name for o in openings] == ["King's pawn", "Queen's pawn", "line 5", "full FEN", "line 7"]
    assert [o.source for o in openings] == [f"{path}: line {n}" for n in (3, 4, 5, 6, 7)]
    assert all(o.moves == () and o.board().move_stack == [] for o in openings)  # EPD has no history
    assert openings[0].fen == "rnbqkbnr/pppppppp/8/8/4P3/8/PPPP1PPP/RNBQKBNR b KQkq - 0 1"  # e3: no capture
    assert openings[3].fen.endswith(" b KQkq - 1 1")  # the full FEN's counters are kept


def test_epd_duplicates_are_skipped_with_one_warning_each(tmp_path, caplog):
    text = EPD + "rnbqkbnr/pppppppp/8/8/4P3/8/PPPP1PPP/RNBQKBNR b KQkq - 0 1 id \"again\";\n"
    path = _write(tmp_path / "dup.epd", text)
    said: list[str] = []
    assert len(read_openings(path, warn=said.append)) == 5
    assert said == [(f"{path}: line 8: skipped: the same position as line 3 "
                    f"(rnbqkbnr/pppppppp/8/8/4P3/8/PPPP1PPP/RNBQKBNR b KQkq - 0 1)")]
    with caplog.at_level(logging.WARNING, logger="lc0distill.match"):
        read_openings(path)
    assert [r.getMessage() for r in caplog.records] == said


# ---------------------------------------------------------------------------------------------- PGN

PGN = """% an escape line, then a game with its tags

[Event "test"]
[ECO "C65"]
[Opening "Ruy Lopez"]
[Variation "Berlin Defense"]

1. e4 e5 2. Nf3 {a comment} Nc6 (2... d6 3. d4) 3. Bb5 $1 Nf6! 4. O-O *

[Event "from a position"]
[SetUp "1"]
[FEN "r1bqkbnr/pppp1ppp/2n5/4p3/4P3/5N2/PPPP1PPP/RNBQKB1R w KQkq - 2 3"]
[Opening "Two knights, from a FEN"]

3. Bc4 Nf6 (3... Bc5 4. c3) 4. d3 { multi-line
comment with [brackets] and 1. e4 } Be7 1/2-1/2

1. d4 d5 2. c4 e6 3. Nc3 Nf6 *

[White "no opening tags"]
[ECO "D85"]

1. d4 Nf6 2. c4 g6 3. Nc3 d5 4. cxd5 Nxd5 *

[Event "no moves: the start position"]

*
"""


@pytest.mark.parametrize("name, compress", [("games.pgn", False), ("games.pgn.gz", True), ("games", False)])
def test_read_pgn(tmp_path, name, compress):
    path = _write(tmp_path / name, PGN, compress)
    openings = read_openings(path)
    assert [o.name for o in openings] == ["C65 Ruy Lopez: Berlin Defense", "Two knights, from a FEN", "game 3",
                                          "D85", "game 5"]
    assert [o.source for o in openings] == [f"{path}: game {n}" for n in range(1, 6)]
    ruy, fen_game, qgd = openings[:3]
    assert ruy.fen == chess.STARTING_FEN
    assert ruy.moves == ("e2e4", "e7e5", "g1f3", "b8c6", "f1b5", "g8f6", "e1g1")  # mainline only
    assert fen_game.fen == "r1bqkbnr/pppp1ppp/2n5/4p3/4P3/5N2/PPPP1PPP/RNBQKB1R w KQkq - 2 3"
    assert fen_game.moves == ("f1c4", "g8f6", "d2d3", "f8e7")
    assert fen_game.board().root().fen() == fen_game.fen
    assert len(qgd.board().move_stack) == 6
    assert openings[4].moves == () and openings[4].fen == chess.STARTING_FEN


def test_pgn_transpositions_are_duplicates(tmp_path):
    text = "1. d4 Nf6 2. c4 e6 3. Nf3 d5 *\n\n1. d4 d5 2. c4 e6 3. Nf3 Nf6 *\n\n1. e4 *\n"
    path = _write(tmp_path / "t.pgn", text)
    said: list[str] = []
    openings = read_openings(path, warn=said.append)
    assert [o.source for o in openings] == [f"{path}: game 1", f"{path}: game 3"]
    assert len(said) == 1 and said[0].startswith(f"{path}: game 2: skipped: the same position as game 1 (")


def test_the_builtin_file_reads_as_a_user_file(tmp_path, suite):
    path = _write(tmp_path / "copy.pgn", builtin_text())
    assert [(o.name, o.fen, o.moves) for o in read_openings(path)] == [(o.name, o.fen, o.moves) for o in suite]


# ---------------------------------------------------------------------------------------------- bad input

START_EPD = "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq -"

BAD_EPD = [
    ("garbage", "line 2: not an EPD position"),
    ("rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP w KQkq -", "line 2: not an EPD position"),
    ("rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR x KQkq -", "line 2: not an EPD position"),
    (START_EPD + " 0 x;", "line 2: not an EPD position"),
    ("rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNK w - -", "line 2: illegal position (too many kings"),
    ("8/8/8/8/8/8/8/k7 w - -", "line 2: illegal position (no white king)"),
    ("4k3/8/8/8/8/8/8/P3K3 w - -", "line 2: illegal position (pawns on backrank)"),
    ("4k3/8/8/8/8/8/4R3/4K3 w - -", "line 2: illegal position (the side not to move is in check)"),
    ("7k/6Q1/6K1/8/8/8/8/8 b - -", "line 2: the game is already over (checkmate)"),
    ("7k/8/6QK/8/8/8/8/8 b - -", "line 2: the game is already over (stalemate)"),
    ("4k3/8/8/8/8/8/8/4K3 w - -", "line 2: the game is already over (insufficient material)"),
]


@pytest.mark.parametrize("line, said", BAD_EPD)
def test_bad_epd_lines_are_one_error_naming_file_and_line(tmp_path, line, said):
    after = 'rnbqkbnr/pppppppp/8/8/4P3/8/PPPP1PPP/RNBQKBNR b KQkq - id "after";'
    path = _write(tmp_path / "bad.epd", f"{START_EPD}\n{line}\n{after}\n")
    with pytest.raises(Lc0DistillError) as caught:
        read_openings(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {said}"), message
    assert "\n" not in message


GOOD_GAME = '[Event "good"]\n\n1. e4 e5 *\n\n'

BAD_PGN = [
    ("1. e4 e5 2. Ke3 *", "game 2 (line 5): cannot be read: illegal san: 'Ke3'"),
    ("1. e4 e5 2. Nf3 hello *", "game 2 (line 5): not a move, move number, NAG, result or comment: 'hello'"),
    ('[Event "x"]\n[Site oops]\n\n1. e4 *', "game 2 (line 6): not a PGN tag pair: '[Site oops]'"),
    ('[Event "x"]\n1. e4 *\n[Event "y"]\n1. d4 *', "game 2 (line 7): a tag pair after the moves"),
    ('[FEN "not a fen"]\n\n1. e4 *', "game 2 (line 5): invalid FEN header 'not a fen'"),
    ('[SetUp "1"]\n[FEN "4k3/8/8/8/8/8/8/4K2K w - - 0 1"]\n\n*',
     "game 2 (line 5): the FEN header: illegal position (too many kings)"),
    ("1. e4 -- 2. d4 *", "game 2 (line 5): a null move at ply 2"),
    ("1. f3 e5 2. g4 Qh4# *", "game 2 (line 5): after its 4 moves: the game is already over (checkmate)"),
    ('[FEN "7k/6Q1/6K1/8/8/8/8/8 b - - 0 1"]\n\n*', "game 2 (line 5): the game is already over (checkmate)"),
    ('[Variant "Atomic"]\n\n1. e4 *', "game 2 (line 5): variant 'Atomic': only standard chess"),
    ('[Variant "Chess960"]\n\n1. e4 *', "game 2 (line 5): variant 'Chess960'"),
]


@pytest.mark.parametrize("game, said", BAD_PGN)
def test_bad_pgn_games_are_one_error_naming_file_and_game(tmp_path, game, said):
    path = _write(tmp_path / "bad.pgn", f"{GOOD_GAME}{game}\n\n{GOOD_GAME}")
    with pytest.raises(Lc0DistillError) as caught:
        read_openings(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {said}"), message
    assert "\n" not in message


def test_pgn_move_after_mate_is_refused(tmp_path):
    # python-chess itself stops at a move after mate ("illegal san"): refused either way, naming the game
    path = _write(tmp_path / "mate.pgn", "1. f3 e5 2. g4 Qh4# 3. a3 *\n")
    with pytest.raises(Lc0DistillError, match=re.escape(f"{path}: game 1 (line 1): cannot be read")):
        read_openings(path)


@pytest.mark.parametrize("name, data, said", [
    ("empty.epd", b"", "no openings in it"),
    ("comments.epd", b"# only\n\n# comments\n", "no openings in it"),
    ("empty.pgn", b"% nothing\n\n", "no openings in it"),
    ("binary.pgn", b"\x1f\x00\x02\x00\xff\x00", "binary data, not an EPD or PGN text file"),
    ("corrupt.pgn.gz", b"\x1f\x8b\x08\x00garbage-garbage", "corrupt gzip data"),
    ("truncated.epd.gz", gzip.compress(EPD.encode())[:30], "corrupt gzip data (truncated"),
])
def test_bad_files_are_one_error_naming_the_file(tmp_path, name, data, said):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(Lc0DistillError, match=re.escape(f"{path}: {said}")):
        read_openings(path)


def test_missing_file_and_folder_are_errors(tmp_path):
    with pytest.raises(Lc0DistillError, match=re.escape(f"{tmp_path / 'nope.epd'}: no such openings file")):
        read_openings(tmp_path / "nope.epd")
    with pytest.raises(Lc0DistillError, match=re.escape(f"{tmp_path}: not a regular file")):
        read_openings(tmp_path)


def test_a_file_inflating_past_the_bound_is_refused(tmp_path, monkeypatch):
    from lc0distill.match import openings

    monkeypatch.setattr(openings, "MAX_FILE_BYTES", 1000)
    path = _write(tmp_path / "big.epd.gz", EPD * 100, compress=True)
    with pytest.raises(Lc0DistillError, match=re.escape(f"{path}: inflates to more than")):
        read_openings(path)
