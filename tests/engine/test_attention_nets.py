"""Attention-body nets (net.body: attention) as the lc0 engine computes them: every variant lc0distill writes,
random (`net init`'s randomisation: layer-norm affines and gates not 1 and 0) and briefly trained, written as
.pb.gz and evaluated by lc0 v0.31 on positions with history, castling, en passant and promotions.

Bound: lc0's policy, WDL, Q and moves-left against PyTorch on the file as lc0distill reads it within 1e-4
(the engine table's bound; measured about 1e-7); and against the net the file was written from, LINEAR16's
own rounding plus at most 1e-4. lc0's positional map is the one lc0 writes into its own ONNX conversion.

ONNX: lc0's `leela2onnx` of each file equals our export of the same file node for node (names, order,
attributes, inputs and outputs; every initializer bit for bit), after the moves-left output's two known
differences (tests/engine/test_leela2onnx.py); onnxruntime on both agrees within 1e-5. lc0's converter refuses
the activation `none` ("Unsupposrted activation", sic) where its engine runs it: that variant's export is
checked against PyTorch only (the export's own check)."""

from __future__ import annotations

import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from lc0distill.chess.input_formats import is_hectoplies
from lc0distill.engine.binary import leela2onnx
from lc0distill.engine.evaluation import Lc0Refused
from lc0distill.export.check_positions import builtin_planes
from lc0distill.export.exporter import ExportOptions, ExportTarget, export_net
from lc0distill.engine.check import compare, pytorch_outputs
from lc0distill.engine.evaluation import lc0_outputs
from lc0distill.lc0.weights import read_net, write_net
from lc0distill.models.attention import AttentionNet, position_map
from lc0distill.models.config import NetConfig
from lc0distill.models.init import random_net
from lc0distill.models.net import RULE50_INPUT_SCALE, RULE50_PLANE
from tests.engine.netzoo import Training, trained_net
from tests.engine.onnx_graphs import facts, normalised
from tests.engine.test_uci import assert_lc0_plays_legal_moves

pytestmark = pytest.mark.engine

TOLERANCE = 1e-4
LINEAR16_BOUND = 0.05
TINY = dict(body="attention", policy="attention", filters=32, blocks=2, heads=4, smolgen_channels=8,
            smolgen_hidden=32, smolgen_gen=16, policy_embedding=32, policy_d_model=16, moves_left_channels=4,
            moves_left_hidden=32)
# every level of each choice, most pairs of them (smolgen on/off, the activations (none too), policy encoder layers
# on/off, WDL or scalar value, moves-left on/off, gating on/off, input formats 1 and 3)
VARIANTS = {
    "smolgen-relu2-swish-wdl-mlh-mish-fmt1": dict(activation="mish"),
    "nosmolgen-mish-scalar-nomlh-relu-fmt3": dict(smolgen=False, ffn_activation="mish", value="scalar",
                                                   moves_left=False, activation="relu", input_format=3),
    "polenc-relu-none-nogate-wdl-mlh-mish-fmt3": dict(policy_encoders=1, ffn_activation="relu",
                                                       smolgen_activation="none", input_gating=False,
                                                       activation="mish", input_format=3),
    "polenc-swish-selu-scalar-mlh-relu-fmt1": dict(policy_encoders=1, ffn_activation="swish",
                                                    smolgen_activation="selu", value="scalar", activation="relu"),
    "nosmolgen-selu-nogate-wdl-nomlh-mish-fmt1": dict(smolgen=False, ffn_activation="selu", input_gating=False,
                                                       moves_left=False, activation="mish"),
}
KINDS = ("random", "trained")


def _architecture(config: NetConfig) -> dict:
    """What a net computes: the fields of features it lacks dropped, the FFN width as used."""
    fields = config.model_dump(mode="json")
    fields["ffn_width"] = config.dff
    for feature, prefix in (("smolgen", "smolgen_"), ("moves_left", "moves_left_")):
        if not fields[feature]:
            fields = {k: v for k, v in fields.items() if not k.startswith(prefix)}
    return fields


@pytest.fixture(scope="module")
def nets(lc0_binary, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("attention")
    made = {}
    for name, extra in VARIANTS.items():
        config = NetConfig(**TINY, **extra)
        for kind in KINDS:
            net = random_net(config) if kind == "random" else trained_net(config, Training(steps=12))
            path = folder / f"{name}-{kind}.pb.gz"
            write_net(net, path)
            made[name, kind] = (config, net, path)
    return made


def test_the_positional_map_is_the_one_lc0_writes_into_its_onnx(lc0_binary, nets, tmp_path):
    _, _, path = nets["smolgen-relu2-swish-wdl-mlh-mish-fmt1", "random"]
    out = tmp_path / "net.onnx"
    done = subprocess.run([str(lc0_binary), "leela2onnx", f"--input={path}", f"--output={out}"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    constant = next(i for i in onnx.load(out).graph.initializer if i.name == "/const/pos_encoding")
    lc0s = np.frombuffer(constant.raw_data, np.float32).reshape(64, 64)
    assert np.array_equal(lc0s, position_map().numpy())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_lc0_evaluates_our_attention_net_as_pytorch_does(nets, check_boards, check_encoding, variant, kind):
    config, written, path = nets[variant, kind]
    info, outputs = lc0_outputs(str(path), check_boards)
    assert (info.input_format, info.wdl, info.moves_left) == (config.input_format, config.value.value == "wdl",
                                                              config.moves_left)
    read = read_net(path)
    assert isinstance(read, AttentionNet) and _architecture(read.config) == _architecture(config)
    encoding = check_encoding(config.input_format)
    same = compare(check_boards, info, outputs, read, encoding=encoding)
    assert same.positions == len(check_boards) and same.planes_differ == 0 and same.legal_moves_differ == 0
    assert (same.wdl is None) == (config.value.value == "scalar") and (same.mlh is None) == (not config.moves_left)
    for name in ("policy", "wdl", "q", "mlh_relative"):
        value = getattr(same, name)
        assert value is None or value < TOLERANCE, (name, value)
    assert same.policy_logits < 1e-4
    # against the net it was written from: LINEAR16's own rounding (PyTorch on the file against PyTorch on the
    # written net), plus at most the same-weights bound
    own = compare(check_boards, info, pytorch_outputs(read, check_boards, encoding), written, encoding=encoding)
    lc0 = compare(check_boards, info, outputs, written, encoding=encoding)
    for name in ("policy", "wdl", "q", "mlh_relative"):
        a, b = getattr(lc0, name), getattr(own, name)
        assert a is None or (a <= b + TOLERANCE and b < LINEAR16_BOUND), (name, a, b)


@pytest.mark.parametrize("variant", VARIANTS)
def test_lc0_plays_a_legal_move_with_each_attention_net(nets, lc0_binary, variant):
    assert_lc0_plays_legal_moves(lc0_binary, nets[variant, "trained"][2])


def test_writing_and_reading_keeps_every_weight(tmp_path):
    """Without the engine: the file read back is the net written, to LINEAR16's step, every tensor (the gates'
    [channels][64] layout and the rule50 column's scaling included)."""
    config = NetConfig(**TINY, **VARIANTS["polenc-relu-none-nogate-wdl-mlh-mish-fmt3"])
    for extra in ({}, {"input_gating": True, "input_format": 1}):
        net = random_net(config.model_copy(update=extra), seed=3)
        write_net(net, tmp_path / "net.pb.gz")
        read = read_net(tmp_path / "net.pb.gz")
        assert _architecture(read.config) == _architecture(net.config)
        for (name, a), b in zip(net.state_dict().items(), read.state_dict().values()):
            if name == "embedding.weight" and not is_hectoplies(net.config.input_format):  # file: / 128
                a, b = a.clone(), b.clone()
                a[:, RULE50_PLANE] *= RULE50_INPUT_SCALE
                b[:, RULE50_PLANE] *= RULE50_INPUT_SCALE
            step = float(a.max() - a.min()) / 65535
            assert torch.allclose(a, b, atol=step * 0.51 + 1e-7), name


@pytest.fixture(scope="module")
def conversions(nets, lc0_binary, tmp_path_factory) -> dict:
    """(variant, kind) -> (lc0's leela2onnx of the file, our export of the file as read)."""
    folder = tmp_path_factory.mktemp("attention-onnx")
    out = {}
    for (name, kind), (_, _, path) in nets.items():
        try:
            theirs = onnx.load(str(leela2onnx(lc0_binary, path, folder / f"{name}-{kind}.lc0.onnx")))
        except Lc0Refused as refused:  # the activation none (module docstring)
            theirs = refused
        ours = folder / f"{name}-{kind}.ours.onnx"
        export_net(read_net(path), ours, ExportOptions(target=ExportTarget.ONNX, check_positions=16))
        out[name, kind] = theirs, onnx.load(str(ours))
    return out


def _refused(config: NetConfig, theirs) -> bool:
    """True where lc0's converter refused the net, which it must do exactly for the activation none."""
    uses_none = "none" in (config.ffn_activation.value, config.smolgen_activation.value if config.smolgen else "")
    assert isinstance(theirs, Lc0Refused) == uses_none, theirs
    if uses_none:
        assert "Unsupposrted activation" in str(theirs)
    return uses_none


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_leela2onnx_of_our_attention_net_is_our_export_node_for_node(nets, conversions, variant, kind):
    config = nets[variant, kind][0]
    theirs, ours = conversions[variant, kind]
    if _refused(config, theirs):
        return
    assert theirs.producer_name == "Lc0" and theirs.opset_import[0].version == ours.opset_import[0].version == 17
    normal = normalised(theirs, config.moves_left and config.activation.value == "mish")
    assert facts(ours) == facts(normal)
    assert list(ours.graph.input) == list(normal.graph.input)
    assert list(ours.graph.output) == list(normal.graph.output)
    lc0_tensors = {t.name: numpy_helper.to_array(t) for t in normal.graph.initializer}
    assert [t.name for t in ours.graph.initializer] == list(lc0_tensors)
    for tensor in ours.graph.initializer:
        mine, lc0s = numpy_helper.to_array(tensor), lc0_tensors[tensor.name]
        assert mine.dtype == lc0s.dtype and np.array_equal(mine, lc0s), tensor.name


@pytest.mark.parametrize("variant", VARIANTS)
def test_leela2onnx_of_our_attention_net_computes_what_our_export_computes(nets, conversions, variant):
    config = nets[variant, "trained"][0]
    planes = builtin_planes(config.input_format, 32).numpy()

    def run(model):
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return dict(zip([o.name for o in model.graph.output], session.run(None, {"/input/planes": planes})))

    if _refused(config, conversions[variant, "trained"][0]):
        return
    theirs, ours = (run(model) for model in conversions[variant, "trained"])
    assert set(theirs) == set(ours)
    for name in ours:
        if name == "/output/mlh" and config.activation.value == "mish":
            continue  # lc0's converter: mish on the moves-left output, lc0's engine and we: relu
        scale = np.maximum(1.0, np.abs(ours[name])) if name == "/output/mlh" else 1.0
        assert np.max(np.abs(theirs[name] - ours[name]) / scale) < 1e-5, name
