"""The three stage modules: what each trains, frozen parts, their objectives against hand computations, gradient
checkpointing, NaN handling, and the stage 1 -> 2 -> 3 chain."""

from functools import partial

import pytest
import torch
from diffusers import AutoencoderKLTemporalDecoder
from hydra.utils import instantiate
from lightning.pytorch import Callback, Trainer
from torch.utils.data import DataLoader

from any2bokeh.callbacks import VideoLogger
from any2bokeh.models import AnyToBokeh
from any2bokeh.models.tiny import tiny_svd_components
from any2bokeh.stages import Stage1GeometryGuided, Stage2TemporalRefinement, Stage3DecoderDetail
from any2bokeh.stages.losses import gradient_texture_loss
from any2bokeh.training import build_net, check_train_config, compose_train_config, train
from tests.helpers.forward_calls import forward_calls
from tests.helpers.train_configs import CONF, TINY_RUN, tiny_config
from tests.helpers.training_batches import batch, random_batch

OPTIMIZER = partial(torch.optim.AdamW, lr=1e-3)
OPTIMIZER_WITH_DECAY = partial(torch.optim.AdamW, lr=1e-3, weight_decay=0.1)
STAGES = (Stage1GeometryGuided, Stage2TemporalRefinement, Stage3DecoderDetail)


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
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[RecordModes()],
        default_root_dir=tmp_path,
        limit_val_batches=0,
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


def _open(net):
    """Open gates and live skips, so every input of the step shows in its loss."""
    with torch.no_grad():
        for block in net.unet.mpi_blocks:
            block.gate_attn.fill_(0.5)
            block.gate_ff.fill_(0.5)
        for conv in net.vae.skip_convs:
            conv.weight.normal_(std=0.05)
    return net


@pytest.mark.parametrize("stage", [Stage1GeometryGuided, Stage3DecoderDetail])
def test_one_encoder_call_per_step_gives_the_loss_and_gradients_of_separate_encodes(tiny_net_factory, stage):
    torch.manual_seed(0)
    module = stage(_open(tiny_net_factory()), OPTIMIZER)
    net, clip = module.net, random_batch(batch_size=2, seed=3)
    calls = []
    hook = net.vae.vae.encoder.conv_in.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    loss = module.model_step(clip).loss
    hook.remove()
    # bokeh (stage 1 only), all-in-focus and V_D frames of both clips in one call
    assert calls == [(3 if stage is Stage1GeometryGuided else 2) * 2 * 2]
    grads = torch.autograd.grad(loss, [p for p in net.parameters() if p.requires_grad])

    # the same step with each frozen encode on its own, as before
    aif = net.encode(clip["aif"], return_skips=True)
    latents = net.predict_latents(
        clip["aif"], clip["disparity"], clip["disp_focus"], clip["k"], aif_latents=aif.latents
    )
    if stage is Stage1GeometryGuided:
        separate = torch.nn.functional.mse_loss(latents, net.encode(clip["bokeh"]))
    else:
        prediction = net.decode(latents.detach(), skips=aif.skips)
        target = clip["bokeh"]
        separate = torch.nn.functional.l1_loss(prediction, target) + gradient_texture_loss(prediction, target)
    reference = torch.autograd.grad(separate, [p for p in net.parameters() if p.requires_grad])
    torch.testing.assert_close(loss, separate, rtol=1e-5, atol=1e-7)
    for got, want in zip(grads, reference):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


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
            tmp_path,
            "stage=stage2",
            "model._target_=any2bokeh.models.AnyToBokeh.from_pretrained",
            f"+model.path={folder}",
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


# ---- objectives checked by hand, gradients, checkpointing, accumulation and stage 1 -> 2 weights ----


def test_stage1_loss_is_the_mse_to_the_eval_mode_vae_latents_of_the_bokeh():
    module = Stage1GeometryGuided(AnyToBokeh.tiny(seed=0), OPTIMIZER_WITH_DECAY)
    module.train()
    net = module.net
    calls, samples = [], []
    # SkipVAE.encode runs the encoder's submodules itself, starting with conv_in
    net.vae.vae.encoder.conv_in.register_forward_pre_hook(
        lambda conv, args: calls.append((conv.training, torch.is_grad_enabled()))
    )
    net.unet.register_forward_pre_hook(
        lambda unet, args, kwargs: samples.append((args[0] if args else kwargs["sample"]).detach()), with_kwargs=True
    )
    clips = random_batch(batch_size=2)
    torch.manual_seed(0)
    output = module.model_step(clips)
    # bokeh, all-in-focus and V_D frames are encoded in one call, without a graph, in eval mode
    assert calls == [(False, False)]

    def scaled_latents(frames):  # diffusers' own encoder, outside the model's code path
        with torch.no_grad():
            posterior = net.vae.vae.encode(frames.flatten(0, 1)).latent_dist
        return (posterior.mode() * net.vae.config.scaling_factor).unflatten(0, frames.shape[:2])

    # the UNet's input latents (all-in-focus: the first 4 channels) carry the target's scaling factor
    (sample,) = samples
    torch.testing.assert_close(sample[:, :, :4], scaled_latents(clips["aif"]))
    torch.manual_seed(0)
    latents = net.predict_latents(clips["aif"], clips["disparity"], clips["disp_focus"], clips["k"])
    expected = ((latents - scaled_latents(clips["bokeh"])) ** 2).mean()
    torch.testing.assert_close(output.loss, expected)
    output.loss.backward()
    assert all(p.grad is None for p in net.vae.parameters()) and all(
        p.grad is None for p in net.image_encoder.parameters()
    )


def test_stage3_loss_decodes_the_frozen_unets_latents_with_the_all_in_focus_skips():
    net = AnyToBokeh.tiny(seed=0, skip_init=0.05)
    module = Stage3DecoderDetail(net, OPTIMIZER_WITH_DECAY, texture_weight=0.3)
    module.train()
    unet_modes = []
    net.unet.register_forward_pre_hook(
        lambda unet, *_: unet_modes.append((unet.training, torch.is_grad_enabled())), with_kwargs=True
    )
    clips = random_batch()
    output = module.model_step(clips)
    assert unet_modes == [(False, False)]

    # the same prediction by hand: latents of the UNet, decoded with the skips of the all-in-focus frames
    with torch.no_grad():
        encoded = net.encode(clips["aif"], return_skips=True)
        latents = net.predict_latents(clips["aif"], clips["disparity"], clips["disp_focus"], clips["k"])
        prediction = net.decode(latents, skips=encoded.skips)
        plain = net.decode(latents, skips=None)
    assert not torch.allclose(prediction, plain)  # the skips take part
    torch.testing.assert_close(output.prediction.detach(), prediction)
    # L1 and the texture loss on the same [-1, 1] frames
    l1 = (prediction - clips["bokeh"]).abs().mean()
    texture = gradient_texture_loss(prediction, clips["bokeh"])
    torch.testing.assert_close(output.terms["l1"], l1)
    torch.testing.assert_close(output.terms["texture"], texture)
    torch.testing.assert_close(output.loss.detach(), l1 + 0.3 * texture)


def test_stage2_perturbs_the_training_disparity_only_and_keeps_focus_and_ground_truth(tmp_path):
    perturbed = instantiate(tiny_config(tmp_path, "stage=stage2", "data.perturbation.p=1.0").data)
    clean = instantiate(tiny_config(tmp_path, "stage=stage2", "data.perturbation=null").data)
    train_perturbed, train_clean = perturbed.dataset("train").render_sample(0), clean.dataset("train").render_sample(0)
    assert not torch.equal(train_perturbed["disparity"], train_clean["disparity"])
    # d_f, K and the ground truth come from the clean scene, not from the perturbed map
    for key in ("disp_focus", "k", "aif", "bokeh"):
        assert torch.equal(train_perturbed[key], train_clean[key]), key
    val_perturbed, val_clean = perturbed.dataset("val").render_sample(0), clean.dataset("val").render_sample(0)
    assert torch.equal(val_perturbed["disparity"], val_clean["disparity"])


@pytest.mark.parametrize("stage", STAGES, ids=lambda cls: cls.__name__)
def test_every_trainable_parameter_gets_a_gradient(stage):
    """The optimizer holds exactly the parameters that learn: none that the forward pass never uses."""
    module = stage(AnyToBokeh.tiny(seed=0), OPTIMIZER_WITH_DECAY)
    module.train()
    module.model_step(random_batch()).loss.backward()
    trainable = {name for name, p in module.net.named_parameters() if p.requires_grad}
    assert trainable and trainable == {name for name, p in module.net.named_parameters() if p.grad is not None}
    optimizer = module.configure_optimizers()["optimizer"]
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert in_optimizer == {id(p) for p in module.net.parameters() if p.requires_grad}


# forward calls of one UNet res block, the VAE encoder's first block and the decoder's first block in one
# training step, without and with the model's gradient checkpointing: only blocks that run with gradients
# are recomputed in backward (the encoder runs for the bokeh, the all-in-focus frames and V_D)
# the frozen encodes (bokeh, all-in-focus, V_D; stage 3 without the bokeh) are one encoder call per step
RECOMPUTED = {
    Stage1GeometryGuided: ({"unet": 1, "encoder": 1, "decoder": 0}, {"unet": 2, "encoder": 1, "decoder": 0}),
    Stage2TemporalRefinement: ({"unet": 1, "encoder": 1, "decoder": 0}, {"unet": 2, "encoder": 1, "decoder": 0}),
    Stage3DecoderDetail: ({"unet": 1, "encoder": 1, "decoder": 1}, {"unet": 1, "encoder": 1, "decoder": 2}),
}


@pytest.mark.parametrize("stage", STAGES, ids=lambda cls: cls.__name__)
def test_gradient_checkpointing_recomputes_the_trained_part_with_the_same_gradients(stage):
    # stages 2 and 3 checkpoint blocks whose inputs come from frozen layers (model.gradient_checkpointing)
    gradients, calls = [], []
    for checkpointing in (False, True):
        module = stage(AnyToBokeh.tiny(seed=0, gradient_checkpointing=checkpointing), OPTIMIZER_WITH_DECAY)
        module.train()
        net = module.net
        blocks = {
            "unet": net.unet.unet.down_blocks[0].resnets[0],
            "encoder": net.vae.vae.encoder.down_blocks[0],
            "decoder": net.vae.vae.decoder.up_blocks[0],
        }
        with forward_calls(**blocks) as counts:
            module.model_step(random_batch()).loss.backward()
        calls.append(counts)
        gradients.append({name: p.grad for name, p in module.net.named_parameters() if p.grad is not None})
    assert tuple(calls) == RECOMPUTED[stage]
    assert gradients[0].keys() == gradients[1].keys() and gradients[0]
    for name, gradient in gradients[0].items():
        torch.testing.assert_close(gradients[1][name], gradient, msg=name)


def test_stage3_trains_every_decoder_parameter_of_a_two_layer_mid_block():
    # SVD's VAE has two resnets in the decoder's mid block, so its mid-block attention runs and trains
    components = tiny_svd_components(0)
    components.pop("scheduler")
    vae = components["vae"]
    components["vae"] = AutoencoderKLTemporalDecoder(**{**vae.config, "layers_per_block": 2})
    module = Stage3DecoderDetail(AnyToBokeh(**components), OPTIMIZER_WITH_DECAY)
    decoder = module.net.vae.vae.decoder
    assert len(decoder.mid_block.resnets) == 2
    trainable = {id(p) for p in module.net.parameters() if p.requires_grad}
    assert {id(p) for p in decoder.parameters()} <= trainable


def quiet_trainer(tmp_path, **kwargs):
    options = dict(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        accelerator="cpu",
    )
    return Trainer(**{**options, **kwargs})


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES, ids=lambda cls: cls.__name__)
def test_fitting_with_accumulation_leaves_frozen_tensors_bit_identical(stage, tmp_path):
    module = stage(AnyToBokeh.tiny(seed=0), OPTIMIZER_WITH_DECAY)
    before = {key: value.clone() for key, value in module.net.state_dict().items()}
    trainable = set(module.trainable_parameter_names())
    trainer = quiet_trainer(
        tmp_path,
        max_steps=2,
        accumulate_grad_batches=2,
        val_check_interval=2,
        check_val_every_n_epoch=None,
        callbacks=[VideoLogger(num_videos=3, dirpath=str(tmp_path / "videos"))],
    )
    train_batches = [random_batch(batch_size=2, seed=i) for i in range(4)]
    # validation on 2 batches of 2 one-frame clips: the video logger takes 3 clips across batches
    val_batches = [random_batch(batch_size=2, frames=1, seed=10 + i) for i in range(2)]
    trainer.fit(module, DataLoader(train_batches, batch_size=None), DataLoader(val_batches, batch_size=None))
    assert trainer.global_step == 2
    after = module.net.state_dict()
    changed = {key for key in before if not torch.equal(before[key], after[key])}
    assert changed and changed <= trainable  # parameters, buffers included
    # val_check_interval counts batches: with 2 batches per step, validation ran after steps 1 and 2
    assert len(list((tmp_path / "videos").glob("step0000002_*.mp4"))) == 3


@pytest.mark.slow
def test_stage2_init_from_a_stage1_checkpoint_starts_from_every_stage1_tensor(tmp_path):
    _, objects = train(tiny_config(tmp_path / "s1", "stage=stage1", "module.optimizer.lr=1e-3", "logger=none"))
    stage1 = objects["net"].state_dict()
    ckpt = tmp_path / "s1" / "checkpoints" / "last.ckpt"
    net = build_net(objects["cfg"].model, str(ckpt))
    module = Stage2TemporalRefinement(net, OPTIMIZER_WITH_DECAY)
    stage2 = module.net.state_dict()
    assert stage1.keys() == stage2.keys()
    assert all(torch.equal(stage1[key], stage2[key]) for key in stage1)
    # training moved the new modules too, and they arrive in stage 2
    fresh = AnyToBokeh.tiny(seed=0).state_dict()
    new = [key for key in net.new_parameter_names() if key.startswith("unet.")]
    assert any(not torch.equal(fresh[key], stage2[key]) for key in new if key.startswith("unet.mpi_blocks."))
    assert any(not torch.equal(fresh[key], stage2[key]) for key in new if key.startswith("unet.cond_embed."))


def test_gradient_checkpointing_levels_give_the_same_gradients_and_deep_skips_the_outer_level(tiny_net_factory):
    clip = random_batch(batch_size=1, seed=5)
    results = {}
    for levels in ("none", "deep", "all"):
        module = Stage1GeometryGuided(_open(tiny_net_factory()), OPTIMIZER)
        module.net._set_dtype_and_checkpointing(None, levels)
        calls = []
        outer = module.net.unet.unet.down_blocks[0].resnets[0]
        inner = module.net.unet.unet.down_blocks[1].resnets[0]
        for name, block in (("outer", outer), ("inner", inner)):
            # a pre-hook: checkpointing stops a recomputation early, before forward hooks would run
            block.register_forward_pre_hook(lambda m, args, name=name: calls.append(name))
        module.train()
        loss = module.model_step(clip).loss
        forward = list(calls)
        grads = torch.autograd.grad(loss, [p for p in module.net.parameters() if p.requires_grad])
        recomputed = calls[len(forward) :]
        results[levels] = (grads, recomputed)
    assert results["none"][1] == [] and sorted(results["all"][1]) == ["inner", "outer"]
    assert results["deep"][1] == ["inner"]  # the outermost level is not recomputed
    for levels in ("deep", "all"):
        for got, want in zip(results[levels][0], results["none"][0]):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_adamw_is_fused_only_for_cuda_parameters_and_only_when_the_config_leaves_it_open():
    from types import SimpleNamespace

    from any2bokeh.stages.base import fused_option

    cuda = SimpleNamespace(is_cuda=True, is_floating_point=lambda: True)
    cpu = torch.zeros(2, requires_grad=True)
    assert fused_option(OPTIMIZER, [cuda, cuda]) == {"fused": True}
    assert fused_option(OPTIMIZER, [cuda, cpu]) == {}
    assert fused_option(partial(torch.optim.AdamW, lr=1e-3, fused=False), [cuda]) == {}
    assert fused_option(partial(torch.optim.SGD, lr=1e-3), [cuda]) == {}
    # on the CPU the optimizer a stage builds is the plain one
    module = Stage1GeometryGuided(AnyToBokeh.tiny(seed=0), OPTIMIZER)
    assert not module.configure_optimizers()["optimizer"].defaults.get("fused")
