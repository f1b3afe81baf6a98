"""One home for randomness: keyed generators and the draw helpers that every sampler uses.

A synthetic sample must be a pure function of its keys (the data seed, the split, the index, ...),
the same in every worker, process and machine. So each stream of random numbers has its own CPU
`torch.Generator`, seeded by a stable hash of its keys (blake2b: unlike Python's salted `hash()`,
it is the same in every interpreter), and every draw goes through that generator.

The draw helpers, one contract each:

    uniform(g, low, high)                    a float in [low, high)
    uniforms(g, low, high, shape, dtype)     a tensor of `shape`, each entry in [low, high)
    randint(g, low, high)                    an int in [low, high): high is exclusive, as in range()
    bernoulli(g, p)                          True with probability p
    choice(g, weights)                       an index, drawn with probability proportional to weights
"""

from __future__ import annotations

import hashlib
import json
import operator
from collections.abc import Sequence

import torch


def _key(key) -> int | str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        raise TypeError(f"generator keys are ints or strings, got the bool {key!r}")
    try:
        return operator.index(key)
    except TypeError:
        raise TypeError(f"generator keys are ints or strings, got {key!r} ({type(key).__name__})") from None


def keyed_generator(*keys: int | str) -> torch.Generator:
    """A CPU generator seeded by a stable hash of `keys`: equal keys give equal streams, any other
    keys (other values, another order, 1 instead of "1") an unrelated one."""
    if not keys:
        raise ValueError("keyed_generator needs at least one key")
    # JSON keeps ints and strings apart and escapes separators, so distinct key tuples never collide.
    text = json.dumps([_key(key) for key in keys])
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))


def uniform(generator: torch.Generator, low: float, high: float) -> float:
    """A float in [low, high) (drawn in float64)."""
    return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))


def uniforms(
    generator: torch.Generator, low: float, high: float, shape: Sequence[int], dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """A tensor of `shape` and `dtype`, each entry uniform in [low, high)."""
    return low + (high - low) * torch.rand(tuple(shape), generator=generator, dtype=dtype)


def randint(generator: torch.Generator, low: int, high: int) -> int:
    """An int in [low, high): high is exclusive, as in range() and torch.randint."""
    if high <= low:
        raise ValueError(f"randint needs low < high, got [{low}, {high})")
    return int(torch.randint(low, high, (), generator=generator))


def bernoulli(generator: torch.Generator, p: float) -> bool:
    """True with probability p."""
    return float(torch.rand((), generator=generator, dtype=torch.float64)) < p


def choice(generator: torch.Generator, weights: Sequence[float]) -> int:
    """An index into `weights`, drawn with probability proportional to its weight (weights >= 0, sum > 0)."""
    w = torch.as_tensor(weights, dtype=torch.float64)
    return int(torch.multinomial(w, 1, generator=generator))
