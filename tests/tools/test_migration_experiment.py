"""tools/migration_experiment.py: the two students' settings (each family's optimizer, the rest equal) and a
smoke run whose JSON has the documented shape, both students on the same positions for the same steps."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT, SELFPLAY, SHARED
from tests.tools import load_tool

TOOL = PROJECT_ROOT / "tools" / "migration_experiment.py"


def test_each_family_trains_with_its_own_optimizer_and_nothing_else_differs(tmp_path):
    tool = load_tool("migration_experiment")
    args = tool.parse_args(["--steps", "4500"])
    assert args.students == ["bt-64x4", "64x6"] and (args.teacher_weight, args.temperature) == (1.0, 2.0)
    experiment = tool.experiment
    se, bt = experiment.student_settings(args, "64x6"), experiment.student_settings(args, "bt-64x4")
    assert "train.optimizer=sgd" in se and "train.lr.lr=0.05" in se and "train.lr.warmup_steps=225" in se
    assert {"net.body=attention", "net.size=64x4", "train.optimizer=adamw", "train.weight_decay=0.01",
            "train.lr.lr=0.001", "train.lr.warmup_steps=250", "train.lr.min_lr=0.00001"} <= set(bt)
    one, other = (experiment.arm_config(args, f"distilled-{s}", 0, ["a"], "b", tmp_path, tmp_path, s)
                  .model_dump(mode="json") for s in ("64x6", "bt-64x4"))
    for section in ("data", "loss", "teacher", "export"):
        assert one[section] == other[section], section
    optimizer = {"optimizer", "lr", "weight_decay", "run_dir"}
    assert {k: v for k, v in one["train"].items() if k not in optimizer} == \
        {k: v for k, v in other["train"].items() if k not in optimizer}
    assert one["train"]["steps"] == 4500 and one["train"]["lr"]["total_steps"] == other["train"]["lr"]["total_steps"]
    assert one["net"]["body"] == "residual" and other["net"]["body"] == "attention"


def test_bad_students_are_refused_before_any_work(capsys):
    tool = load_tool("migration_experiment")
    for students in ("bt-abc,64x6", "64x6,64x6", "64x6"):
        with pytest.raises(SystemExit):
            tool.parse_args(["--students", students])
    assert "--students" in capsys.readouterr().err


def test_the_table_by_hand():
    tool = load_tool("migration_experiment")
    student = {"parameters": 879_011, "flops": 32_200_000, "train_positions_per_second": [400.0, None],
               "lc0": {"nps": 1234}, "policy_loss": 1.9, "top1_accuracy": 0.6, "value_mse": 0.58}
    result = {"scored_positions": 3400, "scored_games": 32, "order": ["bt-64x4", "64x6"], "positions": 328_142,
              "steps": 4500, "teacher": {"parameters": 866_499, "flops": 76_300_000, "policy_loss": 1.47,
                                         "top1_accuracy": 0.87, "value_mse": 0.57, "value_ce": 1.04},
              "students": {"bt-64x4": student, "64x6": {**student, "lc0": {"nps": None}}},
              "match": {"nodes_1": {"elo": 35.2, "elo_low": -10.4, "elo_high": 80.9, "games": 200, "wins": 80,
                                    "draws": 60, "losses": 60}}}
    text = tool.table(result)
    assert "| bt-64x4 (328,142 positions, 4,500 steps) | 879,011 | 32.2 | 1.9000 | 0.6000 | 0.5800 | - | 400 | 1234 |" \
        in text
    assert "| 64x6 (328,142 positions, 4,500 steps) | 879,011 | 32.2 | 1.9000 | 0.6000 | 0.5800 | - | 400 | - |" in text
    assert "lc0 at 1 node(s), bt-64x4 vs 64x6, 200 games: +80 =60 -60, Elo +35 95% [-10, +81]" in text


@pytest.mark.slow
def test_a_smoke_run_has_the_documented_shape(tmp_path):
    if not (SELFPLAY.exists() and (SHARED / "nets" / "maia-1900.pb.gz").exists()):
        pytest.skip("../shared's maia-1900 self-play and net are absent")
    argv = ["--quick", "--students", "bt-64x4,16x2", "--steps", "6", "--batch-size", "32", "--out", str(tmp_path),
            "--match-nodes", "1", "--match-games", "2", "--played-games", "2", "--json"]
    done = subprocess.run([sys.executable, str(TOOL), *argv], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["equal_positions"] is True and result["equal_steps"] is True and result["steps"] == 6
    assert result["order"] == ["bt-64x4", "16x2"] and set(result["students"]) == {"bt-64x4", "16x2"}
    for student in result["students"].values():
        assert {"policy_loss", "top1_accuracy", "value_mse", "value_ce", "parameters", "flops", "lc0",
                "train_positions_per_second", "runs"} <= set(student)
        assert student["parameters"] > 0 and student["flops"] > 0
    assert result["students"]["bt-64x4"]["parameters"] == 879_011  # the 64x4 preset without moves-left
    assert all(run["final_step"] == 6 for student in result["students"].values() for run in student["runs"])
    digests = [student["runs"][0]["data_digest"] for student in result["students"].values()]
    assert digests[0] == digests[1] is not None
    match = result["match"]["nodes_1"]
    assert set(match) >= {"elo", "elo_low", "elo_high", "games"} or "skipped" in match
    assert (tmp_path / "result.md").read_text().startswith("| held-out")
