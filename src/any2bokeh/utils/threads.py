"""Scoping PyTorch's CPU threads to one run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run with `count` intra-op CPU threads (None: PyTorch's choice), then restore the previous count."""
    if count is not None and count < 1:
        raise ValueError(f"cpu_threads must be >= 1 or null, got {count}")
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
