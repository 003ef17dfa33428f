"""lc0 weights: our net computes what the lc0 engine computes, and our files are lc0's bytes."""

import gzip

import chess
import numpy as np
import pytest
import torch

from lc0distill.chess.expand import expand_records
from lc0distill.chunks.reader import read_chunk
from lc0distill.lc0 import proto
from lc0distill.lc0.weights import (
    Encoding,
    _is_repeated,
    decode_layer,
    encode_layer,
    linear16_error_bound,
    net_message,
    read_net,
    write_net,
)
from lc0distill.models.config import NetConfig, preset
from lc0distill.models.inference import evaluate_boards
from lc0distill.models.net import SEResNet

TOLERANCE = 0.002  # the bar for agreement with the lc0 engine


def _oracle_board(position) -> chess.Board:
    board = chess.Board() if position["start"] == "startpos" else chess.Board(position["start"])
    for uci in position["moves_played_from_start"]:
        board.push_uci(uci)
    return board


def test_maia_matches_the_lc0_engine_on_every_reference_position(nets_dir, oracle_positions):
    net = read_net(nets_dir / "maia-1900.pb.gz")
    evaluations = evaluate_boards(net, [_oracle_board(p) for p in oracle_positions])
    worst_policy = worst_wdl = 0.0
    for position, evaluation in zip(oracle_positions, evaluations):
        assert set(evaluation.policy) == set(position["policy"]), position["category"]
        worst_policy = max(worst_policy, max(abs(evaluation.policy[m] - p) for m, p in position["policy"].items()))
        worst_wdl = max(worst_wdl, max(abs(a - b) for a, b in zip(evaluation.wdl, position["wdl"])))
        assert abs(evaluation.q - position["q"]) < TOLERANCE
    assert worst_policy < TOLERANCE and worst_wdl < TOLERANCE
    assert worst_policy < 1e-4 and worst_wdl < 1e-4  # what we measure: float rounding only


@pytest.mark.parametrize("folder, net_name", [
    ("v6-fmt1-maia1900", "maia-1900"), ("v6-fmt2-maia1100", "maia-1100-fmt2"), ("v6-fmt3-maia1100", "maia-1100-fmt3"),
    ("v6-fmt4-maia1100", "maia-1100-fmt4"), ("v6-fmt5-maia1100", "maia-1100-fmt5"),
    ("v6-fmt132-maia1100", "maia-1100-fmt132"), ("v6-fmt133-maia1100", "maia-1100-fmt133"),
])
def test_stored_planes_reproduce_lc0s_raw_evaluation(lc0_data, nets_dir, folder, net_name):
    """orig_q / orig_d: what lc0 computed with the playing net on exactly these planes."""
    records = np.concatenate([read_chunk(str(p)).records for p in sorted((lc0_data / folder).glob("*.gz"))])
    known = ~np.isnan(records["orig_q"])
    assert known.sum() > 100
    net = read_net(nets_dir / f"{net_name}.pb.gz")
    assert net.config.input_format == int(records["input_format"][0])
    with torch.no_grad():
        wdl = net(torch.from_numpy(expand_records(records[known]))).wdl_logits.softmax(dim=1).numpy()
    assert np.abs(wdl[:, 0] - wdl[:, 2] - records["orig_q"][known]).max() < TOLERANCE
    assert np.abs(wdl[:, 1] - records["orig_d"][known]).max() < TOLERANCE


def _layers(message, prefix=""):
    found = {}
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        for i, item in enumerate(value) if _is_repeated(field) else [(None, value)]:
            name = f"{prefix}.{field.name}" + ("" if i is None else f"[{i}]")
            found.update({name: item} if item.DESCRIPTOR.name == "Layer" else _layers(item, name))
    return found


@pytest.mark.parametrize("name", ["maia-1900", "maia-1100", "maia-1100-fmt3", "maia-1100-fmt133"])
def test_rewriting_a_real_net_gives_lc0s_weight_bytes(nets_dir, name):
    """Read then write LINEAR16: every layer's 16-bit codes and min_val are the file's own bytes.

    max_val is the largest value as lc0 decodes it (min + range computed in float32, what the engine uses),
    which is the stored max_val or one or two float32 rounding steps from it; with the stored max_val put back, the whole
    weights message is the file's bytes.
    """
    original = proto.Net()
    original.ParseFromString(gzip.decompress((nets_dir / f"{name}.pb.gz").read_bytes()))
    rewritten = net_message(read_net(nets_dir / f"{name}.pb.gz"), license=original.license)
    old_layers, new_layers = _layers(original.weights), _layers(rewritten.weights)
    assert list(old_layers) == list(new_layers) and len(old_layers) > 100
    moved = 0
    for layer_name, old in old_layers.items():
        new = new_layers[layer_name]
        assert new.params == old.params, layer_name
        assert new.min_val == old.min_val, layer_name
        # float32 rounding of min + range: steps of the larger magnitude of the two
        step = np.spacing(np.float32(max(abs(old.min_val), abs(old.max_val))))
        assert abs(new.max_val - old.max_val) <= 2 * step, layer_name
        moved += new.max_val != old.max_val
        new.max_val = old.max_val
    assert moved > 0  # lc0's decoding really differs from the stored max somewhere (else this test says little)
    assert rewritten.weights.SerializeToString() == original.weights.SerializeToString()
    assert rewritten.format.network_format.input == original.format.network_format.input
    assert rewritten.format.network_format.policy == original.format.network_format.policy


def _randomised(config: NetConfig, seed: int = 0) -> SEResNet:
    torch.manual_seed(seed)
    model = SEResNet(config).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
    return model


def _planes(count: int = 8) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    planes = (torch.rand(count, 112, 8, 8, generator=generator) < 0.2).float()
    planes[:, 109] = torch.randint(0, 100, (count, 1, 1), generator=generator).float()
    return planes


@pytest.mark.parametrize("config", [
    preset("128x10"),
    NetConfig(filters=32, blocks=2, policy="classical", value="scalar", moves_left=True, activation="mish"),
    NetConfig(filters=24, blocks=1, se_ratio=0, input_format=4, moves_left=False),
    NetConfig(filters=16, blocks=1, policy="attention", policy_embedding=20, policy_d_model=12),
], ids=["128x10", "classical-scalar-mlh-mish", "no-se-format4", "attention-policy"])
def test_float32_round_trip_is_exact(tmp_path, config):
    model = _randomised(config)
    write_net(model, tmp_path / "net.pb.gz", Encoding.FLOAT32)
    back = read_net(tmp_path / "net.pb.gz")
    assert back.config == model.config
    with torch.no_grad():
        a, b = model(_planes()), back(_planes())
    for name in ("policy_logits", "wdl_logits", "value", "moves_left"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None and y is None) or torch.equal(x, y), name
    for (name, p), q in zip(model.state_dict().items(), back.state_dict().values()):
        assert torch.equal(p, q), name


def test_float32_round_trip_of_maia_is_exact(tmp_path, nets_dir):
    maia = read_net(nets_dir / "maia-1900.pb.gz")
    write_net(maia, tmp_path / "m.pb.gz", Encoding.FLOAT32)
    with torch.no_grad():
        assert torch.equal(maia(_planes()).wdl_logits, read_net(tmp_path / "m.pb.gz")(_planes()).wdl_logits)


def test_linear16_round_trip_within_its_quantisation_bound(tmp_path):
    """LINEAR16 stores a tensor on 65536 levels between its min and max: every value comes back within
    half a level, (max - min) / 65535 / 2 (plus float32 rounding) -- checked tensor by tensor."""
    model = _randomised(preset("128x10"))
    write_net(model, tmp_path / "net.pb.gz")
    back = read_net(tmp_path / "net.pb.gz")
    for (name, original), restored in zip(model.state_dict().items(), back.state_dict().values()):
        if name == "input.conv.weight":  # lc0 stores channel 109 for raw rule50 counts: its own scale
            stored = original.clone()
            stored[:, 109] /= 128
            bound = linear16_error_bound(stored.numpy()) * 128
        else:
            bound = linear16_error_bound(original.numpy())
        assert (original - restored).abs().max().item() <= bound, name
    with torch.no_grad():
        a, b = model(_planes()), back(_planes())
    assert (a.wdl_logits - b.wdl_logits).abs().max() < 1e-3
    assert (a.policy_logits - b.policy_logits).abs().max() < 1e-2


@pytest.mark.parametrize("encoding, tolerance", [(Encoding.FLOAT16, 1e-3), (Encoding.BFLOAT16, 8e-3)])
def test_half_encodings_round_trip(encoding, tolerance):
    values = np.random.default_rng(0).normal(size=1000).astype(np.float32)
    layer = encode_layer(values, encoding)
    assert np.allclose(decode_layer(layer, "x", "test"), values, rtol=tolerance, atol=1e-6)


def test_linear16_layer_edge_cases():
    assert decode_layer(encode_layer(np.array([0.25], np.float32)), "x", "t").tolist() == [0.25]
    assert decode_layer(encode_layer(np.array([0.0], np.float32)), "x", "t").tolist() == [0.0]
    constant = decode_layer(encode_layer(np.full(5, 0.5, np.float32)), "x", "t")
    assert constant.tolist() == [0.5] * 5


def test_min_version_and_format_fields(tmp_path):
    net = net_message(_randomised(NetConfig(filters=8, blocks=1, input_format=5, activation="mish")))
    assert (net.min_version.major, net.min_version.minor) == (0, 29)
    assert net.format.network_format.input == 5 and net.format.weights_encoding == proto.Format.LINEAR16
    assert net.format.network_format.moves_left == proto.NetworkFormat.MOVES_LEFT_V1
    floats = net_message(_randomised(NetConfig(filters=8, blocks=1)), Encoding.FLOAT16)
    assert (floats.min_version.major, floats.min_version.minor) == (0, 33)
