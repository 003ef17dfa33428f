"""Match statistics: Elo from game results, error bars, LOS, SPRT and round-robin ratings.

All Elo values are *logistic* Elo (the Elo/FIDE expected-score curve), not fishtest's "normalized" Elo:

    score_from_elo(D) = 1 / (1 + 10**(-D / 400))          elo_from_score(s) = -400 * log10(1/s - 1)

A "score" is a mean per game in [0, 1] (win 1, draw 1/2, loss 0), always from the first player's side.

Game pairs (each opening played twice, colours swapped) are counted in pentanomial form: the number of pairs
in which the first player scored 0, 1/2, 1, 3/2 or 2 points (LL, LD, DD or WL, WD, WW). The two games of a pair
are correlated through the opening, so the variance of the match score is estimated from the pair scores, not
from single games: this is the pentanomial model of fishtest (the Stockfish testing framework), cutechess-cli
and fastchess. The classic trinomial W/D/L estimate is given as well, for comparison and for unpaired games.

Plug-in (maximum-likelihood) variances divide by the number of observations n, not n - 1, as fishtest's
statistics do; the difference is below 1% of the error bar beyond 50 pairs.

Sources (formulas only):
- A. Elo, "The Rating of Chessplayers, Past and Present" (1978): the logistic expected-score curve.
- A. Wald, "Sequential Tests of Statistical Hypotheses" (1945): the SPRT and its approximate bounds.
- X. Li, J. Liu, Z. Ying, "Generalized sequential probability ratio test for separate families of
  hypotheses", Sequential Analysis 33 (2014): the GSPRT (the LLR of the maximised likelihoods).
- M. Van den Bergh, "Maximum likelihood estimation for multinomial distributions with a given expectation
  value" (hardy.uhasselt.be/Fishtest/support_MLE_multinomial.pdf, Proposition 1.1), and his normal
  approximation of the GSPRT LLR used by fishtest: sprt_llr_exact and sprt_llr below.
- R. A. Bradley, M. E. Terry (1952); E. Zermelo (1929); L. R. Ford (1957, existence of the maximum);
  D. R. Hunter, "MM algorithms for generalized Bradley-Terry models", Ann. Statist. 32 (2004): round robin.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np

Z95 = NormalDist().inv_cdf(0.975)  # 1.959963984540054: the two-sided 95% normal quantile
ELO_PER_NAT = 400.0 / math.log(10.0)  # logistic Elo per unit of the natural logit: D = ELO_PER_NAT * theta
PAIR_SCORES = (0.0, 0.5, 1.0, 1.5, 2.0)  # a pair's points for the first player, index = Pentanomial bin


# ---------------------------------------------------------------------------------------------------- Elo curve

def elo_from_score(score: float) -> float:
    """Logistic Elo difference for a mean score per game: D = -400 * log10(1/s - 1) = 400 * log10(s / (1 - s)).

    score 0 gives -inf, score 1 gives +inf; a score outside [0, 1] (or NaN) is a ValueError.
    Example: s = 0.6 gives 400 * log10(1.5) = 70.4365...
    """
    s = float(score)
    if not 0.0 <= s <= 1.0:
        raise ValueError(f"a score must be in [0, 1], got {score!r}")
    if s == 0.0:
        return -math.inf
    if s == 1.0:
        return math.inf
    return 400.0 * math.log10(s / (1.0 - s))


def score_from_elo(elo: float) -> float:
    """Expected score per game of a logistic Elo difference D: 1 / (1 + 10**(-D/400)); +inf -> 1, -inf -> 0.

    Evaluated without overflow for any D (the exponent is never positive). NaN is a ValueError.
    """
    d = float(elo)
    if math.isnan(d):
        raise ValueError("an Elo difference must not be NaN")
    if d >= 0.0:
        return 1.0 / (1.0 + 10.0 ** (-d / 400.0))
    t = 10.0 ** (d / 400.0)
    return t / (1.0 + t)


def normal_cdf(z: float) -> float:
    """Phi(z) = (1 + erf(z / sqrt 2)) / 2, evaluated as erfc(-z / sqrt 2) / 2 (accurate in both tails)."""
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


# ----------------------------------------------------------------------------------------------- result counts

def _count(name: str, value: object) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer count, got {value!r}")
    n = operator.index(value)  # type: ignore[arg-type]  # ints and numpy integers; floats are a TypeError
    if n < 0:
        raise ValueError(f"{name} must be a count >= 0, got {n}")
    return int(n)


@dataclass(frozen=True)
class Pentanomial:
    """Game pairs counted by the first player's points in the pair: 0 (LL), 1/2 (LD), 1 (DD or WL), 3/2 (WD), 2 (WW).

    Each pair's score x = points / 2 lies in {0, 1/4, 1/2, 3/4, 1}; the match score is the mean of x over pairs,
    which equals the mean score per game. Build it as Pentanomial(ll, ld, dd_wl, wd, ww), Pentanomial(*counts),
    Pentanomial.from_counts(counts) or Pentanomial.from_pair_scores(scores); counts are ints >= 0.
    """

    ll: int = 0
    ld: int = 0
    dd_wl: int = 0
    wd: int = 0
    ww: int = 0

    def __post_init__(self) -> None:
        for name in ("ll", "ld", "dd_wl", "wd", "ww"):
            object.__setattr__(self, name, _count(name, getattr(self, name)))

    @classmethod
    def from_counts(cls, counts: Sequence[int]) -> Pentanomial:
        """From five counts in bin order [LL, LD, DD+WL, WD, WW]."""
        if len(counts) != 5:
            raise ValueError(f"a pentanomial has 5 counts (LL, LD, DD+WL, WD, WW), got {len(counts)}")
        return cls(*counts)

    @classmethod
    def from_pair_scores(cls, scores: Iterable[float]) -> Pentanomial:
        """From each pair's points for the first player (its two games summed): each in {0, 0.5, 1, 1.5, 2}."""
        counts = [0] * 5
        for score in scores:
            half_points = 2.0 * float(score)
            k = int(half_points) if half_points.is_integer() else -1
            if not 0 <= k <= 4:
                raise ValueError(f"a pair score is 0, 0.5, 1, 1.5 or 2 points, got {score!r}")
            counts[k] += 1
        return cls(*counts)

    @property
    def counts(self) -> tuple[int, int, int, int, int]:
        return (self.ll, self.ld, self.dd_wl, self.wd, self.ww)

    @property
    def pairs(self) -> int:
        return sum(self.counts)

    @property
    def games(self) -> int:
        return 2 * self.pairs

    @property
    def score(self) -> float:
        """Mean score per game, sum_k n_k * (k/4) / pairs; NaN with no pairs."""
        n = self.pairs
        return self._quarter_points() / (4 * n) if n else math.nan

    def swapped(self) -> Pentanomial:
        """The same pairs from the second player's side (bins reversed)."""
        return Pentanomial(*reversed(self.counts))

    def _quarter_points(self) -> int:  # sum of k over pairs, pair score x = k / 4
        return sum(k * n for k, n in enumerate(self.counts))

    def _pair_variance(self) -> float:
        """Plug-in variance of the pair score x: (N * sum n k^2 - (sum n k)^2) / (16 N^2), exact in integers."""
        n = self.pairs
        s1 = self._quarter_points()
        s2 = sum(k * k * c for k, c in enumerate(self.counts))
        return (n * s2 - s1 * s1) / (16 * n * n)


@dataclass(frozen=True)
class GameCounts:
    """Single games won, drawn and lost (by one player, or by one player with one colour)."""

    wins: int = 0
    draws: int = 0
    losses: int = 0

    def __post_init__(self) -> None:
        for name in ("wins", "draws", "losses"):
            object.__setattr__(self, name, _count(name, getattr(self, name)))

    @classmethod
    def from_scores(cls, scores: Iterable[float]) -> GameCounts:
        """From per-game scores, each 1 (win), 0.5 (draw) or 0 (loss)."""
        tally = {1.0: 0, 0.5: 0, 0.0: 0}
        for score in scores:
            s = float(score)
            if s not in tally:
                raise ValueError(f"a game score is 0, 0.5 or 1, got {score!r}")
            tally[s] += 1
        return cls(tally[1.0], tally[0.5], tally[0.0])

    @property
    def games(self) -> int:
        return self.wins + self.draws + self.losses

    @property
    def points(self) -> float:
        return self.wins + 0.5 * self.draws

    @property
    def score(self) -> float:
        """(W + D/2) / games; NaN with no games."""
        return self.points / self.games if self.games else math.nan

    @property
    def draw_ratio(self) -> float:
        """D / games; NaN with no games."""
        return self.draws / self.games if self.games else math.nan

    def swapped(self) -> GameCounts:
        """The same games from the opponent's side."""
        return GameCounts(self.losses, self.draws, self.wins)

    def __add__(self, other: GameCounts) -> GameCounts:
        return GameCounts(self.wins + other.wins, self.draws + other.draws, self.losses + other.losses)


# ------------------------------------------------------------------------------------------------ Elo estimate

@dataclass(frozen=True)
class EloEstimate:
    """An Elo difference (first player minus second, logistic Elo) with its 95% interval.

    elo = elo_from_score(score); [elo_low, elo_high] = elo_from_score(score -+ Z95 * score_stderr), the score
    bounds clamped to [0, 1] (so a bound may be -inf or +inf); los = Phi((score - 1/2) / score_stderr).
    When score_stderr is 0 (every pair, or game, had the same result, which includes scores 0 and 1) the data
    carry no error bar: the interval is (-inf, +inf) and los is NaN. draw_ratio is None when not known (a
    pentanomial alone cannot tell DD from WL); pairs is None for a trinomial (unpaired) estimate.
    """

    elo: float
    elo_low: float
    elo_high: float
    score: float
    score_stderr: float
    los: float
    draw_ratio: float | None
    pairs: int | None
    games: int

    @property
    def elo_error(self) -> float:
        """Half the interval's width, (elo_high - elo_low) / 2: the "+-" to print next to elo (inf if unbounded)."""
        return (self.elo_high - self.elo_low) / 2.0


def _interval(score: float, stderr: float) -> tuple[float, float, float, float]:
    """(elo, elo_low, elo_high, los) for a mean score and its standard error (see EloEstimate)."""
    elo = elo_from_score(score)
    if not stderr > 0.0:
        return elo, -math.inf, math.inf, math.nan
    low = elo_from_score(max(0.0, score - Z95 * stderr))
    high = elo_from_score(min(1.0, score + Z95 * stderr))
    return elo, low, high, normal_cdf((score - 0.5) / stderr)


def elo_estimate(pentanomial: Pentanomial, wdl: GameCounts | None = None) -> EloEstimate:
    """Elo difference of a match of game pairs, with the pentanomial 95% interval and LOS.

    With N pairs and pair scores x_i in {0, 1/4, 1/2, 3/4, 1} (pentanomial bin k has x = k/4):
        mean      m   = sum_i x_i / N                       (= the mean score per game)
        variance  v   = sum_i (x_i - m)^2 / N               (per pair, plug-in)
        stderr    se  = sqrt(v / N)                         (of m)
        elo = elo_from_score(m); 95%: elo_from_score(m -+ 1.959964 * se), clamped to [0, 1]
        LOS = Phi((m - 1/2) / se)                           (likelihood of superiority, normal approximation)
    In fishtest's per-game units (sigma^2 per game = 2v, 2N games) this is the same stderr. Zero variance
    (all pairs equal, e.g. score 0 or 1): interval (-inf, +inf), LOS NaN (see EloEstimate). draw_ratio comes
    from wdl when given (the first player's W/D/L over the same games). No pairs is a ValueError.
    """
    n = pentanomial.pairs
    if n == 0:
        raise ValueError("no game pairs: an Elo estimate needs at least one")
    score = pentanomial.score
    stderr = math.sqrt(pentanomial._pair_variance() / n)
    elo, low, high, los = _interval(score, stderr)
    return EloEstimate(elo=elo, elo_low=low, elo_high=high, score=score, score_stderr=stderr, los=los,
                       draw_ratio=None if wdl is None else wdl.draw_ratio, pairs=n, games=pentanomial.games)


def trinomial_elo_estimate(wdl: GameCounts) -> EloEstimate:
    """Elo difference from single games W/D/L (the classic trinomial model: games independent).

    With n games scoring 1, 1/2, 0:
        m = (W + D/2) / n;  v = (W (1-m)^2 + D (1/2-m)^2 + L m^2) / n  (per game);  se = sqrt(v / n)
    then the interval and LOS as in elo_estimate. For paired games this interval is usually too wide
    (the pairing removes the opening's share of the variance). LOS here equals cutechess's
    Phi((W - L) / sqrt(W + L)) when m = 1/2, and differs slightly elsewhere (cutechess ignores draws in it).
    No games is a ValueError.
    """
    n = wdl.games
    if n == 0:
        raise ValueError("no games: an Elo estimate needs at least one")
    h1 = 2 * wdl.wins + wdl.draws  # half points, per game 0, 1 or 2
    h2 = 4 * wdl.wins + wdl.draws
    variance = (n * h2 - h1 * h1) / (4 * n * n)
    score = h1 / (2 * n)
    stderr = math.sqrt(variance / n)
    elo, low, high, los = _interval(score, stderr)
    return EloEstimate(elo=elo, elo_low=low, elo_high=high, score=score, score_stderr=stderr, los=los,
                       draw_ratio=wdl.draw_ratio, pairs=None, games=n)


# --------------------------------------------------------------------------------------------------------- SPRT

def sprt_bounds(alpha: float = 0.05, beta: float = 0.05) -> tuple[float, float]:
    """Wald's SPRT bounds on the log-likelihood ratio: (log(beta / (1 - alpha)), log((1 - beta) / alpha)).

    alpha: the probability of accepting H1 when H0 holds; beta: of accepting H0 when H1 holds. Both in (0, 1)
    with alpha + beta < 1. alpha = beta = 0.05 gives -+log(19) = -+2.944439.
    """
    if not (0.0 < alpha < 1.0 and 0.0 < beta < 1.0 and alpha + beta < 1.0):
        raise ValueError(f"SPRT needs 0 < alpha, beta < 1 and alpha + beta < 1, got alpha={alpha}, beta={beta}")
    return math.log(beta / (1.0 - alpha)), math.log((1.0 - beta) / alpha)


def _hypothesis_scores(elo0: float, elo1: float) -> tuple[float, float]:
    if not (math.isfinite(elo0) and math.isfinite(elo1) and elo0 < elo1):
        raise ValueError(f"SPRT needs finite elo0 < elo1 (logistic Elo), got elo0={elo0}, elo1={elo1}")
    return score_from_elo(elo0), score_from_elo(elo1)


def sprt_llr(pentanomial: Pentanomial, elo0: float, elo1: float) -> float:
    """GSPRT log-likelihood ratio of H1: Elo = elo1 against H0: Elo = elo0 (logistic Elo), normal approximation.

    Pair scores x_i in [0, 1] (pair points / 2), N pairs, empirical mean m and plug-in variance v per pair
    (as in elo_estimate); s0 = score_from_elo(elo0), s1 = score_from_elo(elo1). Then

        LLR = (s1 - s0) * (2 * sum_i x_i - N * (s0 + s1)) / (2 v)  =  N (s1 - s0) (2m - s0 - s1) / (2 v).

    Derivation. The GSPRT LLR is log sup_{mean=s1} L - log sup_{mean=s0} L. Model the pair scores as normal with
    mean s and the variance v estimated once from the data (a nuisance parameter taken equal under both
    hypotheses); then log L(s) = -sum_i (x_i - s)^2 / (2v) + const and
        LLR = sum_i [(x_i - s0)^2 - (x_i - s1)^2] / (2v) = sum_i (s1 - s0)(2 x_i - s0 - s1) / (2v).
    Equivalently (Van den Bergh): the exact profile log-likelihood of the pentanomial (sprt_llr_exact) is,
    to second order around its maximum at m, log L(s) - log L(m) = -N (s - m)^2 / (2v); the difference of
    this at s1 and s0 is the same expression. In fishtest's per-game units (2N games, variance 2v per game) it
    reads 0.5 * games * (s1 - s0) * (2m - s0 - s1) / var_game: the same number.

    Zero variance (no pairs, or all pairs equal) gives 0.0 (no evidence under this approximation; the test
    does not stop): sprt_llr_exact handles that case. Needs finite elo0 < elo1.
    """
    s0, s1 = _hypothesis_scores(elo0, elo1)
    n = pentanomial.pairs
    if n == 0:
        return 0.0
    variance = pentanomial._pair_variance()
    if variance <= 0.0:
        return 0.0
    total = pentanomial._quarter_points() / 4.0  # sum_i x_i
    return (s1 - s0) * (2.0 * total - n * (s0 + s1)) / (2.0 * variance)


_ATOMS = (0.0, 0.25, 0.5, 0.75, 1.0)  # pair score x of each pentanomial bin


def _profile_loglik(counts: Sequence[int], s: float) -> float:
    """max { sum_k n_k log p_k : p on the 5 atoms a_k = k/4, sum p = 1, sum p_k a_k = s } - sum_k n_k log(n_k/N).

    Lagrange (Van den Bergh, Prop. 1.1): p_k = phat_k / (1 + lam (a_k - s)), where lam solves
        g(lam) = sum_k phat_k (a_k - s) / (1 + lam (a_k - s)) = 0,
    g decreasing on (-1/(1 - s), 1/s) (where 1 + lam (a - s) > 0 for every atom a in [0, 1]); then
    sum p_k = 1 - lam g(lam) = 1 and the value is -sum_k n_k log(1 + lam (a_k - s)). When an extreme atom
    (0 or 1) was never observed and s lies beyond what the observed atoms can reach, the root is at the
    boundary lam = -1/(1 - s) (or 1/s) and the unobserved extreme atom takes the remaining mass (the KKT
    solution over the whole simplex), so the value stays finite for any s in (0, 1).
    """
    observed = [(_ATOMS[k] - s, n) for k, n in enumerate(counts) if n > 0]
    total = sum(n for _, n in observed)
    if all(d == 0.0 for d, _ in observed):
        return 0.0

    def g(lam: float) -> float:
        return sum(n * d / (1.0 + lam * d) for d, n in observed) / total

    lo, hi = -1.0 / (1.0 - s), 1.0 / s
    top_seen, bottom_seen = counts[4] > 0, counts[0] > 0
    if not top_seen and g(lo) <= 0.0:
        lam = lo
    elif not bottom_seen and g(hi) >= 0.0:
        lam = hi
    else:  # the root is inside (lo, hi): Newton steps kept inside a shrinking bracket, else bisection
        a, b = lo, hi
        lam = 0.0
        for _ in range(300):
            value = g(lam)
            if value == 0.0:
                break
            if value > 0.0:
                a = lam
            else:
                b = lam
            slope = -sum(n * d * d / (1.0 + lam * d) ** 2 for d, n in observed) / total
            step = lam - value / slope
            new = step if a < step < b else 0.5 * (a + b)
            if new == lam or abs(new - lam) <= 1e-15 * max(1.0, abs(lam)):
                lam = new
                break
            lam = new
    return -sum(n * math.log1p(lam * d) for d, n in observed)


def sprt_llr_exact(pentanomial: Pentanomial, elo0: float, elo1: float) -> float:
    """GSPRT log-likelihood ratio with the exact pentanomial (multinomial) maximum likelihood (logistic Elo).

        LLR = max_{p: E_p[x] = s1} sum_k n_k log p_k  -  max_{p: E_p[x] = s0} sum_k n_k log p_k,

    p ranging over distributions on the pair scores {0, 1/4, 1/2, 3/4, 1}, s_j = score_from_elo(elo_j); each
    maximum is found by the Lagrange-multiplier root find of _profile_loglik. Agrees with sprt_llr to second
    order in (s - m) / sqrt(v); unlike it, it is finite and informative when all pairs are equal (e.g. N pairs
    all DD, elo0 = 0: LLR = N log(2 (1 - s1))). No pairs gives 0.0. Needs finite elo0 < elo1.
    """
    s0, s1 = _hypothesis_scores(elo0, elo1)
    if pentanomial.pairs == 0:
        return 0.0
    counts = pentanomial.counts
    return _profile_loglik(counts, s1) - _profile_loglik(counts, s0)


def sprt_decision(llr: float, alpha: float = 0.05, beta: float = 0.05) -> Literal["H0", "H1"] | None:
    """"H1" when llr >= log((1-beta)/alpha), "H0" when llr <= log(beta/(1-alpha)), None (continue) otherwise."""
    lower, upper = sprt_bounds(alpha, beta)
    if llr >= upper:
        return "H1"
    if llr <= lower:
        return "H0"
    return None


# -------------------------------------------------------------------------------------------------- round robin

@dataclass(frozen=True)
class Rating:
    """One player's maximum-likelihood logistic Elo in a round robin, relative to the anchor (Elo 0).

    elo_low/elo_high = elo -+ Z95 * elo_stderr. The anchor itself has elo 0 and stderr 0 (it is the reference).
    elo is +inf / -inf for a player infinitely above / below the anchor (it scored every point, or none, against
    a part of the field that connects it to the anchor), NaN when no chain of games relates it to the anchor;
    those have the interval (-inf, +inf) and stderr inf. score is the player's points / games over all
    its games (NaN with none).
    """

    name: str
    elo: float
    elo_low: float
    elo_high: float
    elo_stderr: float
    games: int
    score: float


def _reachability(scored: np.ndarray) -> np.ndarray:
    """reach[i, j]: a chain i -> ... -> j of "scored at least half a point against" (i reaches itself)."""
    reach = scored | np.eye(len(scored), dtype=bool)
    while True:
        step = (reach.astype(np.int64) @ reach.astype(np.int64)) > 0
        if np.array_equal(step, reach):
            return reach
        reach = step


def _bt_loglik(theta: np.ndarray, points: np.ndarray) -> float:
    """sum_{i != j} points[i, j] * log sigma(theta_i - theta_j), sigma the logistic function."""
    diff = theta[:, None] - theta[None, :]
    return float(-np.sum(points * np.logaddexp(0.0, -diff)))


def round_robin_elo(results: Mapping[tuple[int, int], tuple[int, int, int]], players: Sequence[str],
                    anchor: int = 0, *, dispersion: bool = False) -> list[Rating]:
    """Maximum-likelihood (Bradley-Terry) logistic Elo of every player, player `anchor` fixed at 0.

    results[(i, j)] = (wins_i, draws, losses_i): the games between players[i] and players[j] from i's side
    (i != j, indices into players; (i, j) and (j, i) may both be given and are added). Model: player i scores
    against j with expectation p_ij = 1 / (1 + 10**(-(r_i - r_j)/400)), a draw counted as half a win and half a
    loss, so the log-likelihood is
        l(r) = sum_{i != j} S_ij log p_ij,      S_ij = wins_ij + draws_ij / 2 (i's points against j).
    With theta = r / ELO_PER_NAT the score equations are sum_j S_ij = sum_j n_ij p_ij (every player's expected
    points equal its points), solved by Newton's method with step halving (the log-likelihood is concave) to
    a step below 1e-9 Elo. The 95% intervals are r_i -+ 1.96 se_i, se from the inverse Fisher information
    I_ii = sum_j n_ij p_ij (1 - p_ij), I_ij = -n_ij p_ij (1 - p_ij), with the anchor's row and column removed
    (se in Elo = ELO_PER_NAT * sqrt(diag(I^-1))). The half-win model takes a game's score variance to be
    p (1 - p); draws make it smaller, so these intervals are conservative (for 2 players the pentanomial or
    trinomial interval is the sharper one). dispersion=True scales the covariance by the Pearson estimate
    phi = (1/n) sum_games (x - p)^2 / (p (1 - p)) (quasi-likelihood, n games in the anchor's group), which for 2
    players gives the delta-method trinomial stderr, ELO_PER_NAT * se_score / (s (1 - s)).

    Infinite ratings: the maximum is finite only within a group in which every player reaches every other by a
    chain of "scored at least a draw against" (Zermelo; Ford 1957). Only the anchor's group is fitted (games with
    players outside it carry no information on the group's ratings: at the limit they are certain). A player
    outside the group is -inf if the anchor's group reaches it (it never scored against the players above it),
    +inf if it reaches the anchor's group, NaN if neither (no chain of games links it to the anchor); see Rating.

    Returns one Rating per player, in the order of players.
    """
    k = len(players)
    if not 0 <= anchor < k:
        raise ValueError(f"anchor {anchor} is not a player index (there are {k} players)")
    wdl = np.zeros((k, k, 3), dtype=np.int64)  # from i's side against j
    for key, value in results.items():
        i, j = (operator.index(x) for x in key)
        if not (0 <= i < k and 0 <= j < k) or i == j:
            raise ValueError(f"results key {key!r}: needs two different player indices in 0..{k - 1}")
        if len(value) != 3:
            raise ValueError(f"results[{key!r}] must be (wins, draws, losses), got {value!r}")
        w, d, l = (_count(f"results[{key!r}][{n}]", v) for n, v in enumerate(value))
        wdl[i, j] += (w, d, l)
        wdl[j, i] += (l, d, w)
    half_points = 2 * wdl[:, :, 0] + wdl[:, :, 1]
    games = wdl.sum(axis=2)
    points = half_points / 2.0

    reach = _reachability(half_points > 0)
    group = np.flatnonzero(reach[anchor] & reach[:, anchor])
    elo = np.full(k, math.nan)
    stderr = np.full(k, math.inf)
    elo[reach[anchor] & ~reach[:, anchor]] = -math.inf
    elo[reach[:, anchor] & ~reach[anchor]] = math.inf
    elo[anchor], stderr[anchor] = 0.0, 0.0

    if len(group) > 1:
        sub_points = points[np.ix_(group, group)]
        sub_games = games[np.ix_(group, group)].astype(np.float64)
        a = int(np.flatnonzero(group == anchor)[0])
        free = np.array([m for m in range(len(group)) if m != a])
        theta = np.zeros(len(group))

        def info(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            p = 1.0 / (1.0 + np.exp(-(t[:, None] - t[None, :])))
            w = sub_games * p * (1.0 - p)
            fisher = np.diag(w.sum(axis=1)) - w
            return p, fisher

        current = _bt_loglik(theta, sub_points)
        for _ in range(200):
            p, fisher = info(theta)
            grad = (sub_points - sub_games * p).sum(axis=1)
            step = np.linalg.solve(fisher[np.ix_(free, free)], grad[free])
            t = 1.0
            while True:
                trial = theta.copy()
                trial[free] += t * step
                value = _bt_loglik(trial, sub_points)
                if value >= current - 1e-12 * max(1.0, abs(current)) or t < 1e-6:
                    break
                t *= 0.5
            theta, current = trial, value
            if np.max(np.abs(t * step)) * ELO_PER_NAT < 1e-9:
                break
        else:  # pragma: no cover - a strictly concave problem with a finite maximum converges long before
            raise RuntimeError("round robin Elo: Newton iterations did not converge")

        p, fisher = info(theta)
        covariance = np.linalg.inv(fisher[np.ix_(free, free)])
        if dispersion:
            x_w, x_d, x_l = (wdl[np.ix_(group, group)][:, :, c] for c in range(3))
            pearson = (x_w * (1 - p) ** 2 + x_d * (0.5 - p) ** 2 + x_l * p ** 2) / (p * (1 - p))
            phi = float(np.sum(np.triu(pearson, 1))) / (sub_games.sum() / 2.0)
            covariance = covariance * phi
        elo[group] = ELO_PER_NAT * (theta - theta[a])
        stderr[group[free]] = ELO_PER_NAT * np.sqrt(np.diag(covariance))

    total_games = games.sum(axis=1)
    ratings = []
    for i, name in enumerate(players):
        e, se = float(elo[i]), float(stderr[i])
        if math.isfinite(e):
            low, high = e - Z95 * se, e + Z95 * se
        else:
            low, high = -math.inf, math.inf
        n = int(total_games[i])
        ratings.append(Rating(name=str(name), elo=e, elo_low=low, elo_high=high, elo_stderr=se, games=n,
                              score=float(points[i].sum() / n) if n else math.nan))
    return ratings
