"""The renderer interface: the model with weighted overlap windows, native detail, K at any size."""

import pytest
import torch

from any2bokeh.inference.model_renderer import ModelRenderer, model_dtype
from any2bokeh.inference.overlap import overlap_windows
from any2bokeh.inference.renderers import ClassicalRenderer, IdentityRenderer
from any2bokeh.inference.resolution import resize
from any2bokeh.models import AnyToBokeh


def _clip(num_frames, height, width, seed=0):
    generator = torch.Generator().manual_seed(seed)
    frames = torch.rand(num_frames, 3, height, width, generator=generator)
    disparity = torch.rand(num_frames, 1, height // 2, width // 2, generator=generator)
    return frames, disparity


def _psnr(a, b):
    return float(10 * torch.log10(1 / ((a - b) ** 2).mean()))


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    return AnyToBokeh.tiny(seed=0)


def test_one_window_renders_what_the_model_renders(tiny):
    frames, disparity = _clip(4, 16, 24)
    renderer = ModelRenderer(tiny, window=8, overlap=4, area=16 * 24)
    out = renderer(frames, disparity, torch.full((4,), 0.4), torch.full((4,), 12.0))
    # the same clip through the model's own forward, K scaled from 1024 px to the 24 px working width
    expected = tiny(frames[None] * 2 - 1, resize(disparity, (16, 24)).clamp(0, 1)[None], 0.4, 12.0 * 24 / 1024).frames[
        0
    ]
    assert out.shape == frames.shape and out.dtype == frames.dtype
    assert torch.allclose(out, ((expected + 1) / 2).clamp(0, 1), atol=1e-4)


def test_a_clip_longer_than_the_window_runs_in_overlapping_windows(tiny, monkeypatch):
    frames, disparity = _clip(11, 16, 24)
    frames = (frames * 255).round().to(torch.uint8)
    calls = []
    original = tiny.predict_latents
    monkeypatch.setattr(
        tiny, "predict_latents", lambda aif, *args, **kw: calls.append(aif.shape[1]) or original(aif, *args, **kw)
    )
    progress = []
    out = ModelRenderer(tiny, window=4, overlap=2, area=16 * 24)(
        frames,
        disparity,
        torch.linspace(0.2, 0.8, 11),
        torch.full((11,), 8.0),
        progress=lambda d, t: progress.append((d, t)),
    )
    plan = overlap_windows(11, 4, 2)
    assert calls == [4] * len(plan) and len(plan) == 5
    assert out.shape == frames.shape and out.dtype == torch.uint8
    # both passes (UNet, decoder) report each window
    assert progress[-1] == (2 * len(plan), 2 * len(plan)) and len(progress) == 2 * len(plan)


def test_the_model_renders_at_the_working_size_and_returns_the_input_size(tiny):
    frames, disparity = _clip(3, 40, 72)
    seen = []
    original = tiny.predict_latents
    tiny.predict_latents = lambda aif, *args, **kw: seen.append(tuple(aif.shape[-2:])) or original(aif, *args, **kw)
    try:
        out = ModelRenderer(tiny, area=20 * 36)(frames, disparity, 0.5, 4.0)
    finally:
        del tiny.predict_latents
    assert seen == [(20, 36)] and out.shape == frames.shape


def test_stage3_skips_are_used_only_when_trained():
    model = AnyToBokeh.tiny(seed=1)
    assert not ModelRenderer(model).use_skips
    with torch.no_grad():
        model.vae.skip_convs[0].weight.fill_(0.1)
    assert ModelRenderer(model).use_skips


def test_half_precision_only_on_a_gpu():
    assert model_dtype(torch.device("cpu"), "bf16-mixed") == torch.float32
    assert model_dtype(torch.device("cuda"), "bf16-mixed") == torch.bfloat16
    assert model_dtype(torch.device("cuda"), "16-mixed") == torch.float16
    assert model_dtype(torch.device("cuda"), "32-true") == torch.float32


def test_bad_inputs_name_the_value_and_frame():
    frames, disparity = _clip(3, 8, 8)
    renderer = IdentityRenderer()
    with pytest.raises(ValueError, match=r"K must be >= 0, got K=-1 on frame 2"):
        renderer(frames, disparity, 0.5, torch.tensor([1.0, 1.0, -1.0]))
    with pytest.raises(ValueError, match=r"d_f must lie in \[0, 1\].*1.5 on frame 0"):
        renderer(frames, disparity, 1.5, 4.0)
    disparity[1, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf values on frame 1"):
        renderer(frames, disparity, 0.5, 4.0)
    with pytest.raises(FileNotFoundError, match="model weights not found: '/no/such/model'"):
        ModelRenderer.from_path(path="/no/such/model")
    assert renderer(frames, _clip(3, 8, 8)[1], 0.5, 4.0) is frames


def _plane_scene(height, width):
    """A finely textured frame whose left half lies at d = 0.5 and right half at d = 0.1."""
    generator = torch.Generator().manual_seed(3)
    frames = torch.rand(1, 3, height, width, generator=generator)
    disparity = torch.full((1, 1, height, width), 0.5)
    disparity[..., width // 2 :] = 0.1
    return frames, disparity


def test_classical_keeps_native_detail_in_focus_above_the_working_size():
    frames, disparity = _plane_scene(96, 160)
    out = ClassicalRenderer(area=48 * 80)(frames, disparity, 0.5, 64.0)
    in_focus, defocused = (slice(8, 40), slice(120, 152))  # columns well inside each half
    # in focus: the input itself, not a 2x upscale of a 48 x 80 render
    assert _psnr(out[..., in_focus], frames[..., in_focus]) > 40
    upscaled = resize(resize(frames, (48, 80)), (96, 160)).clamp(0, 1)
    assert _psnr(upscaled[..., in_focus], frames[..., in_focus]) < 25
    # defocused (radius 0.4 * 64 * 160 / 1024 = 4 px): the fine texture is gone, none added back
    detail = lambda x: (x - resize(resize(x, (48, 80)), (96, 160)))[..., 8:88, defocused].abs().mean()  # noqa: E731
    assert detail(out) < 0.1 * detail(frames)


def test_classical_k_keeps_its_look_at_twice_the_size():
    big_frames, big_disparity = _plane_scene(96, 160)
    frames, disparity = resize(big_frames, (48, 80)), big_disparity[..., ::2, ::2]
    small = ClassicalRenderer()(frames, disparity, 0.5, 48.0)
    big = ClassicalRenderer()(big_frames, big_disparity, 0.5, 48.0)
    # the 2x render shrunk back matches the 1x render: the same blur in the frame's own proportion
    match = _psnr(resize(big, (48, 80)), small)
    assert match > 40
    # K taken as pixels at the render's own width would blur the 2x frame half as much
    unscaled = ClassicalRenderer()(big_frames, big_disparity, 0.5, 24.0)
    assert _psnr(resize(unscaled, (48, 80)), small) < match - 10
