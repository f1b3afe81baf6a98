"""Counting forward calls of modules: a checkpointed block runs twice per training step, once more in backward.

The recomputation in backward calls `forward` again but does not run the module's forward hooks, so the count
wraps `forward` itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def forward_calls(**modules: nn.Module) -> Iterator[dict[str, int]]:
    """Count the `forward` calls of each named module (recomputations included) within the block."""
    counts = dict.fromkeys(modules, 0)

    def counted(name, forward):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return forward(*args, **kwargs)

        return wrapper

    for name, module in modules.items():
        module.forward = counted(name, module.forward)
    try:
        yield counts
    finally:
        for module in modules.values():
            del module.forward  # back to the class's method
