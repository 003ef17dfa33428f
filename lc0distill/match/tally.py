"""Counting a match's results: W/D/L per net and colour, and per pairing the game pairs in pentanomial form.

A game pair is the two games of one opening between the same two nets, colours swapped; its score for the
first net of the pairing is 0, 0.5, 1, 1.5 or 2. Only complete pairs enter the pentanomial (a pair cut by
a stop or a crash counts in W/D/L only).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lc0distill.match.game import GameResult


@dataclass
class ColourCounts:
    wins: int = 0
    draws: int = 0
    losses: int = 0

    def add(self, score: float) -> None:
        if score == 1.0:
            self.wins += 1
        elif score == 0.5:
            self.draws += 1
        else:
            self.losses += 1

    @property
    def games(self) -> int:
        return self.wins + self.draws + self.losses

    def to_json(self) -> dict:
        return {"wins": self.wins, "draws": self.draws, "losses": self.losses}


@dataclass
class NetCounts:
    white: ColourCounts = field(default_factory=ColourCounts)
    black: ColourCounts = field(default_factory=ColourCounts)

    @property
    def total(self) -> ColourCounts:
        return ColourCounts(self.white.wins + self.black.wins, self.white.draws + self.black.draws,
                            self.white.losses + self.black.losses)


@dataclass
class PairingCounts:
    """Between nets a < b, from a's view."""

    a: int
    b: int
    games: ColourCounts = field(default_factory=ColourCounts)
    pair_scores: list[float] = field(default_factory=list)  # a's score in each complete pair

    @property
    def pentanomial(self) -> list[int]:
        """Pairs with a's score 0, 0.5, 1, 1.5, 2."""
        counts = [0] * 5
        for score in self.pair_scores:
            counts[int(round(score * 2))] += 1
        return counts


def per_net(results: list[GameResult], players: int) -> list[NetCounts]:
    counts = [NetCounts() for _ in range(players)]
    for result in results:
        spec = result.spec
        if result.score_of(spec.white) is None:
            continue
        counts[spec.white].white.add(result.score_of(spec.white))
        counts[spec.black].black.add(result.score_of(spec.black))
    return counts


def per_pairing(results: list[GameResult]) -> dict[tuple[int, int], PairingCounts]:
    pairings: dict[tuple[int, int], PairingCounts] = {}
    pairs: dict[tuple[int, int, int], list[float]] = {}
    for result in results:
        spec = result.spec
        a, b = sorted((spec.white, spec.black))
        score = result.score_of(a)
        if score is None:
            continue
        pairing = pairings.setdefault((a, b), PairingCounts(a, b))
        pairing.games.add(score)
        pairs.setdefault((a, b, spec.pair), []).append(score)
    for (a, b, _), scores in sorted(pairs.items()):
        if len(scores) == 2:
            pairings[(a, b)].pair_scores.append(sum(scores))
    return pairings
