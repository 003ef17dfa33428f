"""net.init_from: a run starts from an existing net's weights (exactly, or partially with names of what was not
copied), with the optimizer and schedules fresh."""

from __future__ import annotations

import pytest
import torch

from lc0distill.config import load_config
from lc0distill.errors import Lc0DistillError
from lc0distill.evaluate import evaluate_net
from lc0distill.init_from import with_init_architecture
from lc0distill.lc0.weights import read_net
from lc0distill.models.config import NetConfig
from lc0distill.models.net import SEResNet
from lc0distill.models.store import load_model, save_model
from lc0distill.train import Run, train


def _config(selfplay_dir, run_dir, *extra):
    return load_config(None, [f"data.paths=[{selfplay_dir}]", "data.workers=0", "data.batch_size=32",
                              "data.sample_rate=1", "data.shuffle_buffer=512", "train.eval_positions=600",
                              "train.eval_every=0", f"train.run_dir={run_dir}", *extra])


def test_maia_at_lr_0_keeps_maias_weights_and_held_out_metrics(selfplay_dir, nets_dir, tmp_path):
    maia_path = nets_dir / "maia-1900.pb.gz"
    config = _config(selfplay_dir, tmp_path / "run", f"net.init_from={maia_path}", "train.steps=3",
                     "train.lr.lr=0", "train.batch_norm_momentum=0")
    config = with_init_architecture(config)  # as train() does: a net section of init_from alone is maia's net
    assert config.net == read_net(maia_path).config
    result = train(config, log=lambda line: None)
    final, maia = load_model(tmp_path / "run" / "final.pt"), read_net(maia_path)
    for name, tensor in maia.state_dict().items():
        if not name.endswith("num_batches_tracked"):  # a count of batches seen, not a weight
            assert torch.equal(final.state_dict()[name], tensor), name
    reference = evaluate_net(maia, Run(config, log=lambda line: None, start_from_init=False).test_batches(),
                             config.train.eval_positions)
    assert result.final_metrics == reference and result.final_metrics["positions"] > 0


def test_another_architecture_is_an_error_naming_the_difference(selfplay_dir, nets_dir, tmp_path):
    config = _config(selfplay_dir, tmp_path / "run", f"net.init_from={nets_dir / 'maia-1900.pb.gz'}",
                     "net.size=64x10", "train.steps=1")
    with pytest.raises(Lc0DistillError) as caught:
        train(config, log=lambda line: None)
    message = str(caught.value)
    assert "blocks 6 (init_from) vs 10 (net)" in message and "init_from_partial" in message


def test_a_partial_init_from_64x6_into_64x10_copies_the_matching_layers(selfplay_dir, nets_dir, tmp_path):
    maia_path = nets_dir / "maia-1900.pb.gz"
    lines = []
    config = _config(selfplay_dir, tmp_path / "run", f"net.init_from={maia_path}", "net.init_from_partial=true",
                     "net.size=64x10", "net.moves_left=false", "net.se_channels=8", "train.steps=2")
    run = Run(config, log=lines.append)
    maia = read_net(maia_path)
    ours = run.student.state_dict()
    for name, tensor in maia.state_dict().items():  # blocks 0-5, input and heads: maia's
        assert torch.equal(ours[name], tensor), name
    fresh = [name for name in ours if name not in maia.state_dict()]
    assert fresh and all(name.startswith(tuple(f"residual.{i}." for i in range(6, 10))) for name in fresh)
    summary = next(line for line in lines if "net.init_from" in line)
    assert f"{len(maia.state_dict())} tensors copied" in summary and "residual.9.conv2.conv (not in init_from)" in summary


def test_a_shape_mismatch_is_named_and_left_fresh(tmp_path, selfplay_dir):
    source = SEResNet(NetConfig(filters=16, blocks=1, se_channels=4, moves_left=False))
    save_model(source, tmp_path / "source.pt")
    lines = []
    config = _config(selfplay_dir, tmp_path / "run", f"net.init_from={tmp_path / 'source.pt'}",
                     "net.init_from_partial=true", "net.filters=16", "net.blocks=1", "net.se_channels=8",
                     "net.moves_left=false")
    run = Run(config, log=lines.append)
    assert torch.equal(run.student.input.conv.weight, source.input.conv.weight)
    assert not torch.equal(run.student.residual[0].se.fc1.weight[:4], source.residual[0].se.fc1.weight)
    assert any("residual.0.se.fc1.weight (4x16 in init_from, 8x16 here)" in line for line in lines)


def test_the_input_format_must_match_even_partially(tmp_path, selfplay_dir, nets_dir):
    config = _config(selfplay_dir, tmp_path / "run", f"net.init_from={nets_dir / 'maia-1900.pb.gz'}",
                     "net.init_from_partial=true", "net.size=64x6", "net.input_format=3")
    with pytest.raises(Lc0DistillError, match="input format 1, the student's net.input_format is 3"):
        Run(config, log=lambda line: None)


def test_the_resolved_config_keeps_init_from_under_net(tmp_path, selfplay_dir, nets_dir):
    config = _config(selfplay_dir, tmp_path / "run", f"net.init_from={nets_dir / 'maia-1900.pb.gz'}",
                     "net.size=64x6")
    from lc0distill.config import dump_config

    text = dump_config(config)
    assert "init_from:" in text and "net_init" not in text
    (tmp_path / "again.yaml").write_text(text)
    assert load_config(tmp_path / "again.yaml") == config


def test_frozen_batch_norm_keeps_maias_statistics_while_the_weights_train(selfplay_dir, nets_dir, tmp_path):
    """train.freeze_batch_norm: maia's running means and variances stay exactly its own at lr > 0 while its
    convolutions move."""
    maia_path = nets_dir / "maia-1900.pb.gz"
    config = _config(selfplay_dir, tmp_path / "run", f"net.init_from={maia_path}", "train.steps=3",
                     "train.lr.lr=0.01", "train.freeze_batch_norm=true")
    train(config, log=lambda line: None)
    final, maia = load_model(tmp_path / "run" / "final.pt").state_dict(), read_net(maia_path).state_dict()
    statistics = [name for name in maia if name.endswith(("running_mean", "running_var"))]
    assert statistics and all(torch.equal(final[name], maia[name]) for name in statistics)
    convolutions = [name for name, tensor in maia.items() if tensor.ndim == 4]
    assert not any(torch.equal(final[name], maia[name]) for name in convolutions)


@pytest.mark.parametrize("freeze", [True, False])
def test_set_train_mode_freezes_only_batch_norm(freeze):
    """In train mode a forward moves the running statistics; with freeze_batch_norm it does not, and batch norm
    normalises with them (the output equals eval mode's) while the net itself stays in train mode."""
    from lc0distill.training.setup import set_train_mode

    torch.manual_seed(0)
    net = SEResNet(NetConfig(filters=8, blocks=1, se_channels=2, moves_left=False))
    before = {k: v.clone() for k, v in net.state_dict().items() if k.endswith("running_mean")}
    planes = torch.randn(4, 112, 8, 8)
    net.eval()
    reference = net(planes).policy_logits
    set_train_mode(net, freeze)
    out = net(planes).policy_logits
    moved = [not torch.equal(net.state_dict()[k], v) for k, v in before.items()]
    assert net.training
    assert (not any(moved) and torch.allclose(out, reference)) if freeze else all(moved)


def test_an_attention_body_pb_gz_starts_a_run_exactly(selfplay_dir, tmp_path):
    """An lc0 attention-body file (NETWORK_ATTENTIONBODY_WITH_HEADFORMAT) as net.init_from: read natively, its
    architecture taken, every tensor copied (at lr 0 the run's final net is the file's net)."""
    from lc0distill.lc0.weights import write_net
    from lc0distill.models.attention import AttentionNet
    from lc0distill.models.init import random_net

    config = NetConfig(body="attention", policy="attention", filters=32, blocks=1, heads=4, smolgen_channels=8,
                       smolgen_hidden=16, smolgen_gen=8, policy_embedding=32, policy_d_model=16)
    write_net(random_net(config, seed=5), tmp_path / "bt.pb.gz")
    source = read_net(tmp_path / "bt.pb.gz")
    run = _config(selfplay_dir, tmp_path / "run", f"net.init_from={tmp_path / 'bt.pb.gz'}", "train.steps=2",
                  "train.lr.lr=0", "train.weight_decay=0")
    run = with_init_architecture(run)
    assert run.net == source.config and run.net.body.value == "attention"
    train(run, log=lambda line: None)
    final = load_model(tmp_path / "run" / "final.pt")
    assert isinstance(final, AttentionNet)
    for name, tensor in source.state_dict().items():
        assert torch.equal(final.state_dict()[name], tensor), name
