"""Loading and saving AnyToBokeh: a tiny SVD in the hub layout, the whole-model round trip, Lightning checkpoints."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import UNetSpatioTemporalConditionModel
from safetensors.torch import load_file, save_file

from any2bokeh.models import AnyToBokeh, save_tiny_svd


@pytest.fixture(scope="module")
def svd_folder(tmp_path_factory):
    return save_tiny_svd(tmp_path_factory.mktemp("tiny-svd"), seed=1)


@pytest.fixture
def svd_copy(svd_folder, tmp_path):
    return shutil.copytree(svd_folder, tmp_path / "svd")


def clip(seed=0, batch=1, frames=2, size=32):
    generator = torch.Generator().manual_seed(seed)
    aif = torch.rand(batch, frames, 3, size, size, generator=generator) * 2 - 1
    disparity = torch.rand(batch, frames, 1, size, size, generator=generator)
    return aif, disparity, torch.full((batch, frames), 0.4), torch.full((batch, frames), 12.0)


def open_gates(model, seed=0):
    """Give every new module random values, so that a round trip that dropped one would show."""
    generator = torch.Generator().manual_seed(seed)
    state = model.state_dict()
    with torch.no_grad():
        for name in model.new_parameter_names():
            state[name].copy_(torch.randn(state[name].shape, generator=generator) * 0.1)


def test_from_svd_loads_every_saved_tensor(svd_folder):
    model = AnyToBokeh.from_svd(svd_folder)
    state = model.state_dict()
    files = {
        "unet.unet.": svd_folder / "unet" / "diffusion_pytorch_model.safetensors",
        "vae.vae.": svd_folder / "vae" / "diffusion_pytorch_model.safetensors",
        "image_encoder.": svd_folder / "image_encoder" / "model.safetensors",
    }
    loaded = set()
    for prefix, path in files.items():
        for name, saved in load_file(path).items():
            assert torch.equal(state[prefix + name], saved), prefix + name
            loaded.add(prefix + name)
    # every tensor is either a saved SVD tensor or one of the listed new modules
    assert loaded == set(model.pretrained_parameter_names())
    assert set(state) == loaded | set(model.new_parameter_names())
    new_roots = {".".join(name.split(".")[:2]) for name in model.new_parameter_names()}
    assert new_roots == {"unet.cond_embed", "unet.mpi_blocks", "unet.k_gain", "vae.skip_convs"}
    assert model.feature_extractor.crop_size == {"height": 32, "width": 32}
    # the config describes the architecture, not the folder it came from
    config = model.config
    assert str(svd_folder) not in json.dumps(config)
    assert config["unet"]["block_out_channels"] == [32, 64] and config["vae"]["latent_channels"] == 4
    assert config["image_encoder"]["hidden_size"] == 32 and config["feature_extractor"]["crop_size"]["height"] == 32
    assert config["options"]["ff_mult"] == 2 and config["options"]["max_key_tokens"] == 576


def test_from_svd_options(svd_folder, tmp_path):
    # without the image encoder its folders are not needed
    folder = shutil.copytree(svd_folder, tmp_path / "svd", ignore=shutil.ignore_patterns("image_encoder"))
    model = AnyToBokeh.from_svd(folder, use_image_encoder=False, dtype="bf16", fps=6, n_planes=3)
    assert model.image_encoder is None and model.feature_extractor is None
    assert {parameter.dtype for parameter in model.parameters()} == {torch.bfloat16}
    assert model.options.fps == 6 and model.unet.n_planes == 3
    assert model.added_time_ids(2).tolist() == [[6, 127, 0], [6, 127, 0]]

    model = AnyToBokeh.from_svd(svd_folder, gradient_checkpointing=True)
    assert model.unet.is_gradient_checkpointing and model.vae.gradient_checkpointing


def test_hub_id_loads_from_the_local_hub_cache(svd_folder, tmp_path):
    # the hub cache layout: models--owner--name/{refs/main, snapshots/<revision>/...}
    repo, revision = tmp_path / "hub" / "models--someone--tiny-svd", "0123456789abcdef" * 2 + "01234567"
    shutil.copytree(svd_folder, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    model = AnyToBokeh.from_svd("someone/tiny-svd", cache_dir=tmp_path / "hub")
    expected = load_file(svd_folder / "vae" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(model.vae.vae.state_dict()[name], value) for name, value in expected.items())
    with pytest.raises(FileNotFoundError, match=r"'someone/other-svd'.*hub cache"):
        AnyToBokeh.from_svd("someone/other-svd", cache_dir=tmp_path / "hub")


def test_missing_path_and_uncached_hub_id_name_themselves(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such-svd"):
        AnyToBokeh.from_svd(tmp_path / "no-such-svd")
    with pytest.raises(FileNotFoundError, match=r"someone/not-a-cached-svd.*unet"):
        AnyToBokeh.from_svd("someone/not-a-cached-svd")


def test_wrong_folder_layout_lists_the_expected_subfolders(svd_folder, svd_copy):
    with pytest.raises(FileNotFoundError, match=r"missing subfolder\(s\) \['unet', 'vae', 'image_encoder'"):
        AnyToBokeh.from_svd(svd_folder / "unet")
    shutil.rmtree(svd_copy / "feature_extractor")
    with pytest.raises(FileNotFoundError, match=r"\['feature_extractor'\]"):
        AnyToBokeh.from_svd(svd_copy)
    with pytest.raises(NotADirectoryError, match="model_index.json"):
        AnyToBokeh.from_svd(svd_folder / "model_index.json")


def test_missing_weights_or_config_are_named(svd_copy):
    (svd_copy / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"no weights .* in .*vae"):
        AnyToBokeh.from_svd(svd_copy)
    (svd_copy / "unet" / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"unet.config\.json"):
        AnyToBokeh.from_svd(svd_copy)


def test_weights_that_do_not_match_the_config_are_refused(svd_copy):
    path = svd_copy / "unet" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(path)
    dropped = sorted(tensors)[0]
    del tensors[dropped]
    save_file(tensors, path, metadata={"format": "pt"})
    with pytest.raises(ValueError, match=rf"missing_keys \(1\): \['{dropped}'\]"):
        AnyToBokeh.from_svd(svd_copy)


@pytest.mark.slow
def test_save_load_round_trip_is_exact(svd_folder, tmp_path):
    model = AnyToBokeh.from_svd(svd_folder, mpi_alpha=1.5, fps=6).eval()
    open_gates(model)
    folder = model.save_pretrained(tmp_path / "saved")
    config = json.loads((folder / "any2bokeh_config.json").read_text())
    assert config["options"]["mpi_alpha"] == 1.5 and config["options"]["fps"] == 6
    assert (config["format"], config["version"]) == ("any2bokeh", 2)

    loaded = AnyToBokeh.from_pretrained(folder).eval()
    assert loaded.options == model.options
    saved_state, loaded_state = model.state_dict(), loaded.state_dict()
    assert saved_state.keys() == loaded_state.keys()
    for name, value in saved_state.items():
        assert torch.equal(loaded_state[name], value), name
    with torch.no_grad():
        inputs = clip()
        expected, actual = model(*inputs), loaded(*inputs)
    # equal tensors at equally aligned addresses run the same kernels: from_svd copies the weights out of the
    # files' maps (loading._into_own_memory), without which MKL's non-Intel code path rounds them differently
    assert torch.equal(actual.frames, expected.frames) and torch.equal(actual.latents, expected.latents)

    # the UNet subfolder stays a plain diffusers folder holding the pretrained-named tensors
    unet = UNetSpatioTemporalConditionModel.from_pretrained(folder, subfolder="unet")
    torch.testing.assert_close(unet.conv_in.weight, model.unet.unet.conv_in.weight, rtol=0, atol=0)


def test_from_svd_weights_are_in_memory_of_their_own(svd_folder):
    model = AnyToBokeh.from_svd(svd_folder)
    # torch's allocator aligns to 64 bytes; the safetensors maps from_pretrained leaves hold 8-byte offsets
    misaligned = [name for name, tensor in model.state_dict().items() if tensor.data_ptr() % 64]
    assert not misaligned, misaligned[:5]


@pytest.mark.slow
def test_round_trip_is_exact_on_mkls_non_intel_code_path():
    # MKL reads the instruction sets once, at start; SSE4_2 is the path it takes on AMD's CPUs
    test = f"{Path(__file__)}::test_save_load_round_trip_is_exact"
    env = {**os.environ, "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider", test]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:]


def test_from_pretrained_errors(svd_folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        AnyToBokeh.from_pretrained(tmp_path / "nothing-here")
    with pytest.raises(FileNotFoundError, match="use AnyToBokeh.from_svd"):
        AnyToBokeh.from_pretrained(svd_folder)
    folder = AnyToBokeh.tiny(use_image_encoder=False).save_pretrained(tmp_path / "saved")
    assert not (folder / "image_encoder").exists()
    (folder / "any2bokeh_new_modules.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="any2bokeh_new_modules.safetensors"):
        AnyToBokeh.from_pretrained(folder)
    (folder / "vae" / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"vae.config\.json \(the VAE config\)"):
        AnyToBokeh.from_pretrained(folder)

    folder = AnyToBokeh.tiny(use_image_encoder=False).save_pretrained(tmp_path / "other")
    config = json.loads((folder / "any2bokeh_config.json").read_text())
    (folder / "any2bokeh_config.json").write_text(json.dumps({**config, "version": 7}))
    with pytest.raises(ValueError, match="unknown any2bokeh config version 7"):
        AnyToBokeh.from_pretrained(folder)
    (folder / "any2bokeh_config.json").write_text(
        json.dumps({**config, "options": {**config["options"], "n_plane": 4}})
    )
    with pytest.raises(ValueError, match=r"any2bokeh_config.json: .*unknown option\(s\) \['n_plane'\]"):
        AnyToBokeh.from_pretrained(folder)
    (folder / "any2bokeh_config.json").write_text(
        json.dumps({**config, "options": {**config["options"], "ff_mult": 4}})
    )
    with pytest.raises(ValueError, match=r"the weights in .*other does not fit the architecture"):
        AnyToBokeh.from_pretrained(folder)


def lightning_checkpoint(model, path, prefix="net.", **extra):
    state = {prefix + name: value for name, value in model.state_dict().items()}
    state["loss_fn.weight"] = torch.ones(1)  # other modules of the LightningModule are ignored
    torch.save({"state_dict": state, "epoch": 3, "hyper_parameters": {"lr": 1e-5}, **extra}, path)
    return path


def test_from_checkpoint(tmp_path):
    trained = AnyToBokeh.tiny(seed=0, n_planes=3)
    open_gates(trained, seed=5)
    path = lightning_checkpoint(trained, tmp_path / "last.ckpt", any2bokeh_config=trained.config)

    rebuilt = AnyToBokeh.from_checkpoint(path)  # architecture from the checkpoint's config
    into = AnyToBokeh.from_checkpoint(path, AnyToBokeh.tiny(seed=7, n_planes=3))
    for model in (rebuilt, into):
        assert model.options.n_planes == 3
        for name, value in trained.state_dict().items():
            assert torch.equal(model.state_dict()[name], value), name

    other_prefix = lightning_checkpoint(trained, tmp_path / "model.ckpt", prefix="model.net._orig_mod.")
    loaded = AnyToBokeh.from_checkpoint(other_prefix, AnyToBokeh.tiny(n_planes=3), prefix="model.net.")
    assert torch.equal(loaded.vae.skip_convs[0].weight, trained.vae.skip_convs[0].weight)


def test_from_checkpoint_of_an_svd_model(svd_folder, tmp_path):
    trained = AnyToBokeh.from_svd(svd_folder, use_image_encoder=False, fps=6)
    open_gates(trained, seed=6)
    path = lightning_checkpoint(trained, tmp_path / "last.ckpt", any2bokeh_config=trained.config)
    for model in (AnyToBokeh.from_checkpoint(path), AnyToBokeh.from_checkpoint(path, svd_folder)):
        assert model.image_encoder is None
        for name, value in trained.state_dict().items():
            assert torch.equal(model.state_dict()[name], value), name
    assert AnyToBokeh.from_checkpoint(path).options.fps == 6


def test_rebuilding_reads_no_svd_and_initialises_nothing(svd_folder, tmp_path, monkeypatch):
    """from_checkpoint and from_pretrained rebuild from the stored config: no SVD folder, no random init."""
    trained = AnyToBokeh.from_svd(svd_folder, use_image_encoder=False, n_planes=3, ff_mult=1, max_key_tokens=16)
    open_gates(trained, seed=8)
    path = lightning_checkpoint(trained, tmp_path / "last.ckpt", any2bokeh_config=trained.config)
    folder = trained.save_pretrained(tmp_path / "saved")
    for name in ("from_svd", "tiny"):
        monkeypatch.setattr(AnyToBokeh, name, classmethod(lambda *args, **kwargs: pytest.fail("built from SVD")))
    monkeypatch.setattr("any2bokeh.models.loading.load_svd_components", lambda *a, **k: pytest.fail("read SVD"))
    for load in (lambda: AnyToBokeh.from_checkpoint(path), lambda: AnyToBokeh.from_pretrained(folder)):
        rng = torch.get_rng_state()
        model = load()
        # a randomly initialised parameter would have drawn from the global generator
        assert torch.equal(torch.get_rng_state(), rng)
        assert model.options == trained.options
        assert {mpi.max_key_tokens for mpi in model.unet.mpi_blocks} == {16}
        assert model.unet.mpi_blocks[0].ff.net[-1].in_features == model.unet.mpi_blocks[0].ff.net[-1].out_features
        state = model.state_dict()
        assert state.keys() == trained.state_dict().keys()
        assert all(torch.equal(state[name], value) for name, value in trained.state_dict().items())


def test_rebuilt_model_computes_what_the_saved_one_did(tmp_path):
    """Non-persistent buffers (the CLIP mean and std, CLIP's position ids) are rebuilt, not left empty."""
    trained = AnyToBokeh.tiny(seed=4, mpi_alpha=1.5).eval()
    open_gates(trained, seed=4)
    path = lightning_checkpoint(trained, tmp_path / "last.ckpt", any2bokeh_config=trained.config)
    rebuilt = AnyToBokeh.from_checkpoint(path).eval()
    buffers = dict(trained.named_buffers())
    assert buffers.keys() == dict(rebuilt.named_buffers()).keys() >= {"clip_mean", "clip_std"}
    assert all(torch.equal(buffers[name], value) for name, value in rebuilt.named_buffers())
    with torch.no_grad():
        expected, actual = trained(*clip()), rebuilt(*clip())
    # both hold their weights in memory torch allocated (aligned alike), so the same kernels run on them
    assert torch.equal(actual.frames, expected.frames)
    half = AnyToBokeh.from_checkpoint(path, dtype="bf16", gradient_checkpointing=True)
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16} and half.unet.is_gradient_checkpointing


def test_version_1_files(tmp_path):
    """A version-1 folder (options only) loads; a version-1 checkpoint says how to convert it, and that works."""
    trained = AnyToBokeh.tiny(seed=0, use_image_encoder=False, fps=6)
    open_gates(trained, seed=3)
    folder = trained.save_pretrained(tmp_path / "saved")
    options = {
        key: value for key, value in trained.config["options"].items() if key not in ("ff_mult", "max_key_tokens")
    }
    (folder / "any2bokeh_config.json").write_text(json.dumps({"format": "any2bokeh", "version": 1, **options}))
    assert AnyToBokeh.from_pretrained(folder).options == trained.options

    old_config = {**options, "source": {"kind": "tiny", "seed": 0}}
    path = lightning_checkpoint(trained, tmp_path / "old.ckpt", any2bokeh_config=old_config)
    with pytest.raises(
        ValueError, match=r"version-1 checkpoint.*'kind': 'tiny'.*from_checkpoint\(ckpt, model=.*save_pretrained"
    ):
        AnyToBokeh.from_checkpoint(path)
    converted = AnyToBokeh.from_checkpoint(path, model=AnyToBokeh.tiny(use_image_encoder=False, fps=6))
    loaded = AnyToBokeh.from_pretrained(converted.save_pretrained(tmp_path / "converted"))
    assert all(torch.equal(loaded.state_dict()[name], value) for name, value in trained.state_dict().items())


def test_models_saved_before_an_option_existed_keep_their_behaviour(tmp_path):
    """key_mask, k_residual, k_encoding and k_gain came later: a config without them is the model as trained then."""
    legacy = {"key_mask": "any", "k_residual": False, "k_encoding": "raw", "k_gain": False}
    trained = AnyToBokeh.tiny(seed=0, use_image_encoder=False, **legacy)
    open_gates(trained, seed=3)
    folder = trained.save_pretrained(tmp_path / "saved")
    config = json.loads((folder / "any2bokeh_config.json").read_text())
    assert AnyToBokeh.from_pretrained(folder).options == trained.options
    for key in legacy:
        del config["options"][key]
    (folder / "any2bokeh_config.json").write_text(json.dumps(config))
    loaded = AnyToBokeh.from_pretrained(folder)
    assert {key: getattr(loaded.options, key) for key in legacy} == legacy
    assert all(block.key_mask == "any" and not block.k_residual for block in loaded.unet.mpi_blocks)
    assert loaded.unet.k_gain is None and loaded.unet.k_encoding == "raw"
    assert all(torch.equal(loaded.state_dict()[name], value) for name, value in trained.state_dict().items())
    # today's defaults are the other choices, so the legacy values did not come from the defaults
    defaults = AnyToBokeh.tiny().options
    assert {key: getattr(defaults, key) for key in legacy} == {
        "key_mask": "coverage",
        "k_residual": True,
        "k_encoding": "log",
        "k_gain": True,
    }


def test_from_checkpoint_errors(tmp_path):
    model = AnyToBokeh.tiny(use_image_encoder=False)
    path = lightning_checkpoint(model, tmp_path / "last.ckpt")
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        AnyToBokeh.from_checkpoint(tmp_path / "missing.ckpt", model)
    with pytest.raises(ValueError, match=r"prefix='module\.'.*'net\.'"):
        AnyToBokeh.from_checkpoint(path, model, prefix="module.")
    with pytest.raises(ValueError, match="no 'any2bokeh_config'"):
        AnyToBokeh.from_checkpoint(path)
    with pytest.raises(ValueError, match=r"unexpected .*image_encoder"):
        AnyToBokeh.from_checkpoint(lightning_checkpoint(AnyToBokeh.tiny(), tmp_path / "clip.ckpt"), model)
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["state_dict"]["net.vae.skip_convs.0.weight"] = torch.zeros(1, 1, 1, 1)
    torch.save(checkpoint, tmp_path / "reshaped.ckpt")
    with pytest.raises(ValueError, match=r"(?s)does not fit the model: .*size mismatch for vae.skip_convs.0.weight"):
        AnyToBokeh.from_checkpoint(tmp_path / "reshaped.ckpt", model)
    torch.save({"weights": 1}, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="not a Lightning checkpoint"):
        AnyToBokeh.from_checkpoint(tmp_path / "plain.pt", model)


def test_weight_variants(tmp_path):
    from diffusers import StableVideoDiffusionPipeline

    from any2bokeh.models import tiny_svd_components

    components = tiny_svd_components(seed=2)
    for name in ("unet", "vae", "image_encoder"):
        components[name].half()
    StableVideoDiffusionPipeline(**components).save_pretrained(tmp_path, variant="fp16")
    model = AnyToBokeh.from_svd(tmp_path, variant="fp16", dtype="fp16")
    assert torch.equal(model.unet.unet.conv_in.weight, components["unet"].conv_in.weight)
    with pytest.raises(FileNotFoundError, match=r"no weights .*unet \(variants present: \['fp16'\]: pass variant="):
        AnyToBokeh.from_svd(tmp_path)
    # with full-precision weights beside the fp16 ones, an absent variant is still named
    unet = tmp_path / "unet"
    full = load_file(unet / "diffusion_pytorch_model.fp16.safetensors")
    save_file(full, unet / "diffusion_pytorch_model.safetensors")
    with pytest.raises(FileNotFoundError, match=r"no bf16 weights .*unet \(variants present: \['fp16'\]"):
        AnyToBokeh.from_svd(tmp_path, variant="bf16")


def test_no_dtype_loads_every_component_in_float32(tmp_path):
    """The hub's layout: full-precision and fp16 files side by side, the image encoder's config saying float16.

    Without a dtype, diffusers loads the UNet and VAE in float32; the image encoder must follow, not the dtype
    in its config, which would round the full-precision weights to fp16.
    """
    from diffusers import StableVideoDiffusionPipeline

    from any2bokeh.models import tiny_svd_components

    components = tiny_svd_components(seed=3)
    StableVideoDiffusionPipeline(**components).save_pretrained(tmp_path)
    full = {name: p.detach().clone() for name, p in components["image_encoder"].named_parameters()}
    for name in ("unet", "vae", "image_encoder"):
        components[name].half()
    StableVideoDiffusionPipeline(**components).save_pretrained(tmp_path, variant="fp16")
    config = json.loads((tmp_path / "image_encoder" / "config.json").read_text())
    assert config.get("dtype", config.get("torch_dtype")) == "float16"
    models = {variant: AnyToBokeh.from_svd(tmp_path, variant=variant) for variant in (None, "fp16")}
    for variant, model in models.items():
        assert {p.dtype for p in model.parameters()} == {torch.float32}, variant
    assert all(torch.equal(p, full[name]) for name, p in models[None].image_encoder.named_parameters())
