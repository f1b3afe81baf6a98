import copy

import pytest
import torch
from diffusers.models.attention import BasicTransformerBlock

from any2bokeh.models import BokehUNet, MPITransformerBlock, mpi_regions
from any2bokeh.models.k_gain import KGain, KScaledConvIn
from any2bokeh.models.tiny import tiny_unet

BATCH, FRAMES, SIZE = 1, 2, 8


@pytest.fixture(scope="module")
def plain_unet():
    torch.manual_seed(0)
    return tiny_unet().eval()


@pytest.fixture
def bokeh_unet(plain_unet):
    return BokehUNet(copy.deepcopy(plain_unet)).eval()


def make_call(seed=0, dtype=torch.float32, context_frames=1):
    generator = torch.Generator().manual_seed(seed)
    disparity = torch.rand(BATCH, FRAMES, 4 * SIZE, 4 * SIZE, generator=generator)
    return {
        "sample": torch.randn(BATCH, FRAMES, 8, SIZE, SIZE, generator=generator, dtype=dtype),
        "timestep": 1.0,
        "encoder_hidden_states": torch.randn(BATCH, context_frames, 32, generator=generator, dtype=dtype),
        "added_time_ids": torch.tensor([[7.0, 127.0, 0.0]], dtype=dtype),
        "k": torch.tensor([16.0]),
        "mpi_regions": mpi_regions(disparity, torch.rand(BATCH, FRAMES, generator=generator)),
        "cond_latents": torch.randn(BATCH, FRAMES, 4, SIZE, SIZE, generator=generator, dtype=dtype),
    }


def plain_call(unet, call):
    with torch.no_grad():
        return unet(call["sample"], call["timestep"], call["encoder_hidden_states"], call["added_time_ids"]).sample


def bokeh_call(model, call, grad=False):
    with torch.set_grad_enabled(grad):
        return model(**call)


def open_gates(model, value=0.5, phi_m=True):
    with torch.no_grad():
        for mpi in model.mpi_blocks:
            mpi.gate_attn.fill_(value)
            mpi.gate_ff.fill_(value)
            if phi_m:
                mpi.k_proj[-1].weight.normal_(std=0.5)


def test_equals_the_wrapped_unet_at_init(plain_unet, bokeh_unet):
    call = make_call()
    expected = plain_call(plain_unet, call)
    output = bokeh_call(bokeh_unet, call)
    assert output.shape == (BATCH, FRAMES, 4, SIZE, SIZE)
    assert torch.allclose(output, expected, atol=1e-6)


def test_keeps_every_original_parameter_by_name_and_value(plain_unet, bokeh_unet):
    original = plain_unet.state_dict()
    wrapped = bokeh_unet.unet.state_dict()
    assert list(wrapped) == list(original)
    assert all(torch.equal(wrapped[name], original[name]) for name in original)
    new_names = [name for name, _ in bokeh_unet.new_parameters()]
    all_names = [name for name, _ in bokeh_unet.named_parameters()]
    assert sorted(new_names + [f"unet.{name}" for name, _ in plain_unet.named_parameters()]) == sorted(all_names)
    assert {name.split(".")[0] for name in new_names} == set(BokehUNet.new_module_prefixes)
    gates = [name for name in new_names if "gate" in name]
    assert len(gates) == 2 * len(bokeh_unet.mpi_blocks)


def test_every_spatial_block_hosts_mpi_attention_at_its_level(bokeh_unet):
    spatial = [name for name, m in bokeh_unet.named_modules() if isinstance(m, BasicTransformerBlock)]
    spatial = [name for name in spatial if ".transformer_blocks." in name]
    assert sorted(spatial) == sorted(bokeh_unet.mpi_block_paths)
    assert all(isinstance(bokeh_unet.get_submodule(name), MPITransformerBlock) for name in spatial)
    levels = {path: mpi.level for path, mpi in zip(bokeh_unet.mpi_block_paths, bokeh_unet.mpi_blocks)}
    # tiny UNet: down block 0 -> level 0, mid -> N - 1 = 3, up block 1 mirrors down block 0 -> level 0
    assert {p.split(".attentions")[0]: lv for p, lv in levels.items()} == {
        "unet.down_blocks.0": 0,
        "unet.mid_block": 3,
        "unet.up_blocks.1": 0,
    }


def test_regions_condition_latents_gates_and_k_each_change_the_output(bokeh_unet):
    call = make_call()
    closed = bokeh_call(bokeh_unet, call)
    open_gates(bokeh_unet)
    reference = bokeh_call(bokeh_unet, call)
    assert not torch.allclose(reference, closed, atol=1e-4), "gates"
    variants = {
        "mpi_regions": torch.full_like(call["mpi_regions"], 3),
        "cond_latents": torch.randn_like(call["cond_latents"]),
        "k": torch.tensor([4.0]),
    }
    for name, value in variants.items():
        changed = bokeh_call(bokeh_unet, {**call, name: value})
        assert not torch.allclose(changed, reference, atol=1e-4), name


def test_gradient_reaches_condition_latents_and_new_modules(bokeh_unet):
    open_gates(bokeh_unet)
    call = make_call()
    call["cond_latents"].requires_grad_(True)
    bokeh_call(bokeh_unet, call, grad=True).square().mean().backward()
    assert call["cond_latents"].grad.abs().sum() > 0
    assert all(
        p.grad is not None and p.grad.abs().sum() > 0 for name, p in bokeh_unet.new_parameters() if "gate" in name
    )


@pytest.mark.parametrize("switch", ["bokeh_unet", "unet"])
def test_gradient_checkpointing_gives_the_same_output_and_gradients(bokeh_unet, switch):
    open_gates(bokeh_unet)
    call = make_call()
    results = []
    for checkpointing in (False, True):
        if checkpointing:
            # through the wrapper, or through the wrapped diffusers UNet directly
            (bokeh_unet if switch == "bokeh_unet" else bokeh_unet.unet).enable_gradient_checkpointing()
        cond = call["cond_latents"].clone().requires_grad_(True)
        bokeh_unet.zero_grad()
        output = bokeh_call(bokeh_unet, {**call, "cond_latents": cond}, grad=True)
        output.square().mean().backward()
        gate_grad = bokeh_unet.mpi_blocks[0].gate_attn.grad.clone()
        results.append((output.detach(), cond.grad, gate_grad))
    assert bokeh_unet.is_gradient_checkpointing
    for plain, checkpointed in zip(*results):
        assert torch.allclose(plain, checkpointed, atol=1e-6)
    bokeh_unet.disable_gradient_checkpointing()
    assert not bokeh_unet.is_gradient_checkpointing


def test_a_deep_copy_is_independent_and_a_unet_is_wrapped_once(bokeh_unet):
    call = make_call()
    twin = copy.deepcopy(bokeh_unet)
    open_gates(twin)
    assert torch.allclose(bokeh_call(twin, call), bokeh_call(copy.deepcopy(twin), call))
    assert not torch.allclose(bokeh_call(twin, call), bokeh_call(bokeh_unet, call), atol=1e-4)
    with pytest.raises(ValueError, match="wrapped by one BokehUNet"):
        BokehUNet(bokeh_unet.unet)


def test_per_frame_context_selects_each_frames_token(plain_unet, bokeh_unet):
    shared = make_call()
    per_frame = {**shared, "encoder_hidden_states": shared["encoder_hidden_states"].expand(BATCH, FRAMES, 32)}
    # the same token for every frame: identical to the shared context
    assert torch.allclose(bokeh_call(bokeh_unet, per_frame), bokeh_call(bokeh_unet, shared), atol=1e-6)
    # diffusers alone would let every frame attend to all frames' tokens: different from ours
    varied = {**shared, "encoder_hidden_states": torch.randn(BATCH, FRAMES, 32)}
    assert not torch.allclose(bokeh_call(bokeh_unet, varied), plain_call(plain_unet, varied), atol=1e-4)


def test_temporal_parameters_are_the_temporal_modules(bokeh_unet):
    names = [name for name, _ in bokeh_unet.temporal_parameters()]
    markers = (".temporal_transformer_blocks.", ".temporal_res_block.", ".time_mixer.", ".time_pos_embed.")
    expected = [name for name, _ in bokeh_unet.named_parameters() if any(m in name for m in markers)]
    assert names == expected and len(names) > 0
    assert all(name.startswith("unet.") for name in names)
    assert not any(".transformer_blocks." in n or ".spatial_res_block." in n or "mpi_blocks" in n for n in names)
    assert any(name.endswith("time_mixer.mix_factor") for name in names)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_runs_in_half_precision(plain_unet, bokeh_unet, dtype):
    model = BokehUNet(copy.deepcopy(plain_unet).to(dtype))
    assert all(p.dtype == dtype for p in model.parameters())
    open_gates(bokeh_unet)
    with torch.no_grad():  # the same new-module values in both precisions
        for half, full in zip(model.parameters(), bokeh_unet.parameters()):
            half.copy_(full)
    output = bokeh_call(model, make_call(dtype=dtype))
    reference = bokeh_call(bokeh_unet, make_call())
    assert output.dtype == dtype
    # 8 (bf16) or 11 (fp16) bits of mantissa: a few percent of the output's norm; a wrong cast would be ~100 %
    error = ((output.float() - reference).norm() / reference.norm()).item()
    assert error < {torch.bfloat16: 0.1, torch.float16: 0.02}[dtype], error


def test_regions_at_any_resolution_and_k_per_frame(bokeh_unet):
    open_gates(bokeh_unet)
    call = make_call()
    call["mpi_regions"] = torch.randint(0, 4, (BATCH, FRAMES, 13, 21))
    per_frame_k = bokeh_call(bokeh_unet, {**call, "k": torch.tensor([[16.0, 16.0]])})
    assert torch.allclose(per_frame_k, bokeh_call(bokeh_unet, call))
    assert not torch.allclose(per_frame_k, bokeh_call(bokeh_unet, {**call, "k": torch.tensor([[16.0, 4.0]])}))


def test_rejects_bad_shapes(bokeh_unet):
    call = make_call()
    bad = {
        "cond_latents": torch.randn(BATCH, FRAMES, 4, SIZE, SIZE + 2),
        "mpi_regions": torch.zeros(BATCH, SIZE, SIZE, dtype=torch.long),
        "k": torch.tensor([1.0, 2.0, 3.0]),
        "sample": torch.randn(BATCH * FRAMES, 8, SIZE, SIZE),
    }
    for name, value in bad.items():
        with pytest.raises(ValueError, match=name):
            bokeh_call(bokeh_unet, {**call, name: value})
    with pytest.raises(ValueError, match="in_channels=4"):
        BokehUNet(type(tiny_unet())(**{**tiny_unet().config, "in_channels": 4}))


# K scales conv_in's V_D features (any2bokeh.models.k_gain)


def set_gain(model, bias=None, weight_std=None):
    last = model.k_gain.mlp[-1]
    with torch.no_grad():
        if bias is not None:
            last.bias.fill_(bias)
        if weight_std is not None:
            last.weight.normal_(std=weight_std)


def test_a_constant_gain_scales_the_vd_latents(plain_unet):
    """gamma = c on every channel is the plain UNet fed V_D x (1 + c): the gain acts on V_D alone."""
    model = BokehUNet(copy.deepcopy(plain_unet), k_residual=False).eval()
    set_gain(model, bias=0.75)
    call = make_call()
    scaled = dict(call, sample=call["sample"].clone())
    scaled["sample"][:, :, 4:] *= 1.75
    expected = plain_call(plain_unet, scaled)
    assert torch.allclose(bokeh_call(model, call), expected, atol=1e-5)
    assert not torch.allclose(plain_call(plain_unet, call), expected, atol=1e-3)


def test_k_has_a_gradient_at_initialisation_and_acts_once_the_gain_moves(plain_unet):
    model = BokehUNet(copy.deepcopy(plain_unet), k_residual=False)
    call = make_call(seed=1)
    output = bokeh_call(model, call, grad=True)
    output.square().mean().backward()
    assert model.k_gain.mlp[-1].weight.grad.abs().sum() > 0
    # at initialisation K changes nothing
    assert torch.equal(bokeh_call(model, dict(call, k=torch.tensor([4.0]))), bokeh_call(model, call))
    set_gain(model, weight_std=0.5)
    with torch.no_grad():
        model.k_gain.mlp[0].weight.normal_(std=1.0)
    assert not torch.allclose(bokeh_call(model, dict(call, k=torch.tensor([4.0]))), bokeh_call(model, call), atol=1e-4)


def test_outside_a_bokeh_call_conv_in_is_svds(plain_unet):
    model = BokehUNet(copy.deepcopy(plain_unet))
    set_gain(model, bias=2.0)
    assert isinstance(model.unet.conv_in, KScaledConvIn)
    call = make_call(seed=2)
    assert torch.allclose(plain_call(model.unet, call), plain_call(plain_unet, call), atol=1e-6)


def test_k_gain_is_optional_and_adopts_only_a_plain_conv_in(plain_unet):
    model = BokehUNet(copy.deepcopy(plain_unet), k_gain=False)
    assert model.k_gain is None and type(model.unet.conv_in) is torch.nn.Conv2d
    assert not any(name.startswith("k_gain") for name, _ in model.new_parameters())
    wrapped = BokehUNet(copy.deepcopy(plain_unet))
    with pytest.raises(ValueError, match="plain Conv2d"):
        KScaledConvIn.adopt(wrapped.unet.conv_in, KGain(4), wrapped._state)
    # the V_D part is convolved with F.conv2d: grouped or non-zero-padded convolutions would differ from it
    for odd in (
        torch.nn.Conv2d(8, 8, 3, padding=1, groups=2),
        torch.nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect"),
    ):
        with pytest.raises(ValueError, match="groups=.*padding_mode="):
            KScaledConvIn.adopt(odd, KGain(8), wrapped._state)
    with pytest.raises(ValueError, match="k_encoding"):
        BokehUNet(copy.deepcopy(plain_unet), k_encoding="linear")
