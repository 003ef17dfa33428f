"""`lc0distill ladder` end to end in the real lc0 engine on maia-1900, then killed and resumed; and its plan.

The counts in the table are checked against the games in the PGNs (read with python-chess, not our reader),
the recipe against configs/distil-teacher-played.yaml, and a resumed ladder against the files it left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import chess.pgn
import pytest
import yaml

from lc0distill.cli import main
from lc0distill.config import load_config
from lc0distill.engine.locate import EngineNotFound, find_engine
from lc0distill.errors import Lc0DistillError
from lc0distill.ladder.plan import WINNING_RECIPE, parse_limits, parse_sizes
from lc0distill.ladder.run import _best_at
from lc0distill.ladder.table import elo_cell
from tests.conftest import PROJECT_ROOT, SELFPLAY, SHARED

TEACHER = SHARED / "nets" / "maia-1900.pb.gz"
TINY = ["--set", "train.steps=6", "--set", "train.eval_every=3", "--set", "train.checkpoint_every=3",
        "--set", "train.lr.total_steps=6", "--set", "train.lr.warmup_steps=1", "--set", "data.shuffle_buffer=200",
        "--set", "data.workers=0", "--set", "data.batch_size=16", "--set", "train.threads=1"]


def _lists(folder: Path) -> dict[str, str]:
    games = sorted(SELFPLAY.glob("*.gz"))
    parts = {"train": games[:12], "val": games[12:15], "held": games[15:18]}
    for name, files in parts.items():
        (folder / f"{name}.txt").write_text("".join(f"{f}\n" for f in files))
    return {name: f"@{folder / f'{name}.txt'}" for name in parts}


def _command(folder: Path, out: Path, *extra: str, measure: bool = True) -> list[str]:
    """A ladder of two tiny students; `measure`: with a clock limit and self-play speeds (what the resume test
    does not need)."""
    lists = _lists(folder)
    measured = ["--movetime", "10", "--selfplay-games", "1", "--selfplay-visits", "2"] if measure else \
        ["--selfplay-games", "0"]
    return ["ladder", "--teacher", str(TEACHER), "--sizes", "8x1,16x1", "--data", lists["train"],
            "--validation", lists["val"], "--held-out", lists["held"], "--out", str(out), "--nodes", "1",
            "--games", "2", "--decisive-games", "4", "--nps-positions", "2", "--nps-seconds", "0.1", *measured,
            *TINY, *extra]


def _needs_engine_and_artifacts():
    try:
        find_engine()
    except EngineNotFound as error:
        pytest.skip(f"the lc0 engine is not installed: {error}")
    if not TEACHER.exists() or not SELFPLAY.exists():
        pytest.skip(f"reference artifacts {TEACHER} and {SELFPLAY} are absent")


def _pgn_counts(pgn: Path, student: str) -> tuple[int, int, int]:
    """(wins, draws, losses) of `student` in the PGN, from its Result tags."""
    wins = draws = losses = 0
    with open(pgn) as handle:
        while (game := chess.pgn.read_game(handle)) is not None:
            result, white = game.headers["Result"], game.headers["White"] == student
            if result == "1/2-1/2":
                draws += 1
            elif (result == "1-0") == white:
                wins += 1
            else:
                losses += 1
    return wins, draws, losses


@pytest.fixture(scope="module")
def ladder(tmp_path_factory):
    _needs_engine_and_artifacts()
    folder = tmp_path_factory.mktemp("ladder")
    out = folder / "out"
    command = _command(folder, out, "--json")
    done = subprocess.run([sys.executable, "-m", "lc0distill", *command], capture_output=True, text=True,
                          timeout=600, cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder, out, command, json.loads(done.stdout), done.stderr


@pytest.mark.engine
def test_the_ladder_writes_its_table_from_the_games_it_played(ladder):
    _, out, _, result, _ = ladder
    assert [r["size"] for r in result["rungs"]] == ["8x1", "16x1"]
    assert result["limits"] == ["nodes=1", "movetime=10ms"]
    assert result["teacher"]["size"] == "64x6" and result["teacher"]["nps"] > 0
    assert result["teacher"]["selfplay_positions_per_second"] > 0 and result["selfplay_visits"] == 2
    for rung in result["rungs"]:
        assert rung["parameters"] > 0 and rung["nps"] > 0 and rung["train_positions_per_second"] > 0
        assert rung["selfplay_positions_per_second"] > 0
        assert 0 < rung["held_out"]["policy_loss"] < 10 and rung["held_out"]["positions"] > 0
        assert rung["steps"] == 6 and rung["best_step"] in (3, 6)
        name = "student"  # the student's name in the PGN: its file's stem
        for limit, row in rung["vs_teacher"].items():
            pgn = Path(row["pgn"])
            assert pgn.parent == out / "matches"
            assert (row["wins"], row["draws"], row["losses"]) == _pgn_counts(pgn, name)
            assert row["games"] == row["wins"] + row["draws"] + row["losses"]
    nodes_1 = [r["vs_teacher"]["nodes=1"]["games"] for r in result["rungs"]]
    assert nodes_1 == [4, 4]  # the decisive count at nodes 1
    clock = sorted(r["vs_teacher"]["movetime=10ms"]["games"] for r in result["rungs"])
    assert clock == [2, 4]  # the best student at the clock only is taken to the decisive count
    table = (out / "ladder.md").read_text().splitlines()
    assert table[0].startswith("| net | parameters | train pos/s | self-play pos/s (2 visits) | held-out policy "
                               "loss | top-1 | lc0 nps | Elo vs teacher, nodes=1 |")
    assert len(table) == 2 + 1 + 2  # head, rule, teacher, two rungs
    assert (out / "ladder.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "ladder.json").read_text()) == result


@pytest.mark.engine
def test_a_finished_ladder_run_again_trains_and_plays_nothing(ladder):
    folder, out, command, result, _ = ladder
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.suffix in (".pt", ".pgn", ".gz")}
    done = subprocess.run([sys.executable, "-m", "lc0distill", *command], capture_output=True, text=True,
                          timeout=300, cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    said = done.stderr.split("| net |")[0]  # what it did, before the table
    assert "training" not in said and "nps in lc0" not in said and "self-play" not in said and "scoring" not in said
    assert {p: p.stat().st_mtime_ns for p in before} == before
    again = json.loads(done.stdout)
    assert again["rungs"] == result["rungs"]


@pytest.mark.engine
def test_other_held_out_games_are_scored_again_and_nothing_else(ladder):
    folder, out, command, result, _ = ladder
    other = command[command.index("--held-out") + 1].replace("held.txt", "val.txt")
    command = [*command[:command.index("--held-out") + 1], other, *command[command.index("--held-out") + 2:]]
    done = subprocess.run([sys.executable, "-m", "lc0distill", *command], capture_output=True, text=True,
                          timeout=300, cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    said = done.stderr.split("| net |")[0]
    assert said.count("scoring on the held-out games") == 3  # the teacher and both rungs
    assert "training" not in said and "nps in lc0" not in said
    again = json.loads(done.stdout)
    assert again["teacher"]["nps"] == result["teacher"]["nps"]  # kept, not measured again
    for before, after in zip(result["rungs"], again["rungs"]):
        assert after["held_out"] != before["held_out"] and after["vs_teacher"] == before["vs_teacher"]


@pytest.mark.engine
def test_a_killed_ladder_resumes_its_rung_and_keeps_the_finished_one(tmp_path):
    _needs_engine_and_artifacts()
    out = tmp_path / "out"
    command = _command(tmp_path, out, "--set", "train.steps=30", "--set", "train.lr.total_steps=30",
                       "--set", "train.eval_every=15", measure=False)  # two evaluations a rung, not ten
    process = subprocess.Popen([sys.executable, "-m", "lc0distill", *command], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, cwd=PROJECT_ROOT, start_new_session=True)
    second = out / "rungs" / "16x1" / "checkpoint.pt"
    deadline = time.monotonic() + 300
    while not second.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, process.stderr.read().decode()[-2000:]
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    first = out / "rungs" / "8x1"
    kept = {p: p.read_bytes() for p in (first / "rung.json", first / "best.pt", first / "student.pb.gz")}
    done = subprocess.run([sys.executable, "-m", "lc0distill", *command, "--json"], capture_output=True, text=True,
                          timeout=600, cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rung 8x1: training" not in done.stderr and "rung 16x1: training" in done.stderr
    assert f"resuming {out / 'rungs' / '16x1'} at step" in done.stderr
    assert {p: p.read_bytes() for p in kept} == kept
    result = json.loads(done.stdout)
    assert [r["steps"] for r in result["rungs"]] == [30, 30]


def test_the_default_recipe_is_the_winning_recipe_file():
    """WINNING_RECIPE and configs/distil-teacher-played.yaml say the same (loss, train, net heads, data)."""
    recipe = yaml.safe_load((PROJECT_ROOT / "configs" / "distil-teacher-played.yaml").read_text())
    ours = load_config(None, [*WINNING_RECIPE, "data.paths=[x]"])
    for section in ("loss", "train"):
        for key, value in recipe[section].items():
            if key == "run_dir":
                continue
            mine = getattr(getattr(ours, section), key)
            mine = mine.model_dump(mode="json") if hasattr(mine, "model_dump") else mine
            expected = value if not isinstance(value, dict) else {**mine, **value}
            assert mine == expected, f"{section}.{key}"
    for key in ("batch_size", "sample_rate", "shuffle_buffer"):
        assert getattr(ours.data, key) == recipe["data"][key], key
    assert ours.net.moves_left == recipe["net"]["moves_left"]


def test_limits_and_sizes_are_read_or_refused_in_one_line():
    assert [limit.label for limit in parse_limits("1,100", 250, None)] == ["nodes=1", "nodes=100", "movetime=250ms"]
    assert [limit.label for limit in parse_limits("", None, "10+0.1")] == ["tc=10+0.1"]
    assert parse_sizes("16x2, 32x4") == ("16x2", "32x4")
    for bad in (lambda: parse_limits("1,x", None, None), lambda: parse_limits("", None, None),
                lambda: parse_limits("1,1", None, None), lambda: parse_sizes("16x"), lambda: parse_sizes("8x1,8x1")):
        with pytest.raises(Lc0DistillError):
            bad()


def test_odd_game_counts_are_refused_before_any_work(tmp_path, capsys):
    code = main(["ladder", "--teacher", str(tmp_path / "t.pb.gz"), "--data", "d", "--held-out", "h",
                 "--out", str(tmp_path / "o"), "--games", "3"])
    err = capsys.readouterr().err
    assert code == 2 and "--games 3: an even number" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_the_best_student_is_the_one_that_scored_most():
    rows = {"8x1": {"t": {"games": 4, "wins": 0, "draws": 1, "losses": 3}},
            "16x1": {"t": {"games": 4, "wins": 1, "draws": 1, "losses": 2}},
            "32x1": {"t": {"games": 2, "wins": 0, "draws": 0, "losses": 2}}}
    assert _best_at(rows, "t") == "16x1"
    assert _best_at(rows, "other") is None


def test_the_elo_cell_says_the_interval_and_the_record():
    row = {"games": 10, "wins": 6, "draws": 2, "losses": 2, "elo": 147.2, "elo_low": 20.4, "elo_high": 301.0,
           "stopped": "SPRT accepts H1"}
    assert elo_cell(row) == "+147 [+20, +301] (+6 =2 -2), SPRT"
    assert elo_cell({"games": 0}) == "not played"
    assert elo_cell({"games": 2, "wins": 0, "draws": 0, "losses": 2, "elo": None}) == "n/a (+0 =0 -2)"


def test_the_ladder_clock_is_kept_after_every_game(tmp_path, monkeypatch):
    """A kill in the middle of a long clock match loses at most the game it cut from the ladder's total time."""
    from lc0distill.ladder import run as ladder_run
    from lc0distill.ladder.plan import LadderPlan

    kept_after = []

    def three_games(plan, student, limit, games, sprt, pgn, on_game):
        for done in (1, 2, 3):
            time.sleep(0.15)
            on_game(done)
            kept_after.append(json.loads((tmp_path / "clock.json").read_text())["seconds"])
        return {"games": 3, "pairings": [], "nets": [], "pgn": str(pgn)}

    monkeypatch.setattr(ladder_run, "play_teacher", three_games)
    plan = LadderPlan(teacher=tmp_path / "t.pb.gz", sizes=("8x1",), data=("d",), held_out=("h",), out=tmp_path,
                      limits=parse_limits("1", None, None))
    clock = ladder_run.Clock(tmp_path / "clock.json")
    ladder_run._play(plan, "8x1", plan.limits[0], 3, use_sprt=False, clock=clock)
    assert len(kept_after) == 3 and 0 < kept_after[0] < kept_after[1] < kept_after[2]
    assert kept_after[2] >= 0.4  # three games of 0.15 s each (kept to 0.1 s) were counted as they finished
