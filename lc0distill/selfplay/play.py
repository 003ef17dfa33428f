"""Games of a net against itself, batched across games: every round, one forward pass over the positions
of all the games in progress; each game then samples its move from the net's policy over the legal moves.

Moves: an opening's moves first (the net evaluates those positions too: every position of the game has the
net's targets, and the game starts where the opening starts), then `random_plies` plies of each game uniformly at random among the legal moves (diversity
from the start position, as lc0's self-play gets from noise), then sampled from p ** (1 / temperature)
renormalised (temperature 0: the most probable move). Games end by the rules (checkmate, stalemate,
insufficient material, threefold repetition and the 50-move rule as soon as they happen, which is when
lc0's self-play ends them too) or as a draw at `max_plies`. Everything a game needs is in its seed: the
same seed, net and settings give the same games whatever the batching.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import chess
import numpy as np

from lc0distill.chess.encoding import GameHistory
from lc0distill.models.inference import Evaluation, evaluate_histories


@dataclass(frozen=True)
class PlaySettings:
    temperature: float = 1.0
    random_plies: int = 0
    max_plies: int = 450
    concurrency: int = 64  # games in progress at once: the batch of each forward pass
    seed: int = 0


@dataclass
class PlayedGame:
    number: int  # 0-based, in the order games were started
    start: chess.Board  # the opening's start position (the moves below include the opening's)
    opening_moves: int  # how many of `moves` came from the opening
    moves: list[chess.Move] = field(default_factory=list)
    evaluations: list[Evaluation] = field(default_factory=list)  # the net's, one per move (opening included)
    result: str = "*"
    termination: str = ""


class _Game:
    def __init__(self, number: int, opening: chess.Board, settings: PlaySettings):
        self.rng = np.random.default_rng([settings.seed, number])
        self.history = GameHistory(opening.root())
        self.forced = list(opening.move_stack)
        self.played = PlayedGame(number, opening.root(), len(self.forced))
        self.settings = settings

    @property
    def board(self) -> chess.Board:
        return self.history.board

    def play(self, evaluation: Evaluation) -> bool:
        """Make the net's move (sampled); True when the game is over."""
        moves = list(evaluation.policy)
        plies = len(self.played.moves) - self.played.opening_moves
        if plies < 0:
            choice = self.forced[len(self.played.moves)].uci()
        elif plies < self.settings.random_plies:
            choice = moves[int(self.rng.integers(len(moves)))]
        else:
            choice = _sample(moves, np.array(list(evaluation.policy.values())), self.settings.temperature, self.rng)
        move = chess.Move.from_uci(choice)
        self.played.moves.append(move)
        self.played.evaluations.append(evaluation)
        self.history.push(move)
        return self._ended()

    def _ended(self) -> bool:
        board = self.board
        outcome = board.outcome(claim_draw=False)
        if outcome is not None:
            self.played.result, self.played.termination = outcome.result(), outcome.termination.name.lower()
        elif board.is_repetition(3):
            self.played.result, self.played.termination = "1/2-1/2", "threefold_repetition"
        elif board.halfmove_clock >= 100:
            self.played.result, self.played.termination = "1/2-1/2", "fifty_moves"
        elif len(self.played.moves) - self.played.opening_moves >= self.settings.max_plies:
            self.played.result, self.played.termination = "1/2-1/2", "max_plies"
        else:
            return False
        return True


def _sample(moves: list[str], probabilities: np.ndarray, temperature: float, rng: np.random.Generator) -> str:
    if temperature <= 0:
        return moves[int(np.argmax(probabilities))]
    weights = np.power(np.maximum(probabilities, 0.0), 1.0 / temperature)
    total = weights.sum()
    if not np.isfinite(total) or total <= 0:
        return moves[int(np.argmax(probabilities))]
    return moves[int(rng.choice(len(moves), p=weights / total))]


def play_games(net, count: int, settings: PlaySettings, openings: Sequence[chess.Board] = (),
               on_position: Callable[[int], None] | None = None) -> Iterator[PlayedGame]:
    """`count` games of `net` against itself, yielded as they end (not in order). Game i starts from
    openings[i % len(openings)] (with its move history), or the standard start."""
    started = 0
    active: list[_Game] = []
    while started < count or active:
        while started < count and len(active) < settings.concurrency:
            opening = openings[started % len(openings)].copy() if openings else chess.Board()
            active.append(_Game(started, opening, settings))
            started += 1
        if not active:
            break
        evaluations = evaluate_histories(net, [game.history for game in active])
        if on_position:
            on_position(len(active))
        still = []
        for game, evaluation in zip(active, evaluations):
            if game.play(evaluation):
                yield game.played
            else:
                still.append(game)
        active = still
