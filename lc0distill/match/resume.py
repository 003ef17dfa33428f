"""Continuing a match from the PGN it wrote: the games found there are not played again and count in the
results; the match's nets, limits and openings must be the ones the PGN says (else an error naming the tag)."""

from __future__ import annotations

import io
from pathlib import Path

import chess.pgn

from lc0distill.errors import Lc0DistillError
from lc0distill.match.game import GameResult, GameSpec

RESULTS = ("1-0", "0-1", "1/2-1/2")


def played_games(pgn: Path, specs: list[GameSpec], names: list[str], headers: dict[str, str]) -> list[GameResult]:
    """The finished games of `specs` that `pgn` holds (a game cut off by a kill, or "*", is played again; a cut
    game at the end of the file is removed from it, so the games appended next are not glued to it)."""
    by_key = {spec.key: spec for spec in specs}
    index = {name: i for i, name in enumerate(names)}
    found: dict[tuple, GameResult] = {}
    try:
        text = pgn.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise Lc0DistillError(f"{pgn}: cannot read the match to resume ({error.strerror or error})") from None
    if text and not text.endswith("\n\n"):  # every game is written ending in a blank line: the tail was cut
        keep = text.rfind("\n\n")
        keep = keep + 2 if keep >= 0 else 0
        _cut_at(pgn, text, keep)
        text = text[:keep]
    stream = io.StringIO(text)
    number = 0
    while True:
        start = stream.tell()
        game = chess.pgn.read_game(stream)
        if game is None:
            break
        number += 1
        tags = game.headers
        complete = tags.get("Result") in RESULTS and tags.get("PlyCount") == str(sum(1 for _ in game.mainline_moves()))
        if not complete:  # cut off while written (a kill), or "*"
            if stream.tell() >= len(text.rstrip()):  # the file's last game: removed, to be played again
                _cut_at(pgn, text, start)
            continue
        if tags.get("Event") != "lc0distill match":
            continue
        for tag, value in headers.items():
            if tags.get(tag) != value:
                raise Lc0DistillError(f"{pgn}: game {number} was played with {tag} {tags.get(tag)!r}, this match "
                                      f"has {value!r}: resume with the same nets, limits and openings")
        try:
            key = (int(tags["GamePair"]), index[tags["White"]], index[tags["Black"]])
        except (KeyError, ValueError):
            raise Lc0DistillError(f"{pgn}: game {number} ({tags.get('White')} - {tags.get('Black')}) is not a game "
                                  f"of this match (nets: {', '.join(names)})") from None
        if key in by_key:
            found[key] = GameResult(by_key[key], tags["Result"], tags.get("Termination", "normal"),
                                    tags.get("TerminationDetails", ""))
    return list(found.values())


def _cut_at(pgn: Path, text: str, offset: int) -> None:
    """Drop the file's tail from `offset` (characters) on: a game cut off while it was written."""
    with open(pgn, "r+b") as handle:
        handle.truncate(len(text[:offset].encode("utf-8")))
