import chess
import numpy as np
import pytest

from lc0distill.chess.policy_index import (
    CONV_POLICY_CHANNELS,
    CONV_POLICY_GATHER,
    CONV_POLICY_MAP,
    MOVE_TO_INDEX,
    MOVES,
    POLICY_SIZE,
    index_to_move,
    legal_move_indices,
    move_to_index,
)
from lc0distill.chess.transforms import PERMUTATIONS, transform_square, untransform_square


def test_index_has_1858_distinct_moves():
    assert len(MOVES) == POLICY_SIZE == 1858
    assert len(set(MOVES)) == 1858
    assert all(MOVE_TO_INDEX[m] == i for i, m in enumerate(MOVES))


@pytest.mark.parametrize("index, move", [
    (0, "a1b1"), (1792, "a7a8q"), (1793, "a7a8r"), (1794, "a7a8b"), (1795, "a7b8q"), (1857, "h7h8b"),
    (1401, "a7a8"), (322, "e2e4"), (293, "d2d4"), (159, "g1f3"), (34, "b1a3"),
])
def test_anchor_examples(index, move):
    # FORMATS §3.1 anchors, and indices the lc0 engine reported for the start position (oracle).
    assert MOVES[index] == move


def test_oracle_indices_for_every_legal_move(oracle_positions):
    """For all 20 reference positions (both colours), our index of each legal move equals lc0's."""
    checked = 0
    for position in oracle_positions:
        board = chess.Board(position["fen"])
        ours = {move.uci(): index for index, move in legal_move_indices(board).items()}
        assert ours == position["policy_nn_index"], position["category"]
        checked += len(ours)
    assert checked > 300


def test_black_moves_are_mirrored_and_castling_is_king_takes_rook():
    board = chess.Board("r3k2r/8/8/8/8/8/8/R3K2R b KQkq - 0 1")
    assert MOVES[move_to_index(board, chess.Move.from_uci("e8g8"))] == "e1h1"
    assert MOVES[move_to_index(board, chess.Move.from_uci("e8c8"))] == "e1a1"
    board.turn = chess.WHITE
    assert MOVES[move_to_index(board, chess.Move.from_uci("e1g1"))] == "e1h1"


def test_promotions_knight_is_the_plain_move():
    board = chess.Board("1n5k/P7/8/8/8/8/8/7K w - - 0 1")
    assert MOVES[move_to_index(board, chess.Move.from_uci("a7a8n"))] == "a7a8"
    assert MOVES[move_to_index(board, chess.Move.from_uci("a7b8q"))] == "a7b8q"
    assert index_to_move(board, MOVE_TO_INDEX["a7a8"]) == chess.Move.from_uci("a7a8n")
    black = chess.Board("7k/8/8/8/8/8/p7/1N5K b - - 0 1")
    assert MOVES[move_to_index(black, chess.Move.from_uci("a2b1r"))] == "a7b8r"


def test_index_to_move_inverts_move_to_index_under_every_transform():
    boards = [chess.Board(), chess.Board("r3k2r/pP4pp/8/3pP3/8/8/6p1/R3K2R w KQkq d6 0 2"),
              chess.Board("8/8/3k4/8/8/5K2/8/8 b - - 0 1")]
    for board in boards:
        # lc0 mirrors or transposes only pawnless positions (a transposed pawn move is no index entry).
        transforms = range(8) if not board.pawns else (0, 1)
        for transform in transforms:
            for move in board.legal_moves:
                assert index_to_move(board, move_to_index(board, move, transform), transform) == move


def test_transforms_are_involutions_and_permutations():
    for transform in range(8):
        assert sorted(PERMUTATIONS[transform]) == list(range(64))
        for square in range(64):
            assert untransform_square(transform_square(square, transform), transform) == square
    assert transform_square(chess.A1, 4) == chess.H8 and transform_square(chess.B1, 4) == chess.H7
    assert transform_square(chess.H1, 4) == chess.H1


def test_conv_policy_map_covers_every_move_once():
    assert CONV_POLICY_MAP.shape == (73 * 64,)
    mapped = CONV_POLICY_MAP[CONV_POLICY_MAP >= 0]
    assert sorted(mapped.tolist()) == list(range(POLICY_SIZE))
    assert CONV_POLICY_GATHER.max() < CONV_POLICY_CHANNELS * 64
    assert np.array_equal(CONV_POLICY_MAP[CONV_POLICY_GATHER], np.arange(POLICY_SIZE))


@pytest.mark.parametrize("channel, square, move", [
    (0, chess.E2, "e2e3"),  # N, distance 1
    (1, chess.E2, "e2e4"),  # N, distance 2
    (7 * 2 + 6, chess.A1, "a1h1"),  # E, distance 7
    (56, chess.G1, "g1h3"),  # knight (+1, +2)
    (57, chess.G1, "g1"),  # knight (+2, +1) leaves the board
    (0, chess.A7, "a7a8"),  # N distance 1 from rank 7: the knight promotion
    (64 + 3 * 1 + 2, chess.A7, "a7a8q"),  # promotions: dir N, piece q
    (64 + 3 * 0 + 0, chess.B7, "b7a8r"),  # dir NW, piece r
    (64 + 3 * 2 + 1, chess.G7, "g7h8b"),  # dir NE, piece b
    (64, chess.B6, None),  # promotion channels exist only for rank-7 squares
])
def test_conv_policy_channels(channel, square, move):
    index = CONV_POLICY_MAP[channel * 64 + square]
    if move is None or len(move) < 4:
        assert index == -1
    else:
        assert MOVES[index] == move
