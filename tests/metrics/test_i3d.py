"""The I3D detector of VFID and FVD: the PyTorch port's state dict, the metrics' clip shapes, and StyleGAN-V's
TorchScript detector."""

import pytest
import torch

from any2bokeh.metrics import InceptionI3d, functional, load_i3d
from any2bokeh.metrics.i3d import TorchScriptI3D
from tests.helpers.metric_networks import i3d_file, random_i3d


def test_i3d_state_dict_uses_the_pytorch_port_names(tmp_path):
    keys = InceptionI3d().state_dict().keys()
    for key in (
        "Conv3d_1a_7x7.conv3d.weight",
        "Conv3d_2c_3x3.bn.running_var",
        "Mixed_3b.b1b.conv3d.weight",
        "Mixed_5c.b3b.bn.bias",
        "logits.conv3d.weight",
        "logits.conv3d.bias",
    ):
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
