"""UCI smoke test: the lc0 binary, loaded with each of our nets, searches 50 nodes and plays a legal move
(python-chess's chess.engine speaks UCI to it), from positions with history, castling rights, en passant
and promotions."""

from __future__ import annotations

import chess
import chess.engine
import pytest

from tests.engine.conftest import KINDS
from tests.engine.netzoo import VARIANTS

pytestmark = pytest.mark.engine


def _played(moves: str) -> chess.Board:
    board = chess.Board()
    for uci in moves.split():
        board.push_uci(uci)
    return board


POSITIONS = {
    "castling and en passant": _played("e2e4 g8f6 e4e5 b8c6 f1e2 a7a6 g1f3 d7d5"),  # exd6 e.p., O-O legal
    "promotion": _played("h2h4 g7g5 h4g5 h7h6 g5h6 f8g7 h6g7 g8f6"),  # gxh8=Q/N/R/B, with history
}


def test_the_positions_have_what_they_say():
    board = POSITIONS["castling and en passant"]
    assert board.has_legal_en_passant() and any(board.is_castling(m) for m in board.legal_moves)
    assert any(m.promotion for m in POSITIONS["promotion"].legal_moves)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_lc0_plays_a_legal_move_with_every_variant(zoo, lc0_binary, variant, kind):
    assert_lc0_plays_legal_moves(lc0_binary, zoo[variant, kind].path)


def assert_lc0_plays_legal_moves(lc0_binary, weights) -> None:
    """`go nodes 50` with `weights` in lc0 on each of POSITIONS gives a legal move."""
    engine = chess.engine.SimpleEngine.popen_uci(
        [str(lc0_binary), f"--weights={weights}", "--backend=blas", "--threads=1"], timeout=60)
    try:
        for name, board in POSITIONS.items():
            result = engine.play(board, chess.engine.Limit(nodes=50), info=chess.engine.INFO_BASIC)
            assert result.move in board.legal_moves, (name, result.move)
            assert result.info.get("nodes", 0) >= 1
    finally:
        engine.quit()
