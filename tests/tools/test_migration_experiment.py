"""tools/migration_experiment.py: the two students' settings (each family's optimizer, the rest equal) and a
smoke run whose JSON has the documented shape, both students on the same positions for the same steps."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT, SELFPLAY, SHARED
from tests.tools.test_distill_experiment import _tool

TOOL = PROJECT_ROOT / "tools" / "migration_experiment.py"


def test_each_family_trains_with_its_own_optimizer_and_nothing_else_differs():
    tool = _tool()
    args = tool.parse_args(["--steps", "4500"])
    se, bt = tool.student_settings(args, "64x6"), tool.student_settings(args, "bt-64x4")
    assert "train.optimizer=sgd" in se and "train.lr.lr=0.05" in se and "train.lr.warmup_steps=225" in se
    assert {"net.body=attention", "net.size=64x4", "train.optimizer=adamw", "train.weight_decay=0.01",
            "train.lr.lr=0.001", "train.lr.warmup_steps=250", "train.lr.min_lr=0.00001"} <= set(bt)
    split = tool.Split(["a"], ["b"], ["c"])
    configs = [tool.arm_config(args, f"distilled-{s}", 0, ["a"], "b", SHARED, PROJECT_ROOT / "runs", s)
               for s in ("64x6", "bt-64x4")]
    one, other = (c.model_dump(mode="json") for c in configs)
    assert one["data"] == other["data"] and one["loss"] == other["loss"] and one["teacher"] == other["teacher"]
    assert one["train"]["steps"] == other["train"]["steps"] == 4500 and one["train"]["seed"] == other["train"]["seed"]
    assert split.held_out == ["c"]


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
    digests = [student["runs"][0]["data_digest"] for student in result["students"].values()]
    assert digests[0] == digests[1] is not None
    match = result["match"]["nodes_1"]
    assert set(match) >= {"elo", "elo_low", "elo_high", "games"} or "skipped" in match
    assert (tmp_path / "result.md").read_text().startswith("| held-out")
