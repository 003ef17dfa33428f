"""The games of a match: every pairing of the nets plays each opening twice, colours swapped (a game pair).

Pairings take turns opening by opening, so a round robin stopped early (SPRT, a crash) has played its
pairings evenly. A game is identified across resumed runs by (pair number, white, black).
"""

from __future__ import annotations

from itertools import combinations

from lc0distill.errors import Lc0DistillError
from lc0distill.match.game import GameSpec
from lc0distill.match.openings import Opening


def schedule(players: int, openings: list[Opening], games_per_pairing: int) -> list[GameSpec]:
    """All games, in playing order. `games_per_pairing` is even (pairs); openings repeat only when the
    match asks for more pairs than there are openings."""
    if games_per_pairing < 2 or games_per_pairing % 2:
        raise Lc0DistillError(f"--games {games_per_pairing}: an even number of at least 2 is needed (every "
                              "opening is played twice, colours swapped)")
    specs: list[GameSpec] = []
    for pair in range(games_per_pairing // 2):
        index = pair % len(openings)
        for a, b in combinations(range(players), 2):
            for white, black in ((a, b), (b, a)):
                specs.append(GameSpec(number=len(specs) + 1, opening_index=index, opening=openings[index],
                                      white=white, black=black, pair=pair + 1))
    return specs


def repeated_openings(openings: list[Opening], games_per_pairing: int) -> int:
    """How many pairs of each pairing replay an opening already played (deterministic engines then replay
    the same game: the games are not independent)."""
    return max(0, games_per_pairing // 2 - len(openings))
