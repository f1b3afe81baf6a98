"""The stages' objectives, frozen parts, stage chaining and short runs, checked against hand computations."""

from functools import partial

import pytest
import torch
from diffusers import AutoencoderKLTemporalDecoder
from hydra.utils import instantiate
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader

from any2bokeh.callbacks import VideoLogger
from any2bokeh.models import AnyToBokeh
from any2bokeh.models.tiny import tiny_svd_components
from any2bokeh.stages import Stage1GeometryGuided, Stage2TemporalRefinement, Stage3DecoderDetail
from any2bokeh.stages.losses import gradient_texture_loss
from any2bokeh.training import build_net, train
from tests.forward_calls import forward_calls
from tests.train_configs import tiny_config

OPTIMIZER = partial(torch.optim.AdamW, lr=1e-3, weight_decay=0.1)
STAGES = (Stage1GeometryGuided, Stage2TemporalRefinement, Stage3DecoderDetail)


def batch(batch_size=1, frames=2, size=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    shape = (batch_size, frames)
    return {
        "aif": torch.rand(*shape, 3, size, size, generator=generator) * 2 - 1,
        "bokeh": torch.rand(*shape, 3, size, size, generator=generator) * 2 - 1,
        "disparity": torch.rand(*shape, 1, size, size, generator=generator),
        "disp_focus": torch.rand(shape, generator=generator).clamp(0.1, 0.9),
        "k": torch.full(shape, 8.0),
    }


def quiet_trainer(tmp_path, **kwargs):
    options = dict(
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path, accelerator="cpu",
    )
    return Trainer(**{**options, **kwargs})


def test_stage1_loss_is_the_mse_to_the_eval_mode_vae_latents_of_the_bokeh():
    module = Stage1GeometryGuided(AnyToBokeh.tiny(seed=0), OPTIMIZER)
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
    clips = batch(batch_size=2)
    torch.manual_seed(0)
    output = module.model_step(clips)
    # bokeh and all-in-focus frames are encoded without a graph, then V_D inside predict_latents; all in eval mode
    assert [training for training, _ in calls] == [False, False, False]
    assert [grad for _, grad in calls[:2]] == [False, False]

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
    assert all(p.grad is None for p in net.vae.parameters()) and all(p.grad is None for p in net.image_encoder.parameters())


def test_texture_loss_matches_finite_differences_by_loops():
    generator = torch.Generator().manual_seed(1)
    prediction = torch.rand(2, 3, 5, 7, generator=generator)
    target = torch.rand(2, 3, 5, 7, generator=generator)
    squares_x, squares_y = [], []
    for n in range(2):
        for c in range(3):
            for y in range(5):
                for x in range(7):
                    if x + 1 < 7:
                        gx = (prediction[n, c, y, x + 1] - prediction[n, c, y, x]) - (target[n, c, y, x + 1] - target[n, c, y, x])
                        squares_x.append(float(gx) ** 2)
                    if y + 1 < 5:
                        gy = (prediction[n, c, y + 1, x] - prediction[n, c, y, x]) - (target[n, c, y + 1, x] - target[n, c, y, x])
                        squares_y.append(float(gy) ** 2)
    expected = sum(squares_x) / len(squares_x) + sum(squares_y) / len(squares_y)
    assert gradient_texture_loss(prediction, target).item() == pytest.approx(expected, rel=1e-5)


def test_stage3_loss_decodes_the_frozen_unets_latents_with_the_all_in_focus_skips():
    net = AnyToBokeh.tiny(seed=0, skip_init=0.05)
    module = Stage3DecoderDetail(net, OPTIMIZER, texture_weight=0.3)
    module.train()
    unet_modes = []
    net.unet.register_forward_pre_hook(lambda unet, *_: unet_modes.append((unet.training, torch.is_grad_enabled())), with_kwargs=True)
    clips = batch()
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
    module = stage(AnyToBokeh.tiny(seed=0), OPTIMIZER)
    module.train()
    module.model_step(batch()).loss.backward()
    trainable = {name for name, p in module.net.named_parameters() if p.requires_grad}
    assert trainable and trainable == {name for name, p in module.net.named_parameters() if p.grad is not None}
    optimizer = module.configure_optimizers()["optimizer"]
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert in_optimizer == {id(p) for p in module.net.parameters() if p.requires_grad}


# forward calls of one UNet res block, the VAE encoder's first block and the decoder's first block in one
# training step, without and with the model's gradient checkpointing: only blocks that run with gradients
# are recomputed in backward (the encoder runs for the bokeh, the all-in-focus frames and V_D)
RECOMPUTED = {
    Stage1GeometryGuided: ({"unet": 1, "encoder": 3, "decoder": 0}, {"unet": 2, "encoder": 3, "decoder": 0}),
    Stage2TemporalRefinement: ({"unet": 1, "encoder": 3, "decoder": 0}, {"unet": 2, "encoder": 3, "decoder": 0}),
    Stage3DecoderDetail: ({"unet": 1, "encoder": 2, "decoder": 1}, {"unet": 1, "encoder": 2, "decoder": 2}),
}


@pytest.mark.parametrize("stage", STAGES, ids=lambda cls: cls.__name__)
def test_gradient_checkpointing_recomputes_the_trained_part_with_the_same_gradients(stage):
    # stages 2 and 3 checkpoint blocks whose inputs come from frozen layers (model.gradient_checkpointing)
    gradients, calls = [], []
    for checkpointing in (False, True):
        module = stage(AnyToBokeh.tiny(seed=0, gradient_checkpointing=checkpointing), OPTIMIZER)
        module.train()
        net = module.net
        blocks = {
            "unet": net.unet.unet.down_blocks[0].resnets[0],
            "encoder": net.vae.vae.encoder.down_blocks[0],
            "decoder": net.vae.vae.decoder.up_blocks[0],
        }
        with forward_calls(**blocks) as counts:
            module.model_step(batch()).loss.backward()
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
    module = Stage3DecoderDetail(AnyToBokeh(**components), OPTIMIZER)
    decoder = module.net.vae.vae.decoder
    assert len(decoder.mid_block.resnets) == 2
    trainable = {id(p) for p in module.net.parameters() if p.requires_grad}
    assert {id(p) for p in decoder.parameters()} <= trainable


@pytest.mark.slow
def test_stage3_runs_under_two_process_ddp(tmp_path):
    # DDP without find_unused_parameters stops when a trainable parameter gets no gradient
    _, objects = train(tiny_config(tmp_path, "stage=stage3", "hardware=ddp_cpu2", "data.train_size=2", "logger=none"))
    assert objects["trainer"].world_size == 2
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES, ids=lambda cls: cls.__name__)
def test_fitting_with_accumulation_leaves_frozen_tensors_bit_identical(stage, tmp_path):
    module = stage(AnyToBokeh.tiny(seed=0), OPTIMIZER)
    before = {key: value.clone() for key, value in module.net.state_dict().items()}
    trainable = set(module.trainable_parameter_names())
    trainer = quiet_trainer(
        tmp_path, max_steps=2, accumulate_grad_batches=2, val_check_interval=2, check_val_every_n_epoch=None,
        callbacks=[VideoLogger(num_videos=3, dirpath=str(tmp_path / "videos"))],
    )
    train_batches = [batch(batch_size=2, seed=i) for i in range(4)]
    # validation on 2 batches of 2 one-frame clips: the video logger takes 3 clips across batches
    val_batches = [batch(batch_size=2, frames=1, seed=10 + i) for i in range(2)]
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
    module = Stage2TemporalRefinement(net, OPTIMIZER)
    stage2 = module.net.state_dict()
    assert stage1.keys() == stage2.keys()
    assert all(torch.equal(stage1[key], stage2[key]) for key in stage1)
    # training moved the new modules too, and they arrive in stage 2
    fresh = AnyToBokeh.tiny(seed=0).state_dict()
    new = [key for key in net.new_parameter_names() if key.startswith("unet.")]
    assert any(not torch.equal(fresh[key], stage2[key]) for key in new if key.startswith("unet.mpi_blocks."))
    assert any(not torch.equal(fresh[key], stage2[key]) for key in new if key.startswith("unet.cond_embed."))


@pytest.mark.slow
def test_a_run_shorter_than_the_validation_interval_still_reports_the_optimized_metric(tmp_path):
    # 2 steps with validation every 20: the final weights are validated once fitting ends
    metrics, objects = train(tiny_config(tmp_path, "trainer.val_check_interval=20", "logger=none"))
    assert objects["trainer"].global_step == 2
    assert {"train/loss", "val/psnr", "val/ssim"} <= metrics.keys()
    assert list((tmp_path / "videos").glob("*.mp4"))
