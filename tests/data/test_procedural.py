import pytest
import torch
import torch.nn.functional as F

from any2bokeh.data.procedural import ProceduralBackgrounds, ProceduralForegrounds


def test_foreground_shapes_and_ranges():
    source = ProceduralForegrounds(num_clips=3, size=(48, 64), num_frames=10, seed=1)
    assert len(source) == 3 and source.num_frames(2) == 10
    rgb, alpha = source.load(2, [0, 4, 9])
    assert rgb.shape == (3, 3, 48, 64) and alpha.shape == (3, 1, 48, 64)
    assert rgb.dtype == torch.float32 and alpha.dtype == torch.float32
    for x in (rgb, alpha):
        assert 0 <= x.min() and x.max() <= 1
    # An opaque subject, clear surroundings and a soft transition between them.
    assert alpha.amax() > 0.99 and alpha.amin() < 0.01
    assert ((alpha > 0.05) & (alpha < 0.95)).any()


def test_foregrounds_are_a_function_of_seed_index_and_frame():
    source = ProceduralForegrounds(num_clips=4, size=40, seed=3)
    rgb, alpha = source.load(1, [0, 1, 2, 5])
    again_rgb, again_alpha = ProceduralForegrounds(num_clips=4, size=40, seed=3).load(1, [0, 1, 2, 5])
    assert torch.equal(rgb, again_rgb) and torch.equal(alpha, again_alpha)
    # A frame does not depend on which other frames are read with it.
    single_rgb, single_alpha = source.load(1, [5])
    assert torch.allclose(single_rgb[0], rgb[3], atol=1e-6) and torch.allclose(single_alpha[0], alpha[3], atol=1e-6)
    other_index = source.load(2, [0])[1][0]
    other_seed = ProceduralForegrounds(num_clips=4, size=40, seed=4).load(1, [0])[1][0]
    assert not torch.allclose(other_index, alpha[0]) and not torch.allclose(other_seed, alpha[0])


def test_foreground_clips_advance_in_time_and_reflect_at_the_end():
    source = ProceduralForegrounds(num_clips=2, size=64, num_frames=30, seed=0)
    rgb, alpha = source.load(0, [0, 1, 25, 31])
    step = (alpha[1] - alpha[0]).abs().mean()
    far = (alpha[2] - alpha[0]).abs().mean()
    assert 0 < step < far  # slow, smooth motion
    assert torch.allclose(alpha[3], source.load(0, [27])[1][0], atol=1e-6)  # 31 reflects to 27


def test_foregrounds_stay_inside_their_canvas():
    source = ProceduralForegrounds(num_clips=8, size=48, num_frames=50, seed=5, hair_probability=1.0)
    for index in range(len(source)):
        _, alpha = source.load(index, [0, 17, 49])
        border = torch.cat([alpha[..., 0, :], alpha[..., -1, :], alpha[..., :, 0], alpha[..., :, -1]], dim=-1)
        assert border.max() < 1e-3, index


def test_hair_adds_fine_alpha_structure():
    def fine_structure(hair_probability):
        """Share of alpha variation that a 3x3 mean removes: high for thin strands, low for smooth edges."""
        source = ProceduralForegrounds(num_clips=6, size=96, seed=2, hair_probability=hair_probability)
        alpha = torch.cat([source.load(i, [0])[1] for i in range(len(source))])
        residual = (alpha - F.avg_pool2d(alpha, 3, 1, 1, count_include_pad=False)).abs().sum()
        gradient = alpha.diff(dim=-1).abs().sum() + alpha.diff(dim=-2).abs().sum()
        return residual / gradient

    assert fine_structure(1.0) > 1.4 * fine_structure(0.0)


def test_backgrounds_have_bright_small_highlights():
    source = ProceduralBackgrounds(num_images=3, size=(72, 128), seed=0, num_highlights=(30, 30))
    image = source.load(1)
    assert image.shape == (3, 72, 128) and image.dtype == torch.float32
    assert 0 <= image.min() and image.max() <= 1
    bright = image.amax(0) > 0.9
    # The texture stays at or below 0.85, so every bright pixel belongs to a highlight.
    assert 0 < bright.float().mean() < 0.05
    plain = ProceduralBackgrounds(num_images=3, size=(72, 128), seed=0, num_highlights=(0, 0)).load(1)
    assert plain.max() <= 0.85


def test_backgrounds_are_deterministic_and_distinct():
    a = ProceduralBackgrounds(num_images=2, size=32, seed=7).load(0)
    assert torch.equal(a, ProceduralBackgrounds(num_images=2, size=32, seed=7).load(0))
    assert not torch.allclose(a, ProceduralBackgrounds(num_images=2, size=32, seed=7).load(1))
    assert not torch.allclose(a, ProceduralBackgrounds(num_images=2, size=32, seed=8).load(0))
    assert not torch.allclose(a.std(dim=(1, 2)), torch.zeros(3))  # textured, not flat


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_clips"):
        ProceduralForegrounds(num_clips=0)
    with pytest.raises(ValueError, match="size"):
        ProceduralForegrounds(size=4)
    with pytest.raises(ValueError, match="hair_probability"):
        ProceduralForegrounds(hair_probability=1.5)
    with pytest.raises(ValueError, match="num_highlights"):
        ProceduralBackgrounds(num_highlights=(5, 2))
    with pytest.raises(ValueError, match="highlight_radius"):
        ProceduralBackgrounds(highlight_radius=(0.0, 2.0))
    with pytest.raises(IndexError):
        ProceduralBackgrounds(num_images=2).load(2)
