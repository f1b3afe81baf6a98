"""ShardSampler: each process's share of the videos, with nothing padded."""

import pytest

from any2bokeh.utils.sampler import ShardSampler


@pytest.mark.parametrize("size, world", [(5, 2), (3, 4), (8, 3), (1, 1)])
def test_shards_cover_every_video_once_without_padding(size, world):
    shards = [list(ShardSampler(size, rank, world)) for rank in range(world)]
    assert sorted(i for shard in shards for i in shard) == list(range(size))
    assert [len(ShardSampler(size, rank, world)) for rank in range(world)] == [len(shard) for shard in shards]
