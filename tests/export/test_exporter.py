"""Export of every head and activation variant, at every opset family, fp32 and fp16; the lc0-onnx container;
checks that fail; and a distilled student exported all three ways, read back through our own readers."""

from __future__ import annotations

import gzip

import numpy as np
import onnx
import pytest
import torch

from lc0distill.errors import Lc0DistillError
from lc0distill.export.check_positions import builtin_boards, builtin_planes
from lc0distill.export.exporter import ExportCheckFailed, ExportOptions, ExportTarget, export_net
from lc0distill.export.onnx_graph import build_onnx
from lc0distill.export.runtime import OnnxNet
from lc0distill.export.validate import output_diff
from lc0distill.lc0 import proto
from lc0distill.lc0.onnx_net import read_onnx_net
from lc0distill.lc0.weights import read_net, read_net_info
from lc0distill.models.config import Activation, NetConfig, PolicyHead, ValueHead
from lc0distill.models.net import SEResNet
from lc0distill.nets import load_inference_net, load_net
from tests.nets import randomize_batch_norm


def random_net(seed: int = 0, **config) -> SEResNet:
    """A small net with random weights and random batch-norm statistics (so that folding matters)."""
    torch.manual_seed(seed)
    net = SEResNet(NetConfig(**{"filters": 16, "blocks": 2, "se_channels": 4, **config}))
    return randomize_batch_norm(net).eval()


VARIANTS = {
    "conv-policy wdl mlh relu": {},
    "classical policy, scalar value, no mlh": {"policy": PolicyHead.CLASSICAL, "value": ValueHead.SCALAR,
                                               "moves_left": False},
    "mish, no SE, format 3": {"activation": Activation.MISH, "se_channels": 0, "input_format": 3},
    "format 5 (hectoplies)": {"input_format": 5},
    "attention policy, mish": {"policy": PolicyHead.ATTENTION, "policy_embedding": 20, "policy_d_model": 12,
                               "activation": Activation.MISH},
}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("opset", [9, 13, 17, 18, 22])
def test_every_variant_exports_and_matches_pytorch(tmp_path, variant, opset):
    net = random_net(**VARIANTS[variant])
    out = tmp_path / "net.onnx"
    report = export_net(net, out, ExportOptions(target=ExportTarget.ONNX, opset=opset))
    assert report.check.positions == 256 and report.check.worst < 1e-4
    model = onnx.load(str(out))
    assert model.opset_import[0].version == opset
    names = [o.name for o in model.graph.output]
    assert names[0] == "/output/policy"
    assert names[1] == ("/output/wdl" if net.config.value == ValueHead.WDL else "/output/value")
    assert ("/output/mlh" in names) == net.config.moves_left
    ops = {n.op_type for n in model.graph.node}
    if net.config.activation == Activation.MISH:
        assert ("Mish" in ops) == (opset >= 18) and ("Softplus" in ops) == (opset < 18)


def test_fp16_export_runs_in_float16_within_its_tolerance(tmp_path):
    net = random_net()
    out = tmp_path / "net16.onnx"
    report = export_net(net, out, ExportOptions(target=ExportTarget.ONNX, fp16=True))
    model = onnx.load(str(out))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16 for o in model.graph.output)
    assert 1e-5 < report.check.worst < report.tolerance == 0.05  # really float16 arithmetic, and close
    runtime = load_inference_net(out)
    assert runtime.config.data_type == "float16"
    assert runtime.run(np.zeros((3, 112, 8, 8), np.float32))["policy"].dtype == np.float32


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("opset", [13, 18])
def test_every_variant_in_fp16(tmp_path, variant, opset):
    report = export_net(random_net(**VARIANTS[variant]), tmp_path / "net16.onnx",
                        ExportOptions(target=ExportTarget.ONNX, fp16=True, opset=opset))
    assert report.check.worst < 0.05 and report.data_type == "float16"


def test_dynamic_batch_axis(tmp_path):
    net = random_net()
    runtime = OnnxNet(build_onnx(net).SerializeToString(), path="x", input_name="/input/planes",
                      policy="/output/policy", wdl="/output/wdl", value=None, mlh="/output/mlh", input_format=1)
    planes = builtin_planes(1, 7)
    for size in (1, 7):
        out = runtime(planes[:size])
        assert out.policy_logits.shape == (size, 1858) and out.wdl_logits.shape == (size, 3)
        assert out.moves_left.shape == (size,)


def test_a_failed_check_writes_nothing_and_says_why(tmp_path):
    out = tmp_path / "net.onnx"
    with pytest.raises(ExportCheckFailed, match=r"policy logits .*\(tolerance 1e-09\); nothing written"):
        export_net(random_net(), out, ExportOptions(target=ExportTarget.ONNX, fp16=True, tolerance=1e-9))
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_check_positions_are_real_games_with_long_rule50_counts():
    boards = builtin_boards()
    assert len(boards) > 900
    planes = builtin_planes(1, 256)
    assert planes.shape == (256, 112, 8, 8)
    assert planes[:, 109].max() == 99  # raw count, as lc0 feeds formats 1-3
    assert any(b.has_legal_en_passant() for b in boards)
    assert any(_last_move_castles(b) for b in boards if b.move_stack)


def _last_move_castles(board) -> bool:
    before = board.copy()
    return before.is_castling(before.pop())


def test_lc0_onnx_container_fields(tmp_path):
    net = random_net()
    out = tmp_path / "net.pb.gz"
    export_net(net, out, ExportOptions(target=ExportTarget.LC0_ONNX, fp16=True))
    message = proto.Net.FromString(gzip.decompress(out.read_bytes()))
    fmt = message.format.network_format
    assert message.magic == 0x1C0 and (message.min_version.major, message.min_version.minor) == (0, 28)
    assert fmt.network == proto.NetworkFormat.NETWORK_ONNX and fmt.policy == proto.NetworkFormat.POLICY_CLASSICAL
    assert fmt.value == proto.NetworkFormat.VALUE_WDL and fmt.output == proto.NetworkFormat.OUTPUT_WDL
    assert fmt.moves_left == proto.NetworkFormat.MOVES_LEFT_V1 and fmt.input == 1
    assert not message.HasField("weights")
    onnx_model = message.onnx_model
    assert onnx_model.data_type == proto.OnnxModel.FLOAT16
    assert (onnx_model.input_planes, onnx_model.output_policy, onnx_model.output_wdl, onnx_model.output_mlh) == (
        "/input/planes", "/output/policy", "/output/wdl", "/output/mlh")
    assert not onnx_model.HasField("output_value")
    embedded = onnx.load_from_string(onnx_model.model)
    onnx.checker.check_model(embedded, full_check=True)
    info = read_net_info(out)
    assert info.network == "NETWORK_ONNX" and info.min_version == "0.28.0"


def test_scalar_value_net_in_lc0_onnx_names_output_value(tmp_path):
    net = random_net(value=ValueHead.SCALAR, moves_left=False)
    out = tmp_path / "net.pb.gz"
    export_net(net, out, ExportOptions(target=ExportTarget.LC0_ONNX))
    embedded = read_onnx_net(out)
    assert embedded.output_value == "/output/value" and embedded.output_wdl is None and embedded.output_mlh is None
    message = proto.Net.FromString(gzip.decompress(out.read_bytes()))
    assert message.format.network_format.value == proto.NetworkFormat.VALUE_CLASSICAL
    assert message.format.network_format.output == proto.NetworkFormat.OUTPUT_CLASSICAL


def test_onnx_nets_cannot_be_trained_from(tmp_path):
    out = tmp_path / "net.onnx"
    export_net(random_net(), out, ExportOptions(target=ExportTarget.ONNX))
    with pytest.raises(Lc0DistillError, match="evaluated or teach, but not be trained"):
        load_net(out)


# ------------------------------------------------------------------ a distilled student, all three ways

@pytest.fixture(scope="module")
def distilled_student(tmp_path_factory, selfplay_dir):
    """A 16x2 student with a moves-left head, distilled from maia-1900 for a few steps (lc0distill train)."""
    from lc0distill.cli import main
    from tests.conftest import SHARED

    run_dir = tmp_path_factory.mktemp("distil") / "run"
    argv = ["train", f"data.paths=[{selfplay_dir}]", "data.workers=0", "data.batch_size=48", "data.sample_rate=1",
            "data.shuffle_buffer=600", "net.size=16x2", "net.moves_left=true", "train.steps=12",
            "train.eval_positions=100", "train.eval_every=12", "train.checkpoint_every=12", "train.log_every=12",
            f"train.run_dir={run_dir}", f"teacher.nets=[{SHARED / 'nets' / 'maia-1900.pb.gz'}]",
            "loss.teacher_weight.weight=0.7", "export.lc0=false"]
    assert main(argv) == 0
    return run_dir / "final.pt"


def test_distilled_student_exported_three_ways_reloads_with_the_same_outputs(tmp_path, distilled_student, capsys):
    from lc0distill.cli import main

    student = load_net(distilled_student)
    planes = builtin_planes(1, 256)
    with torch.no_grad():
        reference = student(planes)
    files = {"onnx": tmp_path / "student.onnx", "lc0": tmp_path / "student.pb.gz",
             "lc0-onnx": tmp_path / "student-onnx.pb.gz", "lc0-float32": tmp_path / "student-f32.pb.gz"}
    for target, path in files.items():
        extra = ["--encoding", "float32"] if target == "lc0-float32" else []
        assert main(["export", str(distilled_student), "--to", target.split("-float32")[0], "--out", str(path),
                     *extra]) == 0
        assert "checked against PyTorch" in capsys.readouterr().out
    reloaded = {target: load_inference_net(path) for target, path in files.items()}
    assert isinstance(reloaded["onnx"], OnnxNet) and isinstance(reloaded["lc0-onnx"], OnnxNet)
    assert isinstance(reloaded["lc0"], SEResNet) and reloaded["lc0"].config == student.config
    with torch.no_grad():
        diffs = {target: output_diff(reference, net(planes)) for target, net in reloaded.items()}
    for target in ("onnx", "lc0-onnx"):
        assert diffs[target].policy < 1e-4 and diffs[target].wdl < 1e-4 and diffs[target].mlh < 1e-4, target
    assert diffs["lc0-float32"].worst == 0.0  # FLOAT32 layers: the same net exactly
    assert diffs["lc0"].worst < 0.05  # LINEAR16 quantisation
    # The ONNX model inside the .pb.gz is the .onnx file's model.
    assert read_onnx_net(files["lc0-onnx"]).model == files["onnx"].read_bytes()
    assert read_net(files["lc0"]).config.moves_left
    # A checkpoint knows its step; lc0 files record it (training_params.training_steps), as lczero's do.
    checkpoint = distilled_student.parent / "checkpoint.pt"
    for target, name in (("lc0", "steps.pb.gz"), ("lc0-onnx", "steps-onnx.pb.gz")):
        assert main(["export", str(checkpoint), "--to", target, "--out", str(tmp_path / name)]) == 0
        message = proto.Net.FromString(gzip.decompress((tmp_path / name).read_bytes()))
        assert message.training_params.training_steps == 12


def test_cli_export_json_and_onnx_nets_in_net_eval_and_evaluate(tmp_path, distilled_student, selfplay_dir, capsys):
    import json

    from lc0distill.cli import main

    out = tmp_path / "student.onnx"
    assert main(["export", str(distilled_student), "--to", "onnx", "--out", str(out), "--json",
                 "--check-data", str(selfplay_dir), "--check-positions", "100"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["target"] == "onnx" and report["opset"] == 17 and report["data_type"] == "float32"
    assert report["check"]["positions"] == 100 and report["check"]["policy"] < 1e-4
    assert report["bytes"] == out.stat().st_size
    evaluations = []
    for net in (distilled_student, out):
        assert main(["net", "eval", str(net), "--moves", "e2e4 e7e5 g1f3", "--json"]) == 0
        evaluations.append(json.loads(capsys.readouterr().out))
    pt, ort = evaluations
    assert pt["policy"].keys() == ort["policy"].keys()
    assert max(abs(pt["policy"][m] - ort["policy"][m]) for m in pt["policy"]) < 1e-5
    assert abs(pt["q"] - ort["q"]) < 1e-5 and abs(pt["mlh"] - ort["mlh"]) < 1e-3
    assert main(["evaluate", str(distilled_student), str(out), "--data", str(selfplay_dir), "--positions", "300",
                 "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)["nets"]
    a, b = metrics[str(distilled_student)], metrics[str(out)]
    assert a["positions"] == b["positions"] >= 300
    for name in ("policy_loss", "value_mse", "value_ce", "moves_left_mae"):
        assert a[name] == pytest.approx(b[name], rel=1e-4, abs=1e-5), name
    assert main(["net", "info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["size"] == "16x2" and info["input_format"] == 1 and info["outputs"] == [
        "/output/policy", "/output/wdl", "/output/mlh"]


def test_export_cli_mistakes_are_one_line_errors(tmp_path, capsys):
    from lc0distill.cli import main
    from lc0distill.models.store import save_model

    source = tmp_path / "net.pt"
    save_model(random_net(), source)
    onnx_file = tmp_path / "net.onnx"
    assert main(["export", str(source), "--to", "onnx", "--out", str(onnx_file)]) == 0
    capsys.readouterr()
    cases = [
        (["export", str(onnx_file), "--to", "lc0-onnx", "--out", str(tmp_path / "a.pb.gz"), "--fp16"],
         "--fp16 cannot apply here (an ONNX net is copied unchanged"),
        (["export", str(source), "--to", "onnx", "--out", str(tmp_path / "b.onnx"), "--input-format", "3"],
         "--input-format cannot apply here"),
        (["export", str(source), "--to", "onnx", "--out", str(tmp_path)], "is a folder"),
        (["export", str(source), "--to", "lc0", "--out", str(tmp_path / "c.pb.gz"), "--fp16", "--encoding",
          "bfloat16"], "--fp16 and --encoding bfloat16 disagree"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, err
    for argv in (["net", "eval", str(onnx_file), "--input-format", "99", "--fen", "8/8/8/8/8/8/8/K1k5 w - - 0 1"],
                 ["export", str(source), "--to", "onnx", "--out", "x.onnx", "--check-positions", "0"]):
        with pytest.raises(SystemExit) as raised:  # argparse's usage error
            main(argv)
        assert raised.value.code == 2
        assert "error:" in capsys.readouterr().err
