"""The one-step AnyToBokeh pipeline on the tiny SVD: shapes, SVD equivalence at init, the MPI mask, errors."""

from pathlib import Path

import hydra
import pytest
import torch
from omegaconf import OmegaConf

from any2bokeh.models import AnyToBokeh, mpi_regions, save_tiny_svd, vd_image
from tests.helpers.forward_calls import forward_calls

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"


def clip(seed=0, batch=2, frames=2, size=32):
    generator = torch.Generator().manual_seed(seed)
    aif = torch.rand(batch, frames, 3, size, size, generator=generator) * 2 - 1
    disparity = torch.rand(batch, frames, 1, size, size, generator=generator)
    disp_focus = torch.rand(batch, frames, generator=generator) * 0.8 + 0.1
    k = torch.full((batch,), 16.0)
    return aif, disparity, disp_focus, k


def relative_error(actual, expected):
    """||actual - expected|| / ||expected||, in float32."""
    return ((actual.float() - expected.float()).norm() / expected.float().norm()).item()


def open_gates(model, value=1.0):
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "gate" in name:
                parameter.fill_(value)


@pytest.fixture(scope="module")
def model():
    return AnyToBokeh.tiny(seed=0).eval()


def test_forward_shapes(model):
    aif, disparity, disp_focus, k = clip(batch=2, frames=3)
    with torch.no_grad():
        output = model(aif, disparity, disp_focus, k)
    assert output.frames.shape == (2, 3, 3, 32, 32)
    assert output.latents.shape == (2, 3, 4, 16, 16)
    assert torch.isfinite(output.frames).all()
    # per-frame CLIP context, one embedding per input frame
    context = model.image_context(aif)
    assert context.shape == (2, 3, 32)
    assert not torch.allclose(context[:, 0], context[:, 1])


def test_encode_decode(model):
    aif = clip()[0]
    with torch.no_grad():
        latents, skips = model.encode(aif, return_skips=True)
        plain = model.vae.vae.encode(aif.flatten(0, 1)).latent_dist.mode()
        torch.testing.assert_close(latents.flatten(0, 1), plain * model.vae.config.scaling_factor)
        # encode is encode_with_skips without keeping the skips: the same kernels on the same tensors
        assert len(skips) == 2 and torch.equal(model.encode(aif), latents)
        frames = model.decode(latents, skips)
        # zero skips: decoding with and without them agrees at initialisation
        torch.testing.assert_close(frames, model.decode(latents))
    assert frames.shape == aif.shape


def test_one_step_call_is_svd_at_init():
    """At init the model is SVD run once on [aif latents, V_D latents] with the fixed timestep and time ids."""
    model = AnyToBokeh.tiny(seed=1, use_image_encoder=False, timestep=0.5, fps=9).eval()
    aif, disparity, disp_focus, k = clip(seed=1)
    with torch.no_grad():
        predicted = model.predict_latents(aif, disparity, disp_focus, k)
        sample = torch.cat([model.encode(aif), model.encode(vd_image(disparity, disp_focus))], dim=2)
        context = torch.zeros(2, 1, 32)
        time_ids = torch.tensor([[9.0, 127.0, 0.0]] * 2)
        expected = model.unet.unet(sample, 0.5, context, time_ids).sample
        torch.testing.assert_close(predicted, expected)
        fps_6 = model.unet.unet(sample, 0.5, context, torch.tensor([[6.0, 127.0, 0.0]] * 2)).sample
    assert not torch.allclose(predicted, fps_6)
    assert model.image_context(aif).abs().sum() == 0


@pytest.mark.slow
def test_mpi_regions_act_through_the_pipeline():
    """Changing only the MPI regions (via alpha: same disparity, same V_D) changes the output once gates open."""
    aif, disparity, disp_focus, k = clip(seed=2)
    assert not torch.equal(
        mpi_regions(disparity[:, :, 0], disp_focus, 4, 1.0), mpi_regions(disparity[:, :, 0], disp_focus, 4, 3.0)
    )
    models = {alpha: AnyToBokeh.tiny(seed=2, mpi_alpha=alpha).eval() for alpha in (1.0, 3.0)}
    with torch.no_grad():
        closed = {alpha: m(aif, disparity, disp_focus, k).frames for alpha, m in models.items()}
        for m in models.values():
            open_gates(m)
        opened = {alpha: m(aif, disparity, disp_focus, k).frames for alpha, m in models.items()}
    torch.testing.assert_close(closed[1.0], closed[3.0])
    assert (opened[1.0] - opened[3.0]).abs().max() > 1e-4


@pytest.mark.slow
def test_gradient_reaches_new_modules_and_checkpointing_agrees():
    model = AnyToBokeh.tiny(seed=3)
    open_gates(model, 0.5)
    with torch.no_grad():
        model.vae.reset_skips(1e-3)
    aif, disparity, disp_focus, k = clip(seed=3, batch=1)

    def step():
        model.zero_grad()
        output = model(aif, disparity, disp_focus, k)
        output.frames.square().mean().backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        return output.frames.detach(), grads

    # one block of each checkpointed part: a UNet res block, an MPI attention, the VAE encoder and decoder
    blocks = {
        "unet": model.unet.unet.down_blocks[0].resnets[0],
        "mpi": model.unet.mpi_blocks[0],
        "encoder": model.vae.vae.encoder.down_blocks[0],
        "decoder": model.vae.vae.decoder.up_blocks[0],
    }
    with forward_calls(**blocks) as plain_calls:
        frames, grads = step()
    for name in ("unet.cond_embed.weight", "vae.skip_convs.0.weight", "vae.skip_convs.1.weight"):
        assert grads[name].abs().sum() > 0, name
    assert any(name.startswith("unet.mpi_blocks.") and grad.abs().sum() > 0 for name, grad in grads.items())

    model.enable_gradient_checkpointing()
    with forward_calls(**blocks) as checkpointed_calls:
        frames_ckpt, grads_ckpt = step()
    model.disable_gradient_checkpointing()
    # the encoder runs twice per call (all-in-focus frames and V_D), the others once; backward recomputes each
    assert plain_calls == {"unet": 1, "mpi": 1, "encoder": 2, "decoder": 1}
    assert checkpointed_calls == {"unet": 2, "mpi": 2, "encoder": 4, "decoder": 2}
    torch.testing.assert_close(frames_ckpt, frames)
    assert grads_ckpt.keys() == grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grads_ckpt[name], grad, msg=name)


def test_image_encoder_off():
    model = AnyToBokeh.tiny(seed=0, use_image_encoder=False).eval()
    assert model.image_encoder is None and not any(name.startswith("image_encoder") for name in model.state_dict())
    with torch.no_grad():
        output = model(*clip(batch=1))
    assert output.frames.shape == (1, 2, 3, 32, 32)


def test_inputs_are_validated(model):
    aif, disparity, disp_focus, k = clip(batch=1)
    cases = [
        ((aif, disparity, disp_focus, -1.0), r"k must be finite and in \[0.0, inf\], got values in \[-1"),
        ((aif, disparity, disp_focus, float("inf")), r"k must be finite .* got values in \[inf"),
        ((aif, disparity, 1.5, k), r"disp_focus must be finite and in \[0.0, 1.0\], got values in \[1.5"),
        ((aif, disparity * 2, disp_focus, k), r"disparity must be finite and in \[0.0, 1.0\]"),
        ((aif, disparity * float("nan"), disp_focus, k), r"disparity must be finite .* got values in \[nan"),
        ((aif * 255, disparity, disp_focus, k), r"aif must be finite and in \[-1.0, 1.0\]"),
        ((aif, disparity[..., :16], disp_focus, k), r"must be \[1, 2, 1, 32, 32\] like aif, got \(1, 2, 1, 32, 16\)"),
        ((aif, disparity, torch.zeros(3), k), r"disp_focus must be a float, \[1\] or \[1, 2\], got shape \(3,\)"),
        ((aif[:, :, :, :31, :31], disparity, disp_focus, k), r"multiples of 2, got 31x31"),
        ((aif[:, :, :, :18, :18], disparity[..., :18, :18], disp_focus, k), r"multiples of 4, got 18x18"),
        ((aif[0], disparity, disp_focus, k), r"aif must be \[B, T, 3, H, W\], got shape \(2, 3, 32, 32\)"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            model.predict_latents(*args)
    # a disparity without its channel dim and a d_f of 0 are accepted
    with torch.no_grad():
        assert model.predict_latents(aif, disparity[:, :, 0], 0.0, k).shape == (1, 2, 4, 16, 16)
    with pytest.raises(TypeError, match="unknown option"):
        AnyToBokeh.tiny(n_plane=4)
    with pytest.raises(ValueError, match="unknown dtype 'half-ish'"):
        AnyToBokeh.tiny(dtype="half-ish")


def test_model_configs_instantiate(tmp_path):
    tiny = hydra.utils.instantiate(OmegaConf.load(CONF / "svd_tiny.yaml"), use_image_encoder=False)
    assert isinstance(tiny, AnyToBokeh) and tiny.image_encoder is None
    assert tiny.options.ff_mult == 2 and tiny.options.max_key_tokens == 576
    assert {mpi.max_key_tokens for mpi in tiny.unet.mpi_blocks} == {576}

    config = OmegaConf.load(CONF / "svd.yaml")
    assert config.pretrained == "stabilityai/stable-video-diffusion-img2vid-xt"
    config.pretrained = str(save_tiny_svd(tmp_path / "svd"))
    model = hydra.utils.instantiate(config)
    assert isinstance(model, AnyToBokeh) and model.options.fps == 7
    assert model.unet.is_gradient_checkpointing


def test_half_precision_weights_on_cpu():
    full = AnyToBokeh.tiny(seed=0).eval()
    model = AnyToBokeh.tiny(seed=0, dtype="bf16").eval()
    open_gates(full, 0.5)
    open_gates(model, 0.5)
    inputs = clip(batch=1)
    with torch.no_grad():
        output, reference = model(*inputs), full(*inputs)
    assert output.frames.dtype == output.latents.dtype == torch.bfloat16
    # bf16 keeps 8 bits of mantissa; through the tiny model's ~40 layers the outputs differ from float32 by
    # about 5 % in norm (measured 4.3 % and 4.7 %); a wrong cast or scale would be off by 100 %
    assert relative_error(output.latents, reference.latents) < 0.1
    assert relative_error(output.frames, reference.frames) < 0.1


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_half_precision_forward_backward(dtype):
    full = AnyToBokeh.tiny(seed=0).cuda()
    model = AnyToBokeh.tiny(seed=0, dtype=dtype).cuda()
    open_gates(full, 0.5)
    open_gates(model, 0.5)
    aif, disparity, disp_focus, k = (t.cuda() for t in clip(batch=1))
    output = model(aif, disparity, disp_focus, k)
    output.frames.float().square().mean().backward()
    assert output.frames.device.type == "cuda" and output.frames.dtype == dtype
    assert model.unet.cond_embed.weight.grad.abs().sum() > 0
    with torch.no_grad():
        reference = full(aif, disparity, disp_focus, k)
    assert relative_error(output.frames.detach(), reference.frames) < 0.1


@pytest.mark.slow
def test_real_svd_sizes_under_fake_tensors():
    """SVD img2vid-xt's UNet, 4-block VAE and ViT-H image encoder wrap by name and run, without weights."""
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
    from torch._subclasses.fake_tensor import FakeTensorMode
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from any2bokeh.models.svd_xt import SVD_CLIP, SVD_VAE
    from any2bokeh.models.tiny import tiny_feature_extractor

    with FakeTensorMode():
        unet = UNetSpatioTemporalConditionModel()
        vae = AutoencoderKLTemporalDecoder(**SVD_VAE)
        clip_config = CLIPVisionConfig(**SVD_CLIP)
        image_encoder = CLIPVisionModelWithProjection(clip_config)
        base = {
            f"{prefix}{name}": parameter.numel()
            for prefix, module in (("unet.unet.", unet), ("vae.vae.", vae), ("image_encoder.", image_encoder))
            for name, parameter in module.named_parameters()
        }
        model = AnyToBokeh(unet, vae, image_encoder, tiny_feature_extractor())
        model.check_values = False
        output = model(torch.empty(1, 2, 3, 64, 128), torch.empty(1, 2, 1, 64, 128), torch.full((1, 2), 0.5), 16.0)

    parameters = dict(model.named_parameters())
    assert all(parameters[name].numel() == size for name, size in base.items())
    assert sum(size for name, size in base.items() if name.startswith("unet.")) == 1_524_623_082
    assert [tuple(conv.weight.shape[:2]) for conv in model.vae.skip_convs] == [
        (512, 512),
        (512, 256),
        (512, 128),
        (256, 128),
    ]
    assert output.frames.shape == (1, 2, 3, 64, 128) and output.latents.shape == (1, 2, 4, 8, 16)


def test_random_real_svd_puts_every_tensor_on_the_device():
    """All of the real architecture is made on the asked device, the temporal blocks' mix factors too."""
    from any2bokeh.models.svd_xt import random_real_svd

    model = random_real_svd("meta", torch.bfloat16)
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    assert not [name for name, t in tensors.items() if t.device.type != "meta"]
    assert model.unet.unet.down_blocks[0].resnets[0].time_mixer.mix_factor.dtype == torch.bfloat16
