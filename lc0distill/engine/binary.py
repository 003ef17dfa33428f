"""The lc0 binary itself: its version, a short UCI search with a net, and its `leela2onnx` converter.

The UCI exchange is a few lines read with a deadline (not python-chess's engine module) so that lc0's ways
of failing come back as its own words: a net it refuses is an `error ...` line on stdout and then silence
(no `bestmove`), a crash is the pipe closing.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import chess

from lc0distill.engine.evaluation import Lc0Crashed, Lc0Refused
from lc0distill.errors import Lc0DistillError

UCI_TIMEOUT = 120.0
_VERSION = re.compile(r"\bv(\d+\.\d+\.\d+\S*)")


def engine_version(binary: str | os.PathLike) -> str:
    """lc0's version from its banner (e.g. "0.31.0-dev+git.unknown")."""
    try:
        done = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise Lc0DistillError(f"{binary}: cannot run it: {error}") from None
    match = _VERSION.search(done.stderr + done.stdout)
    if not match:
        raise Lc0DistillError(f"{binary}: does not print an lc0 version banner (is it lc0?)")
    return match.group(1)


@dataclass(frozen=True)
class SearchResult:
    bestmove: str
    engine: str  # the `id name` line
    info: list[str]  # the `info` lines of the search


class _Uci:
    def __init__(self, args: list[str], timeout: float):
        self.deadline = time.monotonic() + timeout
        self.process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE)
        self.buffer = b""
        self.stderr = b""
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.process.stdout, selectors.EVENT_READ)
        self.selector.register(self.process.stderr, selectors.EVENT_READ)

    def send(self, line: str) -> None:
        try:
            self.process.stdin.write((line + "\n").encode())
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # noticed when reading

    def line(self) -> str | None:
        """The next stdout line; None when lc0 has exited."""
        while b"\n" not in self.buffer:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            events = self.selector.select(timeout=left)
            for key, _ in events:
                data = os.read(key.fileobj.fileno(), 65536)
                if key.fileobj is self.process.stderr:
                    if not data:  # stderr closed: stop watching it (it would stay readable forever)
                        self.selector.unregister(key.fileobj)
                    self.stderr += data
                elif data:
                    self.buffer += data
                else:
                    return None
        text, self.buffer = self.buffer.split(b"\n", 1)
        return text.decode(errors="replace").rstrip("\r")

    def close(self) -> int | None:
        self.send("quit")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.selector.close()
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            try:
                pipe.close()
            except OSError:  # stdin of a process that died: its buffered bytes cannot be flushed
                pass
        return self.process.returncode


def _exit_name(code: int) -> str:
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit {code}"


def _position_command(board: chess.Board) -> str:
    root = board.root()
    start = "startpos" if root.fen() == chess.STARTING_FEN else f"fen {root.fen()}"
    moves = " ".join(m.uci() for m in board.move_stack)
    return f"position {start}" + (f" moves {moves}" if moves else "")


def uci_search(binary: str | os.PathLike, weights: str | os.PathLike, board: chess.Board | None = None,
               nodes: int = 1, backend: str = "blas", threads: int = 1, timeout: float = UCI_TIMEOUT) -> SearchResult:
    """`go nodes N` from `board` (with its history) in lc0 loaded with `weights`. lc0's `error` line is raised
    as Lc0Refused, its death as Lc0Crashed."""
    board = board if board is not None else chess.Board()
    uci = _Uci([str(binary), f"--weights={weights}", f"--backend={backend}", f"--threads={threads}"], timeout)
    engine, info = "", []
    try:
        uci.send("uci")
        for command, wanted in ((None, "uciok"), ("isready", "readyok"),
                                (f"{_position_command(board)}\ngo nodes {nodes}", "bestmove")):
            if command:
                uci.send(command)
            while True:
                line = uci.line()
                if line is None:
                    what = _exit_name(uci.process.wait())
                    last = " | ".join(uci.stderr.decode(errors="replace").strip().splitlines()[-2:])
                    raise Lc0Crashed(f"{weights}: lc0 died ({what}) before '{wanted}'" + (f": {last}" if last else ""))
                if line.startswith("error"):
                    raise Lc0Refused(f"{weights}: lc0 refuses the net: {line[len('error'):].strip()}")
                if line.startswith("id name "):
                    engine = line[len("id name "):]
                if line.startswith("info") and wanted == "bestmove":
                    info.append(line)
                if line.split(" ", 1)[0] == wanted:
                    if wanted == "bestmove":
                        return SearchResult(bestmove=line.split()[1], engine=engine, info=info)
                    break
    except TimeoutError:
        raise Lc0Crashed(f"{weights}: lc0 did not answer within {timeout:g} s") from None
    finally:
        uci.close()
    raise AssertionError("unreachable")


def leela2onnx(binary: str | os.PathLike, weights: str | os.PathLike, out: str | os.PathLike,
               timeout: float = 300.0) -> Path:
    """lc0's own conversion of `weights` to ONNX (`lc0 leela2onnx`), written to `out`."""
    out = Path(out)
    out.unlink(missing_ok=True)
    done = subprocess.run([str(binary), "leela2onnx", f"--input={weights}", f"--output={out}"],
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0 or not out.is_file():
        lines = [l.strip() for l in (done.stderr + done.stdout).splitlines() if l.strip()]
        said = next((l for l in lines if "exception" in l.lower() or l.startswith("error")), lines[-1] if lines else "")
        raise Lc0Refused(f"{weights}: lc0 leela2onnx fails (exit {done.returncode}): {said}")
    return out
