import json

import pytest

from lc0distill.cli import main
from lc0distill.models.config import NetConfig
from lc0distill.models.net import SEResNet
from lc0distill.models.store import save_model
from tests.conftest import SHARED

MAIA = SHARED / "nets" / "maia-1900.pb.gz"


@pytest.fixture
def maia():
    if not MAIA.exists():
        pytest.skip(f"reference net {MAIA} is absent (../shared)")
    return str(MAIA)


def test_net_info_json(capsys, maia):
    assert main(["net", "info", maia, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["filters"], info["blocks"], info["size"]) == (64, 6, "64x6")
    assert info["policy"] == "convolution" and info["value"] == "wdl" and info["moves_left"] is False
    assert info["input_format"] == 1 and info["parameters"] > 800_000 and info["flops_per_position"] > 7e7
    assert info["layer_encodings"] == ["LINEAR16"]


def test_net_eval_json_matches_the_engine(capsys, maia, oracle_positions):
    position = next(p for p in oracle_positions if p["start"] == "startpos" and len(p["moves_played_from_start"]) > 4)
    assert main(["net", "eval", maia, "--moves", " ".join(position["moves_played_from_start"]), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"policy", "wdl", "q", "mlh"} and result["mlh"] is None
    assert max(abs(result["policy"][m] - p) for m, p in position["policy"].items()) < 0.002
    assert max(abs(a - b) for a, b in zip(result["wdl"], position["wdl"])) < 0.002
    assert abs(result["q"] - position["q"]) < 0.002


def test_net_eval_fen_and_checkpoint(capsys, tmp_path):
    path = tmp_path / "student.pt"
    save_model(SEResNet(NetConfig(filters=8, blocks=1)), path)
    assert main(["net", "eval", str(path), "--fen", "8/8/8/4k3/8/8/8/4KQ2 w - - 0 1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert abs(sum(result["policy"].values()) - 1) < 1e-6 and result["mlh"] is not None
    assert main(["net", "info", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["size"] == "8x1"


@pytest.mark.parametrize("argv", [["--moves", "e2e4 e2e4"], ["--fen", "not a fen"]])
def test_net_eval_user_errors(capsys, tmp_path, argv):
    path = tmp_path / "n.pt"
    save_model(SEResNet(NetConfig(filters=8, blocks=1)), path)
    assert main(["net", "eval", str(path), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("fen, reason", [
    ("8/8/8/8/8/8/8/8 w - - 0 1", "no white king"),
    ("4k3/8/8/8/8/8/8/4K2R w KQ - 0 1", "castling rights without the king and rook at home"),
    ("P3k3/8/8/8/8/8/8/4K3 w - - 0 1", "pawns on the first or last rank"),
    ("4k3/8/8/8/8/8/4r3/4K3 b - - 0 1", "the side not to move is in check"),
])
def test_an_impossible_position_is_refused(capsys, fen, reason):
    net = SHARED / "nets" / "maia-1100.pb.gz"
    if not net.exists():
        pytest.skip(f"reference artifact {net} is absent")
    assert main(["net", "eval", str(net), "--fen", fen]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a position of a chess game" in err and reason in err
