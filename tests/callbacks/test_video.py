import av
import numpy as np
import pytest
import torch

from any2bokeh.callbacks import disparity_panel, write_mp4
from any2bokeh.callbacks.video import REGION_COLOURS, sample_panel


def test_disparity_panel_tints_each_mpi_region():
    # focus at d_f = 1: the left half lies in the focal plane (region 0), the right half far from it (region N-1)
    disparity = torch.ones(1, 1, 4, 8)
    disparity[..., 4:] = 0.0
    panel = disparity_panel(disparity, torch.tensor([1.0]), n_planes=4, tint=1.0)
    assert torch.allclose(panel[0, :, 0, 0], REGION_COLOURS[0])
    assert torch.allclose(panel[0, :, 0, 7], REGION_COLOURS[3])


def test_sample_panel_lays_out_four_videos_side_by_side():
    frames, size = 3, 8
    batch = {
        "aif": -torch.ones(1, frames, 3, size, size),
        "bokeh": torch.ones(1, frames, 3, size, size),
        "disparity": torch.rand(1, frames, 1, size, size),
        "disp_focus": torch.full((1, frames), 0.5),
    }
    prediction = torch.zeros(1, frames, 3, size, size)
    panel = sample_panel(batch, prediction, 0)
    assert panel.shape == (frames, size, 4 * size, 3) and panel.dtype == np.uint8
    assert (panel[:, :, :size] == 0).all()  # all-in-focus at -1
    assert (panel[:, :, 2 * size : 3 * size] == 128).all()  # prediction at 0
    assert (panel[:, :, 3 * size :] == 255).all()  # ground truth at 1


def test_write_mp4_writes_a_decodable_video_with_odd_sizes(tmp_path):
    frames = np.full((4, 15, 33, 3), 200, dtype=np.uint8)
    path = write_mp4(tmp_path / "video.mp4", frames, fps=4)
    with av.open(str(path)) as container:
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(decoded) == 4 and decoded[0].shape == (16, 34, 3)
    assert abs(int(decoded[0][5, 5, 0]) - 200) <= 3


def test_write_mp4_rejects_float_frames(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_mp4(tmp_path / "video.mp4", np.zeros((2, 8, 8, 3), dtype=np.float32))
