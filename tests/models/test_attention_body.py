"""The attention body's pieces against hand computations, its training defaults, its FLOP and parameter
counts, `net init`, and a student that trains and distils through `lc0distill train`. (Against the lc0 engine:
tests/engine/test_attention_nets.py.)"""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from lc0distill.cli import main
from lc0distill.config import TrainConfig, load_config
from lc0distill.lc0.weights import read_net
from lc0distill.models.attention import AttentionNet, EncoderLayer, position_map
from lc0distill.models.config import Activation, NetConfig, estimated_parameters
from lc0distill.models.init import random_net
from lc0distill.models.net import count_parameters, flops_per_position
from lc0distill.models.store import load_model
from lc0distill.training.setup import make_optimizer
from tests.conftest import SELFPLAY, SHARED

SMALL = dict(body="attention", policy="attention", filters=32, blocks=2, heads=4, smolgen_channels=8,
             smolgen_hidden=32, smolgen_gen=16, policy_embedding=32, policy_d_model=16)


def test_the_positional_map_by_hand():
    table = position_map()
    a1, d4 = 0, 27
    assert table[a1, a1] == -1 and table[d4, d4] == -1 and (table.diagonal() == -1).all()
    assert table[a1, 7] == 1 and table[a1, 56] == 1 and table[a1, 63] == 1  # h1 (rank), a8 (file), h8 (diagonal)
    assert table[a1, 18] == 1 and table[a1, 17] == 1  # c3, b3: within two king steps
    assert table[a1, 19] == 0 and table[a1, 25] == 0  # d3, b4: none of these
    assert table[d4, 48] == 1 and table[d4, 62] == 0  # a7 on d4's long diagonal; g8 not
    assert torch.equal(table, table.t())  # "sees" is symmetric


def test_an_encoder_layer_computes_the_post_ln_deepnorm_residual_by_hand():
    """LN(x + attention(x) / alpha), then LN(y + FFN(y) / alpha): attention written out here head by head."""
    torch.manual_seed(0)
    layer = EncoderLayer(8, 2, 12, Activation.RELU_2, 1e-6, alpha=2.0 ** 0.5).eval()
    x = torch.randn(3, 64, 8)
    with torch.no_grad():
        q, k, v = layer.q(x), layer.k(x), layer.v(x)
        heads = []
        for h in range(2):
            cols = slice(4 * h, 4 * h + 4)
            weights = torch.softmax(q[..., cols] @ k[..., cols].transpose(1, 2) / 2.0, dim=-1)
            heads.append(weights @ v[..., cols])
        y = torch.nn.functional.layer_norm(x + layer.dense(torch.cat(heads, -1)) / 2 ** 0.5, (8,),
                                           layer.ln1.weight, layer.ln1.bias, 1e-6)
        hidden = torch.relu(layer.ffn.dense1(y)) ** 2
        expected = torch.nn.functional.layer_norm(y + layer.ffn.dense2(hidden) / 2 ** 0.5, (8,), layer.ln2.weight,
                                                  layer.ln2.bias, 1e-6)
        assert torch.allclose(layer(x), expected, atol=1e-6)


@pytest.mark.parametrize("extra", [{}, {"smolgen": False, "policy_encoders": 1, "value": "scalar", "moves_left": False}])
def test_flops_and_parameters_are_counted(extra):
    net = random_net(NetConfig(**SMALL, **extra))
    with FlopCounterMode(display=False) as counted:
        net(torch.zeros(1, 112, 8, 8))
    # the counter also sees the policy's promotion gather and the softmax-free matmuls we count: within 0.1%
    assert abs(flops_per_position(net) - counted.get_total_flops()) / counted.get_total_flops() < 1e-3
    assert abs(estimated_parameters(net.config) - count_parameters(net)) / count_parameters(net) < 0.02


def test_attention_bodies_default_to_adamw_with_warmup_and_keep_what_a_recipe_says():
    config = load_config(None, ["data.paths=[x]", "net.body=attention", "net.policy=attention"])
    assert (config.train.optimizer, config.train.lr.lr, config.train.lr.warmup_steps,
            config.train.weight_decay) == ("adamw", 1e-3, 250, 0.01)
    given = load_config(None, ["data.paths=[x]", "net.body=attention", "net.policy=attention", "train.lr.lr=0.005",
                               "train.weight_decay=0"])
    assert (given.train.lr.lr, given.train.lr.warmup_steps, given.train.weight_decay) == (0.005, 250, 0.0)
    sgd = load_config(None, ["data.paths=[x]", "net.body=attention", "net.policy=attention", "train.optimizer=sgd"])
    assert (sgd.train.optimizer, sgd.train.lr.lr, sgd.train.lr.warmup_steps) == ("sgd", 0.02, 0)
    assert load_config(None, ["data.paths=[x]"]).train.optimizer == "sgd"  # SE-ResNets as before


def test_no_weight_decay_on_norms_biases_or_gates():
    net = random_net(NetConfig(**SMALL))
    optimizer = make_optimizer(TrainConfig(optimizer="adamw", weight_decay=0.01), net)
    decayed = {id(p) for p in optimizer.param_groups[0]["params"]}
    names = {name for name, p in net.named_parameters() if id(p) in decayed}
    assert "encoders.0.q.weight" in names and "smolgen_weight.weight" in names
    assert not any(n.endswith(".bias") or "ln" in n.split(".")[-2] or n.startswith("gate_") for n in names)
    assert optimizer.param_groups[1]["weight_decay"] == 0.0


def test_net_init_writes_a_random_net_of_the_config(tmp_path, capsys):
    out = tmp_path / "bt.pb.gz"
    args = ["net", "init", "net.body=attention", "net.size=32x2", "net.heads=4", "net.policy=attention",
            "net.smolgen_gen=16", "--out", str(out), "--seed", "3", "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    net = read_net(out)
    assert isinstance(net, AttentionNet) and (summary["size"], summary["body"]) == ("32x2", "attention")
    assert summary["parameters"] == count_parameters(net) and summary["flops_per_position"] == flops_per_position(net)
    assert not torch.allclose(net.encoders[0].ln1.weight, torch.ones(32))  # affines randomised, not 1 and 0
    assert main(args[:-5] + ["--out", str(tmp_path / "bt.pt"), "--seed", "3"]) == 0
    capsys.readouterr()
    saved = load_model(tmp_path / "bt.pt")  # the same seed, the same net, bit for bit
    again = random_net(load_config(None, ["data.paths=[x]", *args[2:6], "net.smolgen_gen=16"]).net, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(saved.state_dict().values(), again.state_dict().values()))
    assert main(["net", "init", "--out", str(tmp_path / "x.txt")]) == 2
    assert "name it NET.pb.gz" in capsys.readouterr().err


def test_an_attention_student_distils_through_train(tmp_path, capsys):
    if not SELFPLAY.exists():
        pytest.skip(f"the shared self-play games are absent ({SELFPLAY})")
    run_dir = tmp_path / "run"
    assert main(["train", f"data.paths=[{SELFPLAY}]", "data.workers=0", "data.batch_size=32", "data.sample_rate=1",
                 "data.shuffle_buffer=512", *[f"net.{k}={v}" for k, v in SMALL.items()], "net.moves_left=false",
                 f"teacher.nets=[{SHARED / 'nets' / 'maia-1900.pb.gz'}]", "train.steps=8", "train.log_every=4",
                 "train.eval_every=0", "train.eval_positions=128", f"train.run_dir={run_dir}"]) == 0
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert len(train) == 2 and all(math.isfinite(r["total"]) and r["policy_distill"] > 0 for r in train)
    assert train[-1]["lr"] == pytest.approx(1e-3 * 8 / 250)  # AdamW warming up: step 7 of 250
    assert isinstance(read_net(run_dir / "final.pb.gz"), AttentionNet)
    capsys.readouterr()


@pytest.mark.parametrize("size, heads, parameters", [("64x4", 4, 945_324), ("256x8", 8, 13_864_748)])
def test_attention_presets_fill_heads_smolgen_and_policy_and_yield_to_given_keys(size, heads, parameters):
    net = load_config(None, ["data.paths=[x]", "net.body=attention", f"net.size={size}"]).net
    assert (net.filters, net.blocks, net.heads, net.policy.value) == (*map(int, size.split("x")), heads, "attention")
    with torch.device("meta"):
        assert count_parameters(AttentionNet(net)) == parameters  # the docs' table
    given = load_config(None, ["data.paths=[x]", "net.body=attention", f"net.size={size}", "net.heads=2"]).net
    assert given.heads == 2 and given.smolgen_gen == net.smolgen_gen
    se = load_config(None, ["data.paths=[x]", f"net.size={size}"]).net  # an SE-ResNet of that size: no preset
    assert se.body.value == "residual" and se.heads == NetConfig().heads


def test_an_attention_body_takes_the_attention_policy_unless_told_otherwise():
    assert NetConfig(body="attention").policy.value == "attention"
    with pytest.raises(ValueError, match="attention policy head"):
        NetConfig(body="attention", policy="convolution")
