"""Net files: checking a saved state must not change how it loads afterwards."""

import torch

from lc0distill.models.config import NetConfig
from lc0distill.models.net import SEResNet
from lc0distill.models.store import check_state, read_state, save_model


def test_a_checked_state_still_loads_by_copy_into_the_net(tmp_path):
    """load_state_dict(assign=True) on a checking skeleton once wrote "assign" into the dict's metadata, so
    resuming replaced the student's parameters by the checkpoint's tensors and the optimizer (made for the
    old ones) stopped updating the net: resumed runs diverged from uninterrupted ones."""
    torch.manual_seed(0)
    net = SEResNet(NetConfig(filters=8, blocks=1))
    save_model(net, tmp_path / "net.pt")
    state = read_state(tmp_path / "net.pt")
    check_state(state)  # what loading a checkpoint or net file does first
    other = SEResNet(NetConfig(filters=8, blocks=1))
    before = [id(p) for p in other.parameters()]
    other.load_state_dict(state["model"])
    assert [id(p) for p in other.parameters()] == before
    assert all(p.data_ptr() != t.data_ptr() for p, t in zip(other.parameters(), state["model"].values()))
    assert all(torch.equal(p, q) for p, q in zip(other.state_dict().values(), net.state_dict().values()))
