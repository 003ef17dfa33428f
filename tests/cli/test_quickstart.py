"""The README's main command, shortened: shipped games -> chunks -> teacher, student, distilled student."""

import gzip
import re

import pytest

from lc0distill.cli import main
from lc0distill.cli.quickstart import GAMES
from lc0distill.lc0.weights import read_net
from lc0distill.nets import load_inference_net


def test_shipped_games_are_engine_games_with_evaluations():
    text = gzip.decompress(GAMES.read_bytes()).decode()
    assert text.count("[Event ") == 300
    assert len(re.findall(r"\[%eval ", text)) > 30000
    assert '[Result "*"]' not in text


@pytest.mark.slow
def test_quickstart_end_to_end(tmp_path, capsys):
    assert main(["quickstart", "--out", str(tmp_path / "qs"), "--steps", "8"]) == 0
    out = capsys.readouterr().out
    for name in ("teacher", "student alone", "distilled student", "policy loss", "infer/s"):
        assert name in out
    run_dir = tmp_path / "qs" / "distilled-student"
    student = read_net(run_dir / "final.pb.gz")
    assert student.config.name == "16x2"
    for name in ("student.onnx", "student-onnx.pb.gz"):  # checked against PyTorch before being written
        assert load_inference_net(run_dir / name).config.name == "16x2"
    assert "and as onnx" in out and "and as lc0-onnx" in out
    assert len(list((tmp_path / "qs" / "chunks").glob("game_*.gz"))) == 300
    line = next(l for l in out.splitlines() if l.startswith("distilled vs alone"))
    wins, draws, losses = (int(n) for n in re.search(r"\+(\d+) =(\d+) -(\d+)", line).groups())
    assert wins + draws + losses == 200 and "Elo " in line
    games = (tmp_path / "qs" / "match.pgn").read_text()
    assert games.count("[Event ") == 200 and games.count('[White "distilled-student/final"]') == 100
