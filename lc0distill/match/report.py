"""A match's report: per net W/D/L by colour and speed, per pairing the pentanomial Elo with its 95% interval,
LOS and draw ratio, a maximum-likelihood round robin for 3+ nets (anchored on the first), the SPRT state.
One JSON object (`--json`, its shape in docs/commands.md) or a text table."""

from __future__ import annotations

import math

from lc0distill.match.match import MatchOutcome, MatchOptions
from lc0distill.match.stats import GameCounts, Pentanomial, elo_estimate, round_robin_elo
from lc0distill.match.tally import per_net, per_pairing


def _number(value: float | None) -> float | None:
    """JSON has no inf or NaN: null."""
    return None if value is None or not math.isfinite(value) else value


def pairing_estimate(outcome: MatchOutcome, a: int, b: int):
    pairing = per_pairing(outcome.results).get((a, b))
    if pairing is None:
        return None, None
    counts = pairing.games
    if not pairing.pair_scores:  # games but no complete pair yet (an early stop): no pentanomial estimate
        return pairing, None
    return pairing, elo_estimate(Pentanomial.from_counts(pairing.pentanomial),
                                 GameCounts(counts.wins, counts.draws, counts.losses))


def summary(outcome: MatchOutcome, options: MatchOptions) -> dict:
    names = outcome.names
    nets = []
    for i, counts in enumerate(per_net(outcome.results, len(names))):
        total = counts.total
        nets.append({"name": names[i], "path": outcome.paths[i], "games": total.games, **total.to_json(),
                     "as_white": counts.white.to_json(), "as_black": counts.black.to_json(),
                     "speed": _number(outcome.speed[i]["nps"]) if i < len(outcome.speed) else None,
                     "speed_unit": outcome.speed[i]["unit"] if i < len(outcome.speed) else None})
    pairings = []
    for (a, b), pairing in sorted(per_pairing(outcome.results).items()):
        _, estimate = pairing_estimate(outcome, a, b)
        games = pairing.games
        score = (games.wins + games.draws / 2) / games.games if games.games else None
        draws = games.draws / games.games if games.games else None
        pairings.append({"first": names[a], "second": names[b], "games": games.games,
                         "wins": games.wins, "draws": games.draws, "losses": games.losses,
                         "pairs": len(pairing.pair_scores), "pentanomial": pairing.pentanomial,
                         "score": _number(estimate.score if estimate else score),
                         "elo": _number(estimate.elo) if estimate else None,
                         "elo_low": _number(estimate.elo_low) if estimate else None,
                         "elo_high": _number(estimate.elo_high) if estimate else None,
                         "los": _number(estimate.los) if estimate else None,
                         "draw_ratio": _number(estimate.draw_ratio if estimate else draws)})
    return {
        "engine": options.engine, "engine_version": outcome.engine_version,
        "limits": "argmax of the raw policy" if options.engine == "policy" else options.limits.describe(),
        "openings": {"source": options.openings_source, "count": len(options.openings)},
        "games": len(outcome.results), "scheduled": outcome.scheduled, "resumed": outcome.resumed,
        "pgn": str(options.pgn) if options.pgn else None,
        "nets": nets, "pairings": pairings, "ratings": _ratings(outcome) if len(names) > 2 else None,
        "sprt": outcome.sprt, "stopped": outcome.stopped,
        "error": str(outcome.failure) if outcome.failure else None,
    }


def _ratings(outcome: MatchOutcome) -> list[dict]:
    results = {(a, b): (p.games.wins, p.games.draws, p.games.losses)
               for (a, b), p in per_pairing(outcome.results).items()}
    return [{"name": r.name, "elo": _number(r.elo), "elo_low": _number(r.elo_low), "elo_high": _number(r.elo_high),
             "games": r.games, "score": _number(r.score)} for r in round_robin_elo(results, outcome.names, anchor=0)]


def live_status(outcome_names: list[str], results) -> str:
    """The progress bar's text: the first pairing's score and Elo +- interval so far."""
    pairing = per_pairing(results).get((0, 1))
    if pairing is None or not pairing.games.games:
        return ""
    counts = pairing.games
    text = f"{outcome_names[0]} {counts.wins}-{counts.losses}-{counts.draws}"
    if pairing.pair_scores:
        estimate = elo_estimate(Pentanomial.from_counts(pairing.pentanomial))
        text += f"  Elo {_signed(estimate.elo)} +- {_error(estimate)}"
    return text


def _signed(value: float) -> str:
    return f"{value:+.0f}" if math.isfinite(value) else ("+inf" if value > 0 else "-inf")


def _error(estimate) -> str:
    error = estimate.elo_error
    return f"{error:.0f}" if math.isfinite(error) else "inf"


def text_report(report: dict) -> str:
    lines = [f"{report['games']} games ({report['resumed']} resumed) of {report['scheduled']}: {report['engine']} "
             f"({report['engine_version']}), {report['limits']}, openings {report['openings']['source']} "
             f"({report['openings']['count']})"]
    width = max(len(n["name"]) for n in report["nets"])
    lines.append(f"{'net':<{width}}  games   W   D   L   white W/D/L   black W/D/L   speed")
    for net in report["nets"]:
        white, black = net["as_white"], net["as_black"]
        speed = f"{net['speed']:,.0f} {net['speed_unit']}" if net["speed"] is not None else "-"
        lines.append(f"{net['name']:<{width}}  {net['games']:>5} {net['wins']:>3} {net['draws']:>3} {net['losses']:>3}"
                     f"   {white['wins']:>3}/{white['draws']}/{white['losses']:<5} {black['wins']:>3}/{black['draws']}/"
                     f"{black['losses']:<5}  {speed}")
    for pairing in report["pairings"]:
        elo = pairing["elo"]
        low, high = pairing["elo_low"], pairing["elo_high"]
        interval = f"[{_bound(low, '-inf')}, {_bound(high, '+inf')}]"
        if elo is None and pairing["score"] in (0.0, 1.0):  # a clean sweep: the estimate is unbounded
            elo_text = "+inf" if pairing["score"] == 1.0 else "-inf"
        else:
            elo_text = _bound(elo)
        lines.append(f"{pairing['first']} vs {pairing['second']}: score {_percent(pairing['score'])} "
                     f"(+{pairing['wins']} ={pairing['draws']} -{pairing['losses']}), Elo {elo_text} 95% {interval}, "
                     f"LOS {_percent(pairing['los'])}, draws {_percent(pairing['draw_ratio'])}, "
                     f"pairs {pairing['pairs']} pentanomial {pairing['pentanomial']}")
    if report["ratings"]:
        lines.append(f"round robin (maximum likelihood, {report['nets'][0]['name']} = 0):")
        for rating in report["ratings"]:
            lines.append(f"  {rating['name']:<{width}}  Elo {_bound(rating['elo'])}  95% "
                         f"[{_bound(rating['elo_low'], '-inf')}, {_bound(rating['elo_high'], '+inf')}]")
    if report["sprt"]:
        sprt = report["sprt"]
        lines.append(f"SPRT elo0 {sprt['elo0']:g} elo1 {sprt['elo1']:g} (alpha {sprt['alpha']:g}, beta {sprt['beta']:g}): "
                     f"LLR {sprt['llr']:.2f} in [{sprt['lower']:.2f}, {sprt['upper']:.2f}]: "
                     f"{'accepts ' + sprt['decision'] if sprt['decision'] else 'undecided'}")
    if report["stopped"] and not report["error"]:
        lines.append(f"stopped early: {report['stopped']}")
    if report["pgn"]:
        lines.append(f"games in {report['pgn']}")
    return "\n".join(lines)


def _bound(value: float | None, unbounded: str = "n/a") -> str:
    """An Elo figure; JSON's null (an infinite or undefined value) as `unbounded`."""
    return unbounded if value is None else f"{value:+.1f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"
