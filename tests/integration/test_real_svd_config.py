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
    assert sorted({mpi.level for mpi in model.mpi_blocks}) == [0, 1, 2, 3]


def test_forward_runs_under_fake_tensors(fake_mode, wrapped):
    model, _ = wrapped
    batch, frames, height, width = 1, 2, 16, 16
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
