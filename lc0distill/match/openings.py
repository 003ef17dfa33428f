"""Openings for matches: the built-in suite shipped with the package, or a user's EPD or PGN file.

An opening is a start position (usually the standard one) and the moves played from it: nets and lc0 encode
history planes, so a game starts from the opening's board *with its move stack*, not from a bare FEN.

Files (`read_openings`), plain or gzip-compressed:
- EPD: one position per line (4 FEN fields, or a full 6-field FEN, then opcodes; `hmvc`/`fmvn` set the
  counters); the name is the `id` opcode, else `c0`, else "line N". EPD carries no history: the opening has
  no moves. Blank lines and lines starting with `#` are skipped.
- PGN: each game's FEN/SetUp headers give the start, its mainline moves are the opening's moves (comments,
  NAGs and variations are ignored); the name comes from the ECO, Opening and Variation headers, else "game N".

What is refused and what is skipped (decided here, once):
- a line or game that cannot be read, an illegal position (python-chess `is_valid()` false), an illegal or
  null move, a non-standard variant, a position where the game is already over (checkmate, stalemate,
  insufficient material, 75-move rule): an error (Lc0DistillError) naming the file and the line or game.
  Such a file is not the suite its author meant; playing the rest would measure something else.
- a duplicate, i.e. the same end position (placement, side to move, castling rights, en passant) as an
  earlier opening, whatever the moves that led to it: skipped, with one warning naming both. A repeated
  position in a suite is harmless but would weigh that position twice in the result.
- a file with no opening at all: an error. So is PGN text python-chess would pass over in silence (a word
  that is no move, move number, NAG or result; a malformed tag; tags after moves with no blank line between).

The built-in suite (`builtin_openings`) is `openings.pgn` beside this file, written by tools/make_openings.py
(its docstring says where the lines come from and how their balance was checked; the file's `%` header lines
say the same, and each game's tags hold its recorded evaluations). It is PGN rather than EPD because PGN
carries the move history as standard: the shipped file is read by the same code as a user's file, and other
tools (cutechess-cli, fastchess) replay it with its history; EPD would need a private `moves` opcode that
they drop.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import chess
import chess.pgn

from lc0distill.errors import Lc0DistillError
from lc0distill.gzipio import GZIP_MAGIC, GzipError, gunzip

log = logging.getLogger("lc0distill.match")

BUILTIN_PACKAGE = "lc0distill.match"
BUILTIN_RESOURCE = "openings.pgn"
BUILTIN_LABEL = f"built-in {BUILTIN_RESOURCE}"
MAX_FILE_BYTES = 64 << 20  # an openings file is kilobytes; more (after inflating) is refused, not read into memory

Warn = Callable[[str], None]


@dataclass(frozen=True)
class Opening:
    """A start position and the moves (UCI) played from it. Validated when made: the moves are legal."""

    name: str
    fen: str  # the start position: chess.STARTING_FEN for games from the standard start
    moves: tuple[str, ...]  # UCI moves from `fen`
    source: str  # where it was read: "FILE: line N", "FILE: game N"

    def __post_init__(self) -> None:
        self.board()  # a bad FEN or move is an error at construction, not at game 123 of a match

    def board(self) -> chess.Board:
        """The position after the moves, with the move stack (the history the nets see)."""
        try:
            board = chess.Board(self.fen)
        except ValueError as error:
            raise Lc0DistillError(f"{self.source}: invalid FEN {self.fen!r}: {error}") from None
        for ply, uci in enumerate(self.moves, start=1):
            try:
                move = chess.Move.from_uci(uci)
            except ValueError:
                raise Lc0DistillError(f"{self.source}: move {ply} {uci!r} is not a UCI move") from None
            if not move or not board.is_legal(move):
                raise Lc0DistillError(f"{self.source}: move {ply} {uci} is illegal in {board.fen()}")
            board.push(move)
        return board

    @property
    def end_fen(self) -> str:
        """The FEN of the position the game starts from (after the moves)."""
        return self.board().fen()

    @property
    def plies(self) -> int:
        return len(self.moves)


def position_key(board: chess.Board) -> str:
    """What makes two openings the same position: placement, side to move, castling, legal en passant."""
    return board.epd()


# ---------------------------------------------------------------------------------------------- reading


def builtin_openings() -> list[Opening]:
    """The suite shipped with the package (works from a wheel: read with importlib.resources)."""
    return list(_builtin())


@lru_cache(maxsize=1)
def _builtin() -> tuple[Opening, ...]:
    return tuple(_parse_pgn(builtin_text(), BUILTIN_LABEL, _refuse_duplicate))


def builtin_text() -> str:
    """The shipped file's text (its `%` header lines say how it was made and checked)."""
    return resources.files(BUILTIN_PACKAGE).joinpath(BUILTIN_RESOURCE).read_text(encoding="utf-8")


def read_openings(path: str | os.PathLike, warn: Warn | None = None) -> list[Opening]:
    """The openings of an EPD or PGN file (plain or .gz), in file order, duplicates skipped (each one
    reported through `warn`; by default a warning on the "lc0distill.match" logger). Every problem is one
    Lc0DistillError naming the file and the line or game."""
    label = str(path)
    text = _read_text(Path(path))
    kind = _kind(Path(path), text)
    warn = warn if warn is not None else log.warning
    openings = _parse_epd(text, label, warn) if kind == "epd" else _parse_pgn(text, label, warn)
    if not openings:
        raise Lc0DistillError(f"{label}: no openings in it (an {kind.upper()} file with no position)")
    return openings


def _read_text(path: Path) -> str:
    if not path.exists():
        raise Lc0DistillError(f"{path}: no such openings file")
    if not path.is_file():
        raise Lc0DistillError(f"{path}: not a regular file")
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise Lc0DistillError(f"{path}: cannot read: {error.strerror or error}") from None
    if data.startswith(GZIP_MAGIC):
        try:
            data = gunzip(data, max_bytes=MAX_FILE_BYTES)
        except GzipError as error:
            if error.kind == "too_big":
                raise Lc0DistillError(f"{path}: inflates to more than {MAX_FILE_BYTES:,} bytes: not an "
                                      f"openings file") from None
            raise Lc0DistillError(f"{path}: corrupt gzip data ({error})") from None
    if len(data) > MAX_FILE_BYTES:
        raise Lc0DistillError(f"{path}: more than {MAX_FILE_BYTES:,} bytes: not an openings file")
    if b"\x00" in data:
        raise Lc0DistillError(f"{path}: binary data, not an EPD or PGN text file")
    # utf-8-sig drops a byte-order mark; names in latin-1 files must not stop a match
    return data.decode("utf-8-sig", errors="replace")


_EPD_SUFFIXES = {".epd"}
_PGN_SUFFIXES = {".pgn"}


def _kind(path: Path, text: str) -> str:
    """"epd" or "pgn": from the name (a .gz suffix looked through), else from the first meaningful line."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    if suffixes and suffixes[-1] in _EPD_SUFFIXES:
        return "epd"
    if suffixes and suffixes[-1] in _PGN_SUFFIXES:
        return "pgn"
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "%", ";")):
            continue
        return "epd" if line.split()[0].count("/") == 7 else "pgn"
    return "pgn"


def _game_over(board: chess.Board) -> str | None:
    outcome = board.outcome(claim_draw=False)
    return None if outcome is None else outcome.termination.name.lower().replace("_", " ")


_STATUS_WORDS = {chess.Status.OPPOSITE_CHECK: "the side not to move is in check"}


def _position_problem(board: chess.Board) -> str | None:
    if not board.is_valid():
        flags = [_STATUS_WORDS.get(flag, flag.name.lower().replace("_", " "))
                 for flag in chess.Status if flag and flag in board.status()]
        return f"illegal position ({', '.join(flags)}): {board.fen()}"
    if (over := _game_over(board)) is not None:
        return f"the game is already over ({over}): {board.fen()}"
    return None


def _refuse_duplicate(message: str) -> None:
    raise Lc0DistillError(message)


class _Suite:
    """Openings as read, duplicates skipped and reported."""

    def __init__(self, label: str, warn: Warn):
        self.label = label
        self.warn = warn
        self.openings: list[Opening] = []
        self.seen: dict[str, str] = {}  # position key -> where it was first read

    def add(self, opening: Opening, board: chess.Board, where: str) -> None:
        key = position_key(board)
        if key in self.seen:
            self.warn(f"{self.label}: {where}: skipped: the same position as {self.seen[key]} ({board.fen()})")
            return
        self.seen[key] = where
        self.openings.append(opening)


# ---------------------------------------------------------------------------------------------- EPD


_COUNTER = re.compile(r"^\d+$")


def _epd_board(line: str) -> tuple[chess.Board, dict]:
    """The position and opcodes of one EPD line; a full FEN (with both counters) is accepted too."""
    fields = line.split(None, 6)
    if len(fields) >= 6 and _COUNTER.match(fields[4]) and _COUNTER.match(fields[5]):
        board = chess.Board(" ".join(fields[:6]))
        operations = board.set_epd(" ".join(fields[:4] + fields[6:])) if len(fields) > 6 else {}
        if len(fields) > 6:  # set_epd reset the counters to the defaults: the FEN's stand unless hmvc/fmvn
            board.halfmove_clock = operations.get("hmvc", int(fields[4]))
            board.fullmove_number = operations.get("fmvn", int(fields[5]))
        return board, operations
    return chess.Board.from_epd(line)


def _epd_name(operations: dict, number: int) -> str:
    for opcode in ("id", "c0"):
        value = operations.get(opcode)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return f"line {number}"


def _parse_epd(text: str, label: str, warn: Warn) -> list[Opening]:
    suite = _Suite(label, warn)
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"line {number}"
        try:
            board, operations = _epd_board(line)
        except (ValueError, IndexError) as error:
            shown = line if len(line) <= 80 else line[:77] + "..."
            raise Lc0DistillError(f"{label}: {where}: not an EPD position ({error}): {shown!r}") from None
        if (problem := _position_problem(board)) is not None:
            raise Lc0DistillError(f"{label}: {where}: {problem}")
        opening = Opening(name=_epd_name(operations, number), fen=board.fen(), moves=(),
                          source=f"{label}: {where}")
        suite.add(opening, board, where)
    return suite.openings


# ---------------------------------------------------------------------------------------------- PGN


class _CollectingBuilder(chess.pgn.GameBuilder):
    """python-chess's builder without its logging: every error stays in `game.errors`."""

    def handle_error(self, error: Exception) -> None:
        self.game.errors.append(error)


def _pgn_name(headers: chess.pgn.Headers, number: int) -> str:
    eco, opening, variation = (headers.get(tag, "").strip() for tag in ("ECO", "Opening", "Variation"))
    title = ": ".join(part for part in (opening, variation) if part and part != "?")
    name = " ".join(part for part in (eco if eco != "?" else "", title) if part)
    return name or f"game {number}"


def _line_at(text: str, offset: int) -> int:
    """The 1-based line where the game read from `offset` starts: its first line that is not blank or a
    `%` escape line."""
    line = text.count("\n", 0, offset) + 1
    for content in text[offset:].split("\n"):
        if content.strip() and not content.lstrip().startswith("%"):
            break
        line += 1
    return line


_TAG_PAIR = re.compile(r'\[\s*[A-Za-z0-9_+#=:-]+\s+"(?:[^"\\]|\\.)*"\s*\]')
_MOVE = r"(?:[NBKRQ]?[a-h]?[1-8]?[-x:]?[a-h][1-8](?:=?[nbrqkNBRQK])?|O-O(?:-O)?|0-0(?:-0)?|--|Z0|0000)"
_WORD = re.compile(rf"(?:\d+\.+|{_MOVE}[+#]?|\$\d+|[()]|\*|1-0|0-1|1/2-1/2|[?!]{{1,2}}|[+#])+")
_BRACE_COMMENT = re.compile(r"\{[^}]*\}?")


def _stray_text(chunk: str) -> tuple[int, str] | None:
    """(0-based line in `chunk`, what) for text python-chess would pass over in silence: words that are
    neither moves, move numbers, NAGs, results nor comments, and malformed or misplaced tag pairs."""
    # comments may hold anything (and span lines): blank them, keeping the line breaks for the count
    chunk = _BRACE_COMMENT.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), chunk)
    moves_started = False
    for index, line in enumerate(chunk.split("\n")):
        line = line.split(";", 1)[0].strip()
        if not line or line.startswith("%"):
            continue
        if line.startswith("["):
            if moves_started:
                return index, "a tag pair after the moves (games must be separated by a blank line)"
            if not _TAG_PAIR.fullmatch(line):
                return index, f"not a PGN tag pair: {line[:60]!r}"
            continue
        moves_started = True
        for word in line.split():
            if not _WORD.fullmatch(word):
                return index, f"not a move, move number, NAG, result or comment: {word[:40]!r}"
    return None


def _start_board(game: chess.pgn.Game) -> tuple[chess.Board | None, str | None]:
    """(the game's start position, None), or (None, why it is refused)."""
    headers = game.headers
    variant = headers.get("Variant")
    if variant is not None and variant.strip().lower() not in ("standard", "chess", "from position", ""):
        return None, f"variant {variant!r}: only standard chess"
    if headers.is_chess960():
        return None, "a Chess960 game: only standard chess"
    try:
        board = game.board()
    except ValueError as error:
        return None, f"invalid FEN header {headers.get('FEN')!r}: {error}"
    if not board.is_valid():
        return None, f"the FEN header: {_position_problem(board)}"
    if game.errors:
        return None, f"cannot be read: {game.errors[0]}"
    return board, None


def _parse_pgn(text: str, label: str, warn: Warn) -> list[Opening]:
    suite = _Suite(label, warn)
    stream = io.StringIO(text)
    number = 0
    while True:
        start = stream.tell()
        try:
            game = chess.pgn.read_game(stream, Visitor=_CollectingBuilder)
        except Exception as error:  # noqa: BLE001 - python-chess failing on hostile text: one line, no traceback
            raise Lc0DistillError(f"{label}: game {number + 1} (line {_line_at(text, start)}): cannot be read: "
                                  f"{type(error).__name__}: {error}") from None
        if game is None:
            break
        number += 1
        where = f"game {number}"
        place = f"{where} (line {_line_at(text, start)})"
        if (stray := _stray_text(text[start:stream.tell()])) is not None:
            line = text.count("\n", 0, start) + stray[0] + 1
            raise Lc0DistillError(f"{label}: {where} (line {line}): {stray[1]}")
        start_board, problem = _start_board(game)
        if start_board is None:
            raise Lc0DistillError(f"{label}: {place}: {problem}")
        board, moves = start_board.copy(), []
        for move in game.mainline_moves():
            if not move:
                raise Lc0DistillError(f"{label}: {place}: a null move at ply {len(moves) + 1}: not chess")
            if (over := _game_over(board)) is not None:
                raise Lc0DistillError(f"{label}: {place}: a move after the game ended ({over}) at ply "
                                      f"{len(moves) + 1}")
            moves.append(move.uci())
            board.push(move)
        if (problem := _position_problem(board)) is not None:
            raise Lc0DistillError(f"{label}: {place}: after its {len(moves)} moves: {problem}" if moves else
                                  f"{label}: {place}: {problem}")
        opening = Opening(name=_pgn_name(game.headers, number), fen=start_board.fen(), moves=tuple(moves),
                          source=f"{label}: {where}")
        suite.add(opening, board, where)
    return suite.openings
