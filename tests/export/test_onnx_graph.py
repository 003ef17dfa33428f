"""The ONNX export against lc0's own: leela2onnx's conversion of maia-1900 and the lc0 engine's outputs."""

from __future__ import annotations

import glob

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from lc0distill.chess.expand import expand_records
from lc0distill.chunks.reader import read_chunk
from lc0distill.export.onnx_graph import ir_version_for, build_onnx
from lc0distill.export.runtime import OnnxNet, open_onnx_file
from lc0distill.export.validate import output_diff
from lc0distill.lc0.weights import read_net
from tests.conftest import SHARED

LEELA2ONNX = SHARED / "oracle" / "maia-1900.lc0-leela2onnx.onnx"
MAIA = SHARED / "nets" / "maia-1900.pb.gz"


@pytest.fixture(scope="module")
def maia():
    if not MAIA.exists():
        pytest.skip(f"reference net {MAIA} is absent (../shared holds lc0's own files)")
    return read_net(MAIA)


@pytest.fixture(scope="module")
def leela2onnx() -> onnx.ModelProto:
    if not LEELA2ONNX.exists():
        pytest.skip(f"lc0's conversion {LEELA2ONNX} is absent (../shared holds lc0's own files)")
    return onnx.load(str(LEELA2ONNX))


def oracle_planes(positions) -> torch.Tensor:
    """(N, 112, 8, 8) from lc0's own encoding in the oracle file (bit k of plane i's mask -> [i][k // 8][k % 8])."""
    out = np.zeros((len(positions), 112, 64), dtype=np.float32)
    bits = np.arange(64, dtype=np.uint64)
    for n, position in enumerate(positions):
        masks = np.array([int(m, 16) for m in position["input_planes"]["masks_hex"]], dtype=np.uint64)
        values = np.array(position["input_planes"]["values"], dtype=np.float32)
        out[n] = ((masks[:, None] >> bits[None, :]) & np.uint64(1)).astype(np.float32) * values[:, None]
    return torch.from_numpy(out.reshape(-1, 112, 8, 8))


def selfplay_planes(count: int = 1500) -> torch.Tensor:
    """Planes of records lc0 wrote while maia-1900 played (rule50 counts up to the 60s)."""
    files = sorted(glob.glob(str(SHARED / "lc0-selfplay-maia1900" / "*.gz")))
    if not files:
        pytest.skip("lc0-selfplay-maia1900 is absent")
    records = np.concatenate([read_chunk(f).records for f in files[:25]])[:count]
    return torch.from_numpy(expand_records(records))


def _node_facts(model: onnx.ModelProto) -> list[tuple]:
    return [(n.op_type, n.name, list(n.input), list(n.output),
             sorted((a.name, str(onnx.helper.get_attribute_value(a))) for a in n.attribute)) for n in model.graph.node]


def test_maia_graph_is_leela2onnxs_node_for_node_and_bit_for_bit(maia, leela2onnx):
    ours = build_onnx(maia)
    assert _node_facts(ours) == _node_facts(leela2onnx)
    assert len(ours.graph.node) == 112
    assert list(ours.graph.input) == list(leela2onnx.graph.input)  # names, float, [batch, 112, 8, 8]
    assert list(ours.graph.output) == list(leela2onnx.graph.output)
    assert ours.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [o.name for o in ours.graph.output] == ["/output/policy", "/output/wdl"]
    theirs = {t.name: t for t in leela2onnx.graph.initializer}
    assert [t.name for t in ours.graph.initializer] == list(theirs)
    for tensor in ours.graph.initializer:  # BN folded as lc0 folds it, LINEAR16 decoded as lc0 decodes it
        a, b = numpy_helper.to_array(tensor), numpy_helper.to_array(theirs[tensor.name])
        assert a.dtype == b.dtype and np.array_equal(a, b), tensor.name
    # Everything but the graph's name, the producer and our metadata is lc0's: the graphs serialise alike.
    ours.graph.name = leela2onnx.graph.name
    assert ours.graph.SerializeToString() == leela2onnx.graph.SerializeToString()
    assert ours.opset_import == leela2onnx.opset_import and ours.domain == leela2onnx.domain == "org.lczero.models.*"
    onnx.checker.check_model(ours, full_check=True)


def test_maia_onnx_matches_pytorch_and_the_lc0_engine(maia, oracle_positions):
    planes = oracle_planes(oracle_positions)  # lc0's own input planes, rule50 raw
    runtime = OnnxNet(build_onnx(maia).SerializeToString(), path="maia.onnx", input_name="/input/planes",
                      policy="/output/policy", wdl="/output/wdl", value=None, mlh=None, input_format=1)
    with torch.no_grad():
        reference = maia(planes)
    out = runtime(planes)
    diff = output_diff(reference, out)
    assert diff.policy < 1e-4 and diff.wdl < 1e-4
    raw = runtime.run(planes.numpy())
    worst_logit = worst_policy = worst_wdl = 0.0
    for row, position in enumerate(oracle_positions):
        moves, indices = zip(*position["policy_nn_index"].items())
        logits = raw["policy"][row, list(indices)].astype(np.float64)
        probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        worst_logit = max(worst_logit, max(abs(logits[i] - position["policy_logits"][m]) for i, m in enumerate(moves)))
        worst_policy = max(worst_policy, max(abs(probabilities[i] - position["policy"][m]) for i, m in enumerate(moves)))
        worst_wdl = max(worst_wdl, np.abs(raw["wdl"][row] - np.array(position["wdl"])).max())
    assert worst_policy < 0.002 and worst_wdl < 0.002  # the bar
    assert worst_logit < 1e-4 and worst_policy < 1e-5 and worst_wdl < 1e-5  # what we measure: float rounding


def test_maia_onnx_matches_leela2onnx_on_the_same_planes(maia, oracle_positions):
    if not LEELA2ONNX.exists():
        pytest.skip(f"{LEELA2ONNX} is absent")
    planes = torch.cat([oracle_planes(oracle_positions), selfplay_planes()])
    assert planes[:, 109].max() > 50  # raw rule50 counts reach the folded input scale
    ours = OnnxNet(build_onnx(maia).SerializeToString(), path="ours", input_name="/input/planes",
                   policy="/output/policy", wdl="/output/wdl", value=None, mlh=None, input_format=1)
    theirs = open_onnx_file(LEELA2ONNX, input_format=1)
    diff = output_diff(theirs(planes), ours(planes))
    assert diff.positions > 1000 and diff.policy < 1e-4 and diff.wdl < 1e-4


def test_ir_version_follows_lc0s_table():
    assert [ir_version_for(o) for o in (8, 9, 10, 11, 13, 17, 18, 19, 21, 22)] == [3, 4, 5, 6, 7, 8, 8, 9, 10, 10]


def test_leela2onnx_file_moves_between_containers_unchanged(tmp_path, leela2onnx, capsys):
    """onnx2leela and leela2onnx's extraction, through `lc0distill export` (the model bytes are not touched)."""
    from lc0distill.cli import main
    from lc0distill.lc0.onnx_net import read_onnx_net
    from lc0distill.nets import load_inference_net

    embedded = tmp_path / "maia-onnx.pb.gz"
    assert main(["export", str(LEELA2ONNX), "--to", "lc0-onnx", "--out", str(embedded)]) == 2
    assert "--input-format" in capsys.readouterr().err  # lc0's file does not say its input format
    assert main(["export", str(LEELA2ONNX), "--to", "lc0-onnx", "--out", str(embedded), "--input-format", "1"]) == 0
    assert read_onnx_net(embedded).model == LEELA2ONNX.read_bytes()
    extracted = tmp_path / "maia.onnx"
    assert main(["export", str(embedded), "--to", "onnx", "--out", str(extracted)]) == 0
    assert extracted.read_bytes() == LEELA2ONNX.read_bytes()
    assert main(["export", str(embedded), "--to", "lc0", "--out", str(tmp_path / "x.pb.gz")]) == 2
    assert "no lc0 weights" in capsys.readouterr().err
    net = load_inference_net(embedded)
    assert net.config.input_format == 1 and net.config.value.value == "wdl"


def test_a_broken_onnx_file_is_a_one_line_error(tmp_path, capsys):
    from lc0distill.cli import main

    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not a model")
    assert main(["net", "eval", str(bad), "--fen", "8/8/8/8/8/8/8/K1k5 w - - 0 1"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and err.count("\n") == 1


def test_an_onnx_teacher_teaches_what_the_pytorch_teacher_teaches(tmp_path, selfplay_dir, capsys):
    """lc0's own leela2onnx file (wrapped as an lc0 ONNX .pb.gz) as the teacher, next to maia-1900 itself: the
    distillation losses of the same run agree step by step (the teachers differ by float rounding only)."""
    import json

    from lc0distill.cli import main

    wrapped = tmp_path / "maia-onnx.pb.gz"
    assert main(["export", str(LEELA2ONNX), "--to", "lc0-onnx", "--out", str(wrapped), "--input-format", "1"]) == 0
    assert main(["train", "data.paths=[x]", f"teacher.nets=[{LEELA2ONNX}]", "train.steps=1",
                 f"train.run_dir={tmp_path / 'x'}"]) == 2
    assert "--input-format" in capsys.readouterr().err  # a raw lc0 .onnx does not say its input format
    losses = {}
    for name, teacher in (("pytorch", MAIA), ("onnx", wrapped)):
        run_dir = tmp_path / name
        argv = ["train", f"data.paths=[{selfplay_dir}]", "data.workers=0", "data.batch_size=48",
                "data.sample_rate=1", "data.shuffle_buffer=600", "net.size=16x2", "train.steps=6",
                "train.log_every=2", "train.eval_every=6", "train.eval_positions=100", "train.checkpoint_every=6",
                f"train.run_dir={run_dir}", f"teacher.nets=[{teacher}]", "loss.teacher_weight.weight=0.7",
                "export.lc0=false"]
        assert main(argv) == 0
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        losses[name] = [(r["step"], r["policy_distill"], r["value_distill"]) for r in records if r["kind"] == "train"]
    assert len(losses["pytorch"]) == 3
    for (step_a, policy_a, value_a), (step_b, policy_b, value_b) in zip(losses["pytorch"], losses["onnx"]):
        assert step_a == step_b
        assert policy_b == pytest.approx(policy_a, rel=1e-4) and value_b == pytest.approx(value_a, rel=1e-4)


@pytest.mark.parametrize("fp16", [False, True])
@pytest.mark.parametrize("variant", [dict(activation="mish", input_format=1),
                                     dict(smolgen=False, input_gating=False, policy_encoders=1, value="scalar",
                                          ffn_activation="swish", activation="relu", input_format=3)])
def test_an_attention_body_exports_and_onnxruntime_computes_what_pytorch_does(tmp_path, variant, fp16):
    """Without the engine (the node-for-node comparison with leela2onnx is tests/engine/test_attention_nets.py):
    the export's own check against PyTorch passes, float32 and float16."""
    from lc0distill.export.exporter import ExportOptions, ExportTarget, export_net
    from lc0distill.models.config import NetConfig
    from lc0distill.models.init import random_net

    config = NetConfig(body="attention", policy="attention", filters=32, blocks=2, heads=4, smolgen_channels=8,
                       smolgen_hidden=32, smolgen_gen=16, policy_embedding=32, policy_d_model=16, **variant)
    report = export_net(random_net(config, seed=1), tmp_path / "net.onnx",
                        ExportOptions(target=ExportTarget.ONNX, fp16=fp16, check_positions=32))
    assert report.check.worst <= (5e-2 if fp16 else 1e-4)
    model = onnx.load(str(tmp_path / "net.onnx"))
    assert model.graph.node[0].name == "/attn_body/transpose"
    norms = 2 * config.blocks * (1 + config.smolgen) + 2 * config.policy_encoders  # per encoder 2, smolgen 2
    assert sum(n.op_type == "LayerNormalization" for n in model.graph.node) == norms


def test_an_attention_body_below_opset_17_is_a_clear_error(tmp_path):
    from lc0distill.errors import Lc0DistillError
    from lc0distill.export.exporter import ExportOptions, ExportTarget, export_net
    from lc0distill.models.config import NetConfig
    from lc0distill.models.init import random_net

    net = random_net(NetConfig(body="attention", filters=32, blocks=1, heads=4, smolgen=False), seed=1)
    with pytest.raises(Lc0DistillError, match="opset 17 or later"):
        export_net(net, tmp_path / "net.onnx", ExportOptions(target=ExportTarget.ONNX, opset=13))
    assert not (tmp_path / "net.onnx").exists()
