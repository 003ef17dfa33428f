"""Each net's speed in lc0, measured the same way for all: the same binary, backend and threads (the match's
engine options), a search of `seconds` on each of the first `positions` built-in openings; the median of the
nps lc0 reports at the end of each search."""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import chess.engine

from lc0distill.engine.locate import find_engine
from lc0distill.match.openings import builtin_openings
from lc0distill.match.players import DEFAULT_ENGINE_OPTIONS, UciPlayer
from lc0distill.nets import lc0_weights_file


def lc0_nps(net: str | Path, options: dict[str, str], positions: int, seconds: float,
            engine_path: str | None = None, optional: frozenset = frozenset(DEFAULT_ENGINE_OPTIONS)) -> dict:
    """{"nps": median, "per_position": [...], "positions", "seconds", "engine"} for one net."""
    binary = find_engine(engine_path)
    with tempfile.TemporaryDirectory(prefix="lc0distill-nps-") as folder:
        weights = lc0_weights_file(net, Path(folder) / "net.pb.gz")
        player = UciPlayer(binary, weights, Path(net).name, options, move_timeout=60.0 + seconds,
                           optional=optional)
        try:
            measured = []
            for opening in builtin_openings()[:positions]:
                info = player.engine.analyse(opening.board(), chess.engine.Limit(time=seconds))
                if info.get("nps"):
                    measured.append(int(info["nps"]))
        finally:
            player.close()
    return {"nps": statistics.median(measured) if measured else None, "per_position": measured,
            "positions": positions, "seconds": seconds, "engine": player.version,
            "options": {k: v for k, v in options.items() if k != "WeightsFile"}}


def selfplay_rate(net: str | Path, games: int, visits: int, engine_path: str | None = None) -> dict:
    """Positions/s of lc0's own self-play with the net (`games` games at `visits` visits per move, lc0's
    defaults otherwise): what a rung costs as a data generator, e.g. for search-as-teacher data."""
    import time

    from lc0distill.chunks.reader import read_chunk
    from lc0distill.selfplay.lc0_selfplay import lc0_selfplay

    binary = find_engine(engine_path)
    with tempfile.TemporaryDirectory(prefix="lc0distill-selfplay-rate-") as folder:
        weights = lc0_weights_file(net, Path(folder) / "net.pb.gz")
        started = time.perf_counter()
        chunks = lc0_selfplay(binary, weights.resolve(), games, visits, Path(folder) / "games")
        seconds = time.perf_counter() - started
        positions = sum(len(read_chunk(str(chunk)).records) for chunk in chunks)
    return {"positions_per_second": positions / seconds, "positions": positions, "games": len(chunks),
            "visits": visits, "seconds": round(seconds, 2)}
