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


# Bounds on what a file or a config may ask for, checked before any tensor is allocated: a few hundred bytes
# of a hostile .pb.gz or .pt must not make the program reserve gigabytes. The largest SE-ResNets lc0 has
# published are 384x30 and 512x40 (about 190M parameters); these bounds leave room above them.
MAX_FILTERS = 1024
MAX_BLOCKS = 128
MAX_HEAD_WIDTH = 4096
MAX_PARAMETERS = 500_000_000  # 2 GB of float32


class NetConfig(BaseModel):
    """An SE-ResNet in lc0's layout. Defaults are lc0's trainer defaults."""

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


def estimated_parameters(config: NetConfig) -> int:
    """About how many parameters the net has (within a few percent: body and head weights, not BN)."""
    f = config.filters
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
