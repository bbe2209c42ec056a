"""Pure placement functions: every row has exactly one owner, and updates are cut along those lines."""
import numpy as np
import pytest

from deepdist.sharding import WHOLE_BELOW_BYTES, owned, plan, split_by_owner, split_rows


@pytest.mark.parametrize("n_rows, n_shards", [(10, 3), (3, 3), (2, 5), (100_000, 2), (1, 1)])
def test_split_rows_covers_every_row_once(n_rows, n_shards):
    ranges = split_rows(n_rows, n_shards)
    covered = np.zeros(n_rows, int)
    for _, lo, hi in ranges:
        covered[lo:hi] += 1
    assert covered.tolist() == [1] * n_rows
    sizes = [hi - lo for _, lo, hi in ranges]
    assert max(sizes) - min(sizes) <= 1


def test_plan_cuts_large_and_deals_small_parameters_whole():
    arrays = {"big": np.zeros((10_000, 10)), "b1": np.zeros(10), "b2": np.zeros(10), "few": np.zeros((1, 10_000))}
    specs = plan(arrays, 2)
    assert specs["big"].ranges == ((0, 0, 5000), (1, 5000, 10_000))
    assert specs["b1"].ranges == ((0, 0, 10),) and specs["b2"].ranges == ((1, 0, 10),)
    assert specs["few"].ranges == ((0, 0, 1),)  # fewer rows than shards: whole
    assert arrays["b1"].nbytes < WHOLE_BELOW_BYTES
    assert owned(specs, 1) == {"big": (5000, 10_000), "b2": (0, 10)}


@pytest.mark.parametrize("rows", [
    np.array([0, 1, 4999, 5000, 9999]),            # sorted: slices
    np.array([0, 0, 4999, 4999, 5000, 5000]),      # sorted with repeats, on both sides of the boundary
    np.array([5000, 9999]),                        # sorted, all on the second shard
    np.array([4, 0, 7000, 5000]),                  # grouped by owner but not sorted: slices
    np.array([9999, 0, 5000, 3, 5000, 3, 7000]),   # unsorted with repeats: index arrays
    np.array([6000, 6001]),                        # one owner only
    np.array([], np.int64),
])
def test_split_by_owner_partitions_rows_by_range(rows):
    spec = plan({"w": np.zeros((10_000, 10))}, 2)["w"]
    seen = []
    for shard, selector in split_by_owner(spec, rows):
        part = rows[selector]
        assert len(part) > 0
        _, lo, hi = spec.ranges[shard]
        assert np.all((part >= lo) & (part < hi))
        seen.extend(np.arange(len(rows))[selector].tolist())
    assert sorted(seen) == list(range(len(rows)))
    if len(rows) and np.all(np.diff(np.searchsorted(spec.bounds, rows, side="right")) >= 0):
        assert all(isinstance(selector, slice) for _, selector in split_by_owner(spec, rows))
