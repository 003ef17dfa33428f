"""`data from-pgn` on hostile PGN: null moves, games past the 75-move draw, odd text, odd bytes, garbage
files, cutechess/CCRL evaluation comments and the per-file eval counts.

Every odd game must be a skipped game with a reason (or a bad file one PgnError line naming it), never a
traceback, and the other games and files must still convert.
"""

from __future__ import annotations

import argparse
import gzip
import random

import chess
import chess.pgn
import numpy as np
import pytest

from lc0distill.chunks.games import reconstruct_games
from lc0distill.chunks.pgn import (
    SEVENTY_FIVE_MOVE_PLIES,
    ConvertedGame,
    PgnError,
    SkippedGame,
    SkipReason,
    convert_pgn_files,
    cp_to_q,
    cutechess_q,
)
from lc0distill.chunks.reader import parse_chunk, read_chunk
from lc0distill.cli import main
from lc0distill.cli.data_from_pgn import register

GOOD_1 = '[White "good one"]\n[Black "x"]\n[Result "1-0"]\n\n1. e4 e5 2. Bc4 Nc6 3. Qh5 Nf6 4. Qxf7# 1-0\n'
GOOD_2 = '[White "good two"]\n[Black "y"]\n[Result "0-1"]\n\n1. f3 e5 2. g4 Qh4# 0-1\n'
GOOD_1_UCI = "e2e4 e7e5 f1c4 b8c6 d1h5 g8f6 h5f7".split()
GOOD_2_UCI = "f2f3 e7e5 g2g4 d8h4".split()


def _from_pgn(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lc0distill data")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["from-pgn", *argv])
    return args.run(args)


def _game(movetext: str, result: str = "1-0", headers: str = "") -> str:
    return f'{headers}[White "odd"]\n[Black "z"]\n[Result "{result}"]\n\n{movetext} {result}\n'


def _file(tmp_path, *games: str, name: str = "games.pgn"):
    path = tmp_path / name
    path.write_text("\n".join(games))
    return path


def _converted_moves(items) -> list[list[str]]:
    moves = []
    for item in items:
        if isinstance(item, ConvertedGame):
            records = read_chunk_bytes(item.chunk)
            moves.append(reconstruct_games(records)[0].uci_moves)
    return moves


def read_chunk_bytes(chunk: bytes) -> np.ndarray:
    return parse_chunk(gzip.decompress(chunk), "chunk")[0]


def _shuffle(cycles: int) -> str:
    """1. e4 e5, then knights out and back: no capture or pawn move for 4 * cycles plies."""
    moves = ["1. e4 e5"]
    for k in range(cycles):
        moves.append(f"{2 + 2 * k}. Nf3 Nf6 {3 + 2 * k}. Ng1 Ng8")
    return " ".join(moves)


# ---------------------------------------------------------------------------------------------- null moves


@pytest.mark.parametrize("null", ["--", "Z0", "0000"])
def test_null_move_is_a_skipped_game_named_with_its_ply(tmp_path, capsys, null):
    pgn = _file(tmp_path, GOOD_1, _game(f"1. e4 e5 2. {null} Nc6 3. Nf3 Nf6"), GOOD_2)
    out = tmp_path / "chunks"
    assert _from_pgn([str(pgn), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"{pgn}: game 2 (odd - z): null move: ply 3 (2. --)" in captured.err
    assert captured.out.splitlines()[-1].endswith("skipped: 1 (null move: 1)")
    assert [reconstruct_games(read_chunk(str(p)).records)[0].uci_moves for p in sorted(out.glob("*.gz"))] == [
        GOOD_1_UCI, GOOD_2_UCI]


def test_null_move_by_black_and_with_a_pool(tmp_path, capsys):
    pgn = _file(tmp_path, _game("1. e4 -- 2. d4"), GOOD_2)
    out = tmp_path / "chunks"
    assert _from_pgn([str(pgn), "--out", str(out), "--jobs", "2"]) == 0
    assert "game 1 (odd - z): null move: ply 2 (1... --)" in capsys.readouterr().err
    assert len(list(out.glob("*.gz"))) == 1


# ---------------------------------------------------------------------------------------------- 75-move rule


def test_a_game_reaching_the_75_move_limit_on_its_last_move_converts(tmp_path):
    # 1. e4 e5, then 4 * 37 + 2 = 150 plies without a capture or pawn move: the clock reaches 150 only
    # after the last move, so the game is whole and every record's clock is at most 149.
    cycles = (SEVENTY_FIVE_MOVE_PLIES - 2) // 4
    pgn = _file(tmp_path, _game(_shuffle(cycles) + " 76. Nf3 Nf6", "1/2-1/2"))
    [item] = convert_pgn_files([pgn])
    assert isinstance(item, ConvertedGame) and item.positions == 2 + SEVENTY_FIVE_MOVE_PLIES
    rule50 = read_chunk_bytes(item.chunk)["rule50_count"]
    assert rule50.max() == SEVENTY_FIVE_MOVE_PLIES - 1


@pytest.mark.parametrize("cycles", [38, 70])  # 152 plies: past the draw; 280: past uint8 (was OverflowError)
def test_moves_after_the_75_move_draw_skip_the_game(tmp_path, capsys, cycles):
    pgn = _file(tmp_path, GOOD_1, _game(_shuffle(cycles), "1/2-1/2"), GOOD_2)
    out = tmp_path / "chunks"
    assert _from_pgn([str(pgn), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    # The position before ply 153 has had 150 plies without a capture or pawn move (plies 3..152).
    assert f"{pgn}: game 2 (odd - z): past the 75-move rule: ply 153 (77. Ng1) is played after 150 plies" in \
        captured.err
    assert len(list(out.glob("*.gz"))) == 2
    reasons = [getattr(item, "reason", None) for item in convert_pgn_files([pgn])]
    assert reasons == [None, SkipReason.PAST_75_MOVE_RULE, None]


# ---------------------------------------------------------------------------------------------- odd games


ODD_GAMES = {  # movetext or whole game -> the skip reason, None when the game converts
    "variations": (_game("1. e4 e5 (1... c5 2. Nf3 (2. c3) d6) 2. Nf3 (2. Bc4 Nf6) Nc6"), None),
    "nested empty variation": (_game("1. e4 e5 ( ) 2. Nf3"), None),
    "bad move in a variation": (_game("1. e4 e5 (1... Qxh1) 2. Nf6"), SkipReason.ILLEGAL_MOVE),
    "stray ) after a bad move": (_game("1. e4 e5 2. Ke3 ) Nf3 {x} $1 ( Nc3 )"), SkipReason.ILLEGAL_MOVE),
    "unbalanced (": (_game("1. e4 (((( e5"), SkipReason.ILLEGAL_MOVE),
    "huge move numbers": (_game("99999999999999999999999. e4 e5 123456789123456789123. Nf3"), None),
    # python-chess finds its "0000" null-move token inside "10000." (no legal game gets that far).
    "move number 10000": (_game("1. e4 e5 2. Nf3 10000. Nc6"), SkipReason.ILLEGAL_MOVE),
    "huge NAG": (_game("1. e4 $99999999999999999999999999 e5"), None),
    "odd comments": (_game("1. e4 {\x00\x01\ufffd\u2603 ] [ ( ) ; { [%eval #x]} e5 {multi\nline\n\n% ; (} 2. Nf3"),
                     None),
    "SetUp without FEN": (_game("1. e4 e5", headers='[SetUp "1"]\n'), None),
    "FEN without kings": (_game("1. e4", headers='[SetUp "1"]\n[FEN "8/8/8/8/8/8/8/8 w - - 0 1"]\n'),
                          SkipReason.NON_STANDARD_START),
    "FEN garbage": (_game("1. e4", headers='[FEN "garbage \x00"]\n'), SkipReason.NON_STANDARD_START),
    "FEN huge counters": (_game("1. e4", headers=f'[FEN "{chess.STARTING_BOARD_FEN} w KQkq - 9999999 9999999"]\n'),
                          None),  # the records start from the standard position: counters are not kept
    "unknown variant": (_game("1. e4", headers='[Variant "nonsense"]\n'), SkipReason.VARIANT),
    "moves after mate": (_game("1. f3 e5 2. g4 Qh4# 3. e4"), SkipReason.ILLEGAL_MOVE),
    "odd result": (_game("1. e4", result="2-0"), SkipReason.UNKNOWN_RESULT),
    "castling through check": (_game("1. e4 e5 2. Nf3 Nf6 3. Bc4 Bc5 4. Ng5 Qe7 5. Nxf7 Qxe4+ 6. O-O"),
                               SkipReason.ILLEGAL_MOVE),
}


@pytest.mark.parametrize("name", list(ODD_GAMES))
def test_odd_games_skip_or_convert_and_the_others_convert(tmp_path, name):
    text, reason = ODD_GAMES[name]
    pgn = _file(tmp_path, GOOD_1, text, GOOD_2)
    items = list(convert_pgn_files([pgn]))
    assert [getattr(item, "reason", None) for item in items] == [None, reason, None]
    if reason is None:
        assert isinstance(items[1], ConvertedGame)
    assert _converted_moves([items[0], items[2]]) == [GOOD_1_UCI, GOOD_2_UCI]


def test_non_utf8_bytes_and_a_bom_still_convert(tmp_path, capsys):
    pgn = tmp_path / "latin1.pgn"
    pgn.write_bytes(b"\xef\xbb\xbf" + GOOD_1.replace('"good one"', '"G\xe9za \xff\xfe"').encode("latin-1")
                    + b"\n" + _game("1. e4 {caf\xe9 \x80\x81} e5", "1/2-1/2").encode("latin-1"))
    items = list(convert_pgn_files([pgn]))
    assert [type(item) for item in items] == [ConvertedGame, ConvertedGame]


@pytest.mark.parametrize("content", [b"", b"\n\n  \n", b"\xef\xbb\xbf", b"%escape\n;comment\n"])
def test_empty_files_give_no_games_and_no_error(tmp_path, capsys, content):
    pgn = tmp_path / "empty.pgn"
    pgn.write_bytes(content)
    out = tmp_path / "chunks"
    assert _from_pgn([str(pgn), "--out", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"{pgn}: 0 games, 0 positions (q from evals: 0, from z: 0); " \
                                                      "skipped: 0"


def test_binary_garbage_files_are_skipped_games_or_one_line_errors(tmp_path, capsys):
    rng = random.Random(7)
    garbage = tmp_path / "garbage.pgn"
    garbage.write_bytes(bytes(rng.randrange(256) for _ in range(20000)))
    gzipped = tmp_path / "garbage.pgn.gz"
    gzipped.write_bytes(gzip.compress(garbage.read_bytes()))
    fake_gzip = tmp_path / "fake.pgn.gz"
    fake_gzip.write_bytes(b"\x1f\x8b" + garbage.read_bytes()[:500])
    fake_zstd = tmp_path / "fake.pgn.zst"
    fake_zstd.write_bytes(b"\x28\xb5\x2f\xfd" + garbage.read_bytes()[:500])
    good = _file(tmp_path, GOOD_1, GOOD_2, name="good.pgn")
    out = tmp_path / "chunks"
    status = main(["data", "from-pgn", str(garbage), str(gzipped), str(fake_gzip), str(fake_zstd), str(good),
                   "--out", str(out), "--jobs", "1"])
    captured = capsys.readouterr()
    assert status == 2 and "Traceback" not in captured.err
    errors = [line for line in captured.err.splitlines() if line.startswith("lc0distill: error: ")]
    assert [line.split(": ")[2] for line in errors] == [str(fake_gzip), str(fake_zstd)]
    assert f"{good}: 2 games, 11 positions" in captured.out
    assert len(list(out.glob("*.gz"))) >= 2


def test_a_python_chess_crash_skips_that_game_only(tmp_path, monkeypatch):
    """The safety net for parser bugs not yet known: the game is skipped, numbering and the rest go on."""
    original = chess.pgn.GameBuilder.visit_comment

    def crash(self, comment):
        if comment == "boom":
            raise RuntimeError("parser bug")
        original(self, comment)

    monkeypatch.setattr(chess.pgn.GameBuilder, "visit_comment", crash)
    pgn = _file(tmp_path, GOOD_1, _game("1. e4 {boom} e5\n2. Nf3 Nc6\n3. Bb5"), GOOD_2)
    items = list(convert_pgn_files([pgn]))
    assert [getattr(item, "reason", None) for item in items] == [None, SkipReason.UNREADABLE, None]
    assert [item.number for item in items] == [1, 2, 3]
    assert "RuntimeError: parser bug" in items[1].detail and items[1].players == "odd - z"
    assert _converted_moves(items) == [GOOD_1_UCI, GOOD_2_UCI]


# ---------------------------------------------------------------------------------------------- fuzz


TOKENS = ["(", ")", "}", "--", "Z0", "0000", "@@@@", "$1", "$99999999999999", "!", "??", "1-0", "0-1", "*",
          "1/2-1/2", "e4", "e5", "Nf3", "Ke2", "O-O", "O-O-O", "0-0", "exd5", "e8=Q", "=Q", "#", "+", "Qxf7#",
          "99999999999999999999.", "...", ";", "%", "\n", "\n\n", "\x00", "\ufffd", "\u00e9", "\r", "\t", " ",
          "[%eval #0]", "[%eval 1e9]", "+M0/1", "-99999999999999999999.99/1", "+0.18/20 1s", "book", '"', "\\"]
BRACES = ["{", "{+M5/3", "[", '[FEN "8/8/8/8/8/8/8/8 w - - 0 1"]\n', '[Variant "Chess960"]\n', "\n["]


def _mutate(rng: random.Random, text: str, tokens: list[str]) -> str:
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(text) + 1)
        if rng.random() < 0.3 and text:
            text = text[:i] + text[i + rng.randint(1, 10):]  # delete a span
        else:
            text = text[:i] + rng.choice(tokens) + text[i:]
    return text


MIDDLE = _game("1. e4 {+0.18/20 1s} e5 (1... c5 2. Nf3) 2. Nf3 {[%eval 0.3]} Nc6 3. Bb5 a6 4. Ba4 Nf6 5. O-O Be7")


def _cannot_swallow_the_next_game(middle: str) -> bool:
    """True when the mutated game closes every { comment (an open one runs on into the next game) and has
    no FEN or Variant tag (python-chess merges a game without movetext into the next game's headers)."""
    in_comment = False
    for char in middle:
        if char == "{" and not in_comment:
            in_comment = True
        elif char == "}" and in_comment:
            in_comment = False
    return not in_comment and "FEN" not in middle and "Variant" not in middle


def _check_hostile(tmp_path, middle: str) -> None:
    """GOOD_1, the hostile text, GOOD_2: only skipped or converted games come out, GOOD_1 converts, and
    GOOD_2 converts unless the hostile text can swallow it."""
    pgn = tmp_path / "fuzz.pgn"
    pgn.write_bytes(f"{GOOD_1}\n{middle}\n\n{GOOD_2}".encode("utf-8", errors="surrogatepass"))
    try:
        items = list(convert_pgn_files([pgn]))
    except PgnError:
        pytest.fail("a plain text file must never be a PgnError")
    assert all(isinstance(item, (ConvertedGame, SkippedGame)) for item in items)
    assert isinstance(items[0], ConvertedGame) and items[0].number == 1
    moves = _converted_moves(items)
    assert moves[0] == GOOD_1_UCI
    if _cannot_swallow_the_next_game(middle):
        assert GOOD_2_UCI in moves, middle


def test_seeded_fuzz_of_mutated_movetext(tmp_path):
    rng = random.Random(20240611)
    for _ in range(60):
        _check_hostile(tmp_path, _mutate(rng, MIDDLE, TOKENS))
        _check_hostile(tmp_path, _mutate(rng, MIDDLE, TOKENS + BRACES))


def test_hypothesis_fuzz_of_mutated_pgn(tmp_path):
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=150)
    @hypothesis.given(seed=st.integers(0, 2**32 - 1), braces=st.booleans(),
                      extra=st.text(max_size=40), at=st.integers(0, len(MIDDLE)))
    def check(seed, braces, extra, at):
        middle = _mutate(random.Random(seed), MIDDLE, TOKENS + (BRACES if braces else []))
        _check_hostile(tmp_path, middle[:at] + extra + middle[at:])

    check()


def test_hypothesis_fuzz_of_raw_bytes(tmp_path):
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=100)
    @hypothesis.given(data=st.binary(max_size=2000))
    def check(data):
        pgn = tmp_path / "raw.pgn"
        pgn.write_bytes(data)
        try:
            for item in convert_pgn_files([pgn]):
                assert isinstance(item, (ConvertedGame, SkippedGame))
        except PgnError as error:  # a gzip/zstd magic followed by junk
            assert str(pgn) in str(error) and "\n" not in str(error)

    check()


# ---------------------------------------------------------------------------------------------- CCRL evals


def test_cutechess_comments_are_read_from_the_movers_view():
    q = cp_to_q
    assert cutechess_q("+0.18/20 12s") == pytest.approx(q(18))
    assert cutechess_q("-1.25/18 0.9s") == pytest.approx(q(-125))
    assert cutechess_q("+M5/30 1.2s") == 1.0 and cutechess_q("-M12/40") == -1.0 and cutechess_q("M3/9") == 1.0
    assert cutechess_q("0.00/1 0s") == 0.0
    assert cutechess_q("+0.45/22 3.1s, White wins by adjudication") == pytest.approx(q(45))
    assert cutechess_q(" -0.05/17 0.51s") == pytest.approx(q(-5))
    for no_eval in ("book", "", "1/2 agreed", "1/2-1/2", "White wins", "+0.30/5x", "0.3", "[%clk 0:01:00]"):
        assert cutechess_q(no_eval) is None, no_eval


CCRL_GAME = """[White "engine a"]
[Black "engine b"]
[Result "1-0"]

{+0.40/10 1s} 1. e4 {book} e5 {book} 2. Nf3 {+0.30/20 1.5s} Nc6 {+0.10/18 0.9s} 3. Bb5 {-0.02/1 0s}
a6 {-M3/30 0.5s} 4. Ba4 {+M2/25} Nf6 {+0.30/20 1s [%eval -0.50]} 5. O-O {0.00/1 0s} Be7
{+0.45/22 3.1s, White wins by adjudication} 1-0
"""


def test_ccrl_evals_fill_q_with_the_right_sign(tmp_path, capsys):
    pgn = tmp_path / "ccrl.pgn"
    pgn.write_text(CCRL_GAME)
    out = tmp_path / "chunks"
    assert _from_pgn([str(pgn), "--out", str(out)]) == 0
    records = read_chunk(str(out / "game_000000.gz")).records
    q = cp_to_q
    # Record k is the position before ply k + 1; the comment after ply k evaluates record k (from the view
    # of the side that played ply k, i.e. the side NOT to move in record k). Records store the side to
    # move's q, so a cutechess score lands with a minus sign; the [%eval] one is white's, signed by turn.
    expected = [
        1.0,        # start: the comment before move 1 has no mover -> z (white wins, white to move)
        -1.0,       # after 1.e4 {book}: no eval -> z for black
        1.0,        # after 1...e5 {book}: z for white
        -q(30),     # after 2.Nf3 (+0.30 for white): black to move
        -q(10),     # after 2...Nc6 (+0.10 for black): white to move
        -q(-2),     # after 3.Bb5 (-0.02 for white): black to move
        1.0,        # after 3...a6 (-M3: black is mated): white to move
        -1.0,       # after 4.Ba4 (+M2: white mates): black to move
        q(-50),     # after 4...Nf6: [%eval -0.50] (white's view) wins over +0.30; white to move
        -0.0,       # after 5.O-O (0.00): black to move
    ]               # the eval after 5...Be7 has no record
    for field in ("root_q", "best_q", "played_q"):
        assert np.allclose(records[field], expected, atol=1e-6), field
    from_eval = [3, 4, 5, 6, 7, 8, 9]
    assert np.allclose(records["best_d"][from_eval], 1 - np.abs(np.array(expected)[from_eval]), atol=1e-6)
    assert np.array_equal(records["result_q"], [1, -1] * 5)
    assert capsys.readouterr().out.splitlines()[0] == f"{pgn}: 1 games, 10 positions (q from evals: 7, from z: 3); " \
                                                      "skipped: 0"


def test_per_file_eval_counts(tmp_path, capsys):
    first = tmp_path / "a.pgn"
    first.write_text(CCRL_GAME + "\n" + GOOD_2 + "\n" + _game("1. e4 --"))
    second = _file(tmp_path, GOOD_1, _game("1. e4 {[%eval 0.2]} e5 {[%eval #-1]} 2. Nf3"), name="b.pgn")
    out = tmp_path / "chunks"
    assert _from_pgn([str(first), str(second), "--out", str(out), "--jobs", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == [
        f"{first}: 2 games, 14 positions (q from evals: 7, from z: 7); skipped: 1",
        f"{second}: 2 games, 10 positions (q from evals: 2, from z: 8); skipped: 0",
    ]
    assert lines[2].startswith("wrote 4 games, 24 positions") and lines[2].endswith("skipped: 1 (null move: 1)")
    assert len(list(out.glob("*.gz"))) == 4


# ---------------------------------------------------------------------------------------------- issue 26


def test_a_truncated_pgn_zst_is_one_line_naming_the_file_and_the_good_file_beside_it_converts(tmp_path, capsys):
    """zstandard's stream reader ends quietly inside a frame: a truncated .pgn.zst read as 0 games, no error."""
    import zstandard

    games = "\n".join([GOOD_1, GOOD_2] * 200).encode()
    (tmp_path / "in").mkdir()
    whole = zstandard.ZstdCompressor().compress(games)
    (tmp_path / "in" / "cut.pgn.zst").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "in" / "good.pgn.zst").write_bytes(zstandard.ZstdCompressor().compress(games[:2000])
                                                   + zstandard.ZstdCompressor().compress(games[2000:]))
    code = _from_pgn([str(tmp_path / "in" / "cut.pgn.zst"), str(tmp_path / "in" / "good.pgn.zst"),
                      "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if "cut.pgn.zst" in line]
    assert len(lines) == 1 and "ends inside a zstandard frame" in lines[0], err
    converted = sorted((tmp_path / "out").rglob("*.gz"))
    assert len(converted) >= 400  # every game of the two-frame file, and the first part of the cut one


def test_a_gigantic_line_is_refused_in_bounded_memory(tmp_path):
    """One 256 MiB line of spaces, gzipped: refused at MAX_LINE_CHARS, the process never holding the line."""
    import subprocess
    import sys

    path = tmp_path / "spaces.pgn.gz"
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(GOOD_1.encode() + b"\n")
        block = b" " * (1 << 20)
        for _ in range(256):
            out.write(block)
        out.write(b"\n\n" + GOOD_2.encode())
    # VmHWM: this process's peak resident memory (ru_maxrss would keep the forking pytest's across exec)
    script = ("import re\nfrom pathlib import Path\nfrom lc0distill.cli import main\n"
              f"code = main(['data', 'from-pgn', {str(path)!r}, '--out', {str(tmp_path / 'out')!r}])\n"
              "print(code, re.search(r'VmHWM:\\s+(\\d+)', Path('/proc/self/status').read_text()).group(1))\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    code, peak_kib = map(int, run.stdout.split()[-2:])
    assert code == 2 and "longer than 1,048,576 characters" in run.stderr and "spaces.pgn.gz" in run.stderr
    assert peak_kib < 450 * 1024, peak_kib  # the interpreter, torch and numpy (about 280 MB); the line: 256 MB+
