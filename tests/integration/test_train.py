"""train(cfg) end to end: resuming, testing, DDP, multirun, wandb, failure modes."""

import os
import subprocess
import sys

import pytest
import torch
import wandb
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import WandbLogger
from omegaconf import open_dict, read_write

from any2bokeh.models import AnyToBokeh
from any2bokeh.training import metric_value, train
from any2bokeh.utils.hydra import instantiate_loggers
from tests.helpers.train_configs import ROOT, TINY_RUN, tiny_config


@pytest.mark.slow
def test_resume_continues_step_count_and_optimizer_state(tmp_path):
    # the first run also shows that a run needs no logger
    _, objects = train(tiny_config(tmp_path / "first", "logger=none"))
    assert objects["loggers"] == []
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 2

    metrics, objects = train(tiny_config(tmp_path / "resumed", "trainer.max_steps=4", f"ckpt_path={last}", "test=true"))
    trainer = objects["trainer"]
    assert trainer.global_step == 4
    # AdamW counts its own steps per parameter: 4 only if the first run's state was restored
    steps = {int(state["step"]) for state in trainer.optimizers[0].state.values()}
    assert steps == {4}
    # test=true tests after fitting
    assert {"val/psnr", "val/ssim", "test/psnr", "test/ssim"} <= metrics.keys()
    assert (tmp_path / "resumed" / "csv" / "metrics.csv").is_file()

    # a checkpoint from before the parameter groups: one unnamed group of every trainable parameter
    old = torch.load(last, map_location="cpu", weights_only=False)
    for state in old["optimizer_states"]:
        merged = [index for group in state["param_groups"] for index in group["params"]]
        state["param_groups"] = [{**state["param_groups"][0], "params": merged}]
        del state["param_groups"][0]["name"]
    torch.save(old, tmp_path / "old.ckpt")
    with pytest.raises(ValueError, match=r"holds the groups \[\(None, .*init_from="):
        train(tiny_config(tmp_path / "old", "trainer.max_steps=4", f"ckpt_path={tmp_path / 'old.ckpt'}"))
    # testing restores no optimizer, so it still takes the old checkpoint's weights
    results = trainer.test(
        objects["model"], datamodule=objects["datamodule"], ckpt_path=tmp_path / "old.ckpt", weights_only=False
    )
    assert results[0]["test/psnr"] > 0


@pytest.mark.slow
def test_two_process_cpu_ddp(tmp_path):
    # 2 training clips: one per process, so every epoch is a single step when the data is sharded
    metrics, objects = train(tiny_config(tmp_path, "hardware=ddp_cpu2", "data.train_size=2"))
    assert objects["trainer"].world_size == 2
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == 2
    assert checkpoint["epoch"] == 1  # one process would have taken both steps in epoch 0
    assert "val/psnr" in metrics


@pytest.mark.slow
def test_stage3_runs_under_two_process_ddp(tmp_path):
    # DDP without find_unused_parameters stops when a trainable parameter gets no gradient
    _, objects = train(tiny_config(tmp_path, "stage=stage3", "hardware=ddp_cpu2", "data.train_size=2", "logger=none"))
    assert objects["trainer"].world_size == 2
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == 2


@pytest.mark.slow
def test_multirun_puts_each_seed_in_its_own_folder_and_wandb_run(tmp_path):
    sweep = tmp_path / "grid-7"
    overrides = [override for override in TINY_RUN if not override.startswith("logger=")]
    command = [sys.executable, "train.py", "-m", "experiment=quickstart", "seed=1,2", *overrides, "logger=wandb"]
    command += [f"hydra.sweep.dir={sweep}", f"paths.log_dir={tmp_path}"]
    env = {**os.environ, "WANDB_MODE": "offline"}
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    for job, seed in (("0", 1), ("1", 2)):
        assert (sweep / job / "checkpoints" / "last.ckpt").is_file()
        assert f"seed={seed}" in (sweep / job / ".hydra" / "overrides.yaml").read_text()
        # one wandb run per job (their group and names: test_wandb_runs_of_one_sweep_share_a_group)
        (run,) = (sweep / job / "wandb").glob("offline-run-*")
        assert list(run.glob("files/media/videos/**/*.mp4"))


@pytest.mark.slow
def test_wandb_offline_run_logs_config_metrics_and_videos(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    metrics, objects = train(tiny_config(tmp_path, "logger=wandb"))
    assert isinstance(objects["loggers"][0], WandbLogger)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list(tmp_path.rglob("*"))
    files = runs[0] / "files"
    assert list(files.glob("media/videos/**/*.mp4")), sorted(p.name for p in files.rglob("*"))
    # the offline run's record holds the config, the losses and the metrics until `wandb sync`; the wandb
    # service writes it in the background, so stop the service (as the process's exit would) before reading
    wandb.teardown()
    record = next(runs[0].glob("*.wandb")).read_bytes()
    assert b"Stage1GeometryGuided" in record and b"train/loss" in record and b"val/psnr" in record
    # the gates' strength, and per block as a histogram
    assert b"train/gate_attn" in record and b"train/gate_attn_blocks" in record


def test_wandb_runs_of_one_sweep_share_a_group(tmp_path):
    cfg = tiny_config(tmp_path, "logger=wandb")
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.mode = RunMode.MULTIRUN
        cfg.hydra.sweep.dir = str(tmp_path / "2026-01-01_00-00-00")
        cfg.hydra.job.num = 1
        cfg.hydra.job.override_dirname = "seed=2"
    HydraConfig.instance().set_config(cfg)
    (logger,) = instantiate_loggers(cfg.logger)
    assert logger._wandb_init["group"] == "2026-01-01_00-00-00"
    assert logger._wandb_init["name"] == "seed=2"


def test_nan_loss_stops_the_run(tmp_path, monkeypatch):
    threads = []

    def nan_latents(self, *args, aif_latents, **kwargs):
        threads.append(torch.get_num_threads())
        return torch.full_like(aif_latents, float("nan"))

    monkeypatch.setattr(AnyToBokeh, "predict_latents", nan_latents)
    before = torch.get_num_threads()
    with pytest.raises(FloatingPointError, match="training loss is nan at global step 0"):
        train(tiny_config(tmp_path, "cpu_threads=1"))
    # cpu_threads holds during the run only, even one that fails
    assert threads == [1] and torch.get_num_threads() == before


def test_optimized_metric_must_be_logged():
    assert metric_value({"val/psnr": 20.0}, "val/psnr") == 20.0
    assert metric_value({}, None) is None
    with pytest.raises(KeyError, match="val/lpips"):
        metric_value({"val/psnr": 20.0}, "val/lpips")


@pytest.mark.slow
def test_a_run_shorter_than_the_validation_interval_still_reports_the_optimized_metric(tmp_path):
    # 2 steps with validation every 20: the final weights are validated once fitting ends
    metrics, objects = train(tiny_config(tmp_path, "trainer.val_check_interval=20", "logger=none"))
    assert objects["trainer"].global_step == 2
    assert {"train/loss", "val/psnr", "val/ssim"} <= metrics.keys()
    assert list((tmp_path / "videos").glob("*.mp4"))
