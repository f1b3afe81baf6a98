"""Random training batches in the DataModule's format, for the stage modules' tests."""

import torch


def batch(frames=2, size=32, seed=0):
    """One clip: aif and bokeh [1, T, 3, H, W] in [-1, 1], disparity [1, T, 1, H, W], focus 0.5 and K 8."""
    generator = torch.Generator().manual_seed(seed)
    shape = (1, frames)
    return {
        "aif": torch.rand(*shape, 3, size, size, generator=generator) * 2 - 1,
        "bokeh": torch.rand(*shape, 3, size, size, generator=generator) * 2 - 1,
        "disparity": torch.rand(*shape, 1, size, size, generator=generator),
        "disp_focus": torch.full(shape, 0.5),
        "k": torch.full(shape, 8.0),
    }


def random_batch(batch_size=1, frames=2, size=32, seed=0):
    """Clips as `batch` gives, batch_size of them, with a random focus in [0.1, 0.9] per frame."""
    generator = torch.Generator().manual_seed(seed)
    shape = (batch_size, frames)
    return {
        "aif": torch.rand(*shape, 3, size, size, generator=generator) * 2 - 1,
        "bokeh": torch.rand(*shape, 3, size, size, generator=generator) * 2 - 1,
        "disparity": torch.rand(*shape, 1, size, size, generator=generator),
        "disp_focus": torch.rand(shape, generator=generator).clamp(0.1, 0.9),
        "k": torch.full(shape, 8.0),
    }
