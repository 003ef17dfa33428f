"""Rebuild the games in a chunk: moves, positions and results, from the records alone.

V6/V7 records name the played move (`played_idx`, in the record's transformed frame). V3..V5 records do
not, so each move is the one legal move leading to the next record's position; the last move of such a
game is the legal move that ends the game as its result says (mate for a win, a drawn end for a draw),
the most visited one if several do. V3..V5 records do not say which move was played, so where several
moves end the game that way (lc0 samples its move with temperature) the choice is a guess, and the game
lists every candidate in `final_move_candidates`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import chess
import numpy as np

from lc0distill.chess.encoding import GameHistory
from lc0distill.chess.policy_index import index_to_move, move_to_index
from lc0distill.chunks.decode import record_to_board, record_transform


@dataclass
class Game:
    """One game found in a chunk: records [first, first + len(moves)) are its positions before each move."""

    start: chess.Board
    first_record: int
    moves: list[chess.Move] = field(default_factory=list)
    fens: list[str] = field(default_factory=list)  # FEN of the position of each record
    white_score: float | None = None  # 1, 0.5, 0 from the records' result fields
    final_move_candidates: list[chess.Move] = field(default_factory=list)  # V3..V5: moves that end the game

    @property
    def final_move_ambiguous(self) -> bool:
        return len(self.final_move_candidates) > 1

    @property
    def result(self) -> str:
        return {1.0: "1-0", 0.0: "0-1", 0.5: "1/2-1/2"}.get(self.white_score, "*")

    @property
    def uci_moves(self) -> list[str]:
        return [move.uci() for move in self.moves]

    def to_pgn(self, event: str = "lc0 training chunk") -> str:
        import chess.pgn

        game = chess.pgn.Game.from_board(self._final_board())
        game.headers["Event"] = event
        game.headers["Result"] = self.result
        return str(game)

    def _final_board(self) -> chess.Board:
        board = self.start.copy()
        for move in self.moves:
            board.push(move)
        return board


def _same_position(board: chess.Board, record: np.void) -> bool:
    decoded = record_to_board(record)
    return decoded.board_fen() == board.board_fen() and decoded.turn == board.turn


def _start_board(record: np.void) -> chess.Board:
    board = record_to_board(record)
    if board.board_fen() == chess.STARTING_BOARD_FEN and board.turn == chess.WHITE:
        return chess.Board()  # a full move history from the real start (repetitions, history planes)
    return board


def _white_score(record: np.void, board: chess.Board) -> float:
    q = float(record["result_q"])
    mover_score = 0.5 + 0.5 * q if float(record["result_d"]) < 1.0 else 0.5
    return mover_score if board.turn == chess.WHITE else 1.0 - mover_score


def _move_to_next(board: chess.Board, following: np.void) -> chess.Move | None:
    """The legal move after which the board shows `following`'s position (V3..V5 have no played_idx)."""
    target = record_to_board(following)
    for move in board.legal_moves:
        board.push(move)
        found = board.board_fen() == target.board_fen()
        board.pop()
        if found:
            return move
    return None


def _ends_game(board: chess.Board, mover_score: float) -> bool:
    if mover_score == 1.0:
        return board.is_checkmate()
    if mover_score == 0.5:
        return (board.is_stalemate() or board.is_insufficient_material() or board.halfmove_clock >= 100
                or board.is_repetition(3))
    return False


def _final_move_candidates(board: chess.Board, record: np.void) -> list[chess.Move]:
    """V3..V5: the legal moves that end the game as its result says, most visited first."""
    mover_score = 0.5 if float(record["result_d"]) >= 1.0 else 0.5 + 0.5 * float(record["result_q"])
    probs = record["probabilities"]
    candidates = []
    for move in board.legal_moves:
        board.push(move)
        ends = _ends_game(board, mover_score)
        board.pop()
        if ends:
            visits = float(np.nan_to_num(probs[move_to_index(board, move, record_transform(record))], nan=-1.0))
            candidates.append((-visits, len(candidates), move))
    return [move for _, _, move in sorted(candidates)]


def _played_move(board: chess.Board, record: np.void) -> chess.Move | None:
    if int(record["version"]) < 6:
        return None
    try:
        return index_to_move(board, int(record["played_idx"]), record_transform(record))
    except (ValueError, IndexError):
        return None


def reconstruct_games(records: np.ndarray) -> list[Game]:
    """The games in a chunk's records, in order (normally one per chunk)."""
    games: list[Game] = []
    index = 0
    while index < len(records):
        game = Game(start=_start_board(records[index]), first_record=index)
        game.white_score = _white_score(records[index], game.start)
        history = GameHistory(game.start)
        while index < len(records) and _same_position(history.board, records[index]):
            record = records[index]
            game.fens.append(history.board.fen())
            move = _played_move(history.board, record)
            if move is None and index + 1 < len(records):
                move = _move_to_next(history.board, records[index + 1])
            if move is None and int(record["version"]) < 6:
                game.final_move_candidates = _final_move_candidates(history.board, record)
                move = game.final_move_candidates[0] if game.final_move_candidates else None
            index += 1
            if move is None:
                break
            game.moves.append(move)
            history.push(move)
        games.append(game)
    return games
