"""Weight files of the metric networks: read from local files only, named when missing or of another network,
never downloaded."""

import pytest
import torch
import torchvision

from any2bokeh.metrics import LPIPS, load_i3d, load_raft, no_downloads
from any2bokeh.metrics.weights import DownloadBlockedError
from tests.helpers.metric_networks import squeezenet_file


def test_no_downloads_blocks_torchvision_and_torch_hub():
    with no_downloads():
        with pytest.raises(DownloadBlockedError, match="squeezenet1_1-b8a52dc0.pth"):
            torchvision.models.squeezenet1_1(weights="DEFAULT")
        with pytest.raises(DownloadBlockedError, match="example.org"):
            torch.hub.load_state_dict_from_url("https://example.org/weights.pth")


def test_missing_weights_name_the_file_and_where_it_is_published(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"squeezenet1_1-b8a52dc0\.pth, published at https://download"):
        LPIPS(None)
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path}/nothing.pth.*raft_large_C_T_SKHT_V2-ff5fadd5\.pth"):
        load_raft(tmp_path / "nothing.pth")
    with pytest.raises(FileNotFoundError, match=r"rgb_imagenet\.pt.*i3d_torchscript\.pt.*piergiaj"):
        load_i3d(tmp_path / "i3d.pt")


def test_a_weight_file_of_another_network_is_refused(tmp_path):
    squeezenet = squeezenet_file(tmp_path)
    with pytest.raises(KeyError, match="does not fit FD's RAFT-large"):
        load_raft(squeezenet)
    with pytest.raises(KeyError, match="does not fit VFID-I/FVD's I3D"):
        load_i3d(squeezenet)
