"""The ladder from start to end: the teacher's row, then rung by rung (trained, exported, scored, timed in lc0,
played against the teacher at each limit), then the best student at each clock given the decisive number of
games. Every stage is kept as it completes (rung.json, the matches' PGNs), so a killed ladder continues where
it stopped."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from lc0distill.fileio import make_folder, read_json, write_json
from lc0distill.ladder.games import pairing_row, play_teacher
from lc0distill.ladder.plan import LadderPlan, Limit
from lc0distill.ladder.rung import RUNG_FILE, STUDENT_FILE, build_rung, teacher_record
from lc0distill.ladder.speed import lc0_nps, selfplay_rate
from lc0distill.ladder.table import markdown, write_tables
from lc0distill.progress import track

Log = Callable[[str], None]


class Clock:
    """Seconds the ladder has worked, over every run of it (out/clock.json, kept after every stage and every
    game: a kill loses the game or stage it cut)."""

    def __init__(self, path: Path):
        self.path = path
        self.seconds = read_json(path).get("seconds", 0.0)
        self.mark = time.perf_counter()

    def tick(self) -> float:
        now = time.perf_counter()
        self.seconds += now - self.mark
        self.mark = now
        write_json(self.path, {"seconds": round(self.seconds, 1)})
        return self.seconds


def _with_speeds(plan: LadderPlan, record: dict, net: Path, path: Path, log: Log) -> dict:
    """The net's nps in lc0 and its self-play positions/s, measured once (kept in `path`, the record's file)."""
    if record.get("nps") is None:
        log(f"{net.name}: nps in lc0 ({plan.nps_positions} positions x {plan.nps_seconds:g}s)")
        record["nps"] = lc0_nps(net, plan.engine_options, plan.nps_positions, plan.nps_seconds, plan.engine_path,
                                plan.optional_engine_options)
        write_json(path, record)
    if record.get("selfplay") is None and plan.selfplay_games:
        log(f"{net.name}: lc0 self-play, {plan.selfplay_games} games at {plan.selfplay_visits} visits")
        record["selfplay"] = selfplay_rate(net, plan.selfplay_games, plan.selfplay_visits, plan.engine_path)
        write_json(path, record)
    return record


def _play(plan: LadderPlan, size: str, limit: Limit, games: int, use_sprt: bool, clock: Clock) -> dict:
    pgn = plan.match_pgn(size, limit)
    make_folder(pgn.parent, "matches folder")
    student = plan.rung_dir(size) / STUDENT_FILE

    def finished(done: int) -> None:  # the clock kept at every game: a kill loses at most the game it cut
        bar.update(done)
        clock.tick()

    with track(f"{size} vs teacher, {limit.label}", total=games, unit="games") as bar:
        report = play_teacher(plan, student, limit, games, plan.sprt if use_sprt else None, pgn, finished)
        bar.update(report["games"])  # the games resumed from the PGN too
    row, kept = pairing_row(report), pgn.with_suffix(".json")
    before = read_json(kept)
    for speed in ("student_nps", "teacher_nps"):  # a resumed match with nothing left to play measured none
        if row[speed] is None:
            row[speed] = before.get(speed)
    write_json(kept, row)
    return row


def _best_at(rows: dict, limit: str) -> str | None:
    """The student that scored best against the teacher at `limit` (the smaller one on a tie)."""
    played = {size: (row[limit]["wins"] + row[limit]["draws"] / 2) / row[limit]["games"]
              for size, row in rows.items() if row.get(limit, {}).get("games")}
    return max(played, key=played.get) if played else None


def run_ladder(plan: LadderPlan, log: Log = print) -> dict:
    make_folder(plan.out, "ladder folder")
    clock = Clock(plan.out / "clock.json")
    teacher = _with_speeds(plan, teacher_record(plan, log), plan.teacher, plan.out / "teacher.json", log)
    rungs, rows = {}, {}
    for size in plan.sizes:  # rung by rung: a ladder stopped half way has whole rows
        record = build_rung(plan, size, log)
        rungs[size] = _with_speeds(plan, record, plan.rung_dir(size) / STUDENT_FILE,
                                   plan.rung_dir(size) / RUNG_FILE, log)
        clock.tick()
        rows[size] = {}
        for limit in plan.limits:
            decisive = limit.uci.nodes == 1
            games = plan.decisive_games if decisive else plan.games
            rows[size][limit.label] = _play(plan, size, limit, games, use_sprt=not decisive, clock=clock)
            clock.tick()
    for limit in (limit for limit in plan.limits if limit.equal_time and plan.decisive_games > plan.games):
        best = _best_at(rows, limit.label)
        if best is not None:
            log(f"{best}: the best student at {limit.label}, to {plan.decisive_games} games")
            rows[best][limit.label] = _play(plan, best, limit, plan.decisive_games, use_sprt=False, clock=clock)
            clock.tick()
    result = _result(plan, teacher, rungs, rows, clock.tick())
    write_tables(result, plan.out)
    log(markdown(result))
    return result


def _selfplay(record: dict) -> float | None:
    return (record.get("selfplay") or {}).get("positions_per_second")


def _result(plan: LadderPlan, teacher: dict, rungs: dict, rows: dict, seconds: float) -> dict:
    return {
        "teacher": {"path": teacher["path"], "size": teacher["size"], "parameters": teacher["parameters"],
                    "held_out": teacher["held_out"], "nps": teacher["nps"]["nps"],
                    "selfplay_positions_per_second": _selfplay(teacher)},
        "limits": [limit.label for limit in plan.limits],
        "rungs": [{"size": size, "parameters": rungs[size]["net"]["parameters"],
                   "train_positions_per_second": rungs[size]["trained"]["positions_per_second"],
                   "steps": rungs[size]["trained"]["steps"], "best_step": rungs[size]["trained"]["best_step"],
                   "held_out": rungs[size]["held_out"], "nps": rungs[size]["nps"]["nps"],
                   "selfplay_positions_per_second": _selfplay(rungs[size]),
                   "net": str(plan.rung_dir(size) / STUDENT_FILE), "vs_teacher": rows[size]}
                  for size in plan.sizes],
        "games": {"every_pairing": plan.games, "decisive": plan.decisive_games,
                  "sprt": None if plan.sprt is None else vars(plan.sprt)},
        "selfplay_visits": plan.selfplay_visits if plan.selfplay_games else None,
        "engine_options": plan.engine_options, "held_out": list(plan.held_out), "validation": list(plan.validation),
        "data": list(plan.data), "seconds": round(seconds, 1),
    }
