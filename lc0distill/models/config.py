"""The shape of a net: NetConfig, and presets named the way lc0 users name nets (filters x blocks)."""

from __future__ import annotations

import re
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lc0distill.chess.input_formats import SUPPORTED_INPUT_FORMATS
from lc0distill.errors import Lc0DistillError


class PolicyHead(str, Enum):
    CONVOLUTION = "convolution"  # 3x3 conv, then 3x3 conv to 80 planes gathered to 1858 (lc0 POLICY_CONVOLUTION)
    CLASSICAL = "classical"  # 1x1 conv to a few planes, then a dense layer to 1858 (POLICY_CLASSICAL)
    ATTENTION = "attention"  # squares as tokens, from-to logits Q.K^T plus promotion offsets (POLICY_ATTENTION)


class ValueHead(str, Enum):
    WDL = "wdl"  # win/draw/loss logits
    SCALAR = "scalar"  # one tanh value


class Activation(str, Enum):
    RELU = "relu"
    MISH = "mish"
    SWISH = "swish"  # x * sigmoid(x): smolgen's in lc0's BT nets
    RELU_2 = "relu2"  # relu(x)^2: the FFN's in lc0's BT nets
    SELU = "selu"
    NONE = "none"


DEFAULT_ACTIVATIONS = (Activation.RELU, Activation.MISH)  # what lc0's default_activation can say


class Body(str, Enum):
    RESIDUAL = "residual"  # SE-ResNet: 3x3 convolutions with squeeze-excitation (lc0 NETWORK_SE_WITH_HEADFORMAT)
    ATTENTION = "attention"  # squares as tokens through encoder layers (NETWORK_ATTENTIONBODY_WITH_HEADFORMAT)


class Embedding(str, Enum):
    # each square's 112 plane values and a fixed 64-channel map of the squares it sees (lc0's PE_MAP); lc0
    # v0.31.0-dev, the engine lc0distill builds, has no other (no dense pre-embedding, no embedding norm or FFN)
    PE_MAP = "pe_map"


# Bounds on what a file or a config may ask for, checked before any tensor is allocated: a few hundred bytes
# of a hostile .pb.gz or .pt must not make the program reserve gigabytes. The largest SE-ResNets lc0 has
# published are 384x30 and 512x40 (about 190M parameters); these bounds leave room above them.
MAX_FILTERS = 1024
MAX_BLOCKS = 128
MAX_HEAD_WIDTH = 4096
MAX_PARAMETERS = 500_000_000  # 2 GB of float32


class NetConfig(BaseModel):
    """An SE-ResNet or an attention-body net in lc0's layout. Defaults are lc0's trainer defaults. For an
    attention body (`body: attention`) `filters` is the token width (d_model) and `blocks` the encoder layers."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    filters: int = Field(128, gt=0, le=MAX_FILTERS)
    blocks: int = Field(10, ge=0, le=MAX_BLOCKS)
    se_channels: int = Field(16, ge=0, le=MAX_HEAD_WIDTH, description="width of each SE unit's bottleneck; 0: no SE units. "
                                                  "`se_ratio: R` may be given instead (se_channels = filters / R)")
    policy: PolicyHead = PolicyHead.CONVOLUTION
    policy_channels: int = Field(32, gt=0, le=MAX_HEAD_WIDTH, description="classical policy head only")
    policy_embedding: int = Field(64, gt=0, le=MAX_HEAD_WIDTH,
                                  description="attention policy head only: width of each square's embedding")
    policy_d_model: int = Field(64, gt=0, le=MAX_HEAD_WIDTH,
                                description="attention policy head only: width of the queries and keys")
    value: ValueHead = ValueHead.WDL
    value_channels: int = Field(32, gt=0, le=MAX_HEAD_WIDTH)
    value_hidden: int = Field(128, gt=0, le=MAX_HEAD_WIDTH)
    moves_left: bool = True
    moves_left_channels: int = Field(8, gt=0, le=MAX_HEAD_WIDTH)
    moves_left_hidden: int = Field(128, gt=0, le=MAX_HEAD_WIDTH)
    activation: Activation = Activation.RELU
    input_format: int = 1
    body: Body = Body.RESIDUAL
    # attention body only (lc0's field names in brackets)
    heads: int = Field(8, gt=0, le=MAX_HEAD_WIDTH, description="attention heads of each encoder layer [headcount]")
    ffn_width: int = Field(0, ge=0, le=16 * MAX_FILTERS, description="hidden width of each encoder's FFN; 0: 1.5 x "
                           "filters, as lc0's BT4")
    ffn_activation: Activation = Activation.RELU_2
    embedding: Embedding = Embedding.PE_MAP
    input_gating: bool = Field(True, description="a learned scale and offset per square and channel after the "
                               "embedding [ip_mult_gate, ip_add_gate]")
    smolgen: bool = Field(True, description="attention logits biased per position by a small generator [smolgen]")
    smolgen_channels: int = Field(32, gt=0, le=MAX_HEAD_WIDTH, description="smolgen's per-square compression")
    smolgen_hidden: int = Field(256, gt=0, le=MAX_HEAD_WIDTH)
    smolgen_gen: int = Field(256, gt=0, le=MAX_HEAD_WIDTH, description="smolgen's per-head code, expanded to 64x64 "
                             "by one weight all layers share [smolgen_w]")
    smolgen_activation: Activation = Activation.SWISH
    policy_encoders: int = Field(0, ge=0, le=MAX_BLOCKS, description="encoder layers in the policy head [pol_encoder]")
    policy_heads: int = Field(4, gt=0, le=MAX_HEAD_WIDTH, description="heads of the policy head's encoders")

    @model_validator(mode="before")
    @classmethod
    def _attention_policy_by_default(cls, data):
        """An attention body's policy head is the attention one unless a config says otherwise (it must)."""
        attention = isinstance(data, dict) and data.get("body") in (Body.ATTENTION, Body.ATTENTION.value)
        if attention and "policy" not in data:
            data = {**data, "policy": PolicyHead.ATTENTION}
        return data

    @model_validator(mode="before")
    @classmethod
    def _se_ratio(cls, data):
        """Accept lczero-training's `se_ratio` (default 8) and store the width it means, so that a net has
        one description whichever way it was given (and reading a file gives back the same config)."""
        if isinstance(data, dict):
            data = dict(data)
            ratio = data.pop("se_ratio", None)
            if "se_channels" not in data:
                filters = data.get("filters", cls.model_fields["filters"].default)
                ratio = 8 if ratio is None else ratio
                if _whole_number(ratio) is None:
                    raise ValueError(f"se_ratio must be a whole number >= 0, got {ratio!r}")
                ratio, filters = _whole_number(ratio), _whole_number(filters)
                if filters is not None and ratio > filters > 0:  # filters // ratio would drop the SE units
                    raise ValueError(f"se_ratio {ratio} is above filters ({filters}): the SE units would have no "
                                     "width; se_ratio 0 (or se_channels: 0) is how to ask for none")
                if filters is not None:  # else the filters field says what is wrong with it
                    data["se_channels"] = filters // ratio if ratio else 0
            elif ratio is not None:
                raise ValueError("give se_channels or se_ratio, not both")
        return data

    @model_validator(mode="after")
    def _body_fits(self) -> "NetConfig":
        if self.activation not in DEFAULT_ACTIVATIONS:
            raise ValueError(f"activation must be relu or mish (lc0's default activation), got {self.activation.value}")
        if self.body == Body.ATTENTION:
            if self.policy != PolicyHead.ATTENTION:
                raise ValueError("an attention body takes the attention policy head (policy: attention)")
            if self.filters % self.heads:
                raise ValueError(f"filters ({self.filters}) must be a multiple of heads ({self.heads})")
            if self.policy_encoders and self.policy_embedding % self.policy_heads:
                raise ValueError(f"policy_embedding ({self.policy_embedding}) must be a multiple of policy_heads "
                                 f"({self.policy_heads})")
        return self

    @property
    def dff(self) -> int:
        """The encoders' FFN width."""
        return self.ffn_width or self.filters * 3 // 2

    @field_validator("input_format")
    @classmethod
    def _known_input_format(cls, value: int) -> int:
        if value not in SUPPORTED_INPUT_FORMATS:
            raise ValueError(f"input_format must be one of {sorted(SUPPORTED_INPUT_FORMATS)}, got {value}")
        return value

    @property
    def squeeze(self) -> int:
        """Channels of each SE unit's bottleneck (0: no SE units)."""
        return self.se_channels

    @property
    def name(self) -> str:
        return f"{self.filters}x{self.blocks}"


def _whole_number(value) -> int | None:
    """A whole number >= 0 as the fields read one (8, 8.0 or "8"), else None."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


PRESETS = ("64x6", "128x10", "192x15", "256x20", "256x40", "320x24")
# attention bodies (net.body: attention, net.size: WIDTHxLAYERS): a head per 16-32 channels, smolgen and the policy
# head scaled with the width (lc0's BT nets: 1024 wide, 32-wide smolgen compression, 256-wide smolgen layers)
ATTENTION_PRESETS = {
    "64x4": dict(heads=4, smolgen_channels=8, smolgen_hidden=64, smolgen_gen=64, policy="attention",
                 policy_embedding=64, policy_d_model=64),
    "128x6": dict(heads=4, smolgen_channels=16, smolgen_hidden=128, smolgen_gen=128, policy="attention",
                  policy_embedding=128, policy_d_model=128),
    "192x8": dict(heads=6, smolgen_channels=24, smolgen_hidden=192, smolgen_gen=192, policy="attention",
                  policy_embedding=192, policy_d_model=192),
    "256x8": dict(heads=8, smolgen_channels=32, smolgen_hidden=256, smolgen_gen=256, policy="attention",
                  policy_embedding=256, policy_d_model=256),
}


def estimated_parameters(config: NetConfig) -> int:
    """About how many parameters the net has (within a few percent: body and head weights, not BN)."""
    f = config.filters
    if config.body == Body.ATTENTION:
        return _attention_parameters(config)
    body = 112 * 9 * f + config.blocks * (2 * 9 * f * f + 2 * f * config.se_channels)
    if config.policy == PolicyHead.CONVOLUTION:
        policy = 2 * 9 * f * f
    elif config.policy == PolicyHead.ATTENTION:
        policy = f * config.policy_embedding + 2 * config.policy_embedding * config.policy_d_model
    else:
        policy = f * config.policy_channels + config.policy_channels * 64 * 1858
    value = f * config.value_channels + config.value_channels * 64 * config.value_hidden + config.value_hidden * 3
    moves_left = (f * config.moves_left_channels + config.moves_left_channels * 64 * config.moves_left_hidden
                  if config.moves_left else 0)
    return body + policy + value + moves_left


def _attention_parameters(config: NetConfig) -> int:
    f, dff = config.filters, config.dff
    embedding = (112 + 64) * f + (2 * 64 * f if config.input_gating else 0)
    layer = 4 * f * f + 2 * f * dff
    if config.smolgen:
        layer += f * config.smolgen_channels + 64 * config.smolgen_channels * config.smolgen_hidden \
            + config.smolgen_hidden * config.heads * config.smolgen_gen
    e = config.policy_embedding
    policy = f * e + config.policy_encoders * (4 * e * e + 2 * e * config.dff) + 2 * e * config.policy_d_model
    value = f * config.value_channels + config.value_channels * 64 * config.value_hidden + config.value_hidden * 3
    moves_left = (f * config.moves_left_channels + config.moves_left_channels * 64 * config.moves_left_hidden
                  if config.moves_left else 0)
    smolgen = 64 * 64 * config.smolgen_gen if config.smolgen else 0
    return embedding + config.blocks * layer + smolgen + policy + value + moves_left


def check_net_size(config: NetConfig, source: object) -> None:
    """An Lc0DistillError naming the size when a net would be larger than MAX_PARAMETERS."""
    count = estimated_parameters(config)
    if count > MAX_PARAMETERS:
        raise Lc0DistillError(f"{source}: a {config.name} net with these heads has about {count:,} parameters, "
                              f"more than the {MAX_PARAMETERS:,} lc0distill accepts")


def preset_sizes(name: str) -> dict[str, int]:
    """{"filters": F, "blocks": B} for a name like '128x10' (ValueError for anything else)."""
    match = re.fullmatch(r"(\d+)x(\d+)", str(name).strip())
    if not match:
        raise ValueError(f"net size {name!r} is not FILTERSxBLOCKS, e.g. 128x10 (usual: {', '.join(PRESETS)})")
    return {"filters": int(match.group(1)), "blocks": int(match.group(2))}


def preset(name: str, **overrides) -> NetConfig:
    """NetConfig for a name like '128x10' (any FILTERSxBLOCKS works; PRESETS lists the usual ones)."""
    return NetConfig(**preset_sizes(name), **overrides)
