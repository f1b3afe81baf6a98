import pytest
import torch

from any2bokeh.models.tiny import tiny_vae
from any2bokeh.models.vae import SkipVAE
from tests.helpers.forward_calls import forward_calls


@pytest.fixture
def vae():
    torch.manual_seed(0)
    return tiny_vae().eval()


@pytest.fixture
def frames():
    generator = torch.Generator().manual_seed(1)
    # two clips of three frames, flattened: [batch * frames, 3, H, W] in [-1, 1]
    return torch.rand(6, 3, 32, 32, generator=generator) * 2 - 1


def relative_error(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def test_keeps_every_vae_parameter_name_and_adds_only_skip_convs(vae):
    skip_vae = SkipVAE(vae)
    names = set(skip_vae.state_dict())
    original = {"vae." + name for name in vae.state_dict()}
    assert original <= names
    assert {name.split(".")[0] for name in names - original} == set(SkipVAE.new_module_names)
    assert skip_vae.num_skips == len(vae.encoder.down_blocks) == 2
    assert all(conv.bias is None and conv.kernel_size == (1, 1) for conv in skip_vae.skip_convs)


@pytest.mark.parametrize("skip_init", [0.0, 1e-5])
def test_matches_plain_vae_at_init(vae, frames, skip_init):
    skip_vae = SkipVAE(vae, skip_init=skip_init)
    with torch.no_grad():
        plain = vae(frames, num_frames=3).sample
        skipped = skip_vae(frames, num_frames=3)
    assert relative_error(skipped, plain) < 1e-3
    if skip_init == 0.0:
        torch.testing.assert_close(skipped, plain, rtol=0, atol=1e-6)


def test_encoder_matches_and_caches_down_block_inputs(vae, frames):
    skip_vae = SkipVAE(vae)
    with torch.no_grad():
        encoding = skip_vae.encode(frames)
        plain = vae.encode(frames).latent_dist
    torch.testing.assert_close(encoding.latent_dist.mean, plain.mean)
    shapes = [tuple(skip.shape) for skip in encoding.skips]
    assert shapes == [(6, 32, 32, 32), (6, 32, 16, 16)]
    with torch.no_grad():
        bare = skip_vae.encode(frames, keep_skips=False)
    # keeping the skips only records features on the way: the same computation, so equal bit for bit
    assert bare.skips == [] and torch.equal(bare.latent_dist.mean, encoding.latent_dist.mean)


def test_temporal_decoder_carries_num_frames(vae, frames):
    skip_vae = SkipVAE(vae)
    with torch.no_grad():
        latents = skip_vae.encode(frames).latent_dist.mode()
        for num_frames in (1, 3):
            torch.testing.assert_close(
                skip_vae.decode(latents, num_frames), vae.decode(latents, num_frames=num_frames).sample
            )
        # the temporal output conv mixes frames, so the clip length matters
        assert not torch.allclose(skip_vae.decode(latents, 1), skip_vae.decode(latents, 3))


def test_skip_convs_receive_gradient_at_zero_init_and_then_act(vae, frames):
    skip_vae = SkipVAE(vae)
    reconstruction = skip_vae(frames, num_frames=3)
    reconstruction.square().mean().backward()
    for j, conv in enumerate(skip_vae.skip_convs):
        assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0, f"skip conv {j} has no gradient"

    with torch.no_grad():
        encoding = skip_vae.encode(frames)
        latents = encoding.latent_dist.mode()
        before = skip_vae.decode(latents, 3, skips=encoding.skips)
        skip_vae.skip_convs[0].weight.normal_(std=0.1)
        after = skip_vae.decode(latents, 3, skips=encoding.skips)
        plain = skip_vae.decode(latents, 3)
    assert (after - before).abs().max() > 1e-3
    torch.testing.assert_close(plain, before)


def test_gradient_checkpointing_gives_same_values_and_gradients(vae, frames):
    skip_vae = SkipVAE(vae, skip_init=0.01)
    skip_vae.vae.train()
    blocks = {
        "encoder": skip_vae.vae.encoder.down_blocks[1],
        "encoder_mid": skip_vae.vae.encoder.mid_block,
        "decoder_mid": skip_vae.vae.decoder.mid_block,
        "decoder": skip_vae.vae.decoder.up_blocks[1],
    }

    def run():
        skip_vae.zero_grad()
        with forward_calls(**blocks) as calls:
            out = skip_vae(frames, num_frames=3)
            out.square().mean().backward()
        grads = {name: p.grad.clone() for name, p in skip_vae.named_parameters() if p.grad is not None}
        return out.detach(), grads, calls

    out_plain, grads_plain, calls_plain = run()
    skip_vae.enable_gradient_checkpointing()
    assert skip_vae.vae.decoder.gradient_checkpointing
    out_ckpt, grads_ckpt, calls_ckpt = run()
    skip_vae.disable_gradient_checkpointing()
    # every checkpointed block runs again in backward
    assert calls_plain == dict.fromkeys(blocks, 1) and calls_ckpt == dict.fromkeys(blocks, 2)
    torch.testing.assert_close(out_ckpt, out_plain)
    assert grads_ckpt.keys() == grads_plain.keys() >= {name for name, _ in skip_vae.decoder_parameters()}
    assert any(name.startswith("vae.encoder.") for name in grads_plain)
    for name, grad in grads_plain.items():
        torch.testing.assert_close(grads_ckpt[name], grad, msg=name)

    # frozen and run without gradients (the encoder in every stage): nothing to recompute
    with torch.no_grad(), forward_calls(**blocks) as calls:
        skip_vae.enable_gradient_checkpointing()
        skip_vae.encode(frames)
    assert calls == {"encoder": 1, "encoder_mid": 1, "decoder_mid": 0, "decoder": 0}


def test_decoder_parameters_are_the_decoder_and_skips_that_run(vae):
    skip_vae = SkipVAE(vae)
    names = [name for name, _ in skip_vae.decoder_parameters()]
    assert any(name.startswith("skip_convs.") for name in names)
    assert not any(name.startswith(("vae.encoder.", "vae.quant_conv")) for name in names)
    # the tiny decoder's mid block has one resnet: its attention never runs, so it is not trained
    mid_attention = {
        f"vae.{name}" for name, _ in vae.named_parameters() if name.startswith("decoder.mid_block.attentions")
    }
    assert mid_attention and not mid_attention & set(names)
    expected = {name for name, _ in skip_vae.named_parameters() if name.startswith(("vae.decoder.", "skip_convs."))}
    assert set(names) == expected - mid_attention


def test_clear_errors(vae, frames):
    skip_vae = SkipVAE(vae)
    with pytest.raises(ValueError, match="num_frames=4"):
        skip_vae.decode(torch.zeros(6, 4, 16, 16), 4)
    with pytest.raises(ValueError, match="expects 2 skip features, got 1"):
        skip_vae.decode(torch.zeros(6, 4, 16, 16), 3, skips=[frames])
    with pytest.raises(ValueError, match=r"\(6, 3, 32\)"):
        skip_vae.encode(frames[:, :, 0])
    small = skip_vae.encode(frames[:, :, :16, :16]).skips
    with pytest.raises(ValueError, match="encode and decode the same frames"):
        skip_vae.decode(torch.zeros(6, 4, 16, 16), 3, skips=small)
    with pytest.raises(TypeError, match="UNetSpatioTemporalConditionModel"):
        from any2bokeh.models.tiny import tiny_unet

        SkipVAE(tiny_unet())
