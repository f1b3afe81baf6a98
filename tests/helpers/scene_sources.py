"""Foreground and background sources for the synthetic data's tests: procedural ones, and flat ones whose pixels
tell which clip and frame they show."""

import torch

from any2bokeh.data.procedural import ProceduralBackgrounds, ProceduralForegrounds


def procedural(height=48, width=48):
    return ProceduralForegrounds(num_clips=8, size=height, num_frames=20, seed=1), ProceduralBackgrounds(
        num_images=4, size=(height, width), seed=1
    )


class CodedForegrounds:
    """Opaque 12x8 boxes whose colour encodes the clip and the frame: rgb = (index / 8, frame / 40, 0.5)."""

    def __init__(self, n=4, frames=30):
        self.n, self.frames = n, frames

    def __len__(self):
        return self.n

    def num_frames(self, index):
        return self.frames

    def load(self, index, frame_ids):
        rgb = torch.stack([torch.tensor([index / 8, f / 40, 0.5]).view(3, 1, 1).expand(3, 12, 8) for f in frame_ids])
        return rgb, torch.ones(len(frame_ids), 1, 12, 8)


class BlackBackgrounds:
    def __len__(self):
        return 1

    def load(self, index):
        return torch.zeros(3, 20, 20)
