"""The optical flow of the FD metric: RAFT from a local checkpoint, and DIS."""

import pytest
import torch

from any2bokeh.metrics import DisFlow, RaftFlow, functional, load_raft
from tests.helpers.metric_networks import raft_file


@pytest.mark.slow
def test_raft_flow_from_a_local_checkpoint(tmp_path):
    network = load_raft(raft_file(tmp_path))
    flow = RaftFlow(network, num_flow_updates=2, batch_size=1)
    generator = torch.Generator().manual_seed(0)
    first, second = torch.rand(2, 3, 128, 136, generator=generator), torch.rand(2, 3, 128, 136, generator=generator)
    estimate = flow(first, second)
    assert estimate.shape == (2, 2, 128, 136)
    # torchvision's RAFT takes frames in [-1, 1]
    direct = network(first * 2 - 1, second * 2 - 1, num_flow_updates=2)[-1]
    assert torch.allclose(estimate, direct, atol=1e-4)
    # sizes off the 1/8 grid are padded, and the flow cropped back
    assert flow(first[..., :125, :133], second[..., :125, :133]).shape == (2, 2, 125, 133)
    video = torch.stack([first, second], 1)  # [2, 2, 3, H, W]
    assert functional.flow_difference(video, video, flow).item() == 0
    with pytest.raises(ValueError, match="at least 128x128"):
        flow(first[..., :64, :64], second[..., :64, :64])


def test_dis_flow_follows_a_shift():
    generator = torch.Generator().manual_seed(0)
    texture = torch.nn.functional.interpolate(
        torch.rand(1, 3, 24, 24, generator=generator), size=(96, 96), mode="bicubic"
    )
    texture = texture.clamp(0, 1)
    shifted = torch.roll(texture, shifts=2, dims=-1)  # the content moves 2 pixels right
    flow = DisFlow()(texture, shifted)
    assert flow.shape == (1, 2, 96, 96)
    inside = flow[0, :, 16:-16, 16:-16]
    assert inside[0].median().item() == pytest.approx(2.0, abs=0.25)
    assert inside[1].median().item() == pytest.approx(0.0, abs=0.25)
