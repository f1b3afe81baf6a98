"""The three stage modules: what each trains, frozen parts, NaN handling, and the stage 1 -> 2 -> 3 chain."""

from functools import partial

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from torch.utils.data import DataLoader

from any2bokeh.models import AnyToBokeh
from any2bokeh.stages import Stage1GeometryGuided, Stage2TemporalRefinement, Stage3DecoderDetail
from any2bokeh.training import build_net, check_train_config, compose_train_config, train
from tests.train_configs import CONF, TINY_RUN, tiny_config
from tests.training_batches import batch

OPTIMIZER = partial(torch.optim.AdamW, lr=1e-3)


@pytest.fixture(scope="module")
def tiny_net_factory():
    return lambda: AnyToBokeh.tiny(seed=0)


def test_stage1_trains_the_whole_unet_only(tiny_net_factory):
    module = Stage1GeometryGuided(tiny_net_factory(), OPTIMIZER)
    names = set(module.trainable_parameter_names())
    unet = {"unet." + name for name, _ in module.net.unet.named_parameters()}
    assert names == unet
    # the new modules (MPI attention, condition conv) are part of it
    new_unet = {name for name in module.net.new_parameter_names() if name.startswith("unet.")}
    assert new_unet and new_unet <= names
    assert not any(name.startswith(("vae.", "image_encoder.")) for name in names)


def test_stage2_trains_only_temporal_modules(tiny_net_factory):
    module = Stage2TemporalRefinement(tiny_net_factory(), OPTIMIZER)
    names = set(module.trainable_parameter_names())
    assert names == {"unet." + name for name, _ in module.net.unet.temporal_parameters()}
    assert any(".temporal_transformer_blocks." in name for name in names)
    assert any(".temporal_res_block." in name for name in names)
    assert any(".time_mixer." in name for name in names)
    frozen_markers = (".transformer_blocks.", ".spatial_res_block.", "conv_in", "conv_out", "mpi")
    assert not [name for name in names if any(marker in name for marker in frozen_markers)]
    assert not any(name.startswith(("vae.", "image_encoder.")) for name in names)


def test_stage3_trains_decoder_and_skip_convs_only(tiny_net_factory):
    module = Stage3DecoderDetail(tiny_net_factory(), OPTIMIZER)
    names = set(module.trainable_parameter_names())
    decoder = {"vae.vae.decoder." + name for name, _ in module.net.vae.vae.decoder.named_parameters()}
    skips = {"vae.skip_convs." + name for name, _ in module.net.vae.skip_convs.named_parameters()}
    # the tiny VAE's one-resnet mid block never runs its attention (see Stage3DecoderDetail)
    never_run = {name for name in decoder if name.startswith("vae.vae.decoder.mid_block.attentions.")}
    assert skips and never_run and names == (decoder - never_run) | skips


def test_frozen_parts_stay_in_eval_mode(tiny_net_factory):
    module = Stage2TemporalRefinement(tiny_net_factory(), OPTIMIZER)
    module.train()
    net = module.net
    assert not net.vae.training and not net.image_encoder.training
    spatial = net.unet.unet.down_blocks[0].attentions[0].transformer_blocks[0]
    temporal = net.unet.unet.down_blocks[0].attentions[0].temporal_transformer_blocks[0]
    assert not spatial.training
    assert temporal.training
    module.eval()
    assert not temporal.training


@pytest.mark.slow
def test_frozen_parts_are_in_eval_mode_while_fitting(tiny_net_factory, tmp_path):
    modes = []

    class RecordModes(Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            net = module.net
            modes.append((net.vae.training, net.unet.unet.conv_in.training, net.unet.unet.down_blocks[0].training))

    module = Stage2TemporalRefinement(tiny_net_factory(), OPTIMIZER)
    module.eval()  # whatever the mode before fitting
    trainer = Trainer(
        max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[RecordModes()], default_root_dir=tmp_path, limit_val_batches=0,
    )
    trainer.fit(module, DataLoader([batch()] * 2, batch_size=None))
    # VAE and the frozen input conv in eval mode; the block holding temporal layers trains
    assert modes == [(False, False, True)] * 2


def test_optimizer_gets_exactly_the_trainable_parameters(tiny_net_factory):
    module = Stage3DecoderDetail(tiny_net_factory(), OPTIMIZER)
    optimizer = module.configure_optimizers()["optimizer"]
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert in_optimizer == {id(p) for p in module.net.parameters() if p.requires_grad}
    assert optimizer.param_groups[0]["lr"] == 1e-3


def test_stage3_loss_is_l1_plus_weighted_texture(tiny_net_factory):
    module = Stage3DecoderDetail(tiny_net_factory(), OPTIMIZER, texture_weight=0.5)
    output = module.model_step(batch())
    terms = output.terms
    assert torch.allclose(terms["loss"], terms["l1"] + 0.5 * terms["texture"])
    assert output.prediction.shape == (1, 2, 3, 32, 32)
    output.loss.backward()
    assert module.net.vae.skip_convs[0].weight.grad is not None
    assert all(p.grad is None for p in module.net.unet.parameters())


@pytest.mark.parametrize("value, shown", [(torch.nan, "nan"), (torch.inf, "inf"), (-torch.inf, "inf")])
def test_non_finite_loss_raises_a_clear_error(tiny_net_factory, monkeypatch, value, shown):
    module = Stage1GeometryGuided(tiny_net_factory(), OPTIMIZER)
    monkeypatch.setattr(module.net, "predict_latents", lambda *args, **kwargs: torch.full((1, 2, 4, 16, 16), value))
    with pytest.raises(FloatingPointError, match=f"training loss is {shown} at global step 0"):
        module.training_step(batch(), 0)


@pytest.mark.parametrize("stage", ["stage2", "stage3"])
def test_later_stage_of_the_real_model_needs_init_from(stage, tmp_path):
    cfg = tiny_config(tmp_path, "model=svd", f"stage={stage}")
    with pytest.raises(ValueError, match="init_from.*model.pretrained='stabilityai/stable-video-diffusion-img2vid-xt'"):
        check_train_config(cfg)
    # the tiny model may start any stage from scratch
    check_train_config(tiny_config(tmp_path, f"stage={stage}"))


def test_pretrained_weights_not_the_target_name_decide_whether_init_from_is_needed(tmp_path):
    # the tiny model's own target, declaring pretrained weights: a later stage needs init_from
    with pytest.raises(ValueError, match="init_from"):
        check_train_config(tiny_config(tmp_path, "stage=stage2", "+model.pretrained=/models/svd"))
    # another target without pretrained weights (a saved folder already is the trained start): no error
    folder = AnyToBokeh.tiny(use_image_encoder=False).save_pretrained(tmp_path / "saved")
    check_train_config(
        tiny_config(
            tmp_path, "stage=stage2", "model._target_=any2bokeh.models.AnyToBokeh.from_pretrained", f"+model.path={folder}"
        )
    )


def test_unknown_stage_is_an_error(tmp_path):
    with pytest.raises(Exception, match="stage4"):
        compose_train_config(CONF, [*TINY_RUN, "stage=stage4"], tmp_path)


def test_missing_init_from_or_ckpt_path_is_an_error(tmp_path):
    cfg = tiny_config(tmp_path, "stage=stage2", f"init_from={tmp_path / 'nothing.ckpt'}")
    with pytest.raises(FileNotFoundError, match="init_from=.*nothing.ckpt"):
        check_train_config(cfg)
    cfg = tiny_config(tmp_path, f"ckpt_path={tmp_path / 'gone' / 'last.ckpt'}")
    with pytest.raises(FileNotFoundError, match="ckpt_path=.*gone/last.ckpt.* does not exist"):
        train(cfg)


def test_init_from_a_saved_folder(tmp_path):
    saved = AnyToBokeh.tiny(seed=5, use_image_encoder=False, fps=6)
    with torch.no_grad():
        saved.vae.reset_skips(0.01)
    folder = saved.save_pretrained(tmp_path / "saved")
    net = build_net(tiny_config(tmp_path, "model.gradient_checkpointing=true").model, str(folder))
    # the architecture and options come from the folder; the model config's checkpointing switch applies
    assert net.options == saved.options and net.unet.is_gradient_checkpointing
    assert all(torch.equal(net.state_dict()[key], value) for key, value in saved.state_dict().items())

    (folder / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing .*saved/vae/diffusion_pytorch_model.safetensors"):
        train(tiny_config(tmp_path / "run", "stage=stage2", f"init_from={folder}"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty/any2bokeh_config.json: not a saved AnyToBokeh folder"):
        train(tiny_config(tmp_path / "run", "stage=stage2", f"init_from={tmp_path / 'empty'}"))


def test_frame_size_must_fit_the_model(tmp_path):
    with pytest.raises(ValueError, match="data.height=30 and data.width=32 must be multiples of 4"):
        train(tiny_config(tmp_path, "data.height=30"))


def net_state(ckpt_path):
    state = torch.load(ckpt_path, map_location="cpu", weights_only=False)["state_dict"]
    return {key[len("net.") :]: value for key, value in state.items() if key.startswith("net.")}


def changed(before, after):
    assert before.keys() == after.keys()
    return {key for key in before if not torch.equal(before[key], after[key])}


@pytest.mark.slow
def test_stage_chain_changes_only_each_stages_parameters(tmp_path):
    """stage 1 -> stage 2 (init_from the stage-1 .ckpt) -> stage 3 (init_from the stage-2 .ckpt), 2 steps each."""
    lr = ["module.optimizer.lr=1e-3"]
    metrics, objects = train(tiny_config(tmp_path / "s1", "stage=stage1", *lr))
    assert objects["trainer"].global_step == 2 and "val/psnr" in metrics
    ckpt1 = tmp_path / "s1" / "checkpoints" / "last.ckpt"

    _, objects = train(
        tiny_config(tmp_path / "s2", "stage=stage2", f"init_from={ckpt1}", "data.perturbation.p=1.0", *lr)
    )
    assert objects["trainer"].global_step == 2
    temporal = set(objects["model"].trainable_parameter_names())
    ckpt2 = tmp_path / "s2" / "checkpoints" / "last.ckpt"

    _, objects = train(tiny_config(tmp_path / "s3", "stage=stage3", f"init_from={ckpt2}", *lr))
    assert objects["trainer"].global_step == 2
    decoder = set(objects["model"].trainable_parameter_names())
    ckpt3 = tmp_path / "s3" / "checkpoints" / "last.ckpt"

    state1, state2, state3 = net_state(ckpt1), net_state(ckpt2), net_state(ckpt3)
    changed_in_2 = changed(state1, state2)
    assert changed_in_2 and changed_in_2 <= temporal
    changed_in_3 = changed(state2, state3)
    assert changed_in_3 and changed_in_3 <= decoder
    assert any(key.startswith("vae.skip_convs.") for key in changed_in_3)
