"""Frames and samples stay apart: no flatten/repeat order mixes one frame's or one sample's inputs into another's.

Every input of the model is flattened from [B, T, ...] to [B * T, ...] somewhere (UNet, MPI conditioning, CLIP
context, VAE); a [T * B] order or a wrong repeat would pair a frame with another frame's conditioning. With the
temporal mixing switched off, the UNet treats every frame on its own, so a change to one frame's input may
change only that frame's output; with it on, a change to one sample may still change only that sample.
"""

import copy

import pytest
import torch
from diffusers import AutoencoderKLTemporalDecoder
from diffusers.models.resnet import AlphaBlender
from torch._subclasses.fake_tensor import FakeTensorMode

from any2bokeh.models import AnyToBokeh, BokehUNet, mpi_regions
from any2bokeh.models.svd_xt import SVD_VAE
from any2bokeh.models.tiny import tiny_unet, tiny_vae
from any2bokeh.models.vae import SkipVAE

BATCH, FRAMES, SIZE = 2, 3, 8


@pytest.fixture(scope="module")
def bokeh_unet():
    torch.manual_seed(0)
    model = BokehUNet(tiny_unet()).eval()
    with torch.no_grad():
        for mpi in model.mpi_blocks:
            mpi.gate_attn.fill_(1.0)
            mpi.gate_ff.fill_(1.0)
            mpi.k_proj[-1].weight.normal_(std=0.5)
    return model


@pytest.fixture(scope="module")
def frame_local_unet(bokeh_unet):
    """The same model with every spatial/temporal mixer giving the temporal branch weight 0."""
    model = copy.deepcopy(bokeh_unet)
    blenders = [module for module in model.unet.modules() if isinstance(module, AlphaBlender)]
    assert blenders
    with torch.no_grad():
        for blender in blenders:
            assert blender.merge_strategy == "learned_with_images"
            # sigmoid(+-100) is exactly 1 or 0 in float32; the spatial branch gets weight 1
            blender.mix_factor.fill_(-100.0 if blender.switch_spatial_to_temporal_mix else 100.0)
    return model


def make_call(seed=0):
    generator = torch.Generator().manual_seed(seed)
    disparity = torch.rand(BATCH, FRAMES, 4 * SIZE, 4 * SIZE, generator=generator)
    return {
        "sample": torch.randn(BATCH, FRAMES, 8, SIZE, SIZE, generator=generator),
        "timestep": 1.0,
        # one CLIP token per frame
        "encoder_hidden_states": torch.randn(BATCH, FRAMES, 32, generator=generator),
        "added_time_ids": torch.tensor([[7.0, 127.0, 0.0], [6.0, 100.0, 0.1]]),
        "k": torch.rand(BATCH, FRAMES, generator=generator) * 30,
        "mpi_regions": mpi_regions(disparity, torch.rand(BATCH, FRAMES, generator=generator)),
        "cond_latents": torch.randn(BATCH, FRAMES, 4, SIZE, SIZE, generator=generator),
    }


def run(model, call):
    with torch.no_grad():
        return model(**call)


def changed_frames(reference, output, atol=1e-5):
    """Set of (sample, frame) whose output differs from the reference."""
    difference = (output - reference).abs().flatten(2).amax(-1)
    return {tuple(index) for index in (difference > atol).nonzero().tolist()}


def change_one_frame(call, name, sample, frame, seed=1):
    value = call[name].clone()
    generator = torch.Generator().manual_seed(seed)
    if name == "mpi_regions":
        shift = 1 + torch.randint(0, 2, value.shape[2:], generator=generator)
        value[sample, frame] = (value[sample, frame] + shift) % 4
    elif name == "k":
        value[sample, frame] = value[sample, frame] + 7.0
    else:
        value[sample, frame] = torch.randn(value.shape[2:], generator=generator)
    return {**call, name: value}


def test_without_temporal_mixing_frames_are_independent(frame_local_unet):
    # the mixers really switch the temporal branch off: shuffling the frames shuffles the output
    call = make_call()
    reference = run(frame_local_unet, call)
    order = torch.tensor([2, 0, 1])
    per_frame = ("sample", "encoder_hidden_states", "k", "mpi_regions", "cond_latents")
    shuffled = {**call, **{name: call[name][:, order] for name in per_frame}}
    torch.testing.assert_close(run(frame_local_unet, shuffled), reference[:, order], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["encoder_hidden_states", "mpi_regions", "cond_latents", "k", "sample"])
@pytest.mark.parametrize("sample, frame", [(0, 1), (1, 0), (1, 2)])
def test_one_frames_input_changes_only_that_frame(frame_local_unet, name, sample, frame):
    """Frame t's spatial cross-attention sees frame t's CLIP token only; its MPI inputs are its own."""
    call = make_call()
    reference = run(frame_local_unet, call)
    output = run(frame_local_unet, change_one_frame(call, name, sample, frame))
    assert changed_frames(reference, output) == {(sample, frame)}


@pytest.mark.parametrize(
    "name", ["encoder_hidden_states", "mpi_regions", "cond_latents", "k", "sample", "added_time_ids", "timestep"]
)
def test_samples_are_independent_with_temporal_mixing(bokeh_unet, name):
    call = make_call()
    reference = run(bokeh_unet, call)
    generator = torch.Generator().manual_seed(2)
    if name == "timestep":
        changed = {**call, "timestep": torch.tensor([1.0, 500.0])}
    elif name == "added_time_ids":
        changed = {**call, "added_time_ids": call["added_time_ids"] * torch.tensor([[1.0], [2.0]])}
    else:
        value = call[name].clone()
        if name == "mpi_regions":
            value[1] = (value[1] + 1) % 4
        elif name == "k":
            value[1] = value[1] + 7.0
        else:
            value[1] = torch.randn(value.shape[1:], generator=generator)
        changed = {**call, name: value}
    output = run(bokeh_unet, changed)
    assert {sample for sample, _ in changed_frames(reference, output)} == {1}


@pytest.fixture(scope="module")
def pipeline():
    model = AnyToBokeh.tiny(seed=0).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "gate" in name:
                parameter.fill_(1.0)
        for conv in model.vae.skip_convs:
            conv.weight.normal_(std=0.1)
    return model


def test_pipeline_samples_are_independent(pipeline):
    generator = torch.Generator().manual_seed(0)
    aif = torch.rand(BATCH, FRAMES, 3, 32, 32, generator=generator) * 2 - 1
    disparity = torch.rand(BATCH, FRAMES, 1, 32, 32, generator=generator)
    disp_focus = torch.rand(BATCH, FRAMES, generator=generator) * 0.8 + 0.1
    k = torch.tensor([16.0, 8.0])
    with torch.no_grad():
        reference = pipeline(aif, disparity, disp_focus, k).frames
        # sample 1 changes in every input; sample 0 keeps its own
        other = [
            torch.cat([aif[:1], torch.rand(1, FRAMES, 3, 32, 32, generator=generator) * 2 - 1]),
            torch.cat([disparity[:1], torch.rand(1, FRAMES, 1, 32, 32, generator=generator)]),
            torch.stack([disp_focus[0], torch.tensor([0.3, 0.5, 0.7])]),
            torch.tensor([16.0, 30.0]),
        ]
        output = pipeline(*other).frames
    torch.testing.assert_close(output[0], reference[0], rtol=0, atol=1e-5)
    assert (output[1] - reference[1]).abs().amax() > 1e-3


@pytest.fixture(scope="module")
def skip_vae():
    torch.manual_seed(0)
    model = SkipVAE(tiny_vae()).eval()
    with torch.no_grad():
        for conv in model.skip_convs:
            conv.weight.normal_(std=0.1)
    return model


@pytest.mark.parametrize("with_skips", [False, True])
def test_temporal_decoder_keeps_samples_apart(skip_vae, with_skips):
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(BATCH * FRAMES, 3, 32, 32, generator=generator) * 2 - 1
    with torch.no_grad():
        encoding = skip_vae.encode(images)
        latents = encoding.latent_dist.mode()
        skips = encoding.skips if with_skips else None
        reference = skip_vae.decode(latents, FRAMES, skips=skips)
        # sample 1 = rows FRAMES..2*FRAMES-1 of the flattened batch
        changed_latents = latents.clone()
        changed_latents[FRAMES:] = torch.randn(changed_latents[FRAMES:].shape, generator=generator)
        output = skip_vae.decode(changed_latents, FRAMES, skips=skips)
        # the temporal output conv does mix frames within a sample
        one_frame = latents.clone()
        one_frame[1] = torch.randn(one_frame[1].shape, generator=generator)
        mixed = skip_vae.decode(one_frame, FRAMES, skips=skips)
    torch.testing.assert_close(output[:FRAMES], reference[:FRAMES], rtol=0, atol=1e-6)
    assert (output[FRAMES:] - reference[FRAMES:]).abs().amax() > 1e-3
    assert (mixed[0] - reference[0]).abs().amax() > 0
    torch.testing.assert_close(mixed[FRAMES:], reference[FRAMES:], rtol=0, atol=1e-6)


def test_skips_come_from_the_encoder_in_reverse_on_the_real_svd_vae():
    """SVD img2vid-xt's VAE config: each skip conv maps the encoder feature at its up block's resolution."""
    with FakeTensorMode():
        vae = AutoencoderKLTemporalDecoder(**SVD_VAE)
        model = SkipVAE(vae)
        images = torch.rand(2 * 2, 3, 64, 96)
        with torch.no_grad():
            encoding = model.encode(images)
            assert [tuple(s.shape) for s in encoding.skips] == [
                (4, 128, 64, 96),
                (4, 128, 32, 48),
                (4, 256, 16, 24),
                (4, 512, 8, 12),
            ]
            latents = encoding.latent_dist.mode()
            assert tuple(latents.shape) == (4, 4, 8, 12)
            # record what each up block receives and what each skip conv reads
            seen = []
            hooks = [
                block.register_forward_pre_hook(lambda m, args, j=j: seen.append(("up", j, tuple(args[0].shape))))
                for j, block in enumerate(vae.decoder.up_blocks)
            ] + [
                conv.register_forward_pre_hook(lambda m, args, j=j: seen.append(("skip", j, tuple(args[0].shape))))
                for j, conv in enumerate(model.skip_convs)
            ]
            frames = model.decode(latents, num_frames=2, skips=encoding.skips)
            for hook in hooks:
                hook.remove()
    assert tuple(frames.shape) == (4, 3, 64, 96)
    skips = {j: shape for kind, j, shape in seen if kind == "skip"}
    ups = {j: shape for kind, j, shape in seen if kind == "up"}
    for j in range(4):
        assert skips[j] == tuple(encoding.skips[3 - j].shape)
        assert ups[j] == (4, model.skip_convs[j].out_channels, *skips[j][-2:])
