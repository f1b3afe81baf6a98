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


def unet_calls(model, record):
    """Record each UNet call's sample shape [B, T, 8, h, w] (the renderer calls `model.unet` directly)."""
    return model.unet.register_forward_pre_hook(
        lambda module, args, kwargs: record.append(tuple(kwargs["sample"].shape)), with_kwargs=True
    )


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
    hook = unet_calls(tiny, calls)
    progress = []
    out = ModelRenderer(tiny, window=4, overlap=2, area=16 * 24)(
        frames,
        disparity,
        torch.linspace(0.2, 0.8, 11),
        torch.full((11,), 8.0),
        progress=lambda d, t: progress.append((d, t)),
    )
    hook.remove()
    plan = overlap_windows(11, 4, 2)
    assert [shape[1] for shape in calls] == [4] * len(plan) and len(plan) == 5
    assert out.shape == frames.shape and out.dtype == torch.uint8
    # both passes (UNet, decoder) report each window
    assert progress[-1] == (2 * len(plan), 2 * len(plan)) and len(progress) == 2 * len(plan)


def test_the_model_renders_at_the_working_size_and_returns_the_input_size(tiny):
    frames, disparity = _clip(3, 40, 72)
    seen = []
    hook = unet_calls(tiny, seen)
    try:
        out = ModelRenderer(tiny, area=20 * 36)(frames, disparity, 0.5, 4.0)
    finally:
        hook.remove()
    # the VAE halves the tiny model's frames once: latents of 10x18
    assert [shape[-2:] for shape in seen] == [(10, 18)] and out.shape == frames.shape


def test_the_model_renders_at_the_size_it_was_trained_at_unless_an_area_is_given(monkeypatch, caplog):
    import any2bokeh.inference.model_renderer as model_renderer

    model = AnyToBokeh.tiny(seed=0)
    assert ModelRenderer(model).area == 576 * 1024  # nothing recorded: the paper's area
    model.options.training_size = [16, 24]
    frames, disparity = _clip(3, 40, 72)
    seen = []
    unet_calls(model, seen)
    monkeypatch.setattr(model_renderer, "ANNOUNCE_SECONDS", 0.0)
    with caplog.at_level("WARNING", logger=model_renderer.__name__):
        out = ModelRenderer(model)(frames, disparity, 0.5, 4.0)
    # latents at half the working size, whose area is about the training size's (16 x 24)
    assert out.shape == frames.shape and 4 * seen[0][-2] * seen[0][-1] <= 16 * 24 + 64
    assert "the first window took" in caplog.text and "trained at 24x16" in caplog.text
    seen.clear()
    ModelRenderer(model, area=20 * 36)(frames, disparity, 0.5, 4.0)
    assert [shape[-2:] for shape in seen] == [(10, 18)]


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


@pytest.fixture(scope="module")
def live():
    """The tiny model with every gate open and live skip convs, so each input and each path shows in the output."""
    model = AnyToBokeh.tiny(seed=2)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for block in model.unet.mpi_blocks:
            block.gate_attn.fill_(0.5)
            block.gate_ff.fill_(0.5)
        for conv in model.vae.skip_convs:
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * 0.05)
    return model


def test_the_streamed_schedule_renders_what_the_two_pass_schedule_renders(live):
    frames, disparity = _clip(20, 16, 24, seed=3)
    frames = (frames * 255).round().to(torch.uint8)
    d_f, k = torch.linspace(0.2, 0.8, 20), torch.linspace(4.0, 24.0, 20)
    streamed = ModelRenderer(live, window=8, overlap=4, area=16 * 24)
    assert streamed.use_skips and streamed.schedule == "stream"
    two_pass = ModelRenderer(live, window=8, overlap=4, area=16 * 24, schedule="two_pass")
    a = streamed(frames.float() / 255, disparity, d_f, k)
    b = two_pass(frames.float() / 255, disparity, d_f, k)
    assert float((a - b).abs().max()) < 1e-5 and float((a - b).norm() / b.norm()) < 1e-6
    # uint8 in, uint8 out: the same frames but for a rounding flip
    assert (streamed(frames, disparity, d_f, k).int() - two_pass(frames, disparity, d_f, k).int()).abs().max() <= 1
    # the frames held at once: the windows between the oldest not decoded and the newest encoded
    assert streamed.peak_held == 12


def test_each_frame_is_encoded_once_for_its_latents_once_for_v_d_and_once_by_clip(live):
    frames, disparity = _clip(20, 16, 24, seed=4)
    counts = {"vae": [], "clip": []}
    original_encode = live.vae.encode

    def encode(images, keep_skips=True):
        counts["vae"].append(images.shape[0])
        return original_encode(images, keep_skips)

    live.vae.encode = encode
    hooks = [
        live.image_encoder.register_forward_pre_hook(
            lambda m, args, kwargs: counts["clip"].append(kwargs["pixel_values"].shape[0]), with_kwargs=True
        )
    ]
    try:
        for schedule in ("stream", "two_pass"):
            counts["vae"].clear(), counts["clip"].clear()
            ModelRenderer(live, window=8, overlap=4, area=16 * 24, schedule=schedule)(frames, disparity, 0.5, 8.0)
            counts[schedule] = (sum(counts["vae"]), sum(counts["clip"]))
    finally:
        del live.vae.encode
        for hook in hooks:
            hook.remove()
    # 20 all-in-focus frames and 20 V_D frames through the encoder, 20 through CLIP; the old schedule: 4 windows
    # of 8, each encoding its frames for the UNet (all-in-focus and V_D) and again for the decoder's skips
    assert len(overlap_windows(20, 8, 4)) == 4
    assert counts["stream"] == (40, 20)
    assert counts["two_pass"] == (4 * 8 * 3, 4 * 8)


def test_speed_switches_keep_the_output_and_a_failed_compile_falls_back_to_eager(live, monkeypatch, caplog):
    import any2bokeh.inference.speed as speed

    frames, disparity = _clip(6, 16, 24, seed=6)
    args = (frames, disparity, 0.4, 12.0)
    exact = ModelRenderer(live, window=4, overlap=2, area=16 * 24, phase_upsample=False)(*args)

    def broken_compile(fn):
        def compiled(*a, **kw):
            raise RuntimeError("no compiler here")

        return compiled

    monkeypatch.setattr(speed.torch, "compile", broken_compile)
    fast = ModelRenderer(live, window=4, overlap=2, area=16 * 24, channels_last=True, sdpa_backend="math", compile=True)
    with caplog.at_level("WARNING", logger=speed.__name__):
        out = fast(*args)
    for part in ("the UNet", "the VAE encoder", "the VAE decoder"):
        assert f"torch.compile of {part} failed (RuntimeError: no compiler here); running it eagerly" in caplog.text
    assert float((out - exact).abs().max()) < 1e-5
    assert fast.info()["speed"] == {
        "phase_upsample": True,
        "channels_last": True,
        "cudnn_benchmark": False,
        "sdpa_backend": "math",
        "compile": True,
    }
    del live.unet.forward, live.vae.encode, live.vae.decode
    for module in live.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.weight.data = module.weight.data.contiguous()
    with pytest.raises(ValueError, match="sdpa_backend must be one of"):
        ModelRenderer(live, sdpa_backend="fastest")


def test_decode_in_chunks_decodes_each_frame_once(live):
    frames, disparity = _clip(20, 16, 24, seed=7)
    decoded = []
    original = live.vae.decode
    live.vae.decode = lambda latents, num_frames, skips=None: (
        decoded.append(num_frames) or original(latents, num_frames, skips)
    )
    try:
        out = ModelRenderer(live, window=8, overlap=4, area=16 * 24, decode="chunks")(frames, disparity, 0.5, 8.0)
        chunks = list(decoded)
        decoded.clear()
        ModelRenderer(live, window=8, overlap=4, area=16 * 24)(frames, disparity, 0.5, 8.0)
    finally:
        del live.vae.decode
    assert chunks == [8, 8, 4] and decoded == [8] * 4 and out.shape == frames.shape
    with pytest.raises(ValueError, match="decode must be"):
        ModelRenderer(live, decode="chunks", schedule="two_pass")


def test_with_matte_on_the_model_sees_the_subject_on_the_focal_plane(tiny, monkeypatch):
    frames, _ = _clip(4, 48, 64)
    disparity = torch.full((4, 1, 48, 64), 0.2)
    disparity[:, :, 8:40, 12:52] = torch.linspace(0.6, 0.9, 40)  # a subject spanning depths
    matte = torch.zeros(4, 1, 48, 64)
    matte[:, :, 8:40, 12:52] = 1.0
    seen = []
    real = tiny.unet_inputs
    monkeypatch.setattr(
        tiny, "unet_inputs", lambda aif, disp, *rest, **kw: seen.append(disp) or real(aif, disp, *rest, **kw)
    )
    args = (frames, disparity, torch.full((4,), 0.75), torch.full((4,), 12.0))
    plain = ModelRenderer(tiny, window=8, overlap=4, area=48 * 64, schedule="two_pass")(*args, matte=matte)
    assert torch.allclose(seen[-1][0], disparity)  # off by default: the matte is ignored
    with_matte = ModelRenderer(tiny, window=8, overlap=4, area=48 * 64, schedule="two_pass", matte=True)
    out = with_matte(*args, matte=matte)
    pulled = seen[-1][0]
    inside = pulled[:, :, 20:28, 26:38]
    assert torch.allclose(inside, torch.full_like(inside, 0.75), atol=0.02)  # the subject's core on d_f
    assert torch.allclose(pulled[:, :, :, :3], disparity[:, :, :, :3])  # the background as it was
    assert with_matte.info()["matte"] is True and not torch.equal(out, plain)
