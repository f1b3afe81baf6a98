"""The metric networks: loaded from local files in the published formats, never downloaded."""

import pytest
import torch
import torchvision
from torchmetrics.image import LearnedPerceptualImagePatchSimilarity
from torchvision.models._api import WeightsEnum

from any2bokeh.metrics import LPIPS, DisFlow, InceptionI3d, RaftFlow, functional, load_i3d, load_raft, no_downloads
from any2bokeh.metrics.i3d import TorchScriptI3D
from any2bokeh.metrics.lpips import lpips_network
from any2bokeh.metrics.weights import DownloadBlockedError
from tests.metric_networks import i3d_file, one_cpu_thread, raft_file, random_i3d, squeezenet_file  # noqa: F401


def test_no_downloads_blocks_torchvision_and_torch_hub():
    with no_downloads():
        with pytest.raises(DownloadBlockedError, match="squeezenet1_1-b8a52dc0.pth"):
            torchvision.models.squeezenet1_1(weights="DEFAULT")
        with pytest.raises(DownloadBlockedError, match="example.org"):
            torch.hub.load_state_dict_from_url("https://example.org/weights.pth")


def test_lpips_equals_torchmetrics_lpips_with_the_same_backbone(tmp_path, monkeypatch):
    backbone = squeezenet_file(tmp_path)
    # torchmetrics' own metric, its ImageNet download replaced by the same random backbone file
    state = torch.load(backbone, weights_only=True)
    monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda self, *args, **kwargs: state)
    reference = LearnedPerceptualImagePatchSimilarity(net_type="squeeze", normalize=True)
    monkeypatch.undo()
    generator = torch.Generator().manual_seed(0)
    pred, gt = torch.rand(2, 3, 3, 64, 64, generator=generator), torch.rand(2, 3, 3, 64, 64, generator=generator)
    ours = LPIPS(backbone)
    ours.update(pred, gt)
    reference.update(pred.flatten(0, 1), gt.flatten(0, 1))
    assert ours.compute().item() == pytest.approx(reference.compute().item(), rel=1e-5)
    # a different backbone gives a different score: the file is really used
    other = LPIPS(squeezenet_file(tmp_path / "..", seed=1))
    other.update(pred, gt)
    assert other.compute().item() != pytest.approx(ours.compute().item(), rel=1e-3)


def test_lpips_never_asks_torchvision_for_weights(tmp_path, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise AssertionError(f"asked torchvision for {self}")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", refuse)
    assert lpips_network(squeezenet_file(tmp_path)) is not None


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
    texture = torch.nn.functional.interpolate(torch.rand(1, 3, 24, 24, generator=generator), size=(96, 96), mode="bicubic")
    texture = texture.clamp(0, 1)
    shifted = torch.roll(texture, shifts=2, dims=-1)  # the content moves 2 pixels right
    flow = DisFlow()(texture, shifted)
    assert flow.shape == (1, 2, 96, 96)
    inside = flow[0, :, 16:-16, 16:-16]
    assert inside[0].median().item() == pytest.approx(2.0, abs=0.25)
    assert inside[1].median().item() == pytest.approx(0.0, abs=0.25)


def test_i3d_state_dict_uses_the_pytorch_port_names(tmp_path):
    keys = InceptionI3d().state_dict().keys()
    for key in ("Conv3d_1a_7x7.conv3d.weight", "Conv3d_2c_3x3.bn.running_var", "Mixed_3b.b1b.conv3d.weight",
                "Mixed_5c.b3b.bn.bias", "logits.conv3d.weight", "logits.conv3d.bias"):
        assert key in keys
    assert "Conv3d_1a_7x7.conv3d.bias" not in keys and "logits.bn.weight" not in keys
    loaded = load_i3d(i3d_file(tmp_path))
    reference = random_i3d()
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), reference.state_dict().values()))


@pytest.mark.slow
@pytest.mark.parametrize("frames", [10, 16])
def test_i3d_shapes_of_the_metrics_clips(frames):
    network = random_i3d()
    shapes = []
    network.Mixed_5c.register_forward_hook(lambda module, args, output: shapes.append(tuple(output.shape)))
    clips = functional.detector_input(torch.rand(1, frames, 3, 64, 80))
    with torch.no_grad():
        features = network.features(clips)
        logits = network.class_logits(clips)
    # the last block is 2 x 7 x 7: the released network's (2, 7, 7) average pooling covers it exactly once
    assert shapes[0] == (1, 1024, 2, 7, 7)
    assert features.shape == (1, 1024) and logits.shape == (1, 400)
    assert torch.allclose(logits, network.logits.conv3d(features[:, :, None, None, None]).flatten(1), atol=1e-5)


class FakeDetector(torch.nn.Module):
    """Has the call signature of StyleGAN-V's TorchScript I3D detector."""

    def forward(self, x: torch.Tensor, rescale: bool, resize: bool, return_features: bool) -> torch.Tensor:
        if rescale or resize or not return_features:
            raise ValueError("called with the wrong flags")
        # [N, 3, L, H, W] -> [N, 400]
        return x.mean(dim=(2, 3, 4)).repeat(1, 134)[:, :400]


def test_torchscript_detector_gives_logits_only(tmp_path):
    path = tmp_path / "i3d_torchscript.pt"
    torch.jit.script(FakeDetector()).save(str(path))
    detector = load_i3d(path)
    assert isinstance(detector, TorchScriptI3D)
    clips = torch.rand(2, 3, 16, 8, 8) * 2 - 1
    assert torch.allclose(detector.class_logits(clips)[:, :3], clips.mean(dim=(2, 3, 4)))
    with pytest.raises(ValueError, match="rgb_imagenet.pt"):
        detector.features(clips)
