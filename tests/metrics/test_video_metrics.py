"""The torchmetrics classes: accumulation over updates, perfect predictions, states kept out of checkpoints."""

import pytest
import torch
from torch import nn

from any2bokeh.metrics import FVD, LPIPS, PSNR, RM, SSIM, VEPI, VFID, DisFlow, FlowDifference, functional
from tests.metric_networks import one_cpu_thread, random_i3d, squeezenet_file  # noqa: F401 (fixture)


def videos(batch, frames=3, size=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    # smooth random videos (upsampled noise), so that flow and edges are meaningful
    coarse = torch.rand(batch, frames, 3, size // 4, size // 4, generator=generator)
    return nn.functional.interpolate(coarse.flatten(0, 1), size=(size, size), mode="bilinear").view(batch, frames, 3, size, size)


def masks_like(video):
    masks = torch.zeros(*video.shape[:2], 1, *video.shape[-2:])
    masks[..., 8:24, 8:24] = 1
    return masks


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    return squeezenet_file(tmp_path_factory.mktemp("lpips"))


@pytest.fixture(scope="module")
def i3d():
    return random_i3d()


def metric_cases(backbone, i3d):
    """(metric, number of frames, whether update takes masks)"""
    return {
        "psnr": (PSNR(), 3, False),
        "ssim": (SSIM(), 3, False),
        "rm": (RM(), 3, False),
        "fd_dis": (FlowDifference(DisFlow()), 3, False),
        "lpips": (LPIPS(backbone), 3, False),
        "vepi": (VEPI(), 3, True),
        "vfid": (VFID(i3d, size=32), 10, False),
    }


def update(metric, pred, gt, with_masks):
    if with_masks:  # VEPI compares the all-in-focus input with the render
        metric.update(gt, pred, masks_like(gt))
    else:
        metric.update(pred, gt)


@pytest.mark.slow
def test_two_updates_equal_one_update_on_the_concatenation(backbone, i3d):
    for name, (metric, frames, with_masks) in metric_cases(backbone, i3d).items():
        pred, gt = videos(4, frames, seed=1), videos(4, frames, seed=2)
        update(metric, pred[:2], gt[:2], with_masks)
        update(metric, pred[2:], gt[2:], with_masks)
        twice = metric.compute()
        metric.reset()
        update(metric, pred, gt, with_masks)
        once = metric.compute()
        assert torch.isfinite(once), name
        assert twice.item() == pytest.approx(once.item(), rel=1e-5, abs=1e-6), name
        # and the accumulated value is the functional one on all videos
        if name in ("rm", "vepi", "lpips", "vfid"):
            direct = {
                "rm": lambda: functional.rm(pred, gt),
                "vepi": lambda: functional.vepi(gt, pred, masks_like(gt)),
                "lpips": lambda: functional.lpips(pred, gt, metric.network),
                "vfid": lambda: functional.vfid(pred, gt, i3d, size=32),
            }[name]()
            assert once.item() == pytest.approx(direct.item(), rel=1e-5), name


@pytest.mark.slow
def test_perfect_predictions_score_zero_or_one(backbone, i3d):
    expected = {"psnr": float("inf"), "ssim": 1.0, "vepi": 1.0}
    for name, (metric, frames, with_masks) in metric_cases(backbone, i3d).items():
        video = videos(3, frames, seed=3)
        update(metric, video, video, with_masks)
        assert metric.compute().item() == pytest.approx(expected.get(name, 0.0), abs=1e-6), name
        # a different prediction scores worse
        metric.reset()
        update(metric, videos(3, frames, seed=4) * 0.5, video, with_masks)
        worse = metric.compute().item()
        assert (worse < expected[name] - 0.05) if name in expected else worse > 1e-3, name


def test_fvd_uses_sixteen_frame_clips_of_logits(i3d):
    metric = FVD(i3d, size=32)
    pred, gt = videos(2, 16, seed=5), videos(2, 16, seed=6)
    metric.update(gt, gt)
    assert metric.real_sum.shape == (400,) and int(metric.real_count) == 2
    assert abs(metric.compute().item()) < 1e-6
    metric.reset()
    metric.update(pred * 0.5, gt)
    assert metric.compute().item() == pytest.approx(functional.fvd(pred * 0.5, gt, i3d, size=32).item(), rel=1e-5)
    assert metric.compute().item() > 1
    with pytest.raises(ValueError, match="at least 16"):
        metric.update(pred[:, :10], gt[:, :10])


def test_frechet_metrics_need_two_clips_per_side(i3d):
    metric = VFID(i3d, size=32)
    metric.update(videos(1, 10), videos(1, 10, seed=1))
    with pytest.raises(ValueError, match="at least 2 clips"):
        metric.compute()


def test_vepi_counts_videos_without_a_subject():
    metric = VEPI()
    gt, pred = videos(2, 2), videos(2, 2, seed=1)
    masks = masks_like(gt)
    masks[1] = 0
    metric.update(gt, pred, masks)
    assert int(metric.skipped) == 1 and int(metric.count) == 1
    assert metric.compute().item() == pytest.approx(functional.vepi(gt[:1], pred[:1], masks[:1]).item(), rel=1e-6)


def test_flow_difference_is_named_after_its_flow():
    assert FlowDifference(DisFlow()).name == "fd_dis"
    assert FlowDifference(lambda a, b: torch.zeros(len(a), 2, *a.shape[-2:])).name == "fd_custom"


def test_networks_stay_out_of_the_state_dict_and_move_with_the_metric(backbone):
    holder = nn.Module()
    holder.lpips = LPIPS(backbone)
    assert not [key for key in holder.state_dict() if "net" in key]
    # a checkpoint of a module without the metric loads into one with it, strictly
    holder.load_state_dict(nn.Module().state_dict(), strict=True)
    holder.half()
    assert next(holder.lpips.network.parameters()).dtype == torch.float16
    assert not any(p.requires_grad for p in holder.lpips.network.parameters())
    assert not list(holder.parameters())
