"""lc0distill.match.stats against values worked out by hand from the published formulas.

Each expected value is written as the arithmetic of its definition (logistic Elo curve, pentanomial mean and
variance, the normal CDF through math.erf, Wald's bounds, the GSPRT normal approximation in two different unit
conventions, the constrained multinomial maximum likelihood, the Bradley-Terry likelihood), not by calling the
module's own helpers; literals next to them were computed once from the same arithmetic.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lc0distill.match.stats import (
    ELO_PER_NAT,
    Z95,
    EloEstimate,
    GameCounts,
    Pentanomial,
    Rating,
    elo_estimate,
    elo_from_score,
    round_robin_elo,
    score_from_elo,
    sprt_bounds,
    sprt_decision,
    sprt_llr,
    sprt_llr_exact,
    trinomial_elo_estimate,
)

Z = 1.959963984540054  # the 0.975 quantile of the standard normal


def phi(z: float) -> float:
    """Standard normal CDF from its definition through erf."""
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def logistic(elo: float) -> float:
    return 1.0 / (1.0 + 10.0 ** (-elo / 400.0))


def hand_elo(s: float) -> float:
    return -400.0 * math.log10(1.0 / s - 1.0)


# ------------------------------------------------------------------------------------------------ the Elo curve

def test_constants():
    assert Z95 == pytest.approx(Z, abs=1e-15)
    assert phi(Z95) == pytest.approx(0.975, abs=1e-15)
    assert ELO_PER_NAT == pytest.approx(173.71779276130073, rel=1e-15)  # 400 / ln 10


def test_elo_from_score_by_hand():
    # s = 0.6: -400 log10(1/0.6 - 1) = -400 log10(2/3) = 400 log10(1.5)
    assert elo_from_score(0.6) == pytest.approx(400 * math.log10(1.5), rel=1e-14)
    assert elo_from_score(0.6) == pytest.approx(70.43650362227249, rel=1e-14)
    assert elo_from_score(0.75) == pytest.approx(400 * math.log10(3), rel=1e-14)  # 190.848...
    assert elo_from_score(0.25) == pytest.approx(-400 * math.log10(3), rel=1e-14)
    assert elo_from_score(0.5) == 0.0
    assert elo_from_score(1 / 11) == pytest.approx(-400.0, rel=1e-13)  # 1/s - 1 = 10
    assert elo_from_score(0.0) == -math.inf
    assert elo_from_score(1.0) == math.inf
    for bad in (-0.01, 1.01, math.nan, math.inf):
        with pytest.raises(ValueError):
            elo_from_score(bad)


def test_score_from_elo_by_hand():
    assert score_from_elo(100) == pytest.approx(1 / (1 + 10 ** -0.25), rel=1e-15)  # 0.64006...
    assert score_from_elo(100) == pytest.approx(0.6400649998028851, rel=1e-14)
    assert score_from_elo(-800) == pytest.approx(1 / 101, rel=1e-14)  # 1 / (1 + 10^2)
    assert score_from_elo(0) == 0.5
    assert score_from_elo(math.inf) == 1.0 and score_from_elo(-math.inf) == 0.0
    assert score_from_elo(1e6) == 1.0 and score_from_elo(-1e6) == 0.0  # no overflow
    with pytest.raises(ValueError):
        score_from_elo(math.nan)


@given(st.floats(min_value=1e-9, max_value=1 - 1e-9))
def test_score_elo_score_round_trip(s):
    assert score_from_elo(elo_from_score(s)) == pytest.approx(s, rel=1e-9, abs=1e-15)


@given(st.floats(min_value=-2000, max_value=2000))
def test_elo_score_elo_round_trip(elo):
    assert elo_from_score(score_from_elo(elo)) == pytest.approx(elo, rel=1e-9, abs=1e-9)


@given(st.floats(min_value=1e-6, max_value=1 - 1e-6), st.floats(min_value=0, max_value=1))
def test_elo_from_score_is_monotone_and_odd(a, b):
    if a < b:
        assert elo_from_score(a) <= elo_from_score(b)
    assert elo_from_score(1 - a) == pytest.approx(-elo_from_score(a), rel=1e-9, abs=1e-6)


# ------------------------------------------------------------------------------------------------- the counts

def test_pentanomial_from_pair_scores():
    scores = [0] + [0.5] * 2 + [1] * 3 + [1.5] * 4 + [2] * 5
    p = Pentanomial.from_pair_scores(scores)
    assert p == Pentanomial(1, 2, 3, 4, 5) == Pentanomial.from_counts([1, 2, 3, 4, 5])
    assert p.counts == (1, 2, 3, 4, 5)
    assert (p.ll, p.ld, p.dd_wl, p.wd, p.ww) == (1, 2, 3, 4, 5)
    assert p.pairs == 15 and p.games == 30
    assert p.score == pytest.approx(sum(scores) / 30, rel=1e-15)  # 20 points in 30 games = 2/3
    assert p.swapped() == Pentanomial(5, 4, 3, 2, 1)
    assert p.swapped().score == pytest.approx(1 - p.score, rel=1e-15)
    assert Pentanomial().pairs == 0 and math.isnan(Pentanomial().score)
    assert Pentanomial(np.int64(3)).ll == 3


@pytest.mark.parametrize("bad", [0.25, 2.5, -0.5, math.nan, 3])
def test_pentanomial_refuses_impossible_pair_scores(bad):
    with pytest.raises(ValueError):
        Pentanomial.from_pair_scores([1, bad])


def test_counts_refuse_bad_values():
    with pytest.raises(ValueError):
        Pentanomial(-1)
    with pytest.raises(TypeError):
        Pentanomial(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        GameCounts(True)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        GameCounts(0, -2, 0)
    with pytest.raises(ValueError):
        Pentanomial.from_counts([1, 2, 3])
    with pytest.raises(ValueError):
        GameCounts.from_scores([1, 0.25])


def test_game_counts():
    g = GameCounts.from_scores([1, 1, 1, 0.5, 0.5, 0])
    assert g == GameCounts(wins=3, draws=2, losses=1)
    assert g.games == 6 and g.points == 4.0
    assert g.score == pytest.approx(4 / 6) and g.draw_ratio == pytest.approx(2 / 6)
    assert g.swapped() == GameCounts(1, 2, 3)
    assert g + g.swapped() == GameCounts(4, 4, 4)
    assert math.isnan(GameCounts().score) and math.isnan(GameCounts().draw_ratio)


# --------------------------------------------------------------------------------------- pentanomial estimate

def test_pentanomial_estimate_by_hand():
    # [1, 2, 3, 4, 5] pairs at pair scores x = 0, 1/4, 1/2, 3/4, 1 (points / 2)
    n = [1, 2, 3, 4, 5]
    x = [Fraction(k, 4) for k in range(5)]
    N = sum(n)  # 15
    mean = sum(c * v for c, v in zip(n, x)) / N  # (0 + 1/2 + 3/2 + 3 + 5) / 15 = 10/15
    assert mean == Fraction(2, 3)
    var = sum(c * (v - mean) ** 2 for c, v in zip(n, x)) / N  # E[x^2] - m^2 = 13/24 - 4/9
    assert var == Fraction(7, 72)
    se = math.sqrt(7 / 72 / 15)  # sqrt(7 / 1080)
    assert se == pytest.approx(0.08050764858994133, rel=1e-14)
    lo_s, hi_s = 2 / 3 - Z * se, 2 / 3 + Z * se  # 0.508875..., 0.824458...

    e = elo_estimate(Pentanomial(*n))
    assert isinstance(e, EloEstimate)
    assert e.score == pytest.approx(2 / 3, rel=1e-15)
    assert e.score_stderr == pytest.approx(se, rel=1e-14)
    assert e.elo == pytest.approx(400 * math.log10(2), rel=1e-13)  # s/(1-s) = 2: 120.41199...
    assert e.elo_low == pytest.approx(hand_elo(lo_s), rel=1e-12)
    assert e.elo_high == pytest.approx(hand_elo(hi_s), rel=1e-12)
    assert e.elo_low == pytest.approx(6.16733, abs=1e-4) and e.elo_high == pytest.approx(268.7159, abs=1e-3)
    assert e.elo_error == pytest.approx((e.elo_high - e.elo_low) / 2)
    assert e.los == pytest.approx(phi((2 / 3 - 0.5) / se), rel=1e-13)  # Phi(2.0702) = 0.98078...
    assert e.los == pytest.approx(0.980783, abs=1e-6)
    assert (e.pairs, e.games, e.draw_ratio) == (15, 30, None)


def test_pentanomial_variance_in_fishtest_units_gives_the_same_stderr():
    # fishtest: per-game mu = points / games, per-game variance sum n_i (i/2 - 2 mu)^2 / games (i/2 = pair points),
    # stderr = sqrt(var / games)
    n = [3, 11, 25, 9, 2]
    games = 2 * sum(n)
    mu = sum(c * i / 2 for i, c in enumerate(n)) / games
    var_game = sum(c * (i / 2 - 2 * mu) ** 2 for i, c in enumerate(n)) / games
    e = elo_estimate(Pentanomial(*n))
    assert e.score == pytest.approx(mu, rel=1e-14)
    assert e.score_stderr == pytest.approx(math.sqrt(var_game / games), rel=1e-13)


def test_draw_ratio_comes_from_the_game_counts():
    e = elo_estimate(Pentanomial(0, 1, 1, 0, 0), GameCounts(1, 2, 1))
    assert e.draw_ratio == pytest.approx(0.5)


@pytest.mark.parametrize(("counts", "elo"), [((0, 0, 7, 0, 0), 0.0), ((0, 0, 0, 0, 4), math.inf),
                                             ((3, 0, 0, 0, 0), -math.inf), ((0, 1, 0, 0, 0), hand_elo(0.25))])
def test_zero_variance_has_no_error_bar(counts, elo):
    e = elo_estimate(Pentanomial(*counts))
    assert e.elo == elo
    assert e.score_stderr == 0.0
    assert (e.elo_low, e.elo_high) == (-math.inf, math.inf)
    assert math.isnan(e.los)


def test_interval_clamped_at_a_score_of_one():
    # [0, 0, 0, 1, 3]: m = (3/4 + 3) / 4 = 15/16, var = (9/16 + 3)/4 - (15/16)^2 = 3/256, se = sqrt(3/256 / 4)
    e = elo_estimate(Pentanomial(0, 0, 0, 1, 3))
    se = math.sqrt(3 / 256 / 4)
    assert e.score_stderr == pytest.approx(se, rel=1e-14)
    assert 15 / 16 + Z * se > 1
    assert e.elo_high == math.inf
    assert e.elo_low == pytest.approx(hand_elo(15 / 16 - Z * se), rel=1e-12)


def test_no_pairs_or_games_is_an_error():
    with pytest.raises(ValueError):
        elo_estimate(Pentanomial())
    with pytest.raises(ValueError):
        trinomial_elo_estimate(GameCounts())


# ----------------------------------------------------------------------------------------- trinomial estimate

def test_trinomial_estimate_by_hand():
    # W 30, D 50, L 20: m = (30 + 25) / 100 = 0.55
    # v = (30 * 0.45^2 + 50 * 0.05^2 + 20 * 0.55^2) / 100 = (6.075 + 0.125 + 6.05) / 100 = 0.1225; se = 0.035
    e = trinomial_elo_estimate(GameCounts(30, 50, 20))
    assert e.score == pytest.approx(0.55, rel=1e-15)
    assert e.score_stderr == pytest.approx(0.035, rel=1e-13)
    assert e.elo == pytest.approx(400 * math.log10(0.55 / 0.45), rel=1e-13)  # 34.860...
    assert e.elo_low == pytest.approx(hand_elo(0.55 - Z * 0.035), rel=1e-12)  # score 0.48140
    assert e.elo_high == pytest.approx(hand_elo(0.55 + Z * 0.035), rel=1e-12)  # score 0.61860
    assert e.los == pytest.approx(phi(0.05 / 0.035), rel=1e-13)  # Phi(1.428571) = 0.92344
    assert e.los == pytest.approx(0.923436, abs=1e-6)
    assert (e.pairs, e.games, e.draw_ratio) == (None, 100, 0.5)


def test_trinomial_los_is_cutechess_los_at_an_even_score():
    # cutechess: LOS = Phi((W - L) / sqrt(W + L)); equal to Phi((m - 1/2) / se) when m = 1/2 ... and near it
    w, d, l = 40, 30, 40
    assert trinomial_elo_estimate(GameCounts(w, d, l)).los == pytest.approx(phi((w - l) / math.sqrt(w + l)))
    w, d, l = 41, 30, 39  # m = 0.51: close but not equal (cutechess ignores draws)
    assert trinomial_elo_estimate(GameCounts(w, d, l)).los == pytest.approx(phi(2 / math.sqrt(80)), abs=2e-3)


def test_pairing_narrows_the_interval_when_openings_matter():
    # Pairs where the opening decides (WL, i.e. pair score 1) hide no information in pairs but look noisy as games.
    pairs = Pentanomial(1, 2, 20, 4, 1)
    games = GameCounts(wins=20 + 4 + 2 * 1, draws=2 + 4, losses=20 + 2 + 2 * 1)  # every DD+WL pair taken as WL
    assert games.games == pairs.games
    paired, single = elo_estimate(pairs), trinomial_elo_estimate(games)
    assert paired.score == pytest.approx(single.score)
    assert paired.score_stderr < single.score_stderr


counts5 = st.lists(st.integers(min_value=0, max_value=60), min_size=5, max_size=5).filter(lambda c: sum(c) > 0)


@given(counts5)
def test_pentanomial_interval_contains_the_estimate(counts):
    e = elo_estimate(Pentanomial(*counts))
    assert e.elo_low <= e.elo <= e.elo_high
    assert 0.0 <= e.score <= 1.0
    assert math.isnan(e.los) or 0.0 <= e.los <= 1.0


@given(st.integers(0, 200), st.integers(0, 200), st.integers(0, 200))
def test_trinomial_interval_contains_the_estimate(w, d, l):
    if w + d + l == 0:
        return
    e = trinomial_elo_estimate(GameCounts(w, d, l))
    assert e.elo_low <= e.elo <= e.elo_high


# -------------------------------------------------------------------------------------------------------- SPRT

def test_sprt_bounds_by_hand():
    lower, upper = sprt_bounds(0.05, 0.05)
    assert lower == pytest.approx(math.log(0.05 / 0.95), rel=1e-15)  # -log 19
    assert upper == pytest.approx(math.log(0.95 / 0.05), rel=1e-15)
    assert upper == pytest.approx(2.9444389791664403, rel=1e-15) and lower == pytest.approx(-upper, rel=1e-15)
    assert sprt_bounds() == (lower, upper)
    lower, upper = sprt_bounds(alpha=0.05, beta=0.10)
    assert lower == pytest.approx(math.log(0.10 / 0.95)) and upper == pytest.approx(math.log(0.90 / 0.05))
    for alpha, beta in ((0, 0.05), (0.05, 1), (0.6, 0.5), (-0.1, 0.1)):
        with pytest.raises(ValueError):
            sprt_bounds(alpha, beta)


def test_sprt_decision():
    lower, upper = sprt_bounds()
    assert sprt_decision(upper) == "H1" and sprt_decision(upper + 1) == "H1"
    assert sprt_decision(lower) == "H0" and sprt_decision(-10.0) == "H0"
    assert sprt_decision(0.0) is None and sprt_decision(upper - 1e-9) is None and sprt_decision(lower + 1e-9) is None
    assert sprt_decision(math.nan) is None
    assert sprt_decision(2.5, alpha=0.1, beta=0.1) == "H1"  # log(0.9/0.1) = 2.197


SPRT_COUNTS = (5, 30, 100, 40, 10)


def hand_llr_pair_units(counts, elo0, elo1):
    """LLR = (s1 - s0) (2 sum x - N (s0 + s1)) / (2 var), x = pair points / 2, var per pair (plug-in)."""
    x = [k / 4 for k in range(5)]
    n = sum(counts)
    total = sum(c * v for c, v in zip(counts, x))
    mean = total / n
    var = sum(c * (v - mean) ** 2 for c, v in zip(counts, x)) / n
    s0, s1 = logistic(elo0), logistic(elo1)
    return (s1 - s0) * (2 * total - n * (s0 + s1)) / (2 * var)


def hand_llr_fishtest_units(counts, elo0, elo1):
    """fishtest's form: 0.5 * games * (s1 - s0) * (2 mu - s0 - s1) / var, mu and var per game."""
    games = 2 * sum(counts)
    mu = sum(c * i / 2 for i, c in enumerate(counts)) / games
    var = sum(c * (i / 2 - 2 * mu) ** 2 for i, c in enumerate(counts)) / games
    s0, s1 = logistic(elo0), logistic(elo1)
    return 0.5 * games * (s1 - s0) * (2 * mu - s0 - s1) / var


def test_sprt_llr_approximation_by_hand():
    # (5, 30, 100, 40, 10): N = 185, sum x = (0 + 7.5 + 50 + 30 + 10) = 97.5, m = 0.527027
    counts = SPRT_COUNTS
    assert sum(c * k / 4 for k, c in enumerate(counts)) == 97.5
    llr = sprt_llr(Pentanomial(*counts), 0.0, 5.0)
    assert llr == pytest.approx(hand_llr_pair_units(counts, 0.0, 5.0), rel=1e-12)
    assert llr == pytest.approx(hand_llr_fishtest_units(counts, 0.0, 5.0), rel=1e-12)
    assert llr == pytest.approx(0.7221086, abs=1e-6)
    assert sprt_llr(Pentanomial(*counts), -10.0, 3.0) == pytest.approx(hand_llr_pair_units(counts, -10, 3), rel=1e-12)
    # ten times the counts: ten times the LLR (the variance is unchanged)
    big = Pentanomial(*(10 * c for c in counts))
    assert sprt_llr(big, 0.0, 5.0) == pytest.approx(10 * llr, rel=1e-12)


def test_sprt_llr_degenerate_data():
    assert sprt_llr(Pentanomial(), 0, 5) == 0.0 and sprt_llr_exact(Pentanomial(), 0, 5) == 0.0
    assert sprt_llr(Pentanomial(0, 0, 9, 0, 0), 0, 5) == 0.0  # zero variance: no evidence in the approximation
    for e0, e1 in ((5, 0), (3, 3), (0, math.inf), (math.nan, 1)):
        with pytest.raises(ValueError):
            sprt_llr(Pentanomial(1, 1, 1, 1, 1), e0, e1)
        with pytest.raises(ValueError):
            sprt_llr_exact(Pentanomial(1, 1, 1, 1, 1), e0, e1)


def hand_profile_loglik(counts, s):
    """max sum n_k log p_k over p on {0, 1/4, 1/2, 3/4, 1} with mean s, by a general constrained optimiser.

    Started from a feasible point (the uniform distribution mixed with the extreme atom on s's side). At a
    solution on the simplex's boundary SLSQP may report a line-search status instead of success; the point it
    returns is checked to be feasible, so its value is a lower bound that must (and does) match the maximum.
    """
    optimize = pytest.importorskip("scipy.optimize")
    n = np.array(counts, dtype=float)
    a = np.arange(5) / 4
    seen = n > 0
    t = abs(2 * s - 1)
    start = np.full(5, 0.2 * (1 - t))
    start[0 if s < 0.5 else 4] += t
    res = optimize.minimize(lambda p: -np.sum(n[seen] * np.log(np.maximum(p[seen], 1e-300))), start,
                            method="SLSQP", bounds=[(0.0, 1.0)] * 5, options={"ftol": 1e-15, "maxiter": 1000},
                            constraints=[{"type": "eq", "fun": lambda p: p.sum() - 1},
                                         {"type": "eq", "fun": lambda p: p @ a - s}])
    assert abs(res.x.sum() - 1) < 1e-9 and abs(res.x @ a - s) < 1e-9 and res.x.min() >= 0
    return -res.fun


@pytest.mark.parametrize(("counts", "elo0", "elo1"), [(SPRT_COUNTS, 0, 5), ((1, 2, 3, 4, 5), 0, 5),
                                                      ((0, 7, 3, 2, 0), -100, 50), ((3, 0, 5, 0, 0), 0, 5),
                                                      ((2, 9, 30, 12, 1), -20, 40)])
def test_sprt_llr_exact_is_the_constrained_maximum_likelihood(counts, elo0, elo1):
    expected = hand_profile_loglik(counts, logistic(elo1)) - hand_profile_loglik(counts, logistic(elo0))
    assert sprt_llr_exact(Pentanomial(*counts), elo0, elo1) == pytest.approx(expected, rel=1e-7, abs=1e-8)


def test_sprt_llr_exact_when_every_pair_is_equal():
    # all N pairs DD (x = 1/2), H0 s0 = 1/2, H1 s1 > 1/2: the best p with mean s1 keeps p(1/2) = 2 (1 - s1) and puts
    # the rest on x = 1 (mean p/2 + (1 - p) = s1); at s0 it is p(1/2) = 1. LLR = N log(2 (1 - s1)).
    s1 = logistic(5)
    assert sprt_llr_exact(Pentanomial(0, 0, 12, 0, 0), 0, 5) == pytest.approx(12 * math.log(2 * (1 - s1)), rel=1e-12)
    # all N pairs WW (x = 1): the best p with mean s keeps p(1) = s, the rest on x = 0. LLR = N log(s1 / s0).
    s0 = logistic(-5)
    assert sprt_llr_exact(Pentanomial(0, 0, 0, 0, 8), -5, 5) == pytest.approx(8 * math.log(s1 / s0), rel=1e-12)
    assert sprt_llr_exact(Pentanomial(8, 0, 0, 0, 0), -5, 5) == pytest.approx(8 * math.log((1 - s1) / (1 - s0)))


@pytest.mark.parametrize(("counts", "elo0", "elo1", "rel"), [(SPRT_COUNTS, 0, 5, 0.02),
                                                             ((50, 300, 1000, 400, 100), 0, 5, 0.02),
                                                             ((50, 300, 1000, 400, 100), 15, 22, 0.01),
                                                             ((20, 160, 400, 180, 25), -5, 5, 0.01),
                                                             ((12, 40, 60, 38, 10), -3, 3, 0.01)])
def test_sprt_llr_approximation_agrees_with_the_exact_gsprt(counts, elo0, elo1, rel):
    p = Pentanomial(*counts)
    approx, exact = sprt_llr(p, elo0, elo1), sprt_llr_exact(p, elo0, elo1)
    assert approx == pytest.approx(exact, rel=rel)


@settings(max_examples=200)
@given(counts5, st.integers(0, 3), st.floats(-300, 300), st.floats(1, 200))
def test_sprt_llr_exact_increases_with_the_score(counts, k, elo0, width):
    """Moving one pair up a bin (a better result) never lowers the exact LLR of H1 (higher Elo) against H0."""
    if counts[k] == 0:
        return
    better = list(counts)
    better[k] -= 1
    better[k + 1] += 1
    elo1 = elo0 + width
    before = sprt_llr_exact(Pentanomial(*counts), elo0, elo1)
    after = sprt_llr_exact(Pentanomial(*better), elo0, elo1)
    assert after >= before - 1e-9 * max(1.0, abs(before))


@given(st.lists(st.integers(0, 60), min_size=4, max_size=4).filter(lambda c: sum(1 for x in c if x) >= 2),
       st.floats(-300, 300), st.floats(1, 200))
def test_sprt_llr_approximation_increases_with_the_score(counts, elo0, width):
    """Every pair a quarter point better (bins shifted up, variance unchanged): the approximate LLR rises."""
    low, high = Pentanomial(*counts, 0), Pentanomial(0, *counts)
    elo1 = elo0 + width
    assert sprt_llr(high, elo0, elo1) > sprt_llr(low, elo0, elo1)
    # the exact LLR may tie: e.g. (0, 1, 1, 0, 0) and (0, 0, 1, 1, 0) at 131/132 Elo, both 2 log((1-s1)/(1-s0))
    before = sprt_llr_exact(low, elo0, elo1)
    assert sprt_llr_exact(high, elo0, elo1) >= before - 1e-9 * max(1.0, abs(before))


@given(counts5, st.floats(-300, 300), st.floats(1, 200))
def test_sprt_llr_seen_from_the_other_side(counts, elo0, width):
    """Swapping the players maps H0: elo0, H1: elo1 to H1: -elo0, H0: -elo1: the LLR changes sign."""
    p, q = Pentanomial(*counts), Pentanomial(*counts).swapped()
    elo1 = elo0 + width
    for llr in (sprt_llr, sprt_llr_exact):
        assert llr(q, -elo1, -elo0) == pytest.approx(-llr(p, elo0, elo1), rel=1e-7, abs=1e-9)


# ------------------------------------------------------------------------------------------------- round robin

def hand_loglik(r, results):
    """Bradley-Terry log-likelihood in logistic Elo, draws half a win and half a loss."""
    total = 0.0
    for (i, j), (w, d, l) in results.items():
        p = 1 / (1 + 10 ** (-(r[i] - r[j]) / 400))
        total += (w + d / 2) * math.log(p) + (l + d / 2) * math.log(1 - p)
    return total


THREE = {(0, 1): (10, 5, 5), (1, 2): (8, 6, 6), (0, 2): (12, 4, 4)}


def test_two_players_equal_the_pairwise_estimate():
    w, d, l = 30, 50, 20
    a, b = round_robin_elo({(0, 1): (w, d, l)}, ["a", "b"])
    assert isinstance(a, Rating)
    assert (a.name, a.elo, a.elo_stderr, a.elo_low, a.elo_high) == ("a", 0.0, 0.0, 0.0, 0.0)
    single = trinomial_elo_estimate(GameCounts(w, d, l))
    assert b.elo == pytest.approx(-single.elo, abs=1e-9)  # -34.860...
    assert (a.games, b.games) == (100, 100) and (a.score, b.score) == pytest.approx((0.55, 0.45))
    # Fisher information of the half-win model: n p (1 - p) per nat^2; se = (400 / ln 10) / sqrt(100 * 0.55 * 0.45)
    se = 400 / math.log(10) / math.sqrt(100 * 0.55 * 0.45)
    assert b.elo_stderr == pytest.approx(se, rel=1e-9)  # 34.9186
    assert (b.elo_low, b.elo_high) == pytest.approx((b.elo - Z * se, b.elo + Z * se), rel=1e-9)
    # with the dispersion estimate: the delta-method trinomial stderr, d elo / d s = 400 / (ln 10 s (1 - s))
    _, c = round_robin_elo({(0, 1): (w, d, l)}, ["a", "b"], dispersion=True)
    assert c.elo == b.elo
    assert c.elo_stderr == pytest.approx(400 / math.log(10) * single.score_stderr / (0.55 * 0.45), rel=1e-9)


def test_three_players_against_a_direct_maximisation():
    optimize = pytest.importorskip("scipy.optimize")
    # in hundreds of Elo, so that the optimiser's tolerances are meaningful
    res = optimize.minimize(lambda r: -hand_loglik([0.0, 100 * r[0], 100 * r[1]], THREE), np.zeros(2),
                            method="BFGS", options={"gtol": 1e-12})
    ratings = round_robin_elo(THREE, ["a", "b", "c"])
    assert [r.elo for r in ratings] == pytest.approx([0.0, *(100 * res.x)], abs=1e-4)


def test_three_players_score_equations_and_fisher_information():
    ratings = round_robin_elo(THREE, ["a", "b", "c"])
    r = [x.elo for x in ratings]
    assert r == pytest.approx([0.0, -96.4928207, -138.6695643], abs=1e-6)
    # at the maximum each player's expected points equal its points
    for i in range(3):
        expected = points = 0.0
        for (a, b), (w, d, l) in THREE.items():
            if i in (a, b):
                sign, n = (1, w + d / 2) if i == a else (-1, l + d / 2)
                p = 1 / (1 + 10 ** (-sign * (r[a] - r[b]) / 400))
                expected += (w + d + l) * p
                points += n
        assert expected == pytest.approx(points, abs=1e-9)
    # and no neighbour on a small grid is more likely
    best = hand_loglik(r, THREE)
    for d1 in (-0.01, 0, 0.01):
        for d2 in (-0.01, 0, 0.01):
            assert hand_loglik([0, r[1] + d1, r[2] + d2], THREE) <= best + 1e-12
    # the stderr: the inverse of minus the Hessian of the log-likelihood in Elo (anchor fixed), by central differences
    h = 0.5
    hess = np.zeros((2, 2))
    for u in range(2):
        for v in range(2):
            def f(du, dv, u=u, v=v):
                x = list(r)
                x[1 + u] += du
                x[1 + v] += dv
                return hand_loglik(x, THREE)
            hess[u, v] = (f(h, h) - f(h, -h) - f(-h, h) + f(-h, -h)) / (4 * h * h)
    se = np.sqrt(np.diag(np.linalg.inv(-hess)))
    assert [ratings[1].elo_stderr, ratings[2].elo_stderr] == pytest.approx(list(se), rel=1e-4)
    for x in ratings:
        assert x.elo_low == pytest.approx(x.elo - Z * x.elo_stderr) and x.elo_high == pytest.approx(
            x.elo + Z * x.elo_stderr)


def test_round_robin_symmetries():
    base = [x.elo for x in round_robin_elo(THREE, "abc")]
    # relabel: player k becomes perm[k]
    perm = [2, 0, 1]
    relabelled = {(perm[i], perm[j]): v for (i, j), v in THREE.items()}
    names = [None] * 3
    for k, name in enumerate("abc"):
        names[perm[k]] = name
    again = round_robin_elo(relabelled, names, anchor=perm[0])
    assert {x.name: x.elo for x in again} == pytest.approx(dict(zip("abc", base)), abs=1e-9)
    # swapping the two sides of every result negates every Elo
    flipped = {(j, i): v for (i, j), v in THREE.items()}
    assert [x.elo for x in round_robin_elo(flipped, "abc")] == pytest.approx([-e for e in base], abs=1e-9)
    reversed_results = {k: (l, d, w) for k, (w, d, l) in THREE.items()}
    assert [x.elo for x in round_robin_elo(reversed_results, "abc")] == pytest.approx([-e for e in base], abs=1e-9)
    # another anchor shifts every Elo by the same amount; the anchor has no error bar of its own
    shifted = round_robin_elo(THREE, "abc", anchor=2)
    assert [x.elo for x in shifted] == pytest.approx([e - base[2] for e in base], abs=1e-9)
    assert shifted[2].elo_stderr == 0.0 and shifted[0].elo_stderr > 0
    # (i, j) and (j, i) entries add up
    split = dict(THREE)
    split[(0, 1)] = (6, 3, 2)
    split[(1, 0)] = (3, 2, 4)  # from 1's side: 0 won 4, drew 2, lost 3 -> 10, 5, 5 in all
    assert [x.elo for x in round_robin_elo(split, "abc")] == pytest.approx(base, abs=1e-9)


def test_round_robin_with_a_player_who_won_or_lost_everything():
    results = {(0, 1): (10, 0, 0), (1, 2): (5, 5, 5)}  # a beat b every game; b and c are even
    a, b, c = round_robin_elo(results, "abc")
    assert a.elo == 0.0 and b.elo == -math.inf and c.elo == -math.inf  # c is reached from a through b
    assert (b.elo_low, b.elo_high, b.elo_stderr) == (-math.inf, math.inf, math.inf)
    a, b, c = round_robin_elo(results, "abc", anchor=1)
    assert a.elo == math.inf and b.elo == 0.0
    assert c.elo == pytest.approx(0.0, abs=1e-9) and math.isfinite(c.elo_stderr)  # from b-c games only
    # not linked to the anchor by any game: NaN
    a, b, c = round_robin_elo({(0, 1): (5, 5, 5)}, "abc")
    assert math.isnan(c.elo) and c.games == 0 and math.isnan(c.score)
    # a draw links both ways: a finite rating
    _, b = round_robin_elo({(0, 1): (9, 1, 0)}, "ab")
    assert b.elo == pytest.approx(-elo_from_score(9.5 / 10), abs=1e-6)  # -511.5...
    # one loss among wins is enough too (a scored, b scored)
    _, b = round_robin_elo({(0, 1): (99, 0, 1)}, "ab")
    assert b.elo == pytest.approx(-400 * math.log10(99), abs=1e-6)


def test_round_robin_refuses_bad_input():
    for results in ({(0, 0): (1, 0, 0)}, {(0, 3): (1, 0, 0)}, {(0, 1): (1, 0)}, {(0, 1): (1, -1, 0)}):
        with pytest.raises(ValueError):
            round_robin_elo(results, "abc")
    with pytest.raises(ValueError):
        round_robin_elo(THREE, "abc", anchor=3)


@given(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50))
def test_round_robin_of_two_is_elo_from_score(w, d, l):
    if w + d == 0 or l + d == 0:
        return
    _, b = round_robin_elo({(0, 1): (w, d, l)}, "ab")
    assert b.elo == pytest.approx(-elo_from_score((w + d / 2) / (w + d + l)), abs=1e-7)
    assert b.elo_low <= b.elo <= b.elo_high
