"""The real SVD img2vid UNet config, wrapped and run under FakeTensorMode: no weights, no memory, no time.

Running there proves the hot path has no `.item()` or data-dependent Python branches.
"""

import pytest
import torch
from diffusers import UNetSpatioTemporalConditionModel
from torch._subclasses.fake_tensor import FakeTensorMode

from any2bokeh.models import BokehUNet

SVD_UNET_PARAMETERS = 1_524_623_082


@pytest.fixture(scope="module")
def fake_mode():
    return FakeTensorMode()


@pytest.fixture(scope="module")
def wrapped(fake_mode):
    with fake_mode:
        unet = UNetSpatioTemporalConditionModel()
        original = {name: (tuple(p.shape), p.dtype) for name, p in unet.named_parameters()}
        return BokehUNet(unet), original


def test_wraps_with_every_original_parameter_kept(wrapped):
    model, original = wrapped
    assert sum(numel for numel in (torch.Size(shape).numel() for shape, _ in original.values())) == (
        SVD_UNET_PARAMETERS
    )
    kept = {name: (tuple(p.shape), p.dtype) for name, p in model.unet.named_parameters()}
    assert kept == original
    assert sum(p.numel() for p in model.unet.parameters()) == SVD_UNET_PARAMETERS
    new = sum(p.numel() for _, p in model.new_parameters())
    assert sum(p.numel() for p in model.parameters()) == SVD_UNET_PARAMETERS + new
    # SVD has 16 spatial transformer blocks: 3 x 2 down, 1 mid, 3 x 3 up
    assert len(model.mpi_blocks) == 16
    # down block i -> level i, mid -> N - 1, up block i -> N - 1 - i
    levels = {path.split(".attentions")[0]: mpi.level for path, mpi in zip(model.mpi_block_paths, model.mpi_blocks)}
    assert levels == {
        "unet.down_blocks.0": 0,
        "unet.down_blocks.1": 1,
        "unet.down_blocks.2": 2,
        "unet.mid_block": 3,
        "unet.up_blocks.1": 2,
        "unet.up_blocks.2": 1,
        "unet.up_blocks.3": 0,
    }
    temporal = [name for name, _ in model.temporal_parameters()]
    assert temporal and not any(".transformer_blocks." in name or "spatial_res_block" in name for name in temporal)


@pytest.mark.parametrize("height, width", [(16, 16), (9, 13)])
def test_forward_runs_under_fake_tensors(fake_mode, wrapped, height, width):
    model, _ = wrapped
    batch, frames = 1, 2
    with fake_mode, torch.no_grad():
        output = model(
            torch.randn(batch, frames, 8, height, width),
            1.0,
            torch.randn(batch, frames, 1024),
            torch.tensor([[7.0, 127.0, 0.0]]),
            k=torch.tensor([16.0]),
            mpi_regions=torch.randint(0, 4, (batch, frames, 8 * height, 8 * width)),
            cond_latents=torch.randn(batch, frames, 4, height, width),
        )
    assert output.shape == (batch, frames, 4, height, width)
