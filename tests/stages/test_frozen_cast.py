"""Under bf16-mixed the frozen VAE and CLIP are held in bf16 during a fit; checkpoints and the model after the fit
keep their float32 weights, and the loss is the one of the float32 weights to mixed-precision noise."""

from functools import partial

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from torch.utils.data import DataLoader

from any2bokeh.models import AnyToBokeh
from any2bokeh.stages import Stage1GeometryGuided, Stage3DecoderDetail
from tests.helpers.training_batches import batch

OPTIMIZER = partial(torch.optim.SGD, lr=0.0)  # the weights do not move: the steps' losses compare


class Seen(Callback):
    """The dtypes of the encoder, the CLIP encoder, the decoder and the UNet at each step, and the losses."""

    def __init__(self):
        self.dtypes, self.losses = [], []

    def on_train_batch_start(self, trainer, module, *args):
        net = module.net
        parts = {"encoder": net.vae.vae.encoder, "decoder": net.vae.vae.decoder, "unet": net.unet}
        if net.image_encoder is not None:
            parts["clip"] = net.image_encoder
        self.dtypes.append({name: next(part.parameters()).dtype for name, part in parts.items()})

    def on_train_batch_end(self, trainer, module, outputs, *args):
        self.losses.append(float(outputs["loss"]))


def fit(stage, precision, tmp_path, cast_frozen=True):
    net = AnyToBokeh.tiny(seed=0)
    before = {name: value.clone() for name, value in net.state_dict().items()}
    seen = Seen()
    trainer = Trainer(
        max_steps=2,
        accelerator="cpu",
        precision=precision,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[seen],
        default_root_dir=tmp_path,
    )
    module = stage(net, OPTIMIZER)
    module.cast_frozen = cast_frozen
    trainer.fit(module, DataLoader([batch(frames=2, size=32)] * 2, batch_size=None))
    path = tmp_path / f"{precision}.ckpt"
    trainer.save_checkpoint(path)
    return net, before, seen, torch.load(path, weights_only=False)["state_dict"]


@pytest.mark.parametrize("stage", [Stage1GeometryGuided, Stage3DecoderDetail], ids=lambda cls: cls.__name__)
def test_frozen_encoders_run_in_bf16_and_come_back_in_float32(stage, tmp_path):
    net, before, seen, saved = fit(stage, "bf16-mixed", tmp_path)
    during = seen.dtypes[0]
    assert during["encoder"] == torch.bfloat16 and during["unet"] == torch.float32
    assert during.get("clip", torch.bfloat16) == torch.bfloat16
    # stage 3 trains the decoder: it keeps its float32 weights
    assert during["decoder"] == (torch.float32 if stage is Stage3DecoderDetail else torch.bfloat16)
    # after the fit, and in its checkpoint, every weight is the float32 original (SGD at lr 0 moved none)
    for name, value in net.state_dict().items():
        assert value.dtype == before[name].dtype and torch.equal(value, before[name]), name
        assert torch.equal(saved["net." + name], before[name]), name
    # the losses are those of float32 frozen weights under the same autocast, to bf16 rounding
    _, _, reference, _ = fit(stage, "bf16-mixed", tmp_path / "reference", cast_frozen=False)
    assert reference.dtypes[0]["encoder"] == torch.float32
    assert seen.losses == pytest.approx(reference.losses, rel=0.05)


def test_a_float32_run_casts_nothing(tmp_path):
    _, _, seen, _ = fit(Stage1GeometryGuided, "32-true", tmp_path)
    assert set(seen.dtypes[0].values()) == {torch.float32}
