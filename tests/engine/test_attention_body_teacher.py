"""An attention-body net written by hand from the format's facts (tests/engine/attention_body.py, not
lc0distill's writer) as a teacher: lc0 loads and plays it; lc0distill reads it natively (an AttentionNet
whose outputs are lc0's) and teaches with it with the losses of the same net converted by lc0's leela2onnx and
run in onnxruntime. Nets lc0distill does not build go through that conversion, done once and cached beside
the net, keyed by its hash; without the engine the error says how to convert it by hand."""

from __future__ import annotations

import gzip
import json

import chess
import numpy as np
import pytest
import torch

from lc0distill.cli import main
from lc0distill.engine import onnx_conversion
from lc0distill.engine.binary import leela2onnx, uci_search
from lc0distill.engine.evaluation import lc0_outputs
from lc0distill.engine.locate import EngineNotFound
from lc0distill.engine.positions import engine_check_boards
from lc0distill.errors import Lc0DistillError
from lc0distill.lc0 import proto
from lc0distill.lc0.weights import net_file_bytes
from lc0distill.models.attention import AttentionNet
from lc0distill.models.inference import board_planes
from lc0distill.nets import load_inference_net
from tests.engine.attention_body import write_attention_body_net

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def body_net(tmp_path_factory, lc0_binary):
    return write_attention_body_net(tmp_path_factory.mktemp("attention-body") / "bt-small.pb.gz")


def test_lc0_loads_it_and_plays_a_legal_move(body_net, lc0_binary):
    board = chess.Board("r1bqkbnr/pppp1ppp/2n5/4p3/4P3/5N2/PPPP1PPP/RNBQKB1R w KQkq - 2 3")
    result = uci_search(lc0_binary, body_net, board, nodes=8)
    assert chess.Move.from_uci(result.bestmove) in board.legal_moves


def test_it_reads_natively_and_evaluates_as_lc0_does(body_net):
    boards = engine_check_boards(24)
    info, expected = lc0_outputs(str(body_net), boards)
    assert info.policy_format == 3 and info.moves_left
    net = load_inference_net(body_net)
    assert isinstance(net, AttentionNet) and net.config.name == "32x2" and net.config.heads == 4
    planes, _ = board_planes(boards, 1)
    with torch.no_grad():
        out = net(planes)
    compared = 0
    for row, lc0 in enumerate(expected):
        if lc0 is None or not lc0.indices:  # a position lc0 cannot encode, or one without moves
            continue
        compared += 1
        moves = list(lc0.indices)
        ours = torch.softmax(out.policy_logits[row, moves].double(), 0).numpy()
        theirs = torch.softmax(torch.from_numpy(lc0.logits[moves]).double(), 0).numpy()
        assert np.abs(ours - theirs).max() < 1e-5
        wdl = torch.softmax(out.wdl_logits[row].double(), 0)
        assert abs(float(wdl[0] - wdl[2]) - lc0.q) < 1e-5
    assert compared >= 20


def test_a_conversion_is_made_once_and_cached_by_hash(body_net):
    cached = body_net.with_name(f"{body_net.name}.lc0-{onnx_conversion.net_hash(body_net)}.onnx")
    assert onnx_conversion.converted_onnx(body_net, "an attention-body net") == cached and cached.is_file()
    stamp = cached.stat().st_mtime_ns
    onnx_conversion.converted_onnx(body_net, "an attention-body net")  # the second time: the cached one
    assert cached.stat().st_mtime_ns == stamp


def test_it_teaches_with_the_losses_of_the_same_net_converted_by_hand(body_net, lc0_binary, selfplay_dir,
                                                                       tmp_path, capsys):
    by_hand = leela2onnx(lc0_binary, body_net, tmp_path / "by-hand.onnx")
    wrapped = tmp_path / "by-hand.pb.gz"
    assert main(["export", str(by_hand), "--to", "lc0-onnx", "--input-format", "1", "--out", str(wrapped)]) == 0
    losses = {}
    for name, teacher in (("converted", body_net), ("by-hand", wrapped)):
        run_dir = tmp_path / name
        assert main(["train", f"data.paths=[{selfplay_dir}]", "data.workers=0", "data.batch_size=32",
                     "data.sample_rate=1", "data.shuffle_buffer=512", "net.size=16x2", f"teacher.nets=[{teacher}]",
                     "train.steps=4", "train.log_every=1", "train.eval_every=0", "train.eval_positions=200",
                     f"train.run_dir={run_dir}"]) == 0
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        losses[name] = [{k: r[k] for k in ("total", "policy", "policy_distill", "value_distill")}
                        for r in records if r["kind"] == "train"]
    capsys.readouterr()
    assert len(losses["converted"]) == 4 and losses["converted"][0]["policy_distill"] > 0
    for native, by_hand in zip(losses["converted"], losses["by-hand"]):  # PyTorch against onnxruntime: rounding
        assert native == pytest.approx(by_hand, rel=1e-4, abs=1e-6)


def test_without_the_engine_the_error_says_how_to_convert_it(tmp_path, monkeypatch):
    """A net lc0distill does not build (here: marked with lc0's newer dense embedding) needs the conversion."""
    net = write_attention_body_net(tmp_path / "no-engine.pb.gz", layers=1)
    message = proto.Net()
    message.ParseFromString(gzip.decompress(net.read_bytes()))
    message.format.network_format.input_embedding = proto.NetworkFormat.INPUT_EMBEDDING_PE_DENSE
    net.write_bytes(net_file_bytes(message))

    def missing(*args, **kwargs):
        raise EngineNotFound("no lc0 engine found")

    monkeypatch.setattr(onnx_conversion, "find_engine", missing)
    with pytest.raises(Lc0DistillError) as caught:
        load_inference_net(net)
    message = str(caught.value)
    assert "attention-body net" in message and f"lc0 leela2onnx --input={net}" in message
    assert not list(tmp_path.glob("*.onnx"))


def test_net_info_gives_its_body(body_net, capsys):
    assert main(["net", "info", str(body_net), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    # the writer's dimensions (tests/engine/attention_body.py defaults)
    assert (info["size"], info["body"], info["heads"], info["ffn_width"]) == ("32x2", "attention", 4, 64)
    assert info["network"] == "NETWORK_ATTENTIONBODY_WITH_HEADFORMAT"
    converted = onnx_conversion.converted_onnx(body_net, "an attention-body net")
    assert main(["net", "info", str(converted), "--json", "--input-format", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["size"] is None  # leela2onnx's graph does not say it
    assert main(["net", "info", str(converted), "--input-format", "1"]) == 0
    assert "size" in (out := capsys.readouterr().out) and "unknown" in out
