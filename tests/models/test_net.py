import pytest
import torch

from lc0distill.chess.policy_index import CONV_POLICY_MAP
from lc0distill.models.blocks import SEUnit
from lc0distill.models.config import PRESETS, Activation, NetConfig, preset
from lc0distill.models.net import SEResNet, count_parameters, flops_per_position


def test_presets_are_filters_by_blocks():
    for name in PRESETS:
        filters, blocks = map(int, name.split("x"))
        config = preset(name)
        assert (config.filters, config.blocks, config.name) == (filters, blocks, name)
    with pytest.raises(ValueError, match="FILTERSxBLOCKS"):
        preset("big")


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(Exception, match="filtres"):
        NetConfig(filtres=64)
    with pytest.raises(Exception, match="input_format"):
        NetConfig(input_format=7)


@pytest.mark.parametrize("config", [preset("64x6"), NetConfig(filters=16, blocks=2, policy="classical",
                                                              value="scalar", activation="mish"),
                                    preset("64x6", policy="attention")])
def test_output_shapes(config):
    out = SEResNet(config)(torch.zeros(3, 112, 8, 8))
    assert out.policy_logits.shape == (3, 1858)
    if config.value.value == "wdl":
        assert out.wdl_logits.shape == (3, 3) and out.value is None
    else:
        assert out.value.shape == (3,) and out.wdl_logits is None and out.value.abs().max() <= 1
    assert out.moves_left.shape == (3,) and (out.moves_left >= 0).all()
    assert out.q().shape == (3,)


def test_se_unit_is_lc0s_gate_and_bias():
    torch.manual_seed(0)
    unit = SEUnit(4, 2, Activation.RELU)
    x = torch.randn(2, 4, 8, 8)
    pooled = x.mean(dim=(2, 3))
    hidden = torch.relu(pooled @ unit.fc1.weight.T + unit.fc1.bias)
    both = hidden @ unit.fc2.weight.T + unit.fc2.bias
    gamma, beta = both[:, :4], both[:, 4:]  # first C: gate through a sigmoid; second C: added
    expected = torch.sigmoid(gamma)[:, :, None, None] * x + beta[:, :, None, None]
    assert torch.allclose(unit(x), expected, atol=1e-6)


def test_convolution_policy_gathers_through_the_map():
    net = SEResNet(NetConfig(filters=8, blocks=0, moves_left=False)).eval()
    planes = torch.randn(1, 112, 8, 8)
    with torch.no_grad():
        body = net.body(planes)
        head = net.policy
        raw = head.policy(head.act(head.policy1(body))).flatten(1)  # (1, 80 * 64)
        logits = net(planes).policy_logits
    mapped = torch.from_numpy(CONV_POLICY_MAP)
    flat = torch.nonzero(mapped >= 0)[:, 0]
    assert torch.equal(logits[0, mapped[flat]], raw[0, flat])


def test_parameters_and_flops_follow_the_shape():
    small, big = SEResNet(preset("64x6")), SEResNet(preset("128x10"))
    assert count_parameters(big) > 3 * count_parameters(small)
    # The residual tower dominates: 2 convs of 3x3 C->C per block, 2 * 9 * C * C * 64 FLOPs each.
    tower = 10 * 2 * 2 * 9 * 128 * 128 * 64
    assert tower < flops_per_position(big) < 1.2 * tower
