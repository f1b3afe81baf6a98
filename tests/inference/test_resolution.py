import pytest
import torch

from any2bokeh.inference.resolution import detail_weight, k_pixels, resize, to_native, working_size


@pytest.mark.parametrize(
    "size, expected",
    [((1080, 1920), (576, 1024)), ((2160, 3840), (576, 1024)), ((480, 854), (576, 1024)), ((1920, 1080), (1024, 576))],
)
def test_working_size_is_the_papers_frame_for_16_9_inputs(size, expected):
    assert working_size(*size, multiple=64) == expected


def test_working_size_keeps_aspect_and_area_in_multiples():
    h, w = working_size(1080, 1440, multiple=64)  # 4:3
    assert h % 64 == 0 and w % 64 == 0
    # each side is rounded to 64 px, so the aspect is kept to within half a multiple (~5 %)
    assert abs(w / h - 1440 / 1080) / (1440 / 1080) < 32 / 576
    assert abs(h * w / (1024 * 576) - 1) < 0.1


def test_working_size_without_upscaling_keeps_small_inputs():
    assert working_size(480, 854, upscale=False) == (480, 854)
    assert working_size(2160, 3840, upscale=False) == (576, 1024)
    with pytest.raises(ValueError, match="positive"):
        working_size(0, 10)


def test_k_is_pixels_per_unit_disparity_at_1024_width():
    assert k_pixels(16.0, 1024) == 16.0
    assert k_pixels(16.0, 3840) == pytest.approx(60.0)
    assert torch.allclose(k_pixels(torch.tensor([4.0, 32.0]), 512), torch.tensor([2.0, 16.0]))


def _textured(height, width, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, height, width, generator=generator)


def test_in_focus_pixels_come_back_exactly_as_the_input():
    native = _textured(96, 160)
    rendered = resize(native, (48, 80))  # a renderer that leaves in-focus pixels as they are
    out = to_native(native, rendered, torch.zeros(2, 1, 96, 160))
    assert torch.allclose(out, native, atol=1e-5)
    # the upsampled render alone loses the fine texture
    assert (resize(rendered, (96, 160)).clamp(0, 1) - native).abs().mean() > 0.05


def test_defocused_pixels_get_no_native_detail():
    native = _textured(96, 160)
    rendered = resize(native, (48, 80)) * 0.5
    out = to_native(native, rendered, torch.full((2, 1, 96, 160), 1.5))
    assert torch.allclose(out, resize(rendered, (96, 160)).clamp(0, 1), atol=1e-6)


def test_detail_weight_fades_from_half_a_pixel_over_one_pixel():
    radius = torch.tensor([0.0, 0.5, 1.0, 1.5, 3.0])
    assert torch.allclose(detail_weight(radius), torch.tensor([1.0, 1.0, 0.5, 0.0, 0.0]))
    native = _textured(64, 64)
    rendered = torch.zeros(2, 3, 32, 32)
    half = to_native(native, rendered, torch.full((2, 1, 64, 64), 1.0))
    detail = native - resize(resize(native, (32, 32)), (64, 64))
    assert torch.allclose(half, (0.5 * detail).clamp(0, 1), atol=1e-6)


def test_same_size_render_is_returned_as_it_is():
    native = _textured(32, 48)
    rendered = torch.rand(2, 3, 32, 48)
    assert torch.equal(to_native(native, rendered, torch.zeros(2, 1, 32, 48)), rendered)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="radius"):
        to_native(_textured(32, 48), torch.rand(2, 3, 16, 24), torch.zeros(2, 1, 16, 24))
    with pytest.raises(ValueError, match="fade"):
        detail_weight(torch.zeros(1), fade=0)
