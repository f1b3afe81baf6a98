"""LPIPS: torchmetrics' LPIPS on the same squeezenet backbone, loaded from a local file."""

import pytest
import torch
from torchmetrics.image import LearnedPerceptualImagePatchSimilarity
from torchvision.models._api import WeightsEnum

from any2bokeh.metrics import LPIPS
from any2bokeh.metrics.lpips import lpips_network
from tests.helpers.metric_networks import squeezenet_file


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
