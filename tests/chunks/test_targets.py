import numpy as np
import pytest

from lc0distill.chunks.layouts import RECORD_DTYPE
from lc0distill.chunks.reader import read_chunk
from lc0distill.chunks.targets import (
    QSource,
    moves_left,
    policy_target,
    search_wdl,
    value_target,
    wdl_from_qd,
    z_wdl,
)


def _records(**fields) -> np.ndarray:
    records = np.zeros(len(next(iter(fields.values()))), dtype=RECORD_DTYPE)
    for name, values in fields.items():
        records[name] = values
    return records


def test_wdl_from_q_and_d():
    wdl = wdl_from_qd(np.array([1.0, -1.0, 0.0, 0.2]), np.array([0.0, 0.0, 1.0, 0.3]))
    assert np.allclose(wdl, [[1, 0, 0], [0, 0, 1], [0, 1, 0], [0.45, 0.3, 0.25]])
    assert np.allclose(wdl.sum(axis=1), 1.0)


def test_z_from_upgraded_old_results_and_v6(lc0_data):
    for folder in ("v4-maia1100", "v5-maia1100", "v6-fmt1-maia1900"):
        records = read_chunk(str(sorted((lc0_data / folder).glob("*.gz"))[1])).records
        z = z_wdl(records)
        assert set(map(tuple, z.tolist())) <= {(1, 0, 0), (0, 1, 0), (0, 0, 1)}
        # The result alternates sign with the side to move through a decided game.
        assert np.array_equal(z[0::2], z[0::2][:1].repeat(len(z[0::2]), 0))


def test_blend_is_linear_in_q_ratio():
    records = _records(result_q=[1.0, 0.0], result_d=[0.0, 1.0], best_q=[0.2, -0.4], best_d=[0.3, 0.2],
                       root_q=[0.1, 0.0], root_d=[0.5, 0.5])
    z, q = z_wdl(records), search_wdl(records, QSource.BEST)
    for ratio in (0.0, 0.25, 1.0):
        assert np.allclose(value_target(records, ratio), ratio * q + (1 - ratio) * z)
    assert np.allclose(value_target(records, 0.5, QSource.ROOT), 0.5 * search_wdl(records, "root") + 0.5 * z)
    with pytest.raises(ValueError):
        value_target(records, 1.5)


def test_policy_target_masks_each_eras_illegal_marker():
    probs = np.full((1, 1858), -1.0, dtype=np.float32)
    probs[0, :3] = [0.5, 0.5, 0.0]
    probs[0, 3] = np.nan
    target, legal = policy_target(_records(probabilities=probs))
    assert legal[0, :3].all() and not legal[0, 3:].any()
    assert target[0, :2].tolist() == [0.5, 0.5] and target[0, 2:].sum() == 0 and not np.isnan(target).any()


def test_moves_left_known_only_from_v5(lc0_data):
    v4 = read_chunk(str(sorted((lc0_data / "v4-maia1100").glob("*.gz"))[0])).records
    v6 = read_chunk(str(sorted((lc0_data / "v6-fmt1-maia1900").glob("*.gz"))[0])).records
    assert not moves_left(v4)[1].any()
    plies, known = moves_left(v6)
    assert known.all() and np.array_equal(np.diff(plies), -np.ones(len(plies) - 1))
