"""lc0_selfplay against a stand-in for lc0 (a script that speaks its self-play output): a run that ends short
with exit 0, as lc0 v0.31 now and then does, is started again for the missing games; one that never plays is
an error after three runs; each chunk lands whole in the output with lc0's bytes."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from lc0distill.errors import Lc0DistillError
from lc0distill.selfplay.lc0_selfplay import EMPTY_RUNS, lc0_selfplay
from lc0distill.cli import main
from tests.conftest import SELFPLAY, SHARED

FAKE = '''#!{python}
import os, re, shutil, sys
from pathlib import Path
count_file = Path({count!r})
runs = int(count_file.read_text()) + 1 if count_file.exists() else 1
count_file.write_text(str(runs))
Path(str(count_file) + ".argv").write_text(" ".join(sys.argv[1:]))
games = int(next(a for a in sys.argv if a.startswith("--games=")).split("=")[1])
print("id name Lc0 stand-in", flush=True)
if runs in {empty_runs}:
    sys.exit(0)  # ends at once, no game, exit 0
folder = Path(os.environ["XDG_CACHE_HOME"]) / "lc0" / "data-fake"
folder.mkdir(parents=True, exist_ok=True)
for game in range(games):
    chunk = folder / f"game_{{game:06d}}.gz"
    shutil.copy({chunk!r}, chunk)
    print(f"gameready trainingfile {{chunk}} gameid {{game}} play_start_ply 0 player1 white result draw moves e2e4",
          flush=True)
'''


def _fake(tmp_path: Path, empty_runs: set[int]) -> tuple[Path, Path]:
    chunks = sorted(SELFPLAY.glob("*.gz"))
    if not chunks:
        pytest.skip(f"reference chunks in {SELFPLAY} are absent")
    count = tmp_path / "runs.txt"
    script = tmp_path / "lc0"
    script.write_text(FAKE.format(python=sys.executable, count=str(count), empty_runs=empty_runs,
                                  chunk=str(chunks[0])))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script, count


def test_a_run_that_ends_short_is_started_again_for_the_missing_games(tmp_path):
    script, count = _fake(tmp_path, empty_runs={1})
    seen = []
    out = tmp_path / "out"
    chunks = lc0_selfplay(script, tmp_path / "net.pb.gz", 3, 2, out, on_game=lambda c, r: seen.append((c.name, r)))
    assert count.read_text() == "2"
    assert [c.name for c in chunks] == ["game_000000.gz", "game_000001.gz", "game_000002.gz"]
    assert seen == [(c.name, "1/2-1/2") for c in chunks]
    reference = sorted(SELFPLAY.glob("*.gz"))[0].read_bytes()
    assert all(c.read_bytes() == reference for c in chunks)
    assert sorted(p.name for p in out.iterdir()) == [c.name for c in chunks]  # nothing else left there


def test_a_run_that_never_plays_is_an_error_after_three_runs(tmp_path):
    script, count = _fake(tmp_path, empty_runs=set(range(1, 10)))
    with pytest.raises(Lc0DistillError, match=f"wrote no training data \\({EMPTY_RUNS} runs\\)"):
        lc0_selfplay(script, tmp_path / "net.pb.gz", 2, 2, tmp_path / "out")
    assert count.read_text() == str(EMPTY_RUNS)


def test_selfplay_options_reach_lc0_and_a_malformed_one_is_refused(tmp_path, capsys):
    """data play --selfplay-option noise-epsilon=0: lc0 selfplay is started with --noise-epsilon=0."""
    script, count = _fake(tmp_path, empty_runs=set())
    net = SHARED / "nets" / "maia-1900.pb.gz"
    if not net.exists():
        pytest.skip(f"{net} is absent")
    common = ["data", "play", "--net", str(net), "--games", "1", "--out", str(tmp_path / "out"), "--engine", "lc0",
              "--engine-path", str(script), "--visits", "2"]
    assert main([*common, "--selfplay-option", "noise-epsilon=0"]) == 0
    argv = Path(str(count) + ".argv").read_text().split()
    assert "--noise-epsilon=0" in argv and "--visits=2" in argv
    assert main([*common, "--selfplay-option", "noise epsilon"]) != 0
    assert "--selfplay-option noise epsilon: KEY=VALUE" in capsys.readouterr().err
