"""Supervised training data from PGN games (CCRL engine games and the like), as lc0 users build it.

Each mainline position becomes one V6 record (`records_from_game`): policy one-hot on the played move,
z from the game's result, moves-left from the game's length, and the q/d fields from the evaluation
comments where the PGN carries them (from z elsewhere). Two kinds of evaluation comment are read:

- lichess style, `{[%eval 0.17]}`, `{[%eval #-3]}`: from WHITE's point of view, whoever moved;
- cutechess / CCRL style, `{+0.18/20 12s}`, `{-M12/40}`, `{0.00/1 0s, White wins by adjudication}`
  (score in pawns or M<moves to mate>, then /depth, then the time and any text): from the point of view
  of the side that JUST MOVED (the engine that played the move reports its own search score), so a
  black move's `+0.50` is white's -0.50. `{book}` and other text carry no evaluation.

Both evaluate the position after the move they follow. When a comment has both, `[%eval]` wins. Pawns
become q by lc0's formula (`cp_to_q`); a mate for a side is q = +-1 for it.

Games that cannot make correct records are skipped with a reason: an illegal or unreadable move, a null
move (`--`, `Z0`, `0000`), a move played after FIDE's 75-move automatic draw, an unknown result (`*` or
none), a start other than the standard position (a `FEN` header or a variant), or no moves at all. Text
python-chess cannot parse skips that game, not the file.

Inputs may be plain `.pgn`, gzip or zstandard files; the kind is told from the file's first bytes, so a
misnamed file still reads. Everything is streamed: a file is never held in memory whole.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import re
import zlib
from contextlib import contextmanager
from collections import deque
from multiprocessing.pool import AsyncResult, Pool
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO, Iterator, TextIO

import chess
import chess.engine
import chess.pgn
import chess.variant
import numpy as np
import zstandard

from lc0distill.chess.input_formats import SUPPORTED_INPUT_FORMATS
from lc0distill.chunks.build import RESULT_SCORES, records_from_game
from lc0distill.chunks.writer import chunk_payload, gzip_like_lc0
from lc0distill.errors import Lc0DistillError
from lc0distill.gzipio import GZIP_MAGIC

# lc0 reports a centipawn score as cp = 90 * tan(1.5637541897 * q); PGN evals go the other way.
LC0_CP_SCALE = 90.0
LC0_Q_SCALE = 1.5637541897

# FIDE 9.6.2: 75 moves by each side (150 plies) without a capture or pawn move end the game as a draw,
# unless the last of them mates. A move played from a position whose halfmove clock is 150 is therefore
# not chess: the result written after it is not the game's result under the rules. It is also where we
# skip rather than at 256 plies, where lc0's uint8 rule50_count would overflow: records made between
# the two would pair legal-looking positions with a z the rules had already replaced by a draw.
SEVENTY_FIVE_MOVE_PLIES = 150

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CHUNK_NAME = re.compile(r"^game_(\d+)\.gz$")


class PgnError(Lc0DistillError):
    """A PGN file that cannot be read (missing, unreadable, corrupt compressed stream): names the file."""

    def __init__(self, path: str | os.PathLike, message: str):
        self.path = str(path)
        super().__init__(f"{path}: {message}")


class SkipReason(StrEnum):
    """Why a game makes no records; the values are what the summary prints."""

    ILLEGAL_MOVE = "illegal move"
    UNKNOWN_RESULT = "unknown result"
    NON_STANDARD_START = "non-standard start"
    VARIANT = "non-standard variant"
    NO_MOVES = "no moves"
    NULL_MOVE = "null move"
    PAST_75_MOVE_RULE = "past the 75-move rule"
    UNREADABLE = "unreadable movetext"


@dataclass(frozen=True)
class SkippedGame:
    path: str
    number: int  # 1-based position of the game in its file
    reason: SkipReason
    detail: str  # what exactly: the illegal move, the FEN, the variant, ...
    players: str

    def describe(self) -> str:
        return f"{self.path}: game {self.number} ({self.players}): {self.reason}: {self.detail}"


@dataclass(frozen=True)
class ConvertedGame:
    path: str
    number: int
    positions: int  # records in the chunk: one per position before each move
    chunk: bytes  # the game's chunk file, gzip-compressed as lc0 writes it
    evaluated: int = 0  # positions whose q/d came from an evaluation comment (the others from z)


# ---------------------------------------------------------------------------------------------- options


def check_input_format(value: str | int) -> int:
    """An lc0 input format number (1, 2, 3, 4, 5, 132, 133), or a user error saying which are accepted."""
    accepted = ", ".join(str(f) for f in sorted(SUPPORTED_INPUT_FORMATS))
    try:
        number = int(str(value).strip())
    except ValueError:
        number = None
    if number not in SUPPORTED_INPUT_FORMATS:
        raise Lc0DistillError(f"--input-format {value}: not one of lc0's input formats ({accepted})")
    return number


def check_pgn_paths(paths: list[str]) -> list[Path]:
    """The input files, each an existing regular file; the first one that is not gives a user error."""
    checked = []
    for path in paths:
        file = Path(path)
        if not file.exists():
            raise PgnError(path, "no such file")
        if not file.is_file():
            raise PgnError(path, "not a file")
        checked.append(file)
    return checked


def next_chunk_index(folder: str | os.PathLike) -> int:
    """The first free lc0 chunk number in `folder`: one past the highest game_NNNNNN.gz already there."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise Lc0DistillError(f"{folder}: exists and is not a folder")
    if not folder.exists():
        return 0
    numbers = [int(m.group(1)) for entry in folder.iterdir() if (m := _CHUNK_NAME.match(entry.name))]
    return max(numbers) + 1 if numbers else 0


# ---------------------------------------------------------------------------------------------- reading


class PgnFile:
    """An open PGN file of any of the three kinds: `text` for python-chess, `bytes_read` for progress."""

    def __init__(self, path: str | os.PathLike, raw: BinaryIO, text: TextIO):
        self.path = str(path)
        self._raw = raw
        self.text = text

    @property
    def bytes_read(self) -> int:
        """Bytes of the file (compressed bytes for .gz/.zst) consumed so far."""
        try:
            return self._raw.tell()
        except (OSError, ValueError):
            return 0


class _ZstdFrames(io.RawIOBase):
    """Every zstandard frame of a file, in order; a file that ends inside a frame raises EOFError (zstandard's
    stream reader ends quietly there, and a truncated .pgn.zst read as fewer games, or none, without a word).
    Input goes in 1 KiB at a time, so one piece expands to at most about 32 MiB (128 KiB per 4-byte block)."""

    PIECE = 1024

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self._decompressor = zstandard.ZstdDecompressor()
        self._frame = self._decompressor.decompressobj()
        self._in_frame = False
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            piece = self._raw.read(self.PIECE)
            if not piece:
                if self._in_frame:
                    raise EOFError("the file ends inside a zstandard frame (truncated)")
                return 0
            self._pending = memoryview(self._decompress(piece))
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def _decompress(self, piece: bytes) -> bytes:
        out = []
        while piece:
            self._in_frame = True
            out.append(self._frame.decompress(piece))
            if not self._frame.eof:
                break
            piece, self._frame, self._in_frame = self._frame.unused_data, self._decompressor.decompressobj(), False
        return b"".join(out)


def _decompressed(raw: BinaryIO) -> BinaryIO:
    magic = raw.read(4)
    raw.seek(0)
    if magic.startswith(GZIP_MAGIC):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if magic == ZSTD_MAGIC:
        # multi-frame files (pzstd, concatenated .zst) are read whole
        return io.BufferedReader(_ZstdFrames(raw))
    return raw


MAX_LINE_CHARS = 1 << 20  # a PGN line is a tag or some movetext: a megabyte of one line is not PGN


class LineTooLong(ValueError):
    """A line past MAX_LINE_CHARS: reading it whole would hold it all in memory (a gigabyte of spaces)."""


class _BoundedLines:
    """The text stream as python-chess reads it (readline), each line at most MAX_LINE_CHARS characters."""

    def __init__(self, text: TextIO):
        self._text = text
        self.lines = 0

    def readline(self, size: int = -1) -> str:
        limit = MAX_LINE_CHARS + 1 if size < 0 else min(size, MAX_LINE_CHARS + 1)
        line = self._text.readline(limit)
        self.lines += 1
        if len(line) > MAX_LINE_CHARS:
            raise LineTooLong(f"line {self.lines:,} is longer than {MAX_LINE_CHARS:,} characters: not PGN")
        return line

    def close(self) -> None:
        self._text.close()


@contextmanager
def open_pgn(path: str | os.PathLike) -> Iterator[PgnFile]:
    """Open a `.pgn`, `.pgn.gz` or `.pgn.zst` file as text (UTF-8; undecodable bytes replaced)."""
    try:
        raw = open(path, "rb")
    except OSError as error:
        raise PgnError(path, f"cannot read: {error.strerror or error}") from None
    with raw:
        stream = _decompressed(raw)
        # utf-8-sig: drop a byte-order mark; names in latin-1 files must not stop a conversion.
        text = _BoundedLines(io.TextIOWrapper(stream, encoding="utf-8-sig", errors="replace", newline=None))
        try:
            yield PgnFile(path, raw, text)
        finally:
            text.close()


class UnreadableMovetext(ValueError):
    """python-chess's parser itself failed on a game's text (a bug hostile text can reach)."""


class _QuietGameBuilder(chess.pgn.GameBuilder):
    """python-chess's builder without its logging: errors stay in `game.errors` for the skip reason."""

    def handle_error(self, error: Exception) -> None:
        self.game.errors.append(error)

    def end_variation(self) -> None:
        # After a bad mainline move python-chess skips "to the end of the variation", so a stray ")"
        # there ends the mainline itself and the next move or comment raises IndexError. The mainline
        # stays; the game is skipped for its bad move anyway.
        if len(self.variation_stack) > 1:
            super().end_variation()


_READ_ERRORS = (OSError, EOFError, zlib.error, zstandard.ZstdError, LineTooLong)  # the file, not the game


def _skip_to_end_of_game(text: TextIO) -> None:
    """Read on to the blank line that ends a game in PGN (or to the end of the file)."""
    while (line := text.readline()) and not line.isspace():
        pass


def _read_game(text: TextIO) -> chess.pgn.Game | None:
    """The next game, or None at the end; a python-chess crash on the text is a game with that error."""
    builder = _QuietGameBuilder()
    try:
        return chess.pgn.read_game(text, Visitor=lambda: builder)
    except _READ_ERRORS:
        raise
    except Exception as error:  # noqa: BLE001 - one game's odd text must not stop a file of millions
        game = builder.game if hasattr(builder, "game") else chess.pgn.Game()  # headers, for the skip line
        game.errors.append(UnreadableMovetext(f"python-chess failed on it: {type(error).__name__}: {error}"))
        # The crash came from a movetext line, before the blank line that ends the game: read on to it,
        # so the next read starts at the next game and the games keep their numbers.
        _skip_to_end_of_game(text)
        return game


def read_games(pgn: PgnFile) -> Iterator[chess.pgn.Game]:
    """The games of a PGN file, in order; a corrupt compressed stream is a PgnError naming the file."""
    while True:
        try:
            game = _read_game(pgn.text)
        except _READ_ERRORS as error:
            reason = error if isinstance(error, LineTooLong) else f"corrupt or truncated compressed data? {error}"
            raise PgnError(pgn.path, f"cannot read ({reason})") from None
        if game is None:
            return
        yield game


# ---------------------------------------------------------------------------------------------- checks


def _players(game: chess.pgn.Game) -> str:
    return f"{game.headers.get('White', '?')} - {game.headers.get('Black', '?')}"


def _variant_problem(headers: chess.pgn.Headers) -> str | None:
    name = headers.get("Variant")
    if name is None:
        return None
    try:
        board_class = chess.variant.find_variant(name)
    except ValueError:
        return f"unknown variant {name!r}"
    if board_class is not chess.Board or headers.is_chess960():
        return f"variant {name!r}"
    return None  # "Standard", "From Position", ...: the FEN check decides


def _start_problem(headers: chess.pgn.Headers) -> str | None:
    fen = headers.get("FEN")
    if fen is None:
        return None  # SetUp without FEN: python-chess (and every reader) starts from the standard position
    try:
        board = chess.Board(fen)
    except ValueError:
        return f"invalid FEN {fen!r}"
    # Move counters do not matter: the records start from the standard position either way.
    if board.epd() != chess.Board().epd():
        return f"FEN {fen!r}"
    return None


def _ply_label(board: chess.Board, move: chess.Move) -> str:
    """`ply 7 (4. Qxf7#)`: where a move is, for a skip's detail."""
    dots = "." if board.turn == chess.WHITE else "..."
    return f"ply {board.ply() + 1} ({board.fullmove_number}{dots} {board.san(move)})"


def _mainline_problem(game: chess.pgn.Game) -> tuple[SkipReason, str] | None:
    """A null move, or a move after the 75-move draw, in the mainline (replayed once, no legality checks:
    python-chess parsed every move as legal, and a parse error already skipped the game)."""
    board = chess.Board()  # as the records are made: a standard FEN's move counters are not kept
    for move in game.mainline_moves():
        if move == chess.Move.null():
            # "--", "Z0", "0000": python-chess plays it (the side to move passes); lc0 has no such move.
            return SkipReason.NULL_MOVE, f"{_ply_label(board, move)}"
        if board.halfmove_clock >= SEVENTY_FIVE_MOVE_PLIES:
            return SkipReason.PAST_75_MOVE_RULE, (
                f"{_ply_label(board, move)} is played after {SEVENTY_FIVE_MOVE_PLIES} plies without a capture or "
                f"pawn move: the game was already drawn by rule (FIDE 9.6.2)")
        board.push(move)
    return None


def skip_reason(game: chess.pgn.Game) -> tuple[SkipReason, str] | None:
    """Why `game` cannot become records (reason, detail), or None when it can."""
    if (problem := _variant_problem(game.headers)) is not None:
        return SkipReason.VARIANT, problem
    if (problem := _start_problem(game.headers)) is not None:
        return SkipReason.NON_STANDARD_START, problem
    if unreadable := [e for e in game.errors if isinstance(e, UnreadableMovetext)]:
        return SkipReason.UNREADABLE, str(unreadable[0])
    if game.errors:
        # python-chess stops the mainline at the first bad move, and after a bad move in a variation it
        # may parse the following mainline moves on the variation's board: the moves read are not the game.
        return SkipReason.ILLEGAL_MOVE, str(game.errors[0])
    result = game.headers.get("Result", "*")
    if result not in RESULT_SCORES:
        return SkipReason.UNKNOWN_RESULT, f"result {result!r}"
    if game.next() is None:
        return SkipReason.NO_MOVES, "the game has no moves"
    return _mainline_problem(game)


# ---------------------------------------------------------------------------------------------- evaluations


def cp_to_q(cp: float) -> float:
    """A centipawn score -> lc0's q in [-1, 1] (inverse of lc0's cp = 90 tan(1.5637541897 q))."""
    return float(np.clip(math.atan(cp / LC0_CP_SCALE) / LC0_Q_SCALE, -1.0, 1.0))


def score_to_q(score: chess.engine.Score) -> float:
    """A score from one side's view -> q from that side's view: mates are +-1, centipawns via cp_to_q."""
    if score.is_mate():
        return 1.0 if score > chess.engine.Cp(0) else -1.0
    return cp_to_q(float(score.score()))


# cutechess / CCRL: the comment opens with "<score>/<depth>", the score "+0.18", "-1.25", "0.00" (pawns,
# always with decimals, so "1/2" is not a score) or "+M5", "-M12" (mate); then the time, text, or nothing.
_CUTECHESS_EVAL = re.compile(r"\s*(?P<sign>[+-]?)(?:M(?P<mate>\d+)|(?P<pawns>\d+\.\d+))/\d+(?=[\s,]|$)")


def cutechess_q(comment: str) -> float | None:
    """q of a cutechess/CCRL comment (`+0.18/20 12s`, `-M12/40`), from the view of the side that moved.

    None for a comment without one (`book`, text). Mates are +-1 as `[%eval #N]` mates are (by the sign:
    `+M5` the mover mates, `-M12` the mover is mated); pawns via lc0's cp_to_q.
    """
    match = _CUTECHESS_EVAL.match(comment)
    if match is None:
        return None
    sign = -1.0 if match["sign"] == "-" else 1.0
    if match["mate"] is not None:
        return sign
    return cp_to_q(sign * 100.0 * float(match["pawns"]))


def _white_q(node: chess.pgn.GameNode, mover: chess.Color | None) -> float | None:
    """White's q after `node`'s move from its comment; `mover` played that move (None at the root)."""
    pov = node.eval()  # [%eval]: white's view already
    if pov is not None:
        return score_to_q(pov.white())
    if mover is None:  # a comment before the first move: nobody moved, so a cutechess score has no side
        return None
    q = cutechess_q(node.comment)
    if q is None:
        return None
    return q if mover == chess.WHITE else -q


def white_q_per_position(game: chess.pgn.Game) -> list[float | None] | None:
    """Per record (the position before each mainline move), white's q from the PGN's eval comments.

    An eval comment belongs to the node of the move it follows, so it evaluates the position AFTER that
    move: node k (move k) carries the eval of position k + 1, i.e. of the NEXT record. Position 0 takes
    the root's comment (a comment before the first move), and the eval after the last move evaluates the
    final position, which has no record, so it is dropped. None where a position has no eval (that
    record's q/d then come from z); None overall when the game has no evals at all.
    """
    nodes = list(game.mainline())
    # Sides alternate from the start position's side to move (counted here: node.turn() walks to the root).
    first = game.board().turn
    movers = [first if k % 2 == 0 else not first for k in range(len(nodes))]
    values = [_white_q(game, None)] + [_white_q(node, mover) for node, mover in zip(nodes[:-1], movers)]
    return values if any(v is not None for v in values) else None


def evaluated_positions(white_q: list[float | None] | None) -> int:
    """How many records take q/d from an evaluation rather than from z."""
    return 0 if white_q is None else sum(q is not None for q in white_q)


# ---------------------------------------------------------------------------------------------- conversion


def game_records(game: chess.pgn.Game, input_format: int) -> np.ndarray:
    """The V6 records of a game that passed `skip_reason`."""
    moves = list(game.mainline_moves())
    return records_from_game(moves, game.headers["Result"], input_format, white_q=white_q_per_position(game))


@dataclass(frozen=True)
class _GameJob:
    """What a worker needs to encode one game: plain data, cheap to send between processes."""

    path: str
    number: int
    moves: list[str]
    result: str
    white_q: list[float | None] | None
    input_format: int


def _encode_job(job: _GameJob) -> ConvertedGame:
    records = records_from_game([chess.Move.from_uci(m) for m in job.moves], job.result, job.input_format,
                                white_q=job.white_q)
    return ConvertedGame(job.path, job.number, len(records), gzip_like_lc0(chunk_payload(records)),
                         evaluated_positions(job.white_q))


def _jobs(pgn: PgnFile, input_format: int) -> Iterator[_GameJob | SkippedGame]:
    for number, game in enumerate(read_games(pgn), start=1):
        skipped = skip_reason(game)
        if skipped is not None:
            yield SkippedGame(pgn.path, number, skipped[0], skipped[1], _players(game))
        else:
            yield _GameJob(pgn.path, number, [m.uci() for m in game.mainline_moves()], game.headers["Result"],
                           white_q_per_position(game), input_format)


def _convert(item: _GameJob | SkippedGame) -> ConvertedGame | SkippedGame:
    return _encode_job(item) if isinstance(item, _GameJob) else item


def convert_games(pgn: PgnFile, input_format: int, pool: Pool | None = None) -> Iterator[ConvertedGame | SkippedGame]:
    """Each game of an open PGN file, in file order: its chunk, or why it was skipped.

    With a process pool, games are encoded and compressed in the pool while this process parses the PGN.
    """
    if pool is None:
        yield from map(_convert, _jobs(pgn, input_format))
        return
    # Parsing stays in this thread (Pool.imap would hang if reading the file raised); a bounded window of
    # games is encoded in the pool, and games parsed before an error are still delivered before it.
    window = 8 * pool._processes  # type: ignore[attr-defined]
    pending: deque = deque()
    error: Lc0DistillError | None = None
    try:
        for item in _jobs(pgn, input_format):
            pending.append(pool.apply_async(_encode_job, (item,)) if isinstance(item, _GameJob) else item)
            while len(pending) > window:
                yield _finished(pending.popleft())
    except Lc0DistillError as reading_error:
        error = reading_error
    while pending:
        yield _finished(pending.popleft())
    if error is not None:
        raise error


def _finished(item: AsyncResult | SkippedGame) -> ConvertedGame | SkippedGame:
    return item.get() if isinstance(item, AsyncResult) else item


def convert_pgn_files(paths: list[str | os.PathLike], input_format: int = 1) -> Iterator[ConvertedGame | SkippedGame]:
    """Every game of every file, in order (a convenience over open_pgn + convert_games)."""
    for path in paths:
        with open_pgn(path) as pgn:
            yield from convert_games(pgn, input_format)
