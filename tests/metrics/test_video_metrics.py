"""The torchmetrics classes: accumulation over updates, perfect predictions, states kept out of checkpoints and
synchronised across processes."""

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from any2bokeh.metrics import FVD, LPIPS, PSNR, RM, SSIM, VEPI, VFID, DisFlow, FlowDifference, functional
from tests.helpers.metric_networks import i3d_file, random_i3d, squeezenet_file


def videos(batch, frames=3, size=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    # smooth random videos (upsampled noise), so that flow and edges are meaningful
    coarse = torch.rand(batch, frames, 3, size // 4, size // 4, generator=generator)
    return nn.functional.interpolate(coarse.flatten(0, 1), size=(size, size), mode="bilinear").view(
        batch, frames, 3, size, size
    )


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


# ---- the states synchronise across processes: 2 CPU processes (gloo) give the one-process values ----


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def sample_videos():
    """6 videos of 16 frames at 32x32 and their subject masks; each of 2 processes gets 3."""
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(2, 6, 16, 3, 8, 8, generator=generator)
    # [2, 6, 16, 3, 8, 8] -> [2 * 6 * 16, 3, 8, 8] -> [2, 6, 16, 3, 32, 32]
    pred, gt = torch.nn.functional.interpolate(coarse.flatten(0, 2), size=(32, 32), mode="bilinear").view(
        2, 6, 16, 3, 32, 32
    )
    pred = pred * torch.linspace(0.5, 1, 6).view(6, 1, 1, 1, 1)  # each video its own error
    masks = torch.zeros(6, 16, 1, 32, 32)
    masks[..., 8:24, 8:24] = 1
    return pred, gt, masks


def evaluate(pred, gt, masks, i3d_path):
    metrics = {
        "psnr": PSNR(),
        "ssim": SSIM(),
        "rm": RM(),
        "fd_dis": FlowDifference(DisFlow()),
        "vepi": VEPI(),
        "fvd": FVD(i3d_path, size=32),
    }
    for name, metric in metrics.items():
        metric.update(gt, pred, masks) if name == "vepi" else metric.update(pred, gt)
    return {name: metric.compute().item() for name, metric in metrics.items()}


def worker(rank: int, port: int, i3d_path: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        pred, gt, masks = sample_videos()
        part = slice(3 * rank, 3 * rank + 3)
        values = evaluate(pred[part], gt[part], masks[part], i3d_path)
        with open(f"{out}.{rank}", "w") as file:
            json.dump(values, file)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_give_the_one_process_values(tmp_path):
    i3d_path = str(i3d_file(tmp_path))
    out = str(tmp_path / "values")
    mp.spawn(worker, args=(free_port(), i3d_path, out), nprocs=2, join=True)
    torch.set_num_threads(1)
    single = evaluate(*sample_videos(), i3d_path)
    for rank in range(2):
        with open(f"{out}.{rank}") as file:
            values = json.load(file)
        assert values.keys() == single.keys()
        for name, value in values.items():
            assert value == pytest.approx(single[name], rel=1e-5), (rank, name)
    # each process alone saw half the videos: its own values differ
    assert evaluate(*(x[:3] for x in sample_videos()), i3d_path)["rm"] != pytest.approx(single["rm"], rel=1e-3)
