"""The metric states synchronise across processes: 2 CPU processes (gloo) give the one-process values."""

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from any2bokeh.metrics import FVD, PSNR, RM, SSIM, VEPI, DisFlow, FlowDifference


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def sample_videos():
    """6 videos of 16 frames at 32x32 and their subject masks; each of 2 processes gets 3."""
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(2, 6, 16, 3, 8, 8, generator=generator)
    # [2, 6, 16, 3, 8, 8] -> [2 * 6 * 16, 3, 8, 8] -> [2, 6, 16, 3, 32, 32]
    pred, gt = torch.nn.functional.interpolate(coarse.flatten(0, 2), size=(32, 32), mode="bilinear").view(2, 6, 16, 3, 32, 32)
    pred = pred * torch.linspace(0.5, 1, 6).view(6, 1, 1, 1, 1)  # each video its own error
    masks = torch.zeros(6, 16, 1, 32, 32)
    masks[..., 8:24, 8:24] = 1
    return pred, gt, masks


def evaluate(pred, gt, masks, i3d_path):
    metrics = {"psnr": PSNR(), "ssim": SSIM(), "rm": RM(), "fd_dis": FlowDifference(DisFlow()), "vepi": VEPI(),
               "fvd": FVD(i3d_path, size=32)}
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
    from tests.metric_networks import i3d_file

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
