"""Progress of long work: a rich bar on a terminal (count, rate, ETA, the latest losses), plain lines elsewhere.

    with track("train", total=steps, unit="steps") as bar:
        bar.update(step, positions=n, info="policy 2.31  value 0.84")
        bar.print("a line above the bar")

On a terminal (stderr is a tty) the bar redraws in place and `print` writes above it. Otherwise (a log file,
CI, a pipe) nothing redraws: `print` writes a plain line and, unless `plain_lines=False` (when the caller
prints its own periodic lines, as training does), a status line is written every `plain_every` seconds and
at the end.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

PLAIN_EVERY_SECONDS = 30.0


def stderr_console() -> Console:
    return Console(file=sys.stderr, highlight=False)


class Tracker:
    """One piece of work's progress (see the module docstring)."""

    def __init__(self, description: str, total: int | None, unit: str, console: Console, plain_lines: bool,
                 plain_every: float, log: Callable[[str], None] | None):
        self.description, self.total, self.unit = description, total, unit
        self.console = console
        self.live = console.is_terminal
        self.plain_lines = plain_lines
        self.plain_every = plain_every
        self.log = log
        self.completed = 0
        self.positions = 0
        self.info = ""
        self.started = time.perf_counter()
        self.last_plain = self.started
        self._progress: Progress | None = None
        self._task = None

    def __enter__(self) -> "Tracker":
        if self.live:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[unit]}"), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                console=self.console, transient=False, refresh_per_second=4)
            self._progress.__enter__()
            self._task = self._progress.add_task(self.description, total=self.total, unit=self.unit, rate="", info="")
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
        elif self.plain_lines and exc[0] is None:
            self._plain_status()

    def rate(self) -> str:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        if self.positions:
            return f"{self.positions / elapsed:,.0f} pos/s"
        return f"{self.completed / elapsed:,.1f} {self.unit}/s"

    def update(self, completed: int, positions: int | None = None, info: str | None = None) -> None:
        """Work done so far (absolute), positions processed so far (for pos/s), and a short status text."""
        self.completed = completed
        if positions is not None:
            self.positions = positions
        if info is not None:
            self.info = info
        if self._progress is not None:
            self._progress.update(self._task, completed=completed, rate=self.rate(), info=self.info)
        elif self.plain_lines and time.perf_counter() - self.last_plain >= self.plain_every:
            self._plain_status()

    def advance(self, count: int = 1, positions: int = 0, info: str | None = None) -> None:
        self.update(self.completed + count, self.positions + positions, info)

    def print(self, message: str) -> None:
        """A line of its own: above the bar on a terminal, a plain line elsewhere."""
        if self._progress is not None:
            self._progress.console.print(message, markup=False, highlight=False)
        elif self.log is not None:
            self.log(message)
        else:
            print(message, file=self.console.file, flush=True)

    def _plain_status(self) -> None:
        self.last_plain = time.perf_counter()
        of = f"/{self.total:,}" if self.total else ""
        tail = f"  {self.info}" if self.info else ""
        self.print(f"{self.description}: {self.completed:,}{of} {self.unit}  {self.rate()}{tail}")


@contextmanager
def track(description: str, total: int | None, unit: str = "items", *, console: Console | None = None,
          plain_lines: bool = True, plain_every: float = PLAIN_EVERY_SECONDS,
          log: Callable[[str], None] | None = None) -> Iterator[Tracker]:
    """A Tracker for the duration of the block (see the module docstring). `log`: where plain lines go
    (default: stderr)."""
    tracker = Tracker(description, total, unit, console or stderr_console(), plain_lines, plain_every, log)
    with tracker:
        yield tracker
