"""Record validation: which records training must not see, named by record and field, whatever else the
chunk holds (the whole-chunk fast path and the per-record path agree)."""

import glob

import numpy as np
import pytest

from lc0distill.chunks.reader import read_chunk
from lc0distill.chunks.validate import find_bad_records
from tests.conftest import LC0_DATA

BAD_VALUES = [("best_q", 1.0001), ("best_d", -0.001), ("root_q", np.nan), ("played_d", np.inf),
              ("result_q", 0.5), ("plies_left", -1.0), ("plies_left", np.nan), ("orig_q", 2.0)]


@pytest.fixture(scope="module")
def records(lc0_data):
    return read_chunk(sorted(glob.glob(str(LC0_DATA / "v6-fmt1-maia1900" / "*.gz")))[0]).records


def test_lc0s_own_records_are_all_fit(lc0_data):
    for path in sorted(glob.glob(str(lc0_data / "**" / "*.gz"), recursive=True)):
        assert len(find_bad_records(read_chunk(path).records, "best")) == 0, path


@pytest.mark.parametrize("field, value", BAD_VALUES)
def test_one_bad_value_names_its_record_and_field_alone_or_among_others(records, field, value):
    alone = records.copy()
    alone[field][2] = value
    bad = find_bad_records(alone)
    assert bad.indices.tolist() == [2] and bad.fields[0].startswith(field.split("_")[0]), bad.describe("c")
    among = alone.copy()
    among["best_q"][7] = np.nan  # a second bad record: the chunk takes the per-record path
    both = find_bad_records(among)
    assert both.indices.tolist() == [2, 7] and both.fields[0] == bad.fields[0]


def test_v3_records_with_more_visited_moves_than_chess_allows(records):
    v3 = records.copy()
    v3["version"] = 3
    assert len(find_bad_records(v3)) == 0  # V3's illegal moves are 0.0: many non-negative entries are normal
    v3["probabilities"][1] = 1 / 1858  # 1858 visited moves
    assert find_bad_records(v3).describe("v3") == [
        "v3: record 1: field probabilities: more than 218 visited moves (no chess position has that many)"]


def test_a_policy_that_does_not_sum_to_one_or_holds_inf(records):
    broken = records.copy()
    legal = np.flatnonzero(broken["probabilities"][4] >= 0)
    broken["probabilities"][4, legal[0]] += 0.5
    broken["probabilities"][6, legal[0]] = np.inf
    bad = find_bad_records(broken)
    assert bad.indices.tolist() == [4, 6] and set(bad.fields) == {"probabilities"}
