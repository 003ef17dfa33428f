"""Playing the scheduled games: in-process with the nets' raw policy (all concurrent games batched per net),
or with lc0 processes over UCI (a thread per concurrent game, each with its own lc0 per net).

Every finished game goes to the Recorder at once (PGN appended and flushed), so a crash or a kill loses only
the games in flight; a stop request (SPRT decided, an engine failed) lets the games in flight finish and
starts no new one.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import chess
import chess.engine

from lc0distill.match.game import Adjudication, GameResult, GameSpec, GameState, pgn_game
from lc0distill.match.players import EngineFailure, PolicyPlayer, UciLimits, UciPlayer


@dataclass
class Recorder:
    """Collects finished games, appends each to the PGN, and tells `on_result` (progress, SPRT)."""

    names: list[str]
    pgn: Path | None
    headers: dict[str, str]
    on_result: Callable[[GameResult], None] = lambda result: None
    results: list[GameResult] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, result: GameResult) -> None:
        with self.lock:
            self.results.append(result)
            if self.pgn is not None:
                with open(self.pgn, "a", encoding="utf-8") as out:
                    print(pgn_game(result, self.names, self.headers), file=out, end="\n\n", flush=True)
            self.on_result(result)


@dataclass
class Stop:
    """Why the match stops early: set once (the first reason wins), read by every runner."""

    event: threading.Event = field(default_factory=threading.Event)
    reason: str | None = None
    failure: EngineFailure | None = None
    crash: BaseException | None = None  # anything else a worker thread raised: re-raised by play_uci

    def request(self, reason: str, failure: EngineFailure | None = None) -> None:
        if not self.event.is_set():
            self.reason, self.failure = reason, failure
            self.event.set()

    @property
    def requested(self) -> bool:
        return self.event.is_set()


# ------------------------------------------------------------------------------------------ raw policy

def play_policy(players: list[PolicyPlayer], specs: list[GameSpec], adjudication: Adjudication,
                concurrency: int, recorder: Recorder, stop: Stop) -> None:
    """Up to `concurrency` games at once; each round, every net evaluates all the positions waiting for it
    in one batch."""
    waiting = list(reversed(specs))
    active: list[GameState] = []
    while waiting or active:
        while waiting and len(active) < concurrency and not stop.requested:
            active.append(GameState(waiting.pop(), adjudication))
        if not active:
            return
        still = []
        waiting_for = [[state for state in active if state.player_to_move() == index] for index in range(len(players))]
        for player, mine in zip(players, waiting_for):  # each game moves once per round
            if not mine:
                continue
            for state, move in zip(mine, player.choose(mine)):
                result = state.play(move)
                if result is None:
                    still.append(state)
                else:
                    recorder.add(result)
        active = still


# ------------------------------------------------------------------------------------------ lc0 over UCI

@dataclass
class UciSetup:
    binary: Path
    weights: list[Path]
    names: list[str]
    options: dict[str, str]
    limits: UciLimits
    move_timeout: float
    optional_options: frozenset[str] = frozenset()


def play_uci(setup: UciSetup, specs: list[GameSpec], adjudication: Adjudication, concurrency: int,
             recorder: Recorder, stop: Stop) -> dict[int, list[UciPlayer]]:
    """`concurrency` threads, each with one lc0 per net, taking games from a queue. Returns the players
    (for their speed and version), closed."""
    games: queue.Queue[GameSpec] = queue.Queue()
    for spec in specs:
        games.put(spec)
    players: dict[int, list[UciPlayer]] = {}
    threads = [threading.Thread(target=_uci_worker, args=(worker, setup, games, adjudication, recorder, stop, players),
                                daemon=True) for worker in range(min(concurrency, len(specs)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if stop.crash is not None:
        raise stop.crash
    return players


def _uci_worker(worker: int, setup: UciSetup, games: queue.Queue, adjudication: Adjudication, recorder: Recorder,
                stop: Stop, players: dict[int, list[UciPlayer]]) -> None:
    engines: list[UciPlayer] = []
    try:
        for weights, name in zip(setup.weights, setup.names):
            engines.append(UciPlayer(setup.binary, weights, name, setup.options, setup.move_timeout,
                                     setup.optional_options))
        players[worker] = engines
        while not stop.requested:
            try:
                spec = games.get_nowait()
            except queue.Empty:
                return
            recorder.add(_play_uci_game(spec, engines, setup.limits, adjudication))
    except EngineFailure as failure:
        stop.request(str(failure), failure)
    except BaseException as error:  # e.g. the PGN's disk is full: stop every worker, re-raised in play_uci
        stop.crash = stop.crash or error
        stop.request(f"{type(error).__name__}: {error}")
    finally:
        for engine in engines:
            engine.close()


def _play_uci_game(spec: GameSpec, engines: list[UciPlayer], limits: UciLimits,
                   adjudication: Adjudication) -> GameResult:
    state = GameState(spec, adjudication)
    clocks = {chess.WHITE: limits.base, chess.BLACK: limits.base}
    game_id = object()  # a new object: python-chess sends ucinewgame to both engines
    while True:
        side = state.board.turn
        move = engines[state.player_to_move()].choose(state, _limit(limits, clocks), game_id)
        if limits.base is not None:
            clocks[side] -= move.seconds
            if clocks[side] < 0:
                return state.finish("0-1" if side == chess.WHITE else "1-0", "time forfeit",
                                    f"{'White' if side == chess.WHITE else 'Black'} lost on time")
            clocks[side] += limits.increment
        result = state.play(move)
        if result is not None:
            return result


def _limit(limits: UciLimits, clocks: dict) -> chess.engine.Limit:
    if limits.nodes is not None:
        return chess.engine.Limit(nodes=limits.nodes)
    if limits.movetime is not None:
        return chess.engine.Limit(time=limits.movetime)
    return chess.engine.Limit(white_clock=clocks[chess.WHITE], black_clock=clocks[chess.BLACK],
                              white_inc=limits.increment, black_inc=limits.increment)

