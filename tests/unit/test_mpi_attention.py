import pytest
import torch

from any2bokeh.models import MPIAttention, MPIInputs, fourier_k
from any2bokeh.models.mpi_attention import key_grid

DIM, COND_DIM, HEADS = 16, 8, 2


def make_inputs(regions, batch_frames=2, size=(4, 6), seed=0, k=16.0):
    generator = torch.Generator().manual_seed(seed)
    return MPIInputs(
        cond_features=torch.randn(batch_frames, COND_DIM, *size, generator=generator),
        regions=regions,
        k_embedding=fourier_k(torch.full((batch_frames,), k)),
        latent_size=size,
        num_frames=batch_frames,
    )


def make_block(level=0, max_key_tokens=None, gates=1.0, seed=0):
    torch.manual_seed(seed)
    block = MPIAttention(DIM, COND_DIM, HEADS, DIM // HEADS, level=level, scale=0, max_key_tokens=max_key_tokens)
    with torch.no_grad():
        block.gate_attn.fill_(gates)
        block.gate_ff.fill_(gates)
    return block


def naive_mpi_attention(block, x, inputs):
    """Eq. (4) with explicit softmax over [visual, condition] keys and a -inf mask (full grid)."""
    visual = x + block.k_proj(inputs.k_embedding)[:, None]
    cond = block.cond_proj(inputs.cond_features.flatten(2).transpose(1, 2))
    tokens = block.norm_attn(torch.cat([visual, cond], dim=1))
    q = block.to_q(block.norm_attn(visual)).unflatten(-1, (HEADS, -1)).transpose(1, 2)
    k = block.to_k(tokens).unflatten(-1, (HEADS, -1)).transpose(1, 2)
    v = block.to_v(tokens).unflatten(-1, (HEADS, -1)).transpose(1, 2)
    allowed = torch.cat([torch.ones_like(inputs.regions.flatten(1)), (inputs.regions <= block.level).flatten(1)], 1)
    scores = q @ k.transpose(-1, -2) / (DIM // HEADS) ** 0.5
    scores = scores.masked_fill(~allowed.bool()[:, None, None, :], float("-inf"))
    out = (scores.softmax(-1) @ v).transpose(1, 2).flatten(2)
    x = x + block.gate_attn.tanh() * block.to_out(out)
    return x + block.gate_ff.tanh() * block.ff(block.norm_ff(x))


def test_gates_at_zero_leave_tokens_unchanged():
    block = make_block(gates=0.0)
    x = torch.randn(2, 24, DIM)
    inputs = make_inputs(torch.randint(0, 4, (2, 4, 6)))
    assert torch.equal(block(x, inputs), x)
    names = [name for name, _ in block.named_parameters() if "gate" in name]
    assert names == ["gate_attn", "gate_ff"]


def test_matches_a_naive_masked_attention():
    block = make_block(level=1)
    with torch.no_grad():
        block.k_proj[-1].weight.normal_()
    x = torch.randn(2, 24, DIM)
    inputs = make_inputs(torch.randint(0, 4, (2, 4, 6)))
    assert torch.allclose(block(x, inputs), naive_mpi_attention(block, x, inputs), atol=1e-5)


def test_masked_condition_tokens_have_no_effect_and_no_gradient():
    block = make_block(level=0)
    x = torch.randn(2, 24, DIM)
    far = torch.full((2, 4, 6), 3)
    first, second = make_inputs(far, seed=1), make_inputs(far, seed=2)
    first.cond_features.requires_grad_(True)
    out = block(x, first)
    assert torch.isfinite(out).all()  # every condition key masked, visual keys keep the rows finite
    assert torch.allclose(out, block(x, second))
    out.sum().backward()
    assert torch.equal(first.cond_features.grad, torch.zeros_like(first.cond_features))

    # in focus: the condition tokens act and receive gradient
    near = make_inputs(torch.zeros(2, 4, 6, dtype=torch.long), seed=1)
    near.cond_features.requires_grad_(True)
    out = block(x, near)
    assert not torch.allclose(out, block(x, make_inputs(torch.zeros(2, 4, 6, dtype=torch.long), seed=2)))
    out.sum().backward()
    assert near.cond_features.grad.abs().sum() > 0


def test_k_is_inert_until_phi_m_learns():
    block = make_block()
    x = torch.randn(2, 24, DIM)
    regions = torch.randint(0, 4, (2, 4, 6))
    assert torch.equal(block(x, make_inputs(regions, k=4.0)), block(x, make_inputs(regions, k=32.0)))
    with torch.no_grad():
        block.k_proj[-1].weight.normal_()
    assert not torch.allclose(block(x, make_inputs(regions, k=4.0)), block(x, make_inputs(regions, k=32.0)))


def test_key_pooling_bounds_the_keys_and_keeps_small_grids():
    assert key_grid((72, 128), 576) == (18, 32)
    assert key_grid((36, 64), 576) == (18, 32)
    assert key_grid((9, 16), 576) == (9, 16)
    assert key_grid((72, 128), None) == (72, 128)
    block = make_block(max_key_tokens=6)
    x = torch.randn(2, 24, DIM)
    out = block(x, make_inputs(torch.randint(0, 4, (2, 4, 6))))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_key_mask_keeps_a_key_when_any_pixel_under_it_is_allowed():
    regions = torch.full((1, 8, 8), 3)
    regions[0, 5, 6] = 0  # one in-focus pixel inside key (2, 3) of a 4x4 key grid
    inputs = make_inputs(regions, batch_frames=1)
    mask = inputs.key_mask(0, (4, 4)).reshape(4, 4)
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[2, 3] = True
    assert torch.equal(mask, expected)
    assert inputs.key_mask(3, (4, 4)).all()


def test_frame_context_takes_each_frames_own_token():
    batch, frames, channels = 2, 3, 5
    context = torch.randn(batch, frames, channels)
    inputs = make_inputs(torch.zeros(batch * frames, 4, 6, dtype=torch.long), batch_frames=batch * frames)
    inputs.per_frame_context = True
    # diffusers' repeat: [B, T, C] -> [B * T, T, C]
    repeated = context.repeat_interleave(frames, dim=0)
    assert torch.equal(inputs.frame_context(repeated), context.reshape(batch * frames, 1, channels))
    inputs.per_frame_context = False
    assert inputs.frame_context(repeated) is repeated


def test_rejects_bad_arguments_and_token_counts():
    with pytest.raises(ValueError, match="dim=0"):
        MPIAttention(0, COND_DIM, HEADS, 8, level=0, scale=0)
    with pytest.raises(ValueError, match="level=-1"):
        MPIAttention(DIM, COND_DIM, HEADS, 8, level=-1, scale=0)
    with pytest.raises(ValueError, match="max_key_tokens"):
        MPIAttention(DIM, COND_DIM, HEADS, 8, level=0, scale=0, max_key_tokens=0)
    block = make_block()
    with pytest.raises(ValueError, match="25 tokens"):
        block(torch.randn(2, 25, DIM), make_inputs(torch.zeros(2, 4, 6, dtype=torch.long)))
