"""`lc0 selfplay --training=true`: games of the lc0 engine with real search policies and q, written as lc0
writes its training data. lc0 puts the chunks in a new `lc0/data-*` folder of $XDG_CACHE_HOME (~/.cache) and
names each in a `gameready trainingfile PATH` line; we point XDG_CACHE_HOME at a scratch folder and move every
chunk named into the output with lc0's names, numbered after those already there."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from lc0distill.chunks.pgn import next_chunk_index
from lc0distill.errors import Lc0DistillError


def lc0_selfplay(binary: Path, weights: Path, games: int, visits: int, out: Path, *, temperature: float = 1.0,
                 openings: Path | None = None, parallelism: int = 2, threads: int = 1, backend: str | None = None,
                 extra: list[str] | None = None, timeout: float | None = None) -> list[Path]:
    """Run lc0's self-play for `games` games at `visits` visits per move; the chunk files written into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    argv = [str(binary), "selfplay", f"--weights={weights}", "--training=true", f"--games={games}",
            f"--visits={visits}", f"--parallelism={parallelism}", f"--threads={threads}",
            f"--temperature={temperature:g}"]
    if backend:
        argv.append(f"--backend={backend}")
    if openings is not None:
        argv.append(f"--openings-pgn={openings}")
    argv += extra or []
    with tempfile.TemporaryDirectory(prefix="lc0distill-selfplay-") as scratch:
        try:
            done = subprocess.run(argv, cwd=scratch, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, timeout=timeout,
                                  env={**os.environ, "XDG_CACHE_HOME": scratch})
        except subprocess.TimeoutExpired:
            raise Lc0DistillError(f"lc0 selfplay did not finish within {timeout:g} s") from None
        except OSError as error:
            raise Lc0DistillError(f"{binary}: cannot run lc0 ({error.strerror or error})") from None
        if done.returncode != 0:
            said = " | ".join(line.strip() for line in (done.stderr or done.stdout).splitlines()[-3:] if line.strip())
            raise Lc0DistillError(f"lc0 selfplay with {weights} failed (exit {done.returncode}): {said}")
        written = [Path(p) for p in re.findall(r"\btrainingfile (\S+)", done.stdout or "")]
        written = [p for p in written if p.is_file()]
        if not written:
            raise Lc0DistillError(f"lc0 selfplay with {weights} wrote no training data (its output: "
                                  f"{(done.stdout or '').strip()[-200:]})")
        index = next_chunk_index(out)
        moved = []
        for number, path in enumerate(written, start=index):
            target = out / f"game_{number:06d}.gz"
            shutil.move(str(path), target)
            moved.append(target)
        return moved
