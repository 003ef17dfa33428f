"""Every recipe in configs/ validates, and opens with the command that runs it."""

from pathlib import Path

import pytest
import yaml

from lc0distill.config import load_config
from lc0distill.pbt.config import PbtRunConfig

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_the_five_recipes_exist():
    assert {p.stem for p in CONFIGS} >= {"distil-256x40-to-128x10", "train-q-plus-z", "migrate-architecture",
                                          "tournament-net", "quickstart"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_recipe_validates_and_opens_with_its_command(path):
    assert path.read_text().splitlines()[0].startswith("# lc0distill ")
    # A recipe with a pbt: section is lc0distill pbt's (the training recipe plus the population's settings).
    pbt = "pbt" in (yaml.safe_load(path.read_text()) or {})
    config = load_config(path, validate=PbtRunConfig) if pbt else load_config(path)
    assert config.train.steps > 0 and config.data.paths
