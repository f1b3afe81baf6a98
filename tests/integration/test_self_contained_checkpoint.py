"""A checkpoint holds the whole model: chaining stages and rendering need no SVD folder."""

import shutil

import pytest
import torch

from any2bokeh.models import AnyToBokeh, save_tiny_svd
from any2bokeh.training import train
from tests.helpers.train_configs import tiny_config


@pytest.mark.slow
def test_stage1_from_an_svd_folder_then_stage2_and_rendering_without_it(tmp_path):
    svd = save_tiny_svd(tmp_path / "svd", seed=1)
    svd_model = [f"model.pretrained={svd}", "model=svd", "module.optimizer.lr=1e-3", "logger=none"]
    _, objects = train(tiny_config(tmp_path / "s1", "stage=stage1", *svd_model))
    stage1 = {key: value.clone() for key, value in objects["net"].state_dict().items()}
    ckpt1 = tmp_path / "s1" / "checkpoints" / "last.ckpt"
    shutil.rmtree(svd)

    _, objects = train(tiny_config(tmp_path / "s2", "stage=stage2", f"init_from={ckpt1}", *svd_model))
    assert objects["trainer"].global_step == 2
    net = objects["net"]
    # stage 2 started from every stage-1 tensor; model.gradient_checkpointing (true for model=svd) still applies
    assert net.unet.is_gradient_checkpointing and net.vae.gradient_checkpointing
    temporal = set(objects["model"].trainable_parameter_names())
    ckpt2 = tmp_path / "s2" / "checkpoints" / "last.ckpt"

    model = AnyToBokeh.from_checkpoint(ckpt2).eval()
    state = model.state_dict()
    moved = {key for key in stage1 if not torch.equal(stage1[key], state[key])}
    assert moved and moved <= temporal
    generator = torch.Generator().manual_seed(0)
    aif = torch.rand(1, 2, 3, 32, 32, generator=generator) * 2 - 1
    disparity = torch.rand(1, 2, 1, 32, 32, generator=generator)
    with torch.no_grad():
        frames = model(aif, disparity, 0.5, 8.0).frames
        expected = net.eval()(aif, disparity, 0.5, 8.0).frames
    assert frames.shape == aif.shape and torch.isfinite(frames).all()
    torch.testing.assert_close(frames, expected)
