"""Shared fixtures: the reference artifacts in ../shared (real lc0 nets, chunks and engine outputs).

Tests that need them skip with a clear reason when the folder is absent; nothing from it is copied here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Hypothesis profiles. "ci", the default: derandomized with no example database, so every run of the suite on
# any machine draws the same examples and passes or fails alike. "explore" (pytest --hypothesis-profile=explore):
# fresh random draws and the local example database, to look further on your own machine; a failure prints
# the @reproduce_failure line that replays it (see the README's testing section).
_COMMON = dict(deadline=None, print_blob=True, suppress_health_check=list(HealthCheck))
settings.register_profile("ci", derandomize=True, database=None, **_COMMON)
settings.register_profile("explore", derandomize=False, **_COMMON)
settings.load_profile("ci")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = PROJECT_ROOT.parent / "shared"
LC0_DATA = SHARED / "lc0-data"
SELFPLAY = SHARED / "lc0-selfplay-maia1900"
ORACLE = SHARED / "oracle" / "maia-1900.lc0-outputs.json"


def copy_games(source: Path, folder: Path, count: int) -> Path:
    """The first `count` game_*.gz chunks of `source` copied into `folder` (made if needed), for a test that
    changes or needs few of them; skips, saying why, when `source` is absent."""
    if not source.exists():
        pytest.skip(f"{source} is absent (../shared holds lc0's own files; see README)")
    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("game_*.gz"))[:count]:
        shutil.copy(path, folder / path.name)
    return folder


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"reference artifact {path} is absent (../shared holds lc0's own files; see README)")
    return path


@pytest.fixture(scope="session")
def lc0_data() -> Path:
    return _require(LC0_DATA)


CLASSICAL_FOLDERS = ("v6-fmt1-maia1900", "v5-maia1100", "v4-maia1100")  # input format 1: what a default net reads


@pytest.fixture(scope="session")
def classical_data(lc0_data: Path) -> list[Path]:
    """The lc0-data folders in the classical input format (V4, V5, V6), for nets of input format 1."""
    return [lc0_data / name for name in CLASSICAL_FOLDERS]


@pytest.fixture(scope="session")
def lc0_games(lc0_data: Path) -> list[dict]:
    """games.jsonl: per chunk file, the moves and result lc0 reported while playing the game."""
    return [json.loads(line) for line in (lc0_data / "games.jsonl").read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def oracle_positions() -> list[dict]:
    return json.loads(_require(ORACLE).read_text())["positions"]


@pytest.fixture(scope="session")
def selfplay_dir() -> Path:
    return _require(SELFPLAY)


@pytest.fixture(scope="session")
def nets_dir() -> Path:
    """../shared/nets: real lc0 nets (maia)."""
    return _require(SHARED / "nets")
