"""One game of a match: the position (with the opening's history), the rules that end it, adjudication by
the engines' scores, and its PGN record.

A game ends by the rules (checkmate, stalemate, insufficient material, threefold repetition or the 50-move
rule as a GUI claims them), by adjudication (resign: the side to move has seen its own score at or below
-resign_cp for resign_moves moves in a row; draw: from draw_from_move on, both sides' last draw_moves scores
within +-draw_cp; the ply limit), by the clock, or by an engine error (the game is then not counted).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import chess
import chess.pgn

from lc0distill.chess.encoding import GameHistory
from lc0distill.match.openings import Opening

LC0_CP_SCALE = 90.0  # lc0 reports q as centipawns: cp = 90 * tan(1.5637541897 * q)
LC0_Q_SCALE = 1.5637541897
MAX_CP = 12800  # a mate, or |q| = 1
MATE_RANGE = 500  # scores within this of MAX_CP are mates: MAX_CP - moves to mate


def cp_from_q(q: float) -> int:
    """lc0's conversion of a value q in [-1, 1] (side to move) to centipawns."""
    if not math.isfinite(q) or abs(q) >= 0.999999:
        return MAX_CP if q > 0 else -MAX_CP
    return int(round(LC0_CP_SCALE * math.tan(LC0_Q_SCALE * q)))


@dataclass(frozen=True)
class Adjudication:
    """When a game is decided before its natural end (defaults as GUIs commonly set them)."""

    resign_cp: int = 600
    resign_moves: int = 4
    draw_cp: int = 10
    draw_moves: int = 8
    draw_from_move: int = 40
    max_plies: int = 400

    def describe(self) -> str:
        return (f"resign at <= -{self.resign_cp} cp for {self.resign_moves} moves of the side to move; draw when "
                f"both sides' last {self.draw_moves} scores are within +-{self.draw_cp} cp from move "
                f"{self.draw_from_move}; draw at {self.max_plies} plies")


@dataclass(frozen=True)
class GameSpec:
    """Which game of the schedule: an opening, who has White, and where it stands in the match."""

    number: int  # 1-based, in schedule order
    opening_index: int
    opening: Opening
    white: int  # player indices
    black: int
    pair: int  # 1-based game-pair number within its pairing

    @property
    def key(self) -> tuple[int, int, int]:
        """What identifies a game across a resumed match: (pair, white, black); the pair fixes the opening."""
        return self.pair, self.white, self.black


@dataclass
class Move:
    uci: str
    score_cp: int | None  # from the mover's view
    seconds: float
    nodes: int | None = None  # searched, as the engine reported
    depth: int | None = None


@dataclass
class GameResult:
    spec: GameSpec
    result: str  # "1-0", "0-1", "1/2-1/2", or "*" (not finished: an engine failed)
    termination: str  # PGN Termination: "normal", "adjudication", "time forfeit", "abandoned"
    reason: str  # what exactly: "checkmate", "resign by score", "draw by score", "max plies", ...
    moves: list[Move] = field(default_factory=list)

    def score_of(self, player: int) -> float | None:
        """1, 0.5 or 0 for `player`; None when the game did not end."""
        if self.result == "*":
            return None
        white = {"1-0": 1.0, "0-1": 0.0, "1/2-1/2": 0.5}[self.result]
        return white if player == self.spec.white else 1.0 - white


_RULE_ENDINGS = {
    chess.Termination.CHECKMATE: "checkmate", chess.Termination.STALEMATE: "stalemate",
    chess.Termination.INSUFFICIENT_MATERIAL: "insufficient material",
    chess.Termination.SEVENTYFIVE_MOVES: "75-move rule", chess.Termination.FIVEFOLD_REPETITION: "fivefold repetition",
    chess.Termination.FIFTY_MOVES: "50-move rule", chess.Termination.THREEFOLD_REPETITION: "threefold repetition",
}


class GameState:
    """A game in progress: the board (opening history included) and the scores each side reported."""

    def __init__(self, spec: GameSpec, adjudication: Adjudication):
        self.spec = spec
        self.adjudication = adjudication
        self.board = spec.opening.board()
        self.start_ply = len(self.board.move_stack)
        self._history: GameHistory | None = None
        self.moves: list[Move] = []
        self.scores: dict[chess.Color, list[int | None]] = {chess.WHITE: [], chess.BLACK: []}

    @property
    def history(self) -> GameHistory:
        """The game's positions as the nets encode them (opening included), kept move by move once asked for."""
        if self._history is None:
            self._history = GameHistory.from_board(self.board)
        return self._history

    def player_to_move(self) -> int:
        return self.spec.white if self.board.turn == chess.WHITE else self.spec.black

    def play(self, move: Move) -> GameResult | None:
        """Make the move (legal: checked by the caller's engine or by python-chess); the result if it ended."""
        mover = self.board.turn
        played = self.board.push_uci(move.uci)
        if self._history is not None:
            self._history.push(played)
        self.moves.append(move)
        self.scores[mover].append(move.score_cp)
        return self.outcome(mover)

    def outcome(self, mover: chess.Color) -> GameResult | None:
        ended = self.board.outcome(claim_draw=False)
        if ended is not None:
            return self.finish(ended.result(), "normal", _RULE_ENDINGS.get(ended.termination, ended.termination.name))
        # The draws a player may claim, claimed at once, but only once they have happened: python-chess's
        # claim_draw also counts a repetition or a 100th halfmove the side to move could make next.
        if self.board.is_repetition(3):
            return self.finish("1/2-1/2", "normal", "threefold repetition")
        if self.board.halfmove_clock >= 100:
            return self.finish("1/2-1/2", "normal", "50-move rule")
        rules = self.adjudication
        own = self.scores[mover][-rules.resign_moves:]
        if len(own) == rules.resign_moves and all(s is not None and s <= -rules.resign_cp for s in own):
            return self.finish("0-1" if mover == chess.WHITE else "1-0", "adjudication", "resign by score")
        if self._draw_by_score():
            return self.finish("1/2-1/2", "adjudication", "draw by score")
        if len(self.board.move_stack) >= rules.max_plies:  # the opening's plies count: a game is its whole length
            return self.finish("1/2-1/2", "adjudication", "max plies")
        return None

    def _draw_by_score(self) -> bool:
        rules = self.adjudication
        if self.board.fullmove_number < rules.draw_from_move:
            return False
        recent = [self.scores[side][-rules.draw_moves:] for side in (chess.WHITE, chess.BLACK)]
        return all(len(r) == rules.draw_moves and all(s is not None and abs(s) <= rules.draw_cp for s in r)
                   for r in recent)

    def finish(self, result: str, termination: str, reason: str) -> GameResult:
        return GameResult(self.spec, result, termination, reason, list(self.moves))


def pgn_game(result: GameResult, names: list[str], headers: dict[str, str]) -> chess.pgn.Game:
    """The game as PGN: the opening's moves, then each engine move with a cutechess-style comment
    {score/depth seconds} (score in pawns from the mover's view, which `data from-pgn` reads back)."""
    spec = result.spec
    game = chess.pgn.Game()
    game.headers.update({
        "Event": "lc0distill match", "Site": "lc0distill", "Date": time.strftime("%Y.%m.%d"),  # written as it ends
        "Round": str(spec.number),
        "White": names[spec.white], "Black": names[spec.black], "Result": result.result,
        "Opening": spec.opening.name, "OpeningIndex": str(spec.opening_index), "GamePair": str(spec.pair),
        "Termination": result.termination, "TerminationDetails": result.reason, **headers,
    })
    if spec.opening.fen != chess.STARTING_FEN:
        game.headers["FEN"] = spec.opening.fen
        game.headers["SetUp"] = "1"
    node = game
    for uci in spec.opening.moves:
        node = node.add_variation(chess.Move.from_uci(uci))
    if spec.opening.moves:
        node.comment = "book"
    for move in result.moves:
        node = node.add_variation(chess.Move.from_uci(move.uci))
        node.comment = _move_comment(move)
    game.headers["PlyCount"] = str(len(spec.opening.moves) + len(result.moves))  # resume checks it: complete game
    return game


def _move_comment(move: Move) -> str:
    if move.score_cp is None:
        return f"{move.seconds:.3f}s"
    if abs(move.score_cp) >= MAX_CP - MATE_RANGE:  # a mate in n moves is reported as MAX_CP - n
        score = f"{'+' if move.score_cp > 0 else '-'}M{max(MAX_CP - abs(move.score_cp), 1)}"
    else:
        score = f"{move.score_cp / 100:+.2f}"
    return f"{score}/{move.depth if move.depth is not None else 1} {move.seconds:.3f}s"
