"""The shape of a net: NetConfig, and presets named the way lc0 users name nets (filters x blocks)."""

from __future__ import annotations

import re
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lc0distill.chess.input_formats import SUPPORTED_INPUT_FORMATS


class PolicyHead(str, Enum):
    CONVOLUTION = "convolution"  # 3x3 conv, then 3x3 conv to 80 planes gathered to 1858 (lc0 POLICY_CONVOLUTION)
    CLASSICAL = "classical"  # 1x1 conv to a few planes, then a dense layer to 1858 (POLICY_CLASSICAL)


class ValueHead(str, Enum):
    WDL = "wdl"  # win/draw/loss logits
    SCALAR = "scalar"  # one tanh value


class Activation(str, Enum):
    RELU = "relu"
    MISH = "mish"


class NetConfig(BaseModel):
    """An SE-ResNet in lc0's layout. Defaults are lc0's trainer defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    filters: int = Field(128, gt=0)
    blocks: int = Field(10, ge=0)
    se_channels: int = Field(16, ge=0, description="width of each SE unit's bottleneck; 0: no SE units. "
                                                  "`se_ratio: R` may be given instead (se_channels = filters / R)")
    policy: PolicyHead = PolicyHead.CONVOLUTION
    policy_channels: int = Field(32, gt=0, description="classical policy head only")
    value: ValueHead = ValueHead.WDL
    value_channels: int = Field(32, gt=0)
    value_hidden: int = Field(128, gt=0)
    moves_left: bool = True
    moves_left_channels: int = Field(8, gt=0)
    moves_left_hidden: int = Field(128, gt=0)
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


PRESETS = ("64x6", "128x10", "192x15", "256x20", "256x40", "320x24")


def preset(name: str, **overrides) -> NetConfig:
    """NetConfig for a name like '128x10' (any FILTERSxBLOCKS works; PRESETS lists the usual ones)."""
    match = re.fullmatch(r"(\d+)x(\d+)", name.strip())
    if not match:
        raise ValueError(f"net size {name!r} is not FILTERSxBLOCKS, e.g. 128x10 (usual: {', '.join(PRESETS)})")
    return NetConfig(filters=int(match.group(1)), blocks=int(match.group(2)), **overrides)
