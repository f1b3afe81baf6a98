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


def make_block(level=0, max_key_tokens=None, gates=1.0, seed=0, **options):
    torch.manual_seed(seed)
    block = MPIAttention(
        DIM, COND_DIM, HEADS, DIM // HEADS, level=level, scale=0, max_key_tokens=max_key_tokens, **options
    )
    with torch.no_grad():
        block.gate_attn.fill_(gates)
        block.gate_ff.fill_(gates)
    return block


def naive_mpi_attention(block, x, inputs):
    """Eq. (4) with explicit softmax over [visual, condition] keys and a -inf mask (full grid)."""
    visual = x + block.k_proj(inputs.k_embedding)[:, None]
    cond = block.cond_proj(inputs.cond_features.flatten(2).transpose(1, 2))
    allowed = torch.cat([torch.ones_like(inputs.regions.flatten(1)), (inputs.regions <= block.level).flatten(1)], 1)
    return naive_attention_and_feed_forward(block, x, visual, torch.cat([visual, cond], dim=1), allowed.bool())


def naive_attention_and_feed_forward(block, x, visual, keys, allowed):
    """The gated attention of the queries `visual` over `keys`, then the gated FF.

    `allowed` [BT, Lk] is a bool mask, or float key weights whose log is added to the logits (0 masks).
    With `k_residual` the residual stream continues from the K-modulated tokens.
    """
    if block.k_residual:
        x = visual
    tokens = block.norm_attn(keys)
    q = block.to_q(block.norm_attn(visual)).unflatten(-1, (HEADS, -1)).transpose(1, 2)
    k = block.to_k(tokens).unflatten(-1, (HEADS, -1)).transpose(1, 2)
    v = block.to_v(tokens).unflatten(-1, (HEADS, -1)).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / (DIM // HEADS) ** 0.5
    if allowed.dtype == torch.bool:
        scores = scores.masked_fill(~allowed[:, None, None, :], float("-inf"))
    else:
        scores = scores + allowed.log()[:, None, None, :]
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


@pytest.mark.parametrize("k_residual", [True, False])
def test_matches_a_naive_masked_attention(k_residual):
    block = make_block(level=1, k_residual=k_residual)
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


def bins(size, parts):
    """Adaptive-pooling bins: part i of `size` cells spans [floor(i * size / parts), ceil((i + 1) * size / parts))."""
    return [(i * size // parts, -(-(i + 1) * size // parts)) for i in range(parts)]


def pooled_reference(block, x, inputs, grid, keys):
    """Eq. (4) with keys pooled to the `keys` grid, written with loops over the key cells.

    A visual key is the mean of the K-modulated tokens of its cell; a condition key is the condition features'
    mean over its cell, then Phi_A. With key_mask="any" a condition key is allowed when any pixel of its cell
    has `regions <= level`; with "coverage" its weight is the fraction of such pixels.
    """
    (height, width), (key_rows, key_cols) = grid, keys
    visual = x + block.k_proj(inputs.k_embedding)[:, None]
    visual_grid = visual.reshape(x.shape[0], height, width, -1)
    features, in_focus = inputs.cond_features, inputs.regions <= block.level
    visual_keys, cond_keys, allowed = [], [], []
    for row in range(key_rows):
        for col in range(key_cols):

            def cell(size):  # the rows and columns of key (row, col) on a grid of `size`
                rows, cols = bins(size[0], key_rows)[row], bins(size[1], key_cols)[col]
                return slice(*rows), slice(*cols)

            rows, cols = cell((height, width))
            visual_keys.append(visual_grid[:, rows, cols].mean(dim=(1, 2)))
            rows, cols = cell(features.shape[2:])
            cond_keys.append(features[:, :, rows, cols].mean(dim=(2, 3)))
            rows, cols = cell(in_focus.shape[1:])
            under = in_focus[:, rows, cols].flatten(1)
            allowed.append(under.float().mean(dim=1) if block.key_mask == "coverage" else under.any(dim=1))
    visual_keys = torch.stack(visual_keys, dim=1)
    cond_keys = block.cond_proj(torch.stack(cond_keys, dim=1))
    allowed = torch.stack(allowed, dim=1)
    allowed = torch.cat([torch.ones_like(allowed), allowed], dim=1)
    return naive_attention_and_feed_forward(block, x, visual, torch.cat([visual_keys, cond_keys], dim=1), allowed)


def sparse_regions(batch_frames, size, keys, seed):
    """Mostly out of focus (3), with a band at level 1 and single in-focus pixels (0) in about half the key cells."""
    generator = torch.Generator().manual_seed(seed)
    regions = torch.full((batch_frames, *size), 3)
    pixels_per_key = size[0] * size[1] / (keys[0] * keys[1])
    regions[torch.rand(batch_frames, *size, generator=generator) < 0.7 / pixels_per_key] = 0
    regions[:, size[0] // 3 : size[0] // 3 + 2, : size[1] // 2] = 1
    return regions


@pytest.mark.parametrize("key_mask", ["any", "coverage"])
@pytest.mark.parametrize(
    "latent, scale, max_key_tokens, keys, regions_size",
    [
        # the paper's 1024x576 at the UNet's first two depths: 72x128 and 36x64 tokens, keys pooled to 18x32
        ((72, 128), 0, 576, (18, 32), (576, 1024)),
        ((72, 128), 1, 576, (18, 32), (576, 1024)),
        # uneven, overlapping cells: 10x14 tokens to 3x4 keys; regions at another resolution
        ((10, 14), 0, 12, (3, 4), (25, 33)),
    ],
)
def test_pooled_keys_match_a_naive_reference(latent, scale, max_key_tokens, keys, regions_size, key_mask):
    block = MPIAttention(
        DIM, COND_DIM, HEADS, DIM // HEADS, level=1, scale=scale, max_key_tokens=max_key_tokens, key_mask=key_mask
    )
    with torch.no_grad():
        block.gate_attn.fill_(1.0)
        block.gate_ff.fill_(1.0)
        block.k_proj[-1].weight.normal_()
    inputs = make_inputs(sparse_regions(2, regions_size, keys, seed=3), size=latent)
    grid = inputs.grid(scale)
    assert key_grid(grid, max_key_tokens) == keys
    mask = inputs.key_mask(block.level, keys)
    assert 0.3 < mask.float().mean() < 0.8  # the mask keeps some condition keys and drops others
    x = torch.randn(2, grid[0] * grid[1], DIM)
    with torch.no_grad():
        assert torch.allclose(block(x, inputs), pooled_reference(block, x, inputs, grid, keys), atol=1e-5)


@pytest.mark.parametrize("k_residual", [True, False])
def test_k_has_a_gradient_at_initialisation_only_on_the_residual_path(k_residual):
    """With the gates still closed, K's projection learns from the first step only when K joins the residual."""
    block = make_block(gates=0.0, k_residual=k_residual)
    x = torch.randn(2, 24, DIM)
    regions = torch.randint(0, 4, (2, 4, 6))
    target = torch.randn(2, 24, DIM)
    ((block(x, make_inputs(regions, k=8.0)) - target) ** 2).mean().backward()
    gradient = block.k_proj[-1].weight.grad
    assert (gradient.abs().sum() > 0) == k_residual
    with torch.no_grad():
        for parameter in block.parameters():
            if parameter.grad is not None:
                parameter -= 0.1 * parameter.grad
        changed = not torch.allclose(block(x, make_inputs(regions, k=4.0)), block(x, make_inputs(regions, k=32.0)))
    assert changed == k_residual


def noisy_focus_regions(size, cell, seed):
    """A sharp subject (region 0) in the left third; elsewhere region 3 with one region-0 pixel in every key cell."""
    generator = torch.Generator().manual_seed(seed)
    regions = torch.full((1, *size), 3)
    regions[:, :, : size[1] // 3] = 0
    rows, cols = size[0] // cell, size[1] // cell
    noise_rows = torch.randint(0, cell, (rows, cols), generator=generator) + torch.arange(rows)[:, None] * cell
    noise_cols = torch.randint(0, cell, (rows, cols), generator=generator) + torch.arange(cols)[None] * cell
    regions[0, noise_rows, noise_cols] = 0
    return regions


def test_coverage_mask_still_acts_on_noisy_region_maps():
    """Per-pixel disparity noise opens every pooled key under "any"; "coverage" keeps the mask's effect."""
    size, latent, cell = (48, 96), (12, 24), 8  # keys pooled to 6x12: cells of 8x8 region pixels
    noisy = noisy_focus_regions(size, cell, seed=0)
    clean = torch.full_like(noisy, 3)
    clean[:, :, : size[1] // 3] = 0
    everything = torch.zeros_like(noisy)
    x = torch.randn(1, latent[0] * latent[1], DIM)
    for key_mask in ("any", "coverage"):
        block = make_block(level=0, max_key_tokens=72, key_mask=key_mask)
        outputs = {}
        for name, regions in {"noisy": noisy, "clean": clean, "everything": everything}.items():
            inputs = make_inputs(regions, batch_frames=1, size=latent)
            assert key_grid(inputs.grid(0), 72) == (6, 12)
            with torch.no_grad():
                outputs[name] = block(x, inputs)
        to_clean = (outputs["noisy"] - outputs["clean"]).abs().mean()
        to_everything = (outputs["noisy"] - outputs["everything"]).abs().mean()
        if key_mask == "any":
            assert torch.equal(outputs["noisy"], outputs["everything"])  # the noise opened every key
        else:
            assert to_clean < 0.5 * to_everything
