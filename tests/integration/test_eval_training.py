"""test=true in train.py: RM and LPIPS beside PSNR and SSIM when LPIPS's backbone is configured."""

import logging

import pytest
import torch

from any2bokeh.metrics import training_metrics
from any2bokeh.metrics.video_metrics import TEST_NOTICE
from any2bokeh.training import train
from tests.helpers.metric_networks import squeezenet_file
from tests.helpers.train_configs import tiny_config

# one optimiser step, validated, then tested on one 2-frame clip
ONE_STEP = ["test=true", "trainer.max_steps=1", "trainer.val_check_interval=1"]


@pytest.mark.slow
def test_test_reports_rm_and_lpips_when_lpips_weights_are_configured(tmp_path, caplog):
    backbone = squeezenet_file(tmp_path)
    config = tiny_config(tmp_path / "run", *ONE_STEP, f"module.metric_weights.lpips_backbone={backbone}")
    with caplog.at_level(logging.INFO):
        metrics, objects = train(config)
    assert {"test/psnr", "test/ssim", "test/rm", "test/lpips"} <= metrics.keys()
    assert "val/lpips" not in metrics and "val/rm" not in metrics
    assert 0 < metrics["test/lpips"] < 1 and 0 < metrics["test/rm"] < 1
    assert TEST_NOTICE not in caplog.text
    # the metric networks are not in the checkpoints: the run's checkpoint loads into a module without them
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert not [key for key in checkpoint["state_dict"] if key.startswith("metrics.")]


@pytest.mark.slow
def test_test_reports_psnr_and_ssim_alone_with_a_notice_without_weights(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        metrics, _ = train(tiny_config(tmp_path, *ONE_STEP))
    assert {name for name in metrics if name.startswith("test/")} == {"test/loss", "test/psnr", "test/ssim"}
    assert caplog.text.count(TEST_NOTICE) == 1


def test_unknown_metric_weights_are_named():
    with pytest.raises(KeyError, match="raft"):
        training_metrics({"raft": "/weights/raft.pth"})
