"""The authors' released weights: loading by the key map, the release's computation, conversion."""

import pytest
import torch
from safetensors.torch import load_file

from any2bokeh.models import AnyToBokeh, save_tiny_svd
from any2bokeh.models.options import RELEASE_OPTIONS
from any2bokeh.models.release import main
from any2bokeh.models.release_weights import ReleaseReport, is_release_folder, load_release
from tests.helpers.release_files import write_release
from tests.helpers.release_reference import ReleasePipeline

FRAMES, HEIGHT, WIDTH = 4, 48, 64


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("release")
    return write_release(root / "checkpoints"), save_tiny_svd(root / "svd")


@pytest.fixture(scope="module")
def window():
    """One window of T frames at the working size: frames, disparity in [0, 1], per-frame d_f and K."""
    generator = torch.Generator().manual_seed(3)
    aif = torch.rand(FRAMES, 3, HEIGHT, WIDTH, generator=generator) * 2 - 1
    disparity = torch.rand(FRAMES, 1, HEIGHT, WIDTH, generator=generator)
    disp_focus = torch.tensor([0.2, 0.45, 0.6, 0.8])
    k = torch.tensor([4.0, 9.5, 17.0, 31.0])
    return aif, disparity, disp_focus, k


@pytest.fixture(scope="module")
def reference(files, window):
    return ReleasePipeline(*files)(*window)


def relative_l2(a, b):
    return float((a - b).norm() / b.norm())


def run(model, window):
    aif, disparity, disp_focus, k = window
    with torch.no_grad():
        out = model(aif[None], disparity[None], disp_focus[None], k[None])
    return out.latents[0], out.frames[0]


def test_release_loads_and_matches_the_release_pipeline(files, window, reference):
    model = AnyToBokeh.from_release(*files)
    latents, frames = run(model, window)
    assert relative_l2(latents, reference[0]) < 1e-4
    assert relative_l2(frames, reference[1]) < 1e-4


def test_in_float64_the_two_implementations_agree_to_the_float32_clip_input(files, window):
    """In float64 only the CLIP input, which the model resizes in float32, is left to round: the formulas agree."""
    pipeline = ReleasePipeline(*files)
    for module in (pipeline.unet, pipeline.vae, pipeline.clip):
        module.double()
    pipeline.skips = [skip.double() for skip in pipeline.skips]
    pipeline.fusers = {path: {k: v.double() for k, v in fuser.items()} for path, fuser in pipeline.fusers.items()}
    doubles = tuple(t.double() for t in window)
    reference = pipeline(*doubles)
    latents, frames = run(AnyToBokeh.from_release(*files, dtype=torch.float64), doubles)
    assert relative_l2(latents, reference[0]) < 1e-7 and relative_l2(frames, reference[1]) < 1e-7


# each release behaviour switched back to this project's: the output must move well beyond the parity bound
SWITCHED_BACK = {
    "k_encoding": "log",
    "cond_tokens": True,
    "ff_twice": False,
    "temporal_context": "all",
    "clip_resize": "bicubic",
    "clip_normalize": True,
    "fps": 7,
}


@pytest.mark.parametrize("option", sorted(SWITCHED_BACK))
def test_each_release_behaviour_is_needed_for_parity(files, window, reference, option):
    if option == "ff_twice":
        # the second norm's tensors are then not used: load by hand without them
        model = AnyToBokeh.tiny(**{**RELEASE_OPTIONS, "ff_twice": False})
        full = load_release(AnyToBokeh, *files)
        state = {key: value for key, value in full.state_dict().items() if ".norm_ff2." not in key}
        model.load_state_dict(state)
    else:
        model = AnyToBokeh.from_release(*files, **{option: SWITCHED_BACK[option]})
    latents, _ = run(model, window)
    assert relative_l2(latents, reference[0]) > 5e-4


def test_fp16_embedding_of_k_differs_from_float32():
    """The release's E(K) is quantised: switching to the float32 layout changes the output."""
    from any2bokeh.models import fourier_k

    k = torch.tensor([4.0, 8.0, 16.0, 32.0])
    difference = (fourier_k(k, "release").float() - fourier_k(k, "interleaved")).abs().amax(dim=-1)
    assert difference[-1] > 0.5 and torch.all(difference[1:] > difference[:-1])


def test_report_counts_every_tensor_and_drops_ff_k_linear_and_conv_in_mpi(files):
    report = ReleaseReport()
    model = load_release(AnyToBokeh, *files, report=report)
    stored = load_file(files[0] / "unet" / "unet" / "diffusion_pytorch_model.safetensors")
    stored.update(load_file(files[0] / "vae" / "diffusion_pytorch_model.safetensors"))
    assert report.parameters == sum(value.numel() for value in stored.values())
    assert report.dropped["ff_k"] == sum(v.numel() for k, v in stored.items() if ".ff_k." in k)
    assert set(report.dropped) == {"ff_k", "linear", "conv_in_mpi"}
    used = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("image_encoder."))
    assert used == report.parameters - sum(report.dropped.values())
    assert model.unet.cond_embed is None and is_release_folder(files[0])


def test_condition_tokens_on_uses_linear_and_conv_in_mpi(files):
    report = ReleaseReport()
    model = load_release(AnyToBokeh, *files, report=report, cond_tokens=True)
    assert set(report.dropped) == {"ff_k"}
    stored = load_file(files[0] / "unet" / "unet" / "diffusion_pytorch_model.safetensors")
    assert torch.equal(model.unet.cond_embed.weight, stored["conv_in_mpi.weight"])
    path = model.unet.mpi_block_paths[0].removeprefix("unet.")
    assert torch.equal(model.unet.mpi_blocks[0].cond_proj[0].weight, stored[f"{path}.fuser.linear.weight"])


def _edited_release(files, tmp_path, extra=None, drop=()):
    release = write_release(tmp_path / "edited", extra=extra, drop=drop)
    return release, files[1]


def test_stray_key_is_an_error_naming_it(files, tmp_path):
    release, svd = _edited_release(files, tmp_path, extra={"down_blocks.0.attentions.0.fuser_extra.w": torch.ones(2)})
    with pytest.raises(ValueError, match=r"unexpected 1 \['unet:down_blocks.0.attentions.0.fuser_extra.w'\]"):
        AnyToBokeh.from_release(release, svd)


def test_missing_key_is_an_error_naming_it(files, tmp_path):
    key = "down_blocks.0.attentions.0.transformer_blocks.0.fuser.norm_k.weight"
    release, svd = _edited_release(files, tmp_path, drop=(key,))
    with pytest.raises(ValueError, match=rf"missing 1 \['unet:{key}'\]"):
        AnyToBokeh.from_release(release, svd)


def test_missing_svd_folder_is_an_error(files, tmp_path):
    with pytest.raises(ValueError, match="svd=<a stock Stable Video Diffusion img2vid-xt"):
        AnyToBokeh.from_release(files[0])
    with pytest.raises(FileNotFoundError, match="no_svd"):
        AnyToBokeh.from_release(files[0], tmp_path / "no_svd")
    with pytest.raises(FileNotFoundError, match="not the authors' release"):
        AnyToBokeh.from_release(tmp_path, files[1])


def test_convert_then_from_pretrained_gives_the_same_output(files, window, tmp_path, capsys):
    out = tmp_path / "converted"
    assert main(["--release", str(files[0]), "--svd", str(files[1]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "dropped ff_k" in printed and "GiB" in printed
    converted = AnyToBokeh.from_pretrained(out)
    assert converted.options == AnyToBokeh.from_release(*files).options
    assert not any(".ff_k." in key for key in converted.state_dict())
    # exact: the same tensors and the same computation (the model is saved as loaded)
    assert all(torch.equal(a, b) for a, b in zip(run(converted, window), run(AnyToBokeh.from_release(*files), window)))
    assert main(["--release", str(files[0]), "--svd", str(files[1]), "--out", str(out)]) == 2


def test_convert_in_half_precision(files, tmp_path):
    out = tmp_path / "fp16"
    assert main(["--release", str(files[0]), "--svd", str(files[1]), "--out", str(out), "--dtype", "fp16"]) == 0
    state = load_file(out / "unet" / "diffusion_pytorch_model.safetensors")
    assert {value.dtype for value in state.values()} == {torch.float16}


def test_release_weights_in_bin_files_load(files, tmp_path):
    """Weights as .bin (torch.save) instead of safetensors load the same."""
    release = write_release(tmp_path / "bin")
    for folder in (release / "unet" / "unet", release / "vae"):
        file = folder / "diffusion_pytorch_model.safetensors"
        torch.save(load_file(file), folder / "diffusion_pytorch_model.bin")
        file.unlink()
    a = AnyToBokeh.from_release(release, files[1]).state_dict()
    b = AnyToBokeh.from_release(files[0], files[1]).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


def test_the_release_architecture_at_the_real_sizes_has_the_release_parameter_count():
    """On the meta device: our UNet with the release options, plus the groups the loader drops, is the
    1,876,296,074 parameters of the released UNet, 351,672,992 of them new and 148,797,120 in ff_k (RELEASE.md §2)."""
    from any2bokeh.models.svd_xt import random_real_svd

    model = random_real_svd("meta", use_image_encoder=False, **RELEASE_OPTIONS)
    ours = sum(p.numel() for p in model.unet.parameters())
    new = sum(p.numel() for p in model.unet.mpi_blocks.parameters())
    widths = [block.to_q.in_features for block in model.unet.mpi_blocks]
    cond_dim = model.unet.unet.conv_in.out_channels
    ff_k = sum(8 * d * d + 8 * d + 4 * d * d + d for d in widths)
    linear = sum(d * cond_dim + d for d in widths)
    conv_in_mpi = cond_dim * 4 * 9 + cond_dim
    assert len(widths) == 16 and ff_k == 148_797_120
    assert ours + ff_k + linear + conv_in_mpi == 1_876_296_074
    assert new + ff_k + linear + conv_in_mpi == 351_672_992
