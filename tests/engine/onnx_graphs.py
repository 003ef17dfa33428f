"""ONNX graphs compared node for node with lc0's `leela2onnx`: a graph's facts, and lc0 v0.31.0-dev's graph with
its known differences from ours written our way (tests/engine/test_leela2onnx.py's docstring lists them)."""

from __future__ import annotations

import onnx
from onnx import helper


def facts(model: onnx.ModelProto) -> list[tuple]:
    return [(n.op_type, n.name, list(n.input), list(n.output),
             sorted((a.name, str(helper.get_attribute_value(a))) for a in n.attribute)) for n in model.graph.node]


def normalised(model: onnx.ModelProto, mish_mlh: bool) -> onnx.ModelProto:
    """lc0 v0.31.0-dev's graph with the three known differences (test_leela2onnx.py's docstring) written our way."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    nodes = list(graph.node)
    by_output = {out: n for n in nodes for out in n.output}
    replace, drop, renames, dropped_initializers = {}, set(), {}, set()
    for node in nodes:
        if node.op_type == "GlobalAveragePool":  # 1: GlobalAveragePool + Squeeze -> ReduceMean
            squeeze = next(n for n in nodes if n.op_type == "Squeeze" and n.input[0] == node.output[0])
            prefix = node.name.removesuffix("/pooled")
            replace[node.name] = helper.make_node("ReduceMean", [node.input[0]], [prefix + "/reduce_mean"],
                                                  name=prefix + "/reduce_mean", axes=[2, 3], keepdims=0)
            renames[squeeze.output[0]] = prefix + "/reduce_mean"
            drop.add(squeeze.name)
            dropped_initializers.add(squeeze.input[1])
        elif node.op_type == "Identity" and node.output[0] == "/output/mlh":  # 2 and 3
            source = by_output[node.input[0]]
            if mish_mlh:
                chain = {n.name for n in nodes if n.name.startswith("/mlh/dense2/mish")}
                assert source.name == "/mlh/dense2/mish" and chain == {
                    "/mlh/dense2/mish", "/mlh/dense2/mish/softplus", "/mlh/dense2/mish/tanh"}
                drop |= chain
            else:
                assert source.op_type == "Relu" and source.name == "/mlh/dense2/relu"
                drop.add(source.name)
            replace[node.name] = helper.make_node("Relu", ["/mlh/dense2/add"], ["/output/mlh"], name="/output/mlh")
    new_nodes = [replace.get(n.name, n) for n in nodes if n.name not in drop]
    for node in new_nodes:
        for i, name in enumerate(node.input):
            node.input[i] = renames.get(name, name)
    del graph.node[:]
    graph.node.extend(new_nodes)
    kept = [t for t in graph.initializer if t.name not in dropped_initializers]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return model
