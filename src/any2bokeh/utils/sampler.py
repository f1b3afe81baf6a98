"""Sharding a list of jobs over processes without padding (prediction and evaluation runs)."""

from __future__ import annotations

from torch.utils.data import Sampler


class ShardSampler(Sampler[int]):
    """Indices rank, rank + world_size, ... of `size`: every index goes to exactly one process, none twice."""

    def __init__(self, size: int, rank: int = 0, world_size: int = 1) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.size, self.rank, self.world_size = size, rank, world_size

    def __iter__(self):
        return iter(range(self.rank, self.size, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.size, self.world_size))
