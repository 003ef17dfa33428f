"""`lc0 selfplay --training=true`: games of the lc0 engine with real search policies and q, written as lc0
writes its training data. lc0 puts the chunks in a new `lc0/data-*` folder of $XDG_CACHE_HOME (~/.cache) and
names each in a `gameready trainingfile PATH ... result R` line as the game ends; we point XDG_CACHE_HOME at a
scratch folder and move each chunk into the output at once, with lc0's names numbered after those already
there, so a killed run keeps every game it finished.

lc0 v0.31's self-play now and then ends at once, with no game played and exit code 0 (seen with --games=1,
about one run in four): a run that ends short is started again for the games still missing."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Callable

from lc0distill.chunks.pgn import next_chunk_index
from lc0distill.errors import Lc0DistillError
from lc0distill.fileio import write_atomic

GAME_READY = re.compile(r"^gameready trainingfile (\S+)(?:.*?\bresult (\S+))?")
RESULTS = {"whitewon": "1-0", "blackwon": "0-1", "draw": "1/2-1/2"}
EMPTY_RUNS = 3  # lc0 runs in a row that play no game before we give up

OnGame = Callable[[Path, "str | None"], None]


def lc0_selfplay(binary: Path, weights: Path, games: int, visits: int, out: Path, *, temperature: float = 1.0,
                 openings: Path | None = None, parallelism: int = 2, threads: int = 1, backend: str | None = None,
                 extra: list[str] | None = None, timeout: float | None = None,
                 on_game: OnGame | None = None) -> list[Path]:
    """Run lc0's self-play for `games` games at `visits` visits per move; the chunk files written into `out`,
    each moved there (and `on_game(chunk, result)` called) as its game ends."""
    out.mkdir(parents=True, exist_ok=True)
    argv = [str(binary), "selfplay", f"--weights={weights}", "--training=true", f"--visits={visits}",
            f"--threads={threads}", f"--temperature={temperature:g}"]
    if backend:
        argv.append(f"--backend={backend}")
    if openings is not None:
        argv.append(f"--openings-pgn={openings}")
    argv += extra or []
    moved: list[Path] = []
    empty = 0
    while len(moved) < games and empty < EMPTY_RUNS:
        left = games - len(moved)
        run = [*argv, f"--games={left}", f"--parallelism={min(parallelism, left)}"]
        played = _run_once(run, out, weights, timeout, on_game)
        moved += played
        empty = 0 if played else empty + 1
    if not moved:
        raise Lc0DistillError(f"lc0 selfplay with {weights} wrote no training data ({EMPTY_RUNS} runs)")
    if len(moved) < games:
        raise Lc0DistillError(f"lc0 selfplay with {weights} stopped after {len(moved)} of {games} games (kept in "
                              f"{out}; --resume plays the rest)")
    return moved


def _run_once(argv: list[str], out: Path, weights: Path, timeout: float | None, on_game: OnGame | None) -> list[Path]:
    """One lc0 self-play process; the chunks it finished, moved into `out` as they came."""
    with tempfile.TemporaryDirectory(prefix="lc0distill-selfplay-") as scratch:
        with open(Path(scratch) / "stderr.txt", "w+") as stderr:
            try:
                process = subprocess.Popen(argv, cwd=scratch, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                           stderr=stderr, text=True, env={**os.environ, "XDG_CACHE_HOME": scratch})
            except OSError as error:
                raise Lc0DistillError(f"{argv[0]}: cannot run lc0 ({error.strerror or error})") from None
            moved, said, timer, expired = [], [], None, threading.Event()
            index = next_chunk_index(out)
            if timeout is not None:
                timer = threading.Timer(timeout, lambda: (expired.set(), process.kill()))
                timer.start()
            try:
                for line in process.stdout:
                    said = (said + [line.strip()])[-3:]
                    ready = GAME_READY.match(line)
                    if ready and Path(ready.group(1)).is_file():
                        target = out / f"game_{index + len(moved):06d}.gz"
                        # a copy renamed into place (the scratch folder may be on another disk): a kill leaves
                        # the game whole or absent, never a partial chunk
                        write_atomic(target, Path(ready.group(1)).read_bytes())
                        Path(ready.group(1)).unlink()
                        moved.append(target)
                        if on_game is not None:
                            on_game(target, RESULTS.get(ready.group(2) or ""))
                code = process.wait()
            finally:
                if timer is not None:
                    timer.cancel()
                if process.poll() is None:  # interrupted: lc0 must not outlive us
                    process.kill()
                    process.wait()
            if expired.is_set():
                raise Lc0DistillError(f"lc0 selfplay did not finish within {timeout:g} s ({len(moved)} games of "
                                      f"this run kept in {out})")
            if code != 0:
                stderr.seek(0)
                lines = [line.strip() for line in stderr.read().splitlines() if line.strip()] or said
                raise Lc0DistillError(f"lc0 selfplay with {weights} failed (exit {code}): {' | '.join(lines[-3:])}")
    return moved
