"""Who chooses the moves: the net's raw policy in-process (batched over the games that wait for it), or the
lc0 engine over UCI (one process per net and concurrent game).

`PolicyPlayer` plays what lc0 plays at one node: the most probable legal move of the raw policy, no search;
its score is the value head's q as lc0 reports it (cp = 90 tan(1.5637541897 q)). `UciPlayer` runs lc0 with
the net as WeightsFile and the match's options; a process that dies or stops answering is an EngineFailure
naming the net.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import chess
import chess.engine

from lc0distill.errors import Lc0DistillError
from lc0distill.match.game import GameState, Move, cp_from_q
from lc0distill.models.inference import evaluate_histories


# One search thread per lc0 (concurrent games share the cores); scores as 90 tan(1.5637541897 q) centipawns,
# the scale the raw-policy engine reports and `data from-pgn` reads back (lc0 v0.31's default is WDL_mu);
# 20 ms of move overhead, not lc0's 200 (meant for a GUI over a network): with 200, --movetime 100 played
# every move after one node. The match's own clock counts the pipe's real overhead.
DEFAULT_ENGINE_OPTIONS = {"Threads": "1", "ScoreType": "centipawn", "MoveOverheadMs": "20"}


class EngineFailure(Lc0DistillError):
    """An engine process crashed, hung or answered nonsense during a game."""


class _EngineLines(logging.Filter):
    """Keeps, per engine process, the lines python-chess logs with the format `message` (the process, then the
    line) that `wanted` accepts, instead of letting them through as warnings; `keep`: only the newest so many."""

    def __init__(self, message: str, keep: int | None = None, wanted: Callable[[str], bool] = lambda line: True):
        super().__init__()
        self.message, self.keep, self.wanted = message, keep, wanted
        self.lines: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != self.message or not isinstance(record.args, tuple) or len(record.args) != 2 \
                or not self.wanted(str(record.args[1])):
            return True
        try:
            self.lines.setdefault(record.args[0], deque(maxlen=self.keep)).append(str(record.args[1]).strip())
        except TypeError:  # not weakly referable: say it as python-chess would
            return True
        return False

    def of(self, protocol: object) -> list[str]:
        return [line for line in self.lines.get(protocol, ()) if line]


# python-chess logs every line an engine writes to stderr as a warning: for lc0 its banner and backend lines,
# per process and per start. The last few are kept for a failure's message instead.
_STDERR = _EngineLines("%s: stderr >> %s", keep=4)
# lc0 says what went wrong on stdout, in lines starting "error" (a net it cannot read: "error <fd:4>: unknown
# compression method"), and then never answers `go`; python-chess logs them as unexpected output. They are
# kept so that a player stops waiting at once and names them.
_ERRORS = _EngineLines("%s: Unexpected engine output: %r", wanted=lambda line: line.startswith("error"))
logging.getLogger("chess.engine").addFilter(_STDERR)
logging.getLogger("chess.engine").addFilter(_ERRORS)


def _last_words(protocol: object) -> str:
    lines = _STDERR.of(protocol)
    return f"; its last words: {' | '.join(lines)}" if lines else ""


ERROR_POLL_SECONDS = 0.2  # how soon a player waiting for a move sees an error line lc0 printed


@dataclass
class SpeedTally:
    """What a player searched and how long it took (nps as the engine reported it, or positions/s)."""

    nodes: int = 0
    seconds: float = 0.0
    reported_nps: list[int] = field(default_factory=list)

    def add(self, nodes: int | None, seconds: float, nps: int | None) -> None:
        self.nodes += nodes or 0
        self.seconds += seconds
        if nps:
            self.reported_nps.append(nps)

    @property
    def nps(self) -> float | None:
        """The mean of the engine's own nps reports when it gave them, else nodes over time."""
        if self.reported_nps:
            return sum(self.reported_nps) / len(self.reported_nps)
        return self.nodes / self.seconds if self.seconds > 0 else None


class PolicyPlayer:
    """A net choosing its raw policy's most probable legal move; `choose` takes many games at once."""

    def __init__(self, net, name: str, batch_size: int = 256):
        self.net = net
        self.name = name
        self.batch_size = batch_size
        self.speed = SpeedTally()

    def choose(self, states: Sequence[GameState]) -> list[Move]:
        start = time.perf_counter()
        evaluations = evaluate_histories(self.net, [s.history for s in states], self.batch_size)
        seconds = time.perf_counter() - start
        self.speed.add(len(states), seconds, None)  # "nodes": positions evaluated
        moves = []
        for evaluation in evaluations:
            best = next(iter(evaluation.policy))  # the dict is ordered most probable first
            moves.append(Move(best, cp_from_q(evaluation.q), seconds / len(states), nodes=1, depth=1))
        return moves

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class UciLimits:
    """One of: nodes per move, time per move, or a clock with increment (seconds)."""

    nodes: int | None = None
    movetime: float | None = None
    base: float | None = None
    increment: float = 0.0

    def describe(self) -> str:
        if self.nodes is not None:
            return f"nodes={self.nodes}"
        if self.movetime is not None:
            return f"movetime={self.movetime * 1000:g}ms"
        return f"tc={self.base:g}+{self.increment:g}"

    @property
    def pgn_time_control(self) -> str:
        """The PGN TimeControl tag: "-" for node limits, "moves/seconds" style otherwise."""
        if self.base is not None:
            return f"{self.base:g}+{self.increment:g}"
        if self.movetime is not None:
            return f"1/{self.movetime:g}"
        return "-"


def clock_limits(tc: str) -> UciLimits:
    """--tc BASE+INC: seconds on the clock, plus an increment per move (INC may be left out)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:\+\s*(\d+(?:\.\d+)?))?\s*", tc)
    if not match or float(match.group(1)) <= 0:
        raise Lc0DistillError(f"--tc {tc}: BASE+INC in seconds is needed, e.g. 10+0.1")
    return UciLimits(base=float(match.group(1)), increment=float(match.group(2) or 0))


class UciPlayer:
    """lc0 over UCI (python-chess), one process; `choose` plays one game's move."""

    def __init__(self, binary: Path, weights: Path, name: str, options: dict[str, str], move_timeout: float,
                 optional: frozenset[str] = frozenset()):
        self.name = name
        self.move_timeout = move_timeout
        self.speed = SpeedTally()
        self.engine = None
        try:
            self.engine = chess.engine.SimpleEngine.popen_uci([str(binary)], timeout=60)
            # `optional`: defaults of ours that an engine without the option (another lc0 version) goes without
            options = {k: v for k, v in options.items() if k not in optional or k in self.engine.options}
            self.engine.configure({"WeightsFile": str(weights), **options})
            self._load_net()
            refused = _ERRORS.of(self.engine.protocol)
            if refused:
                raise chess.engine.EngineError(" | ".join(refused))
        except (chess.engine.EngineError, chess.engine.EngineTerminatedError, OSError, asyncio.TimeoutError,
                TimeoutError) as error:
            said = _last_words(self.engine.protocol) if self.engine is not None else ""
            if self.engine is not None:
                self.engine.close()
            raise EngineFailure(f"{name}: lc0 does not start with {weights}: {str(error) or type(error).__name__}"
                                f"{said}") from None
        self.version = self.engine.id.get("name", "lc0")
        self.failed = False

    def _load_net(self) -> None:
        """lc0 loads its net at the first ucinewgame (or go), not at isready: load it now, so that a net it
        refuses fails here and the first move's clock does not pay for the loading."""
        protocol = self.engine.protocol

        async def load() -> None:
            protocol.send_line("ucinewgame")
            await protocol.ping()

        asyncio.run_coroutine_threadsafe(asyncio.wait_for(load(), 120), protocol.loop).result()

    def choose(self, state: GameState, limit: chess.engine.Limit, game_id: object) -> Move:
        start = time.perf_counter()
        try:
            result = self._play(state.board, limit, game_id)
        except (chess.engine.EngineError, chess.engine.EngineTerminatedError, asyncio.TimeoutError,
                TimeoutError) as error:
            self.failed = True
            what = "stopped answering" if isinstance(error, (asyncio.TimeoutError, TimeoutError)) else "failed"
            raise EngineFailure(f"{self.name}: lc0 {what} in game {state.spec.number} at ply "
                                f"{len(state.board.move_stack)} ({str(error) or type(error).__name__})"
                                f"{_last_words(self.engine.protocol)}") from None
        seconds = time.perf_counter() - start
        info = result.info
        if result.move is None or result.move not in state.board.legal_moves:
            raise EngineFailure(f"{self.name}: lc0 played {result.move} in game {state.spec.number}, not a legal move")
        score = info.get("score")
        cp = score.pov(state.board.turn).score(mate_score=MAX_SCORE) if score is not None else None
        nodes = info.get("nodes")
        if nodes is None and limit.nodes:  # lc0 at a few nodes can answer before any info line (timing)
            nodes = limit.nodes
        self.speed.add(nodes, seconds, info.get("nps"))
        return Move(result.move.uci(), None if cp is None else max(-MAX_SCORE, min(MAX_SCORE, cp)), seconds,
                    nodes=info.get("nodes"), depth=info.get("depth"))

    def _play(self, board: chess.Board, limit: chess.engine.Limit, game_id: object) -> chess.engine.PlayResult:
        """engine.play with a deadline even for node limits (python-chess sets none there): a hung lc0 is a
        failure after move_timeout seconds (plus the move's own time)."""
        budget = self.move_timeout + (limit.time or 0) + max(limit.white_clock or 0, limit.black_clock or 0)
        coroutine = asyncio.wait_for(self.engine.protocol.play(board, limit, game=game_id,
                                                               info=chess.engine.INFO_SCORE | chess.engine.INFO_BASIC),
                                     budget)
        future = asyncio.run_coroutine_threadsafe(coroutine, self.engine.protocol.loop)
        errors = len(_ERRORS.of(self.engine.protocol))
        while True:
            try:
                return future.result(timeout=ERROR_POLL_SECONDS)
            except concurrent.futures.TimeoutError:
                if future.done():  # the move's own deadline (a TimeoutError too, in Python 3.11)
                    raise
                said = _ERRORS.of(self.engine.protocol)[errors:]
                if said:  # lc0 never answers a go after an error: stop waiting for it
                    future.cancel()
                    raise chess.engine.EngineError(" | ".join(said)) from None

    def close(self) -> None:
        """quit, or for an engine that failed (it may hang), kill at once."""
        if self.failed:
            self.engine.close()
            return
        try:
            self.engine.quit()
        except (chess.engine.EngineError, chess.engine.EngineTerminatedError, asyncio.TimeoutError, TimeoutError):
            try:
                self.engine.close()
            except Exception:  # the process is gone already: nothing left to close
                pass


MAX_SCORE = 12800
