"""Matches in the real lc0 engine: every game replays legally, colours swap, counts add up, a .pt net is
exported for lc0 first, and the raw-policy engine plays exactly what lc0 plays at one node."""

from __future__ import annotations

import pytest
import torch

from lc0distill.engine.locate import EngineNotFound, find_engine
from lc0distill.models.config import NetConfig
from lc0distill.models.net import SEResNet
from lc0distill.models.store import save_model
from tests.conftest import SHARED
from tests.match.test_match import _assert_counts_add_up, _assert_pgn, _games, _match

pytestmark = pytest.mark.engine
MAIA = [SHARED / "nets" / "maia-1900.pb.gz", SHARED / "nets" / "maia-1100.pb.gz"]


@pytest.fixture(scope="module", autouse=True)
def _engine():
    try:
        find_engine()
    except EngineNotFound as error:
        pytest.skip(f"the lc0 engine is not installed: {error}")
    if not all(net.exists() for net in MAIA):
        pytest.skip(f"reference nets {MAIA} are absent")


def test_lc0_at_one_node_plays_the_raw_policy_move_for_move(tmp_path, capsys):
    moves = {}
    for engine in ("lc0", "policy"):
        pgn = tmp_path / f"{engine}.pgn"
        code, report, err = _match(capsys, *MAIA, "--engine", engine, "--games", 8, "--pgn", pgn, "--concurrency", 2)
        assert code == 0, err
        _assert_counts_add_up(report, 8)
        _assert_pgn(pgn, report)
        moves[engine] = {(g.headers["GamePair"], g.headers["White"]): ([m.uci() for m in g.mainline_moves()],
                                                                       g.headers["Result"]) for g in _games(pgn)}
        if engine == "lc0":
            assert report["engine_version"].startswith("Lc0") and all(n["speed"] for n in report["nets"])
    assert moves["lc0"] == moves["policy"]


def test_a_pt_net_plays_in_lc0_at_a_node_limit(tmp_path, capsys):
    torch.manual_seed(0)
    student = tmp_path / "student.pt"
    save_model(SEResNet(NetConfig(filters=8, blocks=1)).eval(), student)
    pgn = tmp_path / "games.pgn"
    code, report, err = _match(capsys, MAIA[1], student, "--nodes", 20, "--games", 4, "--pgn", pgn)
    assert code == 0, err
    _assert_counts_add_up(report, 4)
    _assert_pgn(pgn, report)
    assert {n["name"] for n in report["nets"]} == {"maia-1100", "student"}


def test_a_net_lc0_refuses_is_one_line_naming_it(tmp_path, capsys):
    broken = tmp_path / "broken.pb.gz"
    broken.write_bytes(b"\x1f\x8b" + bytes(30))
    # lc0 reads the net at its first ucinewgame, prints "error ..." on stdout and would never answer a go: the
    # player loads it at its start and fails there with lc0's words (not after the 60 s move timeout)
    code, _, err = _match(capsys, MAIA[0], broken, "--nodes", 1, "--games", 2)
    assert code == 2 and err.count("lc0distill: error:") == 1 and "broken" in err, err
    assert "does not start with" in err and "unknown compression method" in err, err


@pytest.mark.parametrize("limit, value, time_control", [("--tc", "2+0.05", "2+0.05"), ("--movetime", 40, "1/0.04")])
def test_clock_limits_report_each_nets_nps(tmp_path, capsys, limit, value, time_control):
    pgn = tmp_path / "games.pgn"
    code, report, err = _match(capsys, *MAIA, limit, value, "--games", 2, "--pgn", pgn, "--max-plies", 16)
    assert code == 0, err
    _assert_counts_add_up(report, 2)
    _assert_pgn(pgn, report)
    assert {g.headers["TimeControl"] for g in _games(pgn)} == {time_control}
    for net in report["nets"]:  # lc0's own nps: a search of many nodes per move at this clock
        assert net["speed_unit"] == "lc0 nps" and net["speed"] > 10, report["nets"]
