"""Matches end to end: the raw-policy engine (no lc0 needed), a stand-in UCI engine for crashes and hangs,
PGN that replays legally, each opening with both colours, counts that add up, resume."""

from __future__ import annotations

import io
import json
import stat
import sys
from collections import defaultdict
from pathlib import Path

import chess
import chess.pgn
import pytest
import torch

from lc0distill.cli import main
from lc0distill.lc0.weights import write_net
from lc0distill.models.config import NetConfig
from lc0distill.models.net import SEResNet
from lc0distill.models.store import save_model

OPENINGS_PGN = """[Event "a"]
[Opening "Italian"]

1. e4 e5 2. Nf3 Nc6 3. Bc4 Bc5 *

[Event "b"]
[Opening "Queen's Gambit"]

1. d4 d5 2. c4 e6 3. Nc3 Nf6 *

[Event "c"]
[Opening "Sicilian"]

1. e4 c5 2. Nf3 d6 3. d4 cxd4 4. Nxd4 Nf6 *

[Event "d"]
[FEN "4k3/8/8/8/8/8/4P3/4K3 w - - 0 1"]
[SetUp "1"]
[Opening "pawn ending"]

1. e4 Kd7 *
"""


def _net(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    net = SEResNet(NetConfig(filters=8, blocks=1)).eval()
    if path.name.endswith(".pb.gz"):
        write_net(net, path)
    else:
        save_model(net, path)
    return path


@pytest.fixture()
def nets(tmp_path) -> list[Path]:
    return [_net(tmp_path / "alpha.pt", 1), _net(tmp_path / "beta.pt", 2)]


@pytest.fixture()
def openings(tmp_path) -> Path:
    path = tmp_path / "openings.pgn"
    path.write_text(OPENINGS_PGN)
    return path


def _match(capsys, *argv) -> tuple[int, dict | None, str]:
    code = main(["match", *map(str, argv), "--json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def _games(pgn: Path) -> list[chess.pgn.Game]:
    stream, games = io.StringIO(pgn.read_text()), []
    while (game := chess.pgn.read_game(stream)) is not None:
        games.append(game)
    return games


def _assert_counts_add_up(report: dict, games: int) -> None:
    first, second = report["nets"]
    assert first["games"] == second["games"] == games == report["games"]
    assert first["wins"] == second["losses"] and first["losses"] == second["wins"] and first["draws"] == second["draws"]
    for net in report["nets"]:
        white, black = net["as_white"], net["as_black"]
        assert sum(white.values()) == sum(black.values()) == games // 2  # each net has each colour equally
        assert white["wins"] + black["wins"] == net["wins"]
    pairing = report["pairings"][0]
    assert (pairing["wins"], pairing["draws"], pairing["losses"]) == (first["wins"], first["draws"], first["losses"])
    assert sum(pairing["pentanomial"]) == pairing["pairs"] == games // 2
    points = sum(k * 0.5 * n for k, n in enumerate(pairing["pentanomial"]))
    assert points == first["wins"] + 0.5 * first["draws"]


def _assert_pgn(pgn: Path, report: dict) -> list[chess.pgn.Game]:
    games = _games(pgn)
    assert len(games) == report["games"]
    colours = defaultdict(list)
    for game in games:
        board = game.board()
        for move in game.mainline_moves():
            assert move in board.legal_moves, (game.headers, move)
            board.push(move)
        tags = game.headers
        assert tags["Result"] in ("1-0", "0-1", "1/2-1/2") and tags["Termination"] and tags["TerminationDetails"]
        if tags["Termination"] == "normal" and tags["TerminationDetails"] == "checkmate":
            assert board.is_checkmate()
        assert int(tags["PlyCount"]) == len(list(game.mainline_moves()))
        colours[(tags["GamePair"], tags["Opening"])].append((tags["White"], tags["Black"]))
    for pairs in colours.values():  # every opening twice, colours swapped
        assert len(pairs) == 2 and pairs[0] == pairs[1][::-1]
    white_points = defaultdict(float)
    for game in games:
        result = game.headers["Result"]
        for colour, name in (("White", game.headers["White"]), ("Black", game.headers["Black"])):
            white_points[name] += {"1-0": 1.0, "0-1": 0.0, "1/2-1/2": 0.5}[result] if colour == "White" else \
                {"1-0": 0.0, "0-1": 1.0, "1/2-1/2": 0.5}[result]
    for net in report["nets"]:
        assert white_points[net["name"]] == net["wins"] + 0.5 * net["draws"]
    return games


def test_a_policy_match_plays_every_opening_with_both_colours(tmp_path, capsys, nets, openings):
    pgn = tmp_path / "games.pgn"
    code, report, err = _match(capsys, *nets, "--engine", "policy", "--games", 8, "--openings", openings,
                               "--pgn", pgn, "--concurrency", 3)
    assert code == 0, err
    assert report["engine"] == "policy" and report["openings"] == {"source": "openings.pgn", "count": 4}
    _assert_counts_add_up(report, 8)
    games = _assert_pgn(pgn, report)
    assert {g.headers["Opening"] for g in games} == {"Italian", "Queen's Gambit", "Sicilian", "pawn ending"}
    fen_game = next(g for g in games if g.headers["Opening"] == "pawn ending")
    assert fen_game.headers["FEN"] == "4k3/8/8/8/8/8/4P3/4K3 w - - 0 1"
    assert all(net["speed"] > 0 and net["speed_unit"] == "positions/s" for net in report["nets"])


def test_the_policy_engine_is_deterministic_and_the_games_do_not_depend_on_concurrency(tmp_path, capsys, nets,
                                                                                       openings):
    runs = []
    for concurrency in (1, 8):
        pgn = tmp_path / f"c{concurrency}.pgn"
        assert _match(capsys, *nets, "--engine", "policy", "--games", 8, "--openings", openings, "--pgn", pgn,
                      "--concurrency", concurrency)[0] == 0
        runs.append(sorted((g.headers["Round"], " ".join(m.uci() for m in g.mainline_moves()), g.headers["Result"])
                           for g in _games(pgn)))
    assert runs[0] == runs[1]


def test_resume_plays_only_the_missing_games(tmp_path, capsys, nets, openings):
    pgn = tmp_path / "games.pgn"
    common = ("--engine", "policy", "--openings", openings, "--pgn", pgn)
    assert _match(capsys, *nets, *common, "--games", 4)[0] == 0
    text = pgn.read_text()
    pgn.write_text(text[: len(text) - 40])  # the last game cut off, as by a kill while it was written
    code, report, err = _match(capsys, *nets, *common, "--games", 8, "--resume")
    assert code == 0, err
    assert report["resumed"] == 3 and report["games"] == 8
    _assert_counts_add_up(report, 8)
    assert len([g for g in _games(pgn) if g.headers.get("PlyCount") == str(len(list(g.mainline_moves())))]) == 8
    code, _, err = _match(capsys, *nets, *common, "--games", 8)
    assert code == 2 and "--resume" in err  # never overwrites or mixes silently
    code, _, err = _match(capsys, *nets, "--engine", "policy", "--pgn", pgn, "--games", 8, "--resume")
    assert code == 2 and "OpeningSuite" in err  # another suite: not the same match


def test_three_nets_make_a_round_robin(tmp_path, capsys, nets, openings):
    third = _net(tmp_path / "gamma.pt", 3)
    code, report, err = _match(capsys, *nets, third, "--engine", "policy", "--games", 4, "--openings", openings)
    assert code == 0, err
    assert len(report["pairings"]) == 3 and report["games"] == 12
    ratings = {r["name"]: r for r in report["ratings"]}
    assert ratings["alpha"]["elo"] == 0  # anchored on the first net
    for net in report["nets"]:
        assert net["games"] == 8


def _fake_engine(tmp_path: Path) -> Path:
    script = tmp_path / "fake-lc0"
    script.write_text(f"#!{sys.executable}\nimport runpy, sys\nsys.argv[0] = {str(Path(__file__).with_name('fake_uci.py'))!r}\n"
                      f"runpy.run_path(sys.argv[0], run_name='__main__')\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


@pytest.mark.parametrize("failure, message", [("crash", "lc0 failed in game"), ("hang", "stopped answering in game")])
def test_an_engine_that_crashes_or_hangs_names_the_net_and_the_game(tmp_path, capsys, openings, failure, message):
    engine = _fake_engine(tmp_path)
    good = _net(tmp_path / "steady.pb.gz", 1)
    bad = _net(tmp_path / f"{failure}-after-25.pb.gz", 2)  # fine for its first 25 moves (a few games)
    pgn = tmp_path / "games.pgn"
    code, report, err = _match(capsys, good, bad, "--engine", engine, "--games", 8, "--openings", openings,
                               "--pgn", pgn, "--move-timeout", 2, "--max-plies", 16)
    assert code == 2
    line = [l for l in err.splitlines() if l.startswith("lc0distill: error:")]
    assert len(line) == 1 and f"{failure}-after-25" in line[0] and message in line[0], err
    if failure == "crash":  # what the engine wrote to stderr last is in the error, not printed on its own
        assert "its last words: fake-uci: a simulated crash" in line[0] and "stderr >>" not in err, err
    assert 0 < report["games"] < 8 and report["error"] == line[0].removeprefix("lc0distill: error: ")
    assert len(_games(pgn)) == report["games"]  # the games before the failure are kept


def test_match_mistakes_are_one_line_errors(tmp_path, capsys, nets, openings):
    cases = [
        ((nets[0],), "two nets or more"),
        ((*nets, "--engine", "policy", "--nodes", 5), "--nodes"),
        ((*nets, "--engine", "policy", "--games", 3, "--openings", openings), "even number"),
        ((*nets, "--engine", "policy", "--sprt", "5,1"), "ELO1 must be above ELO0"),
        ((*nets, "--engine", "policy", "--resume"), "--pgn"),
        ((*nets, "--engine", "policy", "--tc", "x"), "--tc"),
        ((*nets, "--engine", tmp_path / "no-such-lc0"), "no such executable"),
        ((*nets, "--engine", "policy", "--openings", tmp_path / "missing.epd"), "missing.epd"),
    ]
    for argv, fragment in cases:
        code, _, err = _match(capsys, *argv)
        assert code == 2 and "Traceback" not in err, (argv, err)
        assert err.count("lc0distill: error:") == 1 and fragment in err, (argv, err)


def test_sprt_stops_as_soon_as_it_accepts(tmp_path, capsys, nets):
    from tests.conftest import SHARED

    maia = SHARED / "nets" / "maia-1900.pb.gz"
    if not maia.exists():
        pytest.skip(f"reference net {maia} is absent")
    code, report, err = _match(capsys, maia, nets[0], "--engine", "policy", "--games", 200, "--sprt", "0,50",
                               "--concurrency", 8, "--max-plies", 120)
    assert code == 0, err
    sprt = report["sprt"]
    assert sprt["decision"] == "H1" and sprt["llr"] >= sprt["upper"] and report["stopped"] == "SPRT accepts H1"
    assert report["games"] < 200 and report["pairings"][0]["wins"] > report["pairings"][0]["losses"]


def _state(fen: str = chess.STARTING_FEN):
    from lc0distill.match.game import Adjudication, GameSpec, GameState
    from lc0distill.match.openings import Opening

    return GameState(GameSpec(1, 0, Opening("o", fen, (), "test"), 0, 1, 1), Adjudication())


def test_rule_draws_are_claimed_when_they_happen_not_one_move_early():
    from lc0distill.match.game import Move

    state = _state()
    moves = ["g1f3", "g8f6", "f3g1", "f6g8", "g1f3", "g8f6", "f3g1"]  # the start position seen twice so far
    assert all(state.play(Move(uci, 0, 0.0)) is None for uci in moves)
    result = state.play(Move("f6g8", 0, 0.0))  # now three times
    assert result.result == "1/2-1/2" and result.reason == "threefold repetition"
    state = _state("7k/8/6K1/8/8/8/r7/1Q6 b - - 98 80")
    assert state.play(Move("a2a3", 0, 0.0)) is None  # 99 halfmoves: White may still mate
    result = state.play(Move("b1b8", 0, 0.0))
    assert result.result == "1-0" and result.reason == "checkmate"


def test_a_failure_before_any_complete_pair_still_reports(tmp_path, capsys, openings):
    engine = _fake_engine(tmp_path)
    good, bad = _net(tmp_path / "steady.pb.gz", 1), _net(tmp_path / "crash-after-5.pb.gz", 2)
    code, report, err = _match(capsys, good, bad, "--engine", engine, "--games", 4, "--openings", openings,
                               "--max-plies", 16)
    assert code == 2 and "Traceback" not in err and "crash-after-5" in err, err
    pairing = report["pairings"][0]
    assert report["games"] == pairing["games"] == 1 and pairing["pairs"] == 0
    assert pairing["elo"] is None and pairing["elo_low"] is None and pairing["score"] in (0.0, 0.5, 1.0)


def test_resume_drops_a_game_cut_inside_its_headers(tmp_path, capsys, nets, openings):
    pgn = tmp_path / "games.pgn"
    common = ("--engine", "policy", "--openings", openings, "--pgn", pgn)
    assert _match(capsys, *nets, *common, "--games", 4)[0] == 0
    text = pgn.read_text()
    last = text.rindex('[Event "')
    pgn.write_text(text[: last + 5])  # cut inside the last game's first tag
    code, report, err = _match(capsys, *nets, *common, "--games", 4, "--resume")
    assert code == 0, err
    assert report["resumed"] == 3 and report["games"] == 4
    games = _games(pgn)
    assert len(games) == 4 and all(g.headers["Event"] == "lc0distill match" for g in games)


def test_adjudication_and_sprt_values_are_checked(capsys, nets):
    for argv, fragment in (((*nets, "--engine", "policy", "--sprt=-inf,5"), "finite"),
                           ((*nets, "--engine", "policy", "--resign=-600,4"), "whole numbers"),
                           ((*nets, "--engine", "policy", "--draw", "10,8.5,40"), "whole numbers"),
                           ((*nets, "--engine", "policy", "--move-timeout", 0), "--move-timeout"),
                           ((*nets, "--engine", "policy", "--threads=-1"), "--threads")):
        code, _, err = _match(capsys, *argv)
        assert code == 2 and err.count("lc0distill: error:") == 1 and fragment in err, (argv, err)


def test_net_names_tell_same_named_files_apart():
    from lc0distill.match.match import net_names

    assert net_names(["r/distilled/final.pt", "r/alone/final.pt", "x/y.pt"]) == ["distilled/final", "alone/final", "y"]
    assert net_names(["a/n.pt", "a/n.pb.gz"]) == ["a/n#1", "a/n#2"]
