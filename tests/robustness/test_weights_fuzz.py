"""Mutations of lc0's own maia-1100.pb.gz through `net info`, `net eval`, `evaluate`, `export` and as a teacher.

Seeded byte-level damage (truncations, flips in the gzip stream and in the protobuf), hypothesis-driven edits
of the protobuf's fields through lc0distill.lc0.proto (sizes, enums, LINEAR16 ranges, encodings, NaN
parameters), and hand-picked hostile files: unknown enum values, a 2048x12 net described in a few hundred KB,
a gzip bomb of zero parameters, a 1024x20 net whose tensors are missing; and a damaged .onnx net. Each is
either a net of finite weights, or one line `lc0distill: error: FILE: ...` (exit code 2), fast, without a
traceback. (Their memory is measured in a process of its own: tests/robustness/test_fuzz.py.)
"""

from __future__ import annotations

import gzip
import random
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lc0distill.errors import Lc0DistillError
from lc0distill.lc0 import proto
from tests.nets import lc0_message, lc0_message_bytes
from lc0distill.lc0.weights import Encoding, encode_layer, read_net
from tests.conftest import SHARED
from tests.robustness.support import (
    STARTPOS, assert_user_error, flip_bits, gzip_bomb, run_cli, strict_json,
)

MAIA = SHARED / "nets" / "maia-1100.pb.gz"
NF = proto.NetworkFormat
FAST = 5.0  # seconds: a hostile file fails before any real work


def maia() -> proto.Net:
    """A fresh, mutable copy of the reference net's Net message (skips when ../shared is absent)."""
    return lc0_message(MAIA)


def write(path: Path, net: proto.Net | bytes, compress: bool = True) -> Path:
    data = net if isinstance(net, bytes) else net.SerializeToString()
    path.write_bytes(gzip.compress(data, compresslevel=1, mtime=0) if compress else data)
    return path


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(message, name: str, wire_type: int) -> bytes:
    return _varint(message.DESCRIPTOR.fields_by_name[name].number << 3 | wire_type)


def unknown_enum(net: proto.Net, message, field: str, value: int = 77) -> proto.Net:
    """`message.field` set to a value the .proto does not list (proto2 parses it into the unknown fields)."""
    message.ClearField(field)
    message.MergeFromString(_field(message, field, 0) + _varint(value))
    return net


def _empty_blocks(net: proto.Net, filters: int, blocks: int) -> proto.Net:
    """A net whose input layer says `filters` (zeros) and that has `blocks` residual blocks without tensors."""
    net.weights.input.weights.params = bytes(112 * 9 * filters * 2)
    del net.weights.residual[:]
    for _ in range(blocks):
        net.weights.residual.add()
    return net


# ---------------------------------------------------------------------------------------------- hand-picked
# Each maker writes a bad file and returns (path, fragments its error line must hold).


def enum_input(tmp_path):
    net = maia()
    return write(tmp_path / "enum-input.pb.gz", unknown_enum(net, net.format.network_format, "input")), \
        ["format.network_format.input", "77"]


def enum_network(tmp_path):
    net = maia()
    return write(tmp_path / "enum-network.pb.gz", unknown_enum(net, net.format.network_format, "network")), \
        ["format.network_format.network", "77"]


def enum_layer_encoding(tmp_path):
    net = maia()
    layer = net.weights.residual[1].conv1.weights
    layer.MergeFromString(_field(layer, "encoding", 0) + _varint(7))
    return write(tmp_path / "enum-encoding.pb.gz", net), ["weights.residual[1].conv1.weights", "layer encoding 7"]


def filters_2048_in_a_few_hundred_kb(tmp_path):
    path = write(tmp_path / "2048x12-tiny.pb.gz", _empty_blocks(maia(), 2048, 12))
    assert path.stat().st_size < 512 << 10  # the was 347 KB
    return path, ["filters 2048"]


def blocks_1024x128_in_a_few_hundred_kb(tmp_path):
    return write(tmp_path / "1024x128.pb.gz", _empty_blocks(maia(), 1024, 128)), ["1024x128", "parameters"]


def filters_1024x20_tensors_missing(tmp_path):
    """Within the size bounds, but the tensors are not there: found before a 1.5 GB net is allocated."""
    return write(tmp_path / "1024x20.pb.gz", _empty_blocks(maia(), 1024, 20)), ["weights.input.bn_means", "1024"]


def zero_parameters_bomb_2048x12(tmp_path):
    """The start of a 2048x12 net's message, then 1.8 GB of zero parameters, in about 2 MB of gzip."""
    net = maia()
    net.ClearField("weights")
    weights = proto.Weights()
    layer_bytes = 112 * 9 * 2048 * 2
    total = layer_bytes + 12 * 2 * 2048 * 2048 * 9 * 2
    head = (net.SerializeToString() + _field(net, "weights", 2) + _varint(total + 16)
            + _field(weights, "input", 2) + _varint(layer_bytes + 8)
            + _field(weights.input, "weights", 2) + _varint(layer_bytes + 4)
            + _field(weights.input.weights, "params", 2) + _varint(layer_bytes))
    path = tmp_path / "2048x12-bomb.pb.gz"
    path.write_bytes(gzip_bomb(total, head))
    assert path.stat().st_size < 4 << 20
    return path, ["inflates more than"]


def classical_head_claimed(tmp_path):
    """A convolution-policy net that says its policy head is classical: 720 'channels', an 85M-value dense layer."""
    net = maia()
    net.format.network_format.policy = NF.POLICY_CLASSICAL
    return write(tmp_path / "classical-claim.pb.gz", net), ["weights.policy.biases"]


def huge_linear16_range(tmp_path):
    net = maia()
    net.weights.value.weights.min_val, net.weights.value.weights.max_val = -3e38, 3e38
    return write(tmp_path / "huge-range.pb.gz", net), ["weights.value.weights", "LINEAR16 range"]


def nan_linear16_max(tmp_path):
    net = maia()
    net.weights.ip1_val_w.max_val = float("nan")
    return write(tmp_path / "nan-max.pb.gz", net), ["weights.ip1_val_w", "LINEAR16 range"]


def nan_float32_params(tmp_path):
    net = maia()
    values = np.full(64 * 64 * 9, np.nan, np.float32)
    net.weights.residual[3].conv2.weights.CopyFrom(encode_layer(values, Encoding.FLOAT32))
    return write(tmp_path / "nan-params.pb.gz", net), ["weights.residual[3].conv2.weights", "NaN or infinite"]


def inf_float16_params(tmp_path):
    net = maia()
    values = np.ones(64, np.float32)
    values[5] = np.inf
    net.weights.value.bn_means.CopyFrom(encode_layer(values[:32], Encoding.FLOAT16))
    return write(tmp_path / "inf-params.pb.gz", net), ["weights.value.bn_means", "1 of 32 values are NaN or infinite"]


def se_width_zero(tmp_path):
    """SE weights whose width (se.b1) is empty: read before as a net without SE units, silently."""
    net = maia()
    net.weights.residual[0].se.ClearField("b1")
    return write(tmp_path / "se-zero.pb.gz", net), ["weights.residual[0].se", "SE weights"]


def truncated(tmp_path):
    maia()
    data = MAIA.read_bytes()
    return write(tmp_path / "truncated.pb.gz", data[: len(data) * 3 // 5], compress=False), ["truncated"]


HOSTILE = [enum_input, enum_network, enum_layer_encoding, filters_2048_in_a_few_hundred_kb,
           blocks_1024x128_in_a_few_hundred_kb, filters_1024x20_tensors_missing, zero_parameters_bomb_2048x12,
           classical_head_claimed, huge_linear16_range, nan_linear16_max, nan_float32_params, inf_float16_params,
           se_width_zero, truncated]


@pytest.fixture(scope="module")
def one_chunk(lc0_data) -> Path:
    return lc0_data / "v6-fmt1-maia1900" / "game_000004.gz"


@pytest.mark.parametrize("make", HOSTILE, ids=lambda make: make.__name__)
def test_hostile_net_files_are_one_line_errors_in_every_command(tmp_path, capsys, make, one_chunk):
    path, fragments = make(tmp_path)
    commands = [["net", "info", path, "--json"], ["net", "eval", path, "--fen", STARTPOS],
                ["evaluate", path, "--data", one_chunk], ["export", path, "--to", "onnx", "--out", tmp_path / "x.onnx"]]
    for argv in commands:
        started = time.perf_counter()
        run = run_cli(capsys, argv)
        assert_user_error(run, path, *fragments)
        assert run.out == ""
        assert time.perf_counter() - started < FAST, argv
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("make", [enum_input, filters_1024x20_tensors_missing, zero_parameters_bomb_2048x12,
                                  nan_float32_params, se_width_zero], ids=lambda make: make.__name__)
def test_hostile_teacher_stops_the_run_before_the_first_step(tmp_path, capsys, make, lc0_data):
    path, fragments = make(tmp_path)
    run_dir = tmp_path / "run"
    run = run_cli(capsys, ["train", f"data.paths=[{lc0_data / 'v6-fmt1-maia1900'}]", "data.workers=0", "net.size=8x1",
                           "train.steps=3", "data.sample_rate=1", "data.batch_size=32", "export.lc0=false",
                           f"train.run_dir={run_dir}", f"teacher.nets=[{path}]"])
    assert_user_error(run, path, *fragments)
    assert not (run_dir / "checkpoint.pt").exists()


# ---------------------------------------------------------------------------------------------- seeded damage


def _damaged(kind: str, rng: random.Random) -> bytes:
    maia()  # skips without the reference net
    raw = lc0_message_bytes(MAIA)
    if kind == "truncated":
        return MAIA.read_bytes()[: rng.randrange(len(MAIA.read_bytes()))]
    if kind == "gzip_flips":
        return flip_bits(MAIA.read_bytes(), rng, rng.randint(1, 6), start=10)
    return gzip.compress(flip_bits(raw, rng, rng.randint(1, 12)), compresslevel=1, mtime=0)


@pytest.mark.parametrize("kind,seeds", [("truncated", range(4)), ("gzip_flips", range(3)),
                                        ("protobuf_flips", range(5))])
def test_seeded_damage_is_a_net_or_one_error_line(tmp_path, capsys, kind, seeds):
    maia()
    for seed in seeds:
        path = tmp_path / f"{kind}-{seed}.pb.gz"
        path.write_bytes(_damaged(kind, random.Random(seed)))
        info = run_cli(capsys, ["net", "info", path, "--json"])
        if info.code == 0:
            assert kind == "protobuf_flips" and info.err == ""  # a flip in a weight's 16 bits: still a net
            assert strict_json(info.out)["parameters"] > 0
            evaluation = run_cli(capsys, ["net", "eval", path, "--fen", STARTPOS, "--json"])
            assert evaluation.code == 0, evaluation.err
            result = strict_json(evaluation.out)  # finite: LINEAR16 codes decode within the layer's range
            assert abs(sum(result["wdl"]) - 1) < 1e-4
        else:
            assert_user_error(info, path)
            assert info.out == ""


def _onnx_cases() -> dict[str, bytes]:
    """A tiny net's ONNX model, cut and bit-flipped (seeded), and with its input-format metadata garbled."""
    from lc0distill.export.onnx_graph import METADATA_INPUT_FORMAT, build_onnx
    from lc0distill.models.config import NetConfig
    from lc0distill.models.net import SEResNet

    def model(input_format: str) -> bytes:
        torch.manual_seed(0)
        onnx_model = build_onnx(SEResNet(NetConfig(filters=8, blocks=1)).eval())
        onnx_model.metadata_props.add(key=METADATA_INPUT_FORMAT, value=input_format)
        return onnx_model.SerializeToString()

    data, rng = model("1"), random.Random(0)
    cases = {"input_format_a_word": model("abc"), "input_format_99": model("99")}
    for i in range(4):
        cases[f"cut_{i}"] = data[: rng.randrange(len(data))]
        cases[f"flips_{i}"] = flip_bits(data, rng, rng.randint(1, 20))
    return cases


def test_damaged_onnx_nets_run_or_fail_with_one_line(tmp_path, capsys, one_chunk):
    """A flip in a graph's constants can make onnxruntime fail only when it runs the model (a Gather index out
    of range): that too is one line naming the file."""
    lines = []
    for name, data in _onnx_cases().items():
        path = tmp_path / f"{name}.onnx"
        path.write_bytes(data)
        for argv in (["net", "eval", path, "--fen", STARTPOS, "--json"], ["evaluate", path, "--data", one_chunk]):
            run = run_cli(capsys, argv)
            if run.code == 0:
                assert name.startswith("flips") and "Traceback" not in run.err, (name, run.err)
                if argv[0] == "net":
                    strict_json(run.out)
            else:
                lines.append(assert_user_error(run, path))
    assert any("onnxruntime cannot run the model" in line for line in lines), lines  # the seeds hold such a case


# ---------------------------------------------------------------------------------------------- field edits

_LAYERS = ["input.weights", "input.bn_means", "input.bn_stddivs", "residual.0.conv1.weights", "residual.2.se.w1",
           "residual.2.se.b1", "residual.5.conv2.bn_gammas", "policy1.weights", "policy.weights", "policy.biases",
           "value.weights", "ip1_val_w", "ip1_val_b", "ip2_val_w", "ip2_val_b"]


def _layer(net: proto.Net, dotted: str):
    node = net.weights
    for part in dotted.split("."):
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    return node


_edits = st.one_of(
    st.tuples(st.just("params_cut"), st.integers(1, 5000)),
    st.tuples(st.just("params_grow"), st.integers(1, 5000)),
    st.tuples(st.just("params_clear"), st.just(0)),
    st.tuples(st.just("min_val"), st.sampled_from([np.nan, np.inf, -np.inf, -3e38, -10.0, 0.0])),
    st.tuples(st.just("max_val"), st.sampled_from([np.nan, np.inf, -np.inf, 3e38, 10.0, 0.0])),
    st.tuples(st.just("encoding"), st.sampled_from([0, 1, 2, 3, 4, 5, 77])),
    st.tuples(st.just("float_values"), st.sampled_from([np.nan, np.inf, -np.inf, 100.0, 0.0])),
)
_format_edits = st.one_of(
    st.tuples(st.sampled_from(["input", "network", "policy", "value", "moves_left", "default_activation", "output"]),
              st.integers(0, 200)),
    st.tuples(st.just("blocks"), st.sampled_from([0, 1, 5, 7, 12, 129])),
)


def _apply(net: proto.Net, layer_name: str, edit) -> None:
    kind, value = edit
    layer = _layer(net, layer_name)
    if kind == "params_cut":
        layer.params = layer.params[: max(len(layer.params) - value, 0)]
    elif kind == "params_grow":
        layer.params = layer.params + bytes(value)
    elif kind == "params_clear":
        layer.ClearField("params")
    elif kind in ("min_val", "max_val"):
        setattr(layer, kind, float(value))
    elif kind == "encoding":
        layer.MergeFromString(_field(layer, "encoding", 0) + _varint(value))
    else:  # the layer re-encoded as FLOAT32, one of its values replaced
        size = len(layer.params) // 2 or 1
        values = np.zeros(size, np.float32)
        values[size // 2] = value
        layer.CopyFrom(encode_layer(values, Encoding.FLOAT32))


def _apply_format(net: proto.Net, edit) -> None:
    field, value = edit
    if field == "blocks":
        while len(net.weights.residual) > min(value, 6):
            del net.weights.residual[-1]
        for _ in range(value - len(net.weights.residual)):
            net.weights.residual.add().CopyFrom(net.weights.residual[0])
    else:
        fmt = net.format.network_format
        fmt.ClearField(field)
        fmt.MergeFromString(_field(fmt, field, 0) + _varint(value))


@settings(max_examples=14)
@given(edits=st.lists(st.tuples(st.sampled_from(_LAYERS), _edits), min_size=1, max_size=3),
       format_edit=st.none() | _format_edits)
def test_protobuf_field_edits_give_a_net_of_finite_weights_or_an_error_naming_the_file(tmp_path_factory, edits,
                                                                                       format_edit):
    net = maia()
    for layer_name, edit in edits:
        _apply(net, layer_name, edit)
    if format_edit is not None:
        _apply_format(net, format_edit)
    path = write(tmp_path_factory.mktemp("edit") / "edited.pb", net, compress=False)
    started = time.perf_counter()
    try:
        model = read_net(path)
    except Lc0DistillError as error:
        message = str(error)
        assert message.startswith(f"{path}: ") and "\n" not in message, message
    else:  # what the file holds is finite (what a net computes from huge weights: see the last test)
        assert all(torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point())
    assert time.perf_counter() - started < FAST


def test_an_impossible_fen_is_one_line(capsys):
    maia()
    run = run_cli(capsys, ["net", "eval", MAIA, "--fen", "8/8/8/8/8/8/8/KK5k w - - 0 1"])
    assert_user_error(run, "--fen", "king")


def test_a_net_of_another_input_format_than_the_data_is_one_line(capsys, one_chunk):
    other = SHARED / "nets" / "maia-1100-fmt3.pb.gz"
    if not other.exists():
        pytest.skip(f"reference net {other} is absent")
    run = run_cli(capsys, ["evaluate", other, "--data", one_chunk])
    assert_user_error(run, other, "input format 3", "format 1")


# ---------------------------------------------------------------------------------------------- non-finite outputs


def test_a_net_with_huge_finite_weights_is_refused_by_net_eval(tmp_path, capsys, one_chunk):
    net = maia()
    layer = net.weights.input.weights
    layer.min_val, layer.max_val = -1e38, 1e38  # a LINEAR16 range lc0 decodes too: the activations overflow
    path = write(tmp_path / "huge-weights.pb.gz", net)
    evaluation = run_cli(capsys, ["net", "eval", path, "--fen", STARTPOS, "--json"])
    metrics = run_cli(capsys, ["evaluate", path, "--data", one_chunk, "--json"])
    for run in (evaluation, metrics):
        if run.code == 0:
            strict_json(run.out)
        else:
            assert_user_error(run, path, "non-finite")
