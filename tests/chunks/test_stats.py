"""`lc0distill data stats`: dataset statistics against lc0's own chunks and naive references."""

from __future__ import annotations

import gzip
import json
import math
import tarfile
from pathlib import Path

import numpy as np
import pytest

from lc0distill.chunks.reader import inflate, read_chunk
from lc0distill.chunks.stats import collect_stats, game_starts
from lc0distill.cli import main

RESULT_KEYS = {"1-0": "white", "0-1": "black", "1/2-1/2": "draw"}
LISTED_KEYS = {"positions", "games", "results", "mean_abs_q_minus_z", "policy_entropy", "input_formats",
               "versions", "bad_files"}


def _stats_json(capsys, *paths, expect_exit: int = 0) -> dict:
    assert main(["data", "stats", *map(str, paths), "--json"]) == expect_exit
    return json.loads(capsys.readouterr().out)


def _chunk_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.gz"))


@pytest.fixture(scope="module")
def dataset_stats(lc0_data) -> dict:
    return collect_stats([lc0_data]).to_dict()


def test_whole_dataset_counts(capsys, lc0_data, lc0_games):
    doc = _stats_json(capsys, lc0_data)
    assert LISTED_KEYS <= set(doc)
    records = [read_chunk(str(path)).records for path in _chunk_files(lc0_data)]
    assert len(records) == 46 and doc["chunks"] == 46 and doc["bad_files"] == []
    assert doc["positions"] == sum(len(r) for r in records)
    assert doc["games"] == 46 == len(lc0_games)
    expected = {"white": 0, "black": 0, "draw": 0}
    for game in lc0_games:
        expected[RESULT_KEYS[game["result"]]] += 1
    assert doc["results"] == expected

    versions: dict[str, int] = {}
    for chunk_records in records:
        key = str(int(chunk_records["version"][0]))
        versions[key] = versions.get(key, 0) + len(chunk_records)
    assert set(versions) == {"4", "5", "6"} and doc["versions"] == versions
    assert {"1", "2", "3", "4", "5", "132", "133"} <= set(doc["input_formats"])
    assert sum(doc["input_formats"].values()) == doc["positions"]
    assert doc["mean_plies_per_game"] == pytest.approx(doc["positions"] / 46)
    assert 0 < doc["share_with_orig_q"] < 1  # V4/V5 store no orig_q, V6 does
    assert doc["mean_visits"] > 0


def _naive_reference(paths: list[Path]) -> tuple[float, float]:
    """Record by record in plain Python: mean |best_q - result_q| and mean policy entropy in nats."""
    diffs, entropies = [], []
    for path in paths:
        for record in read_chunk(str(path)).records:
            diffs.append(abs(float(record["best_q"]) - float(record["result_q"])))
            entropy = 0.0
            for p in record["probabilities"].tolist():
                if p > 0 and not math.isnan(p):
                    entropy -= p * math.log(p)
            entropies.append(entropy)
    return sum(diffs) / len(diffs), sum(entropies) / len(entropies)


def test_q_minus_z_and_entropy_equal_naive_reference(capsys, lc0_data):
    paths = [lc0_data / "v4-maia1100" / "game_000002.gz", lc0_data / "v6-fmt133-maia1100" / "game_000002.gz",
             lc0_data / "v6-fmt1-maia1900" / "game_000004.gz"]
    doc = _stats_json(capsys, *paths)
    q_minus_z, entropy = _naive_reference(paths)
    assert doc["mean_abs_q_minus_z"] == pytest.approx(q_minus_z, rel=1e-6)
    assert doc["policy_entropy"] == pytest.approx(entropy, rel=1e-6)
    assert 0 < doc["policy_entropy"] < math.log(218)


def test_corrupt_file_is_named_and_skipped(capsys, lc0_data, dataset_stats, tmp_path):
    good = (lc0_data / "v5-maia1100" / "game_000000.gz").read_bytes()
    broken = tmp_path / "broken.gz"
    broken.write_bytes(good[: len(good) // 2])  # a gzip stream cut before its trailer
    doc = _stats_json(capsys, lc0_data, broken, expect_exit=2)
    assert [bad["path"] for bad in doc["bad_files"]] == [str(broken)]
    assert "truncated gzip" in doc["bad_files"][0]["error"]
    for key in ("positions", "games", "results", "versions", "input_formats", "mean_abs_q_minus_z", "policy_entropy"):
        assert doc[key] == dataset_stats[key]


def test_bad_archive_and_missing_path_do_not_drop_the_others(capsys, lc0_data, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for path in _chunk_files(lc0_data / "v6-fmt2-maia1100"):
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "zzz.tar").write_bytes(b"not a tar archive" * 64)
    (folder / "aaa.tar").write_bytes(b"not a tar archive" * 64)
    doc = _stats_json(capsys, folder, tmp_path / "missing.gz", expect_exit=2)
    assert doc["games"] == 3 and doc["chunks"] == 3
    assert {bad["path"] for bad in doc["bad_files"]} == {str(folder / "aaa.tar"), str(folder / "zzz.tar"),
                                                         str(tmp_path / "missing.gz")}


def test_tar_archive_equals_loose_files(capsys, lc0_data, tmp_path):
    folder = lc0_data / "v6-fmt4-maia1100"
    archive = tmp_path / "run.tar"
    with tarfile.open(archive, "w") as tar:
        for i, path in enumerate(_chunk_files(folder)):
            tar.add(path, arcname=f"training.{i}.gz")
    assert _stats_json(capsys, archive) == _stats_json(capsys, folder)


@pytest.mark.parametrize("folder", ["v4-maia1100", "v5-maia1100", "v6-fmt1-maia1900", "v6-fmt5-maia1100",
                                    "v6-fmt133-maia1100"])
def test_two_games_in_one_chunk(capsys, lc0_data, lc0_games, tmp_path, folder):
    first, second = _chunk_files(lc0_data / folder)[:2]
    payload = b"".join(inflate(path.read_bytes(), str(path)) for path in (first, second))
    joined = tmp_path / "two-games.gz"
    joined.write_bytes(gzip.compress(payload))
    records = read_chunk(str(joined)).records
    assert list(game_starts(records)) == [0, len(read_chunk(str(first)).records)]

    doc = _stats_json(capsys, joined)
    assert doc["games"] == 2 and doc["chunks"] == 1 and doc["positions"] == len(records)
    expected = {"white": 0, "black": 0, "draw": 0}
    for path in (first, second):
        game = next(g for g in lc0_games if g["file"] == f"{folder}/{path.name}")
        expected[RESULT_KEYS[game["result"]]] += 1
    assert doc["results"] == expected


def test_one_game_per_real_chunk(lc0_data, selfplay_dir):
    for path in _chunk_files(lc0_data) + _chunk_files(selfplay_dir)[:40]:
        assert list(game_starts(read_chunk(str(path)).records)) == [0], path


def test_human_output_is_a_table(capsys, lc0_data, tmp_path):
    broken = tmp_path / "broken.gz"
    broken.write_bytes(b"\x1f\x8b\x08\x00" + bytes(20))
    assert main(["data", "stats", str(lc0_data / "v6-fmt3-maia1100"), str(broken)]) == 2
    captured = capsys.readouterr()
    assert "positions" in captured.out and "270" in captured.out and "policy entropy" in captured.out
    assert captured.err.strip().count("\n") == 0 and str(broken) in captured.err
    assert "Traceback" not in captured.err


def test_selfplay_folder(capsys, selfplay_dir):
    doc = _stats_json(capsys, selfplay_dir)
    assert doc["games"] == doc["chunks"] == len(_chunk_files(selfplay_dir)) and doc["bad_files"] == []
    assert sum(doc["results"].values()) == doc["games"]
    assert doc["versions"] == {"6": doc["positions"]} and doc["share_with_orig_q"] == 1.0
    assert np.isfinite(doc["mean_abs_q_minus_z"]) and 0 <= doc["mean_abs_q_minus_z"] <= 2
