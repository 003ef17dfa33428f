"""The lc0 engine loads every net variant lc0distill writes and computes what lc0distill computes.

lc0 v0.31 reads one layer encoding, LINEAR16: its Layer message has no encoding field (per-layer FLOAT16,
BFLOAT16 and FLOAT32 came with lc0 0.33), and our writer marks such files min_version 0.33, so lc0 v0.31
refuses them in its own words. For LINEAR16 files two comparisons:

- lc0 against PyTorch on the file as lc0distill reads it: the same float32 weights on both sides, so only
  the arithmetic differs (lc0's BLAS backend, Winograd convolutions): 1e-4 on probabilities, WDL, value and
  moves-left (relative to max(1, plies)); measured at most 4e-7.
- lc0 against the net the file was written from: adds LINEAR16's rounding (each weight moves by up to half
  a step, (max - min) / 131070 of its tensor's range), which is the same whoever evaluates the file. So the
  test is that lc0's distance from the written net is LINEAR16's own (PyTorch on the file against PyTorch
  on the written net) plus at most 1e-4: lc0 adds nothing to the quantisation. LINEAR16's own effect on these
  nets (see tools/engine_table.py) reaches 5.5e-3 in a policy probability, 4e-3 in a tanh value and 1.6e-2
  plies of moves-left on the briefly trained ones (up to 1e-5 on random ones); the exporter's LINEAR16
  tolerance, 0.05, holds it with a wide margin, and LINEAR16_BOUND asserts that.
"""

from __future__ import annotations

import gzip

import pytest

from lc0distill.cli import main
from lc0distill.engine.check import compare, pytorch_outputs
from lc0distill.engine.evaluation import Lc0NetInfo, Lc0Refused, lc0_outputs
from lc0distill.lc0.weights import net_file_bytes, net_message, read_net, write_net
from tests.engine.conftest import KINDS
from tests.engine.netzoo import VARIANTS

pytestmark = pytest.mark.engine

SAME_WEIGHTS_TOLERANCE = 1e-4
LINEAR16_BOUND = 0.05  # the exporter's tolerance for 16-bit lc0 files (LC0_TOLERANCE); measured at most 1.6e-2
REFUSED_ENCODINGS = ("float16", "bfloat16", "float32")


def _worst(check) -> dict:
    return {"policy": check.policy, "wdl": check.wdl, "q": check.q, "mlh_relative": check.mlh_relative}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_lc0_evaluates_our_linear16_file_as_pytorch_does(zoo, check_boards, check_encoding, variant, kind):
    entry = zoo[variant, kind]
    info, outputs = lc0_outputs(str(entry.path), check_boards)
    assert (info.input_format, info.wdl, info.moves_left) == (
        entry.config.input_format, entry.config.value.value == "wdl", entry.config.moves_left)
    encoding = check_encoding(entry.config.input_format)
    same = compare(check_boards, info, outputs, read_net(entry.path), encoding=encoding)
    expected_left_out = 2 if entry.config.input_format == 5 else 0  # two FENs with a halfmove clock
    assert same.left_out == expected_left_out and same.positions == len(check_boards) - expected_left_out
    assert same.planes_differ == 0 and same.legal_moves_differ == 0
    assert (same.wdl is None) == (entry.config.value.value == "scalar")
    assert (same.mlh is None) == (not entry.config.moves_left)
    for name, value in _worst(same).items():
        assert value is None or value < SAME_WEIGHTS_TOLERANCE, (name, value, same.worst.get(name))
    assert same.policy_logits < 1e-4
    written = compare(check_boards, info, outputs, entry.net, encoding=encoding)
    file_net = read_net(entry.path)
    pytorch = Lc0NetInfo(str(entry.path), entry.config.input_format, info.policy_format, info.wdl, info.moves_left,
                         info.min_version, "pytorch")
    linear16 = compare(check_boards, pytorch, pytorch_outputs(file_net, check_boards, encoding), entry.net,
                       encoding=encoding)  # the file against the net it was written from, both in PyTorch
    quantisation = _worst(linear16)
    for name, value in _worst(written).items():
        if value is not None:
            assert value <= quantisation[name] + SAME_WEIGHTS_TOLERANCE, (name, value, quantisation[name])
            assert quantisation[name] < LINEAR16_BOUND, (name, quantisation[name], linear16.worst.get(name))


@pytest.mark.parametrize("encoding", REFUSED_ENCODINGS)
def test_lc0_031_refuses_16_and_32_bit_float_layers_in_its_own_words(tmp_path, zoo, encoding, capsys):
    entry = zoo["conv-wdl-mlh-relu-se-fmt1", "trained"]
    path = tmp_path / f"net-{encoding}.pb.gz"
    write_net(entry.net, path, encoding=encoding)
    with pytest.raises(Lc0Refused) as refused:
        lc0_outputs(str(path), [])
    assert str(refused.value) == f"{path}: lc0 refuses the net: Invalid weight file: lc0 version >= 0.33.0 required."
    assert main(["net", "check", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"lc0distill: error: {refused.value}" and "\n" not in err


def test_min_version_is_what_keeps_lc0_031_from_misreading_float16_layers(tmp_path, zoo):
    """Why the writer's min_version 0.33 matters: told it may read the file, lc0 v0.31 takes the FLOAT16 codes
    for LINEAR16 ones with range [0, 0] and evaluates a net of zeros (FLOAT32 layers, twice as long, crash it)."""
    entry = zoo["conv-wdl-mlh-relu-se-fmt1", "random"]
    message = net_message(entry.net, "float16")
    message.min_version.minor = 31
    path = tmp_path / "float16-claiming-0.31.pb.gz"
    path.write_bytes(net_file_bytes(message))
    import chess

    _, (output,) = lc0_outputs(str(path), [chess.Board()])
    assert output.q == 0.0 and abs(output.d - 1 / 3) < 1e-7 and not output.logits.any()


@pytest.mark.parametrize("damage", ["truncated", "not a net", "onnx inside"])
def test_a_file_lc0_cannot_load_is_reported_with_lc0s_message_and_the_file(tmp_path, zoo, damage, capsys):
    entry = zoo["conv-wdl-mlh-relu-se-fmt1", "random"]
    path = tmp_path / "bad.pb.gz"
    if damage == "truncated":
        path.write_bytes(entry.path.read_bytes()[:2000])
        said = "The file is truncated."
    elif damage == "not a net":
        path.write_bytes(gzip.compress(b"\x0d\x00\x00\x00\x00 not a network at all"))
        said = "The file seems to be unparseable."
    else:
        from lc0distill.export.exporter import ExportOptions, ExportTarget, export_net

        export_net(entry.net, path, ExportOptions(target=ExportTarget.LC0_ONNX))
        said = "Network format NETWORK_ONNX is not supported by BLAS backend."
    with pytest.raises(Lc0Refused, match="lc0 refuses the net"):
        lc0_outputs(str(path), [])
    assert main(["net", "check", str(path)]) == 2
    assert capsys.readouterr().err.strip() == f"lc0distill: error: {path}: lc0 refuses the net: {said}"
