"""tools/distill_experiment.py: its split, its statistics against hand computations, and a smoke run whose JSON
has the documented shape, with the two arms on the same positions for the same steps."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lc0distill.errors import Lc0DistillError
from tests.conftest import PROJECT_ROOT, SELFPLAY, SHARED
from tests.tools import load_tool

TOOL = PROJECT_ROOT / "tools" / "distill_experiment.py"


def test_split_is_disjoint_by_name_and_of_the_asked_sizes(tmp_path):
    tool = load_tool("distill_experiment")
    for i in range(40):
        (tmp_path / f"game_{i:06d}.gz").write_bytes(b"")
    split = tool.split_games([str(tmp_path)], 0.1, 0.2)
    parts = [set(split.train), set(split.validation), set(split.held_out)]
    assert [len(p) for p in parts] == [28, 8, 4]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    for path in tmp_path.glob("game_*.gz"):
        path.rename(moved / path.name)
    again = tool.split_games([str(moved)], 0.1, 0.2)
    assert sorted(Path(f).name for f in again.held_out) == sorted(Path(f).name for f in split.held_out)


def test_gap_closed_by_hand():
    tool = load_tool("distill_experiment")
    assert tool.gap(2.0, 1.7, 1.5, lower_better=True) == pytest.approx(0.6)  # (2.0 - 1.7) / (2.0 - 1.5)
    assert tool.gap(0.4, 0.52, 0.8, lower_better=False) == pytest.approx(0.3)  # (0.52 - 0.4) / (0.8 - 0.4)
    assert tool.gap(1.4, 1.3, 1.5, lower_better=True) is None  # hard already beats the teacher: no gap


def test_summary_figures_by_hand():
    """Two held-out games of 1 and 3 positions, two seeds. Pooled = position-weighted mean of game means."""
    tool = load_tool("distill_experiment")
    sizes = np.array([1.0, 3.0])
    metric = lambda a, b: {"policy_loss": np.array([a, b]), "top1_accuracy": np.array([0.5, 0.5]),  # noqa: E731
                           "value_mse": np.array([1.0, 1.0]), "value_ce": np.array([1.0, 1.0])}
    teacher = metric(1.0, 1.0)
    scored = {"hard": [metric(3.0, 3.0), metric(2.0, 4.0)], "distilled": [metric(2.0, 2.0), metric(2.0, 2.0)]}
    runs = {arm: [{"seed": 0}, {"seed": 1}] for arm in scored}
    result = tool.summarise(sizes, teacher, scored, runs)
    hard_seeds = [3.0, (2.0 + 3 * 4.0) / 4]  # 3.0 and 3.5
    assert result["arms"]["hard"]["policy_loss"] == pytest.approx(np.mean(hard_seeds))
    assert result["arms"]["hard"]["policy_loss_se"] == pytest.approx(np.std(hard_seeds, ddof=1) / np.sqrt(2))
    gaps = [(3.0 - 2.0) / (3.0 - 1.0), (3.5 - 2.0) / (3.5 - 1.0)]  # 0.5 and 0.6
    assert result["gap_closed"]["policy_loss_per_seed"] == pytest.approx(gaps)
    assert result["gap_closed"]["policy_loss"] == pytest.approx(0.55)
    assert result["gap_closed"]["policy_loss_se"] == pytest.approx(np.std(gaps, ddof=1) / np.sqrt(2))
    difference = result["differences"]["policy_loss"]
    assert difference["distilled_minus_hard"] == pytest.approx(np.mean([-1.0, -1.5]))
    assert result["differences"]["top1_accuracy"]["se_games"] == 0.0  # equal everywhere: nothing to resample


def test_teacher_games_are_made_once_and_never_taken_for_another_teachers(tmp_path, monkeypatch):
    tool = load_tool("distill_experiment")
    plays = []

    def fake_play(argv, what):  # `data play` writing its chunks, without the net
        plays.append(argv)
        out = Path(argv[argv.index("--out") + 1])
        out.mkdir(parents=True)
        for i in range(int(argv[argv.index("--games") + 1])):
            (out / f"game_{i:06d}.gz").write_bytes(b"")

    monkeypatch.setattr(tool, "cli", fake_play)
    teacher = tmp_path / "teacher.pb.gz"
    teacher.write_bytes(b"net A")
    args = argparse.Namespace(out=tmp_path / "out", teacher=teacher)
    folder = tmp_path / "out" / "played"
    assert tool.teacher_games(args, "played", 2, ["--seed", "1"]) == [str(folder)]
    assert tool.teacher_games(args, "played", 2, ["--seed", "1"]) == [str(folder)] and len(plays) == 1
    with pytest.raises(Lc0DistillError, match="not by .* with \\['--seed', '2'\\]: use another --out"):
        tool.teacher_games(args, "played", 2, ["--seed", "2"])
    teacher.write_bytes(b"net B")
    with pytest.raises(Lc0DistillError, match="games made by teacher"):
        tool.teacher_games(args, "played", 2, ["--seed", "1"])
    (folder / "made_by.json").unlink()
    with pytest.raises(Lc0DistillError, match="no made_by.json saying which teacher played them"):
        tool.teacher_games(args, "played", 2, ["--seed", "1"])
    assert len(plays) == 1 and len(list(folder.glob("game_*.gz"))) == 2  # refused, and nothing deleted
    assert tool.teacher_games(args, "played", 3, ["--seed", "1"]) == [str(folder)] and len(plays) == 2


@pytest.mark.slow
def test_a_smoke_run_has_the_documented_shape(tmp_path):
    if not (SELFPLAY.exists() and (SHARED / "nets" / "maia-1900.pb.gz").exists()):
        pytest.skip("../shared's maia-1900 self-play and net are absent")
    argv = ["--quick", "--student", "16x2", "--out", str(tmp_path), "--match-nodes", "1", "--match-games", "4",
            "--played-games", "6", "--json"]
    done = subprocess.run([sys.executable, str(TOOL), *argv], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["equal_positions"] is True and result["equal_steps"] is True and result["seeds"] == 2
    assert set(result["arms"]) == {"hard", "distilled"}
    for arm in result["arms"].values():
        assert {"policy_loss", "top1_accuracy", "value_mse", "value_ce", "per_seed"} <= set(arm)
        assert [s["seed"] for s in arm["per_seed"]] == [0, 1]
    assert {"policy_loss", "policy_loss_se", "top1_accuracy", "value_mse"} <= set(result["gap_closed"])
    assert result["positions"]["hard"] == result["positions"]["distilled"] > 0
    assert result["steps"] == {"hard": 20, "distilled": 20}
    digests = [[s["data_digest"] for s in result["arms"][arm]["per_seed"]] for arm in ("hard", "distilled")]
    assert digests[0] == digests[1] and digests[0][0] != digests[0][1]  # same stream per seed, another per seed
    match = result["match"]["nodes_1"]
    assert set(match) >= {"elo", "elo_low", "elo_high", "games"} or "skipped" in match
    assert (tmp_path / "result.md").read_text().startswith("| held-out")
