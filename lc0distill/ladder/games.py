"""A student against the teacher at one limit: game pairs on the built-in openings in lc0, resumed from the
match's PGN (a killed ladder replays no game), stopped early by the SPRT where the ladder asks it."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from lc0distill.ladder.plan import LadderPlan, Limit
from lc0distill.match.match import MatchOptions, Sprt, run_match
from lc0distill.match.openings import builtin_openings
from lc0distill.match.report import summary


def play_teacher(plan: LadderPlan, student: Path, limit: Limit, games: int, sprt: Sprt | None,
                 pgn: Path, on_game: Callable[[int], None]) -> dict:
    """The match's summary (lc0distill match --json's shape): the student is the first net."""
    options = MatchOptions(engine="lc0", limits=limit.uci, games=games, openings=tuple(builtin_openings()),
                           openings_source="built-in", concurrency=plan.concurrency, sprt=sprt, pgn=pgn,
                           resume=pgn.exists(), engine_path=plan.engine_path,
                           engine_options=dict(plan.engine_options),
                           optional_engine_options=plan.optional_engine_options)
    outcome = run_match([str(student), str(plan.teacher)], options, lambda result, results: on_game(len(results)))
    report = summary(outcome, options)
    if outcome.failure is not None:
        raise outcome.failure  # the games before it are in the PGN: the next ladder run resumes there
    return report


def pairing_row(report: dict) -> dict:
    """The student-vs-teacher figures a ladder table shows, from a match summary."""
    pairing = report["pairings"][0] if report["pairings"] else {}
    nets = report["nets"]
    return {"games": pairing.get("games", 0), "wins": pairing.get("wins", 0), "draws": pairing.get("draws", 0),
            "losses": pairing.get("losses", 0), "elo": pairing.get("elo"), "elo_low": pairing.get("elo_low"),
            "elo_high": pairing.get("elo_high"), "los": pairing.get("los"), "stopped": report.get("stopped"),
            "student_nps": nets[0]["speed"] if nets else None, "teacher_nps": nets[1]["speed"] if len(nets) > 1 else None,
            "pgn": report.get("pgn")}
