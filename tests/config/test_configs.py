"""Every file of the training config tree composes and instantiates; every experiment runs 2 steps."""

import csv
import json
import math
import signal
import subprocess
import sys

import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.strategies import DDPStrategy
from omegaconf import OmegaConf

from any2bokeh.callbacks import VideoLogger
from any2bokeh.models import AnyToBokeh
from any2bokeh.training import check_train_config, compose_train_config, train
from any2bokeh.training.instantiate import build_net
from any2bokeh.utils.hydra import without_hydra
from tests.helpers.train_configs import CONF, ROOT, TINY_RUN, tiny_config
from tests.helpers.video_files import write_matting_tree

GROUPS = ("stage", "hardware", "logger", "callbacks", "experiment", "hydra", "paths", "data", "model")
PAPER = {"paper_stage1": (4, 1e-5), "paper_stage2": (8, 5e-6), "paper_stage3": (3, 5e-6)}


def options(group):
    return sorted(path.stem for path in (CONF / group).glob("*.yaml"))


def compose(tmp_path, *overrides):
    return compose_train_config(CONF, overrides, tmp_path)


@pytest.mark.parametrize("group, option", [(group, option) for group in GROUPS for option in options(group)])
def test_every_config_file_composes_and_resolves(group, option, tmp_path):
    cfg = compose(tmp_path, f"{group}={option}")
    resolved = OmegaConf.to_container(without_hydra(cfg), resolve=True)
    assert resolved["paths"]["output_dir"] == str(tmp_path)


def test_config_groups_are_complete():
    assert options("stage") == ["stage1", "stage2", "stage3"]
    assert set(options("hardware")) == {"cpu", "gpu", "4xh800", "slurm", "ddp_cpu2"}
    assert options("logger") == ["csv", "none", "wandb"]
    assert {"quickstart", *PAPER} <= set(options("experiment"))


def test_stage_files_set_the_papers_frames_learning_rates_and_perturbation(tmp_path):
    expected = {"stage1": (4, 1e-5, None), "stage2": (8, 5e-6, 0.5), "stage3": (3, 5e-6, None)}
    for stage, (frames, lr, p) in expected.items():
        cfg = compose(tmp_path, f"stage={stage}")
        assert cfg.data.num_frames == frames and cfg.module.optimizer.lr == lr
        assert (cfg.data.perturbation and cfg.data.perturbation.p) == p
        assert cfg.module.optimizer._target_ == "torch.optim.AdamW" and cfg.module.optimizer._partial_


# (lr, weight_decay) of the optimizer groups each stage file's module holds: pretrained at the paper's rate,
# the new modules and the gates at 10x, the gates without weight decay; groups a stage does not train are dropped
STAGE_GROUPS = {
    "stage1": {"pretrained": (1e-5, 0.01), "new": (1e-4, 0.01), "gates": (1e-4, 0.0)},
    "stage2": {"pretrained": (5e-6, 0.01)},
    "stage3": {"pretrained": (5e-6, 0.01), "new": (5e-5, 0.01)},
}


def optimizer_groups(cfg):
    module = instantiate(cfg.module, net=AnyToBokeh.tiny(seed=0))
    groups = module.configure_optimizers()["optimizer"].param_groups
    return {group["name"]: (group["lr"], group["weight_decay"]) for group in groups}


@pytest.mark.parametrize("stage", sorted(STAGE_GROUPS))
def test_stage_files_give_new_modules_and_gates_ten_times_the_rate(stage, tmp_path):
    cfg = compose(tmp_path, f"stage={stage}")
    lr = cfg.module.optimizer.lr
    groups = {"pretrained": {}, "new": {"lr": 10 * lr}, "gates": {"lr": 10 * lr, "weight_decay": 0.0}}
    assert cfg.module.param_groups == groups
    assert optimizer_groups(cfg) == STAGE_GROUPS[stage]
    # the paper's runs keep them
    paper = compose(tmp_path, f"experiment=paper_{stage}")
    assert paper.module.param_groups == cfg.module.param_groups and paper.module.optimizer == cfg.module.optimizer


def test_quickstart_groups_the_tiny_models_parameters(tmp_path):
    cfg = compose(tmp_path, "experiment=quickstart")
    assert optimizer_groups(cfg) == {"pretrained": (1e-4, 0.01), "new": (1e-3, 0.01), "gates": (1e-2, 0.0)}


@pytest.mark.parametrize("experiment", sorted(PAPER))
def test_paper_experiments_hold_the_papers_settings(experiment, tmp_path):
    frames, lr = PAPER[experiment]
    cfg = compose(tmp_path, f"experiment={experiment}")
    assert (cfg.data.height, cfg.data.width, cfg.data.num_frames) == (576, 1024, frames)
    assert cfg.module.optimizer.lr == lr
    assert (cfg.data.batch_size, cfg.data.num_workers) == (1, 4)
    assert cfg.model._target_.endswith("AnyToBokeh.from_svd")
    trainer = cfg.trainer
    assert (trainer.devices, trainer.num_nodes) == (4, 1)
    assert (trainer.precision, trainer.accumulate_grad_batches) == ("bf16-mixed", 2)
    assert isinstance(instantiate(trainer.strategy), DDPStrategy)
    # one switch: the model's (UNet and VAE); the hardware and experiment files leave the module's alone
    assert cfg.model.gradient_checkpointing is True
    assert "wandb" in cfg.logger
    if experiment != "paper_stage1":
        with pytest.raises(ValueError, match="init_from"):
            check_train_config(cfg)


@pytest.mark.parametrize("experiment", ["paper_stage2", "paper_stage3"])
def test_paper_stages_from_a_previous_stage_keep_gradient_checkpointing(experiment, tmp_path):
    saved = AnyToBokeh.tiny(seed=0, use_image_encoder=False).save_pretrained(tmp_path / "previous_stage")
    cfg = compose(tmp_path, f"experiment={experiment}", f"init_from={saved}")
    assert cfg.model.gradient_checkpointing
    net = build_net(cfg.model, cfg.init_from)
    assert net.unet.is_gradient_checkpointing and net.vae.gradient_checkpointing


def test_hardware_files_set_only_the_trainer():
    # the batch size, workers and checkpointing of a run belong to its experiment, not to the machine
    for path in sorted((CONF / "hardware").glob("*.yaml")):
        keys = set(OmegaConf.load(path)) - {"defaults"}
        allowed = {"trainer", "hydra"} if path.stem == "slurm" else {"trainer"}
        assert keys <= allowed, f"{path.name} sets {sorted(keys - allowed)}"


def test_paper_stage_files_hold_only_what_differs():
    # paper_base.yaml holds the shared settings; a stage file picks the stage and its step count
    for experiment in PAPER:
        cfg = OmegaConf.load(CONF / "experiment" / f"{experiment}.yaml")
        assert cfg.defaults[0] == "paper_base"
        assert set(cfg) == {"defaults", "task_name", "tags", "trainer"} and set(cfg.trainer) == {"max_steps"}


def test_slurm_hardware_requeues_on_sigterm(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_NNODES", "3")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    cfg = compose(tmp_path, "hardware=slurm")
    # the requeued job finds Lightning's checkpoint in the same folder
    assert cfg.hydra.run.dir.endswith("/slurm/4242")
    assert cfg.trainer.num_nodes == 3 and cfg.trainer.strategy._target_.endswith("DDPStrategy")
    (environment,) = instantiate(cfg.trainer.plugins)
    assert isinstance(environment, SLURMEnvironment)
    assert environment.auto_requeue and environment.requeue_signal == signal.SIGTERM


# (environment of one task, devices, nodes, world size, global rank) as `srun` sets them
SLURM_JOBS = {
    # sbatch --nodes=2 --ntasks-per-node=4 --gpus-per-node=4; srun python train.py ...
    "2 nodes x 4": (
        {
            "SLURM_NTASKS": "8",
            "SLURM_NTASKS_PER_NODE": "4",
            "SLURM_TASKS_PER_NODE": "4(x2)",
            "SLURM_NNODES": "2",
            "SLURM_JOB_NUM_NODES": "2",
            "SLURM_PROCID": "5",
            "SLURM_LOCALID": "1",
            "SLURM_NODEID": "1",
        },
        4,
        2,
        8,
        5,
    ),
    # a step on one node of a 2-node job: srun -N 1 --ntasks-per-node=4 ...
    "1-node step of a 2-node job": (
        {
            "SLURM_NTASKS": "4",
            "SLURM_NTASKS_PER_NODE": "4",
            "SLURM_TASKS_PER_NODE": "4",
            "SLURM_NNODES": "1",
            "SLURM_JOB_NUM_NODES": "2",
            "SLURM_PROCID": "3",
            "SLURM_LOCALID": "3",
            "SLURM_NODEID": "0",
        },
        4,
        1,
        4,
        3,
    ),
    # one task, no --ntasks-per-node: srun -n 1 ...
    "one task": (
        {
            "SLURM_NTASKS": "1",
            "SLURM_TASKS_PER_NODE": "1",
            "SLURM_NNODES": "1",
            "SLURM_JOB_NUM_NODES": "1",
            "SLURM_PROCID": "0",
            "SLURM_LOCALID": "0",
            "SLURM_NODEID": "0",
        },
        1,
        1,
        1,
        0,
    ),
}


@pytest.mark.parametrize("job", sorted(SLURM_JOBS))
def test_slurm_hardware_matches_what_lightning_checks(job, tmp_path, monkeypatch):
    environment, devices, nodes, world_size, rank = SLURM_JOBS[job]
    for name in ("SLURM_NTASKS_PER_NODE", "SLURM_GPUS_ON_NODE", "SLURM_JOB_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_NODELIST", "node[3-4]")
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    # the GPUs replaced by CPU processes, the rest of the SLURM config as it is
    cfg = compose(tmp_path, "hardware=slurm", "trainer.accelerator=cpu")
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    cluster = trainer.strategy.cluster_environment
    assert isinstance(cluster, SLURMEnvironment)
    # what Lightning's launcher checks before training: raises on a devices or num_nodes mismatch
    cluster.validate_settings(num_devices=trainer.num_devices, num_nodes=trainer.num_nodes)
    assert (trainer.num_devices, trainer.num_nodes) == (devices, nodes)
    # DDP's world is SLURM's tasks: devices x nodes must count them
    assert trainer.num_devices * trainer.num_nodes == trainer.world_size == world_size
    assert trainer.global_rank == rank


def test_cpu_hardware_instantiates_a_trainer(tmp_path):
    for hardware, devices in (("cpu", 1), ("ddp_cpu2", 2)):
        cfg = compose(tmp_path, f"hardware={hardware}")
        trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
        assert isinstance(trainer, Trainer) and trainer.num_devices == devices


def test_loggers_and_callbacks_instantiate(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert isinstance(instantiate(compose(tmp_path, "logger=csv").logger.csv), CSVLogger)
    assert isinstance(instantiate(compose(tmp_path, "logger=wandb").logger.wandb), WandbLogger)
    assert not compose(tmp_path, "logger=none").get("logger")
    callbacks = instantiate(compose(tmp_path).callbacks)
    types = {type(callback) for callback in callbacks.values()}
    assert {ModelCheckpoint, LearningRateMonitor, VideoLogger} <= types
    assert callbacks["model_checkpoint"].dirpath == str(tmp_path / "checkpoints")


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["quickstart", *sorted(PAPER)])
def test_every_experiment_runs_two_steps(experiment, tmp_path):
    run = tmp_path / "run"
    if experiment in PAPER:
        psnr = run_on_two_cpu_processes(experiment, tmp_path)
    else:
        metrics, objects = train(tiny_config(run, f"experiment={experiment}"))
        assert objects["trainer"].global_step == 2
        psnr = metrics["val/psnr"]
    assert math.isfinite(psnr)
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == 2
    assert (run / "csv" / "metrics.csv").is_file()
    assert list((run / "videos").glob("*.mp4"))


def run_on_two_cpu_processes(experiment, tmp_path):
    """A paper experiment with hardware=4xh800 as it is (DDP, bf16-mixed, 2 accumulation steps), its 4 GPUs
    replaced by 2 CPU processes, on the tiny model and a tiny matting folder; checks what each process ran.

    `python train.py`, as on the paper's machine: DDP's launcher starts rank 1 by re-running the command, and
    diffusers' checkpointing functions cannot be pickled for a spawned process. Returns the last val/psnr.
    """
    write_matting_tree(tmp_path / "data")
    overrides = [override for override in TINY_RUN if not override.startswith("hardware=")]
    overrides += [
        f"experiment={experiment}",
        f"paths.data_dir={tmp_path / 'data'}",
        "data.num_workers=0",
        "data.val_size=1",
        "data.num_frames=2",
        # the tiny model is checkpointed as the paper's model is
        "model.gradient_checkpointing=true",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "+callbacks.recorder._target_=tests.helpers.train_configs.TrainingRecorder",
        f"+callbacks.recorder.folder={tmp_path / 'recorded'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    command = [sys.executable, "train.py", *overrides]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    for rank in (0, 1):
        ran = json.loads((tmp_path / "recorded" / f"rank{rank}.json").read_text())
        assert (ran["strategy"], ran["world_size"], ran["backend"]) == ("DDPStrategy", 2, "gloo")
        assert ran["wrapped_module"] == "DistributedDataParallel"
        assert (ran["precision"], ran["forward_autocast"]) == ("bf16-mixed", ["torch.bfloat16"])
        # 2 optimiser steps of 2 accumulated batches each
        assert (ran["accumulate_grad_batches"], ran["batches"], ran["optimizer_steps"]) == (2, 4, 2)
        # gradient checkpointing recomputes the trained blocks' forward during backward
        assert ran["backward_calls"] > 0
    with open(tmp_path / "run" / "csv" / "metrics.csv") as file:
        return [float(row["val/psnr"]) for row in csv.DictReader(file) if row.get("val/psnr")][-1]
