"""Generate the engine games the quick start ships (data/quickstart-games.pgn.gz). Run once; output is seeded.

A small engine of our own plays itself: each move is scored by material and piece-square tables after the
move, minus the opponent's best capture reply (a 1.5-ply search), and chosen by a softmax over the scores so
that games differ. Every move carries the engine's evaluation as a `[%eval]` comment (white's view, pawns), so
`lc0distill data from-pgn` fills the q fields from it. Games that reach MAX_PLIES are adjudicated on material.

    python tools/make_quickstart_pgn.py --games 400 --out data/quickstart-games.pgn.gz
"""

from __future__ import annotations

import argparse
import gzip
import math
import random
import time

import chess
import chess.pgn

VALUES = {chess.PAWN: 100, chess.KNIGHT: 310, chess.BISHOP: 330, chess.ROOK: 500, chess.QUEEN: 900, chess.KING: 0}
MAX_PLIES = 200
MATE = 10_000
CENTRE_BONUS = [min(f, 7 - f) + min(r, 7 - r) for r in range(8) for f in range(8)]  # 0 at corners, 6 in centre


def evaluate(board: chess.Board) -> int:
    """Centipawns from white's view: material, centralisation of minor pieces, pawn advance."""
    score = 0
    for square, piece in board.piece_map().items():
        sign = 1 if piece.color == chess.WHITE else -1
        value = VALUES[piece.piece_type]
        if piece.piece_type in (chess.KNIGHT, chess.BISHOP, chess.QUEEN):
            value += 4 * CENTRE_BONUS[square]
        elif piece.piece_type == chess.PAWN:
            rank = chess.square_rank(square) if piece.color == chess.WHITE else 7 - chess.square_rank(square)
            value += 6 * rank + 2 * CENTRE_BONUS[square]
        score += sign * value
    return score


def best_capture_reply(board: chess.Board) -> int:
    """What the side to move gains at most with one capture (0 if none): the half ply of the search."""
    best = 0
    for move in board.generate_legal_captures():
        victim = board.piece_at(move.to_square)
        gain = VALUES[victim.piece_type] if victim else VALUES[chess.PAWN]
        if board.is_attacked_by(not board.turn, move.to_square):
            gain -= VALUES[board.piece_type_at(move.from_square)]
        best = max(best, gain)
    return best


def score_move(board: chess.Board, move: chess.Move) -> int:
    """The mover's score after `move` (centipawns, mover's view)."""
    mover = 1 if board.turn == chess.WHITE else -1
    board.push(move)
    try:
        if board.is_checkmate():
            return MATE
        if board.is_stalemate() or board.is_insufficient_material() or board.can_claim_draw():
            return 0
        return mover * evaluate(board) - best_capture_reply(board)
    finally:
        board.pop()


def choose(board: chess.Board, rng: random.Random, temperature: float) -> tuple[chess.Move, int]:
    scored = [(score_move(board, move), move) for move in board.legal_moves]
    top = max(score for score, _ in scored)
    weights = [math.exp((score - top) / temperature) for score, _ in scored]
    score, move = rng.choices(scored, weights=weights)[0]
    return move, score


def adjudicate(board: chess.Board) -> str:
    material = sum((1 if p.color == chess.WHITE else -1) * VALUES[p.piece_type] for p in board.piece_map().values())
    if abs(material) >= 500:
        return "1-0" if material > 0 else "0-1"
    return "1/2-1/2"


def play(rng: random.Random, temperature: float, number: int) -> chess.pgn.Game:
    board = chess.Board()
    game = chess.pgn.Game()
    node = game
    while not board.is_game_over(claim_draw=True) and board.ply() < MAX_PLIES:
        mover = 1 if board.turn == chess.WHITE else -1
        move, score = choose(board, rng, temperature)
        board.push(move)
        node = node.add_variation(move)
        white_score = mover * score
        node.comment = f"[%eval #{1 if white_score > 0 else -1}]" if abs(score) == MATE else f"[%eval {white_score / 100:.2f}]"
    outcome = board.outcome(claim_draw=True)
    game.headers.update({"Event": "lc0distill quick start", "Site": "tools/make_quickstart_pgn.py",
                         "Round": str(number), "White": "qs-engine", "Black": "qs-engine",
                         "Result": outcome.result() if outcome else adjudicate(board)})
    if not outcome:
        game.headers["Termination"] = "adjudication"
    return game


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", type=int, default=400)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--temperature", type=float, default=12.0, help="softmax temperature in centipawns")
    parser.add_argument("--out", default="data/quickstart-games.pgn.gz")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    start = time.perf_counter()
    results: dict[str, int] = {}
    plies = 0
    with gzip.open(args.out, "wt", compresslevel=9) as out:
        for number in range(1, args.games + 1):
            game = play(rng, args.temperature, number)
            results[game.headers["Result"]] = results.get(game.headers["Result"], 0) + 1
            plies += len(list(game.mainline_moves()))
            print(game, file=out, end="\n\n")
            if number % 50 == 0:
                print(f"{number} games, {plies} plies, {time.perf_counter() - start:.0f}s")
    print(f"wrote {args.games} games ({plies} positions) to {args.out}: {results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
