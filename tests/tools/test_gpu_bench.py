"""tools/gpu_bench.py runs in its --quick CPU form (what CI can check of it) and writes the table's rows as JSON:
every section measured, the step's host reads counted at 0, the loader's cores and verdict stated."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT, SELFPLAY, copy_games


@pytest.mark.slow
def test_gpu_bench_quick_runs_on_the_cpu_and_prints_one_table(tmp_path):
    data = copy_games(SELFPLAY, tmp_path / "games", 20)
    out = tmp_path / "bench.json"
    finished = subprocess.run([sys.executable, str(PROJECT_ROOT / "tools" / "gpu_bench.py"), str(data), "--quick",
                               "--device", "cpu", "--json", str(out), "--batch-size", "32", "--teacher", "32x4",
                               "--loader-seconds", "0.5", "--loader-buffer", "2048"], capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert sum(line.split()[:2] == ["section", "setting"] for line in finished.stdout.splitlines() if line.strip()) == 1
    rows = json.loads(out.read_text())["rows"]
    by_section = {}
    for row in rows:
        by_section.setdefault(row["section"], []).append(row)
    assert [r["setting"] for r in by_section["train"]] == ["64x6 float32", "64x6 float32 channels_last"]
    assert all(r["positions_per_second"] > 0 and r["tflops"] > 0 for r in by_section["train"])
    assert [r["setting"].split()[-1] for r in by_section["teacher"]] == ["live", "cache"]
    assert by_section["reads"][0]["note"].startswith("0 per step; 1 per read")
    assert [r["setting"].split(",")[0] for r in by_section["loader"]] == ["shards", "gzip chunks"]
    for row in by_section["loader"]:
        assert row["positions_per_second"] > 0 and " cores; " in row["note"] and "keep" in row["note"]
