"""Disparity for inference: files in every accepted layout, and a transformers depth network from a local folder."""

import numpy as np
import pytest
import torch
from PIL import Image

from any2bokeh.data.disparity import normalize_disparity
from any2bokeh.inference import DepthNetwork, DisparityError, estimate_disparity, load_disparity
from tests.helpers.depth_networks import save_tiny_depth_anything
from tests.helpers.video_files import write_mp4

T, H, W = 4, 16, 32


def raw_disparity(low=100.0, high=300.0, seed=0):
    """Smooth raw disparity in [low, high], different in every frame: float64 [T, H, W]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W] / np.array([H, W])[:, None, None]
    maps = [xx * (1 + t) + yy * rng.uniform(0.5, 1.5) for t in range(T)]
    maps = np.stack(maps)
    return low + (high - low) * (maps - maps.min()) / (maps.max() - maps.min())


def clip_normalised(raw):
    return (raw - raw.min()) / (raw.max() - raw.min())


# ---- files ----


def test_npy_of_any_range_is_normalised_over_the_whole_clip(tmp_path):
    raw = raw_disparity()
    np.save(tmp_path / "clip.disparity.npy", raw.astype(np.float32))
    disparity = load_disparity(tmp_path / "clip.disparity.npy", num_frames=T, size=(H, W))
    assert disparity.dtype == torch.float32 and disparity.shape == (T, H, W)
    np.testing.assert_allclose(disparity.numpy(), clip_normalised(raw), atol=1e-6)
    # one min and one max for the clip, not per frame: the first frame never reaches 1
    assert float(disparity[0].max()) < 0.6 and float(disparity.max()) == 1.0


def test_npy_in_other_layouts_and_npz(tmp_path):
    raw = raw_disparity()
    expected = clip_normalised(raw)
    np.save(tmp_path / "four_d.npy", raw[:, None])  # [T, 1, H, W]
    np.save(tmp_path / "one_frame.npy", raw[0])  # [H, W]
    np.savez(tmp_path / "single.npz", anything=raw)
    np.savez(tmp_path / "named.npz", disparity=raw, mask=raw > 200)
    np.savez(tmp_path / "ambiguous.npz", a=raw, b=raw)
    for name in ("four_d.npy", "single.npz", "named.npz"):
        np.testing.assert_allclose(load_disparity(tmp_path / name).numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(load_disparity(tmp_path / "one_frame.npy").numpy(), clip_normalised(raw[:1]), atol=1e-6)
    with pytest.raises(DisparityError, match=r"ambiguous\.npz holds arrays \['a', 'b'\]"):
        load_disparity(tmp_path / "ambiguous.npz")


def test_folder_of_sixteen_bit_pngs_keeps_precision_and_frame_order(tmp_path):
    # values 1000 apart by one level of 16 bits: 8-bit storage would merge them
    raw = (30000 + np.arange(T * H * W).reshape(T, H, W) % 5).astype(np.uint16)
    raw[2, 0, 0], raw[3, 0, 0] = 40000, 20000  # the clip's max in frame 2, its min in frame 3
    folder = tmp_path / "depth_frames"
    folder.mkdir()
    for t in range(T):
        Image.fromarray(raw[t]).save(folder / f"d_{t * 5}.png")  # d_0, d_5, d_10, d_15: unpadded numbers
    disparity = load_disparity(folder, num_frames=T)
    np.testing.assert_allclose(disparity.numpy(), clip_normalised(raw.astype(np.float64)), atol=1e-6)
    assert disparity[2, 0, 0] == 1 and disparity[3, 0, 0] == 0


def test_folder_of_eight_bit_pngs(tmp_path):
    raw = np.round(raw_disparity(0, 255)).astype(np.uint8)
    for t in range(T):
        Image.fromarray(raw[t]).save(tmp_path / f"{t:03d}.png")
    disparity = load_disparity(tmp_path)
    np.testing.assert_allclose(disparity.numpy(), clip_normalised(raw.astype(np.float64)), atol=1e-6)


def test_grey_video(tmp_path):
    raw = np.round(raw_disparity(20, 230)).astype(np.uint8)
    path = write_mp4(tmp_path / "clip.disparity.mp4", np.repeat(raw[..., None], 3, axis=-1))
    disparity = load_disparity(path, num_frames=T, size=(H, W))
    assert disparity.shape == (T, H, W)
    # H.264 at near-lossless quality: within a few grey levels of 210
    assert float((disparity - torch.from_numpy(clip_normalised(raw.astype(np.float64)))).abs().max()) < 6 / 210


def test_depth_files_are_inverted_on_request(tmp_path):
    depth = np.ones((2, H, W))
    depth[0] = 1.0  # near
    depth[1, :, : W // 2] = 2.0
    depth[1, :, W // 2 :] = 4.0  # far
    np.save(tmp_path / "depth.npy", depth)
    disparity = load_disparity(tmp_path / "depth.npy", inverse=True)
    # disparity 1/depth = 1, 1/2, 1/4 -> (d - 1/4) / (3/4) = 1, 1/3, 0
    assert torch.allclose(disparity[0], torch.ones(H, W))
    assert torch.allclose(disparity[1, :, 0], torch.full((H,), 1 / 3))
    assert torch.allclose(disparity[1, :, -1], torch.zeros(H))
    # without inverse the file is read as disparity: larger = nearer
    assert load_disparity(tmp_path / "depth.npy")[1, 0, -1] == 1
    depth[1, 3, 3] = 0
    np.save(tmp_path / "bad_depth.npy", depth)
    with pytest.raises(DisparityError, match=r"bad_depth\.npy has values <= 0 in frame 1"):
        load_disparity(tmp_path / "bad_depth.npy", inverse=True)


def test_maps_of_another_size_are_resized_to_the_frames(tmp_path):
    raw = raw_disparity()
    np.save(tmp_path / "half.npy", raw[:, ::2, ::2])
    np.save(tmp_path / "double.npy", np.repeat(np.repeat(raw, 2, axis=1), 2, axis=2))
    for name in ("half.npy", "double.npy"):
        disparity = load_disparity(tmp_path / name, size=(H, W))
        assert disparity.shape == (T, H, W)
        assert float(disparity.min()) == 0 and float(disparity.max()) == 1
        # a ramp stays a ramp
        assert (disparity[:, H // 2].diff(dim=-1) >= -1e-6).all()
        assert float((disparity - torch.from_numpy(clip_normalised(raw))).abs().mean()) < 0.03


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_or_infinite_values_name_the_file_and_frame(tmp_path, bad):
    raw = raw_disparity()
    raw[2, 5, 7] = bad
    np.save(tmp_path / "broken.npy", raw)
    with pytest.raises(DisparityError, match=r"broken\.npy has NaN or infinite values in frame 2"):
        load_disparity(tmp_path / "broken.npy")


def test_bad_files_are_named(tmp_path):
    np.save(tmp_path / "short.npy", raw_disparity())
    with pytest.raises(DisparityError, match=r"short\.npy has 4 frames, the video has 5"):
        load_disparity(tmp_path / "short.npy", num_frames=5)
    with pytest.raises(DisparityError, match=r"does not exist: .*missing\.npy"):
        load_disparity(tmp_path / "missing.npy")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DisparityError, match="no disparity frames .*empty"):
        load_disparity(tmp_path / "empty")
    np.save(tmp_path / "flat.npy", np.zeros(5))
    with pytest.raises(DisparityError, match=r"flat\.npy must be \[T, H, W\], got shape \(5,\)"):
        load_disparity(tmp_path / "flat.npy")
    (tmp_path / "corrupt.mp4").write_bytes(b"not a video")
    with pytest.raises(DisparityError, match=r"cannot read disparity .*corrupt\.mp4"):
        load_disparity(tmp_path / "corrupt.mp4")


# ---- a depth network ----


def textured_frames(count=3, height=32, width=48, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


def test_depth_network_runs_in_batches_and_matches_the_model(tmp_path):
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    folder = save_tiny_depth_anything(tmp_path / "depth-anything-tiny")
    frames = textured_frames()
    network = DepthNetwork(folder, batch_size=2)  # batches of 2 and 1
    raw = network.raw(frames)
    assert raw.shape == (3, 32, 48) and raw.dtype == torch.float32 and float(raw.std()) > 0

    # the same model called by hand on all frames at once
    model = AutoModelForDepthEstimation.from_pretrained(folder).eval()
    processor = AutoImageProcessor.from_pretrained(folder)
    with torch.no_grad():
        depth = model(pixel_values=processor(images=list(frames), return_tensors="pt")["pixel_values"]).predicted_depth
    expected = torch.nn.functional.interpolate(depth[:, None], size=(32, 48), mode="bilinear", align_corners=False)[
        :, 0
    ]
    assert torch.allclose(raw, expected, rtol=1e-4, atol=1e-4)  # batches of 2 + 1 vs 3: float rounding only

    disparity = network(frames)
    assert torch.equal(disparity, normalize_disparity(raw))  # relative output is inverse depth: the disparity
    assert torch.allclose(estimate_disparity(frames, folder, batch_size=3), disparity, atol=1e-5)


def test_metric_depth_networks_are_inverted(tmp_path):
    folder = save_tiny_depth_anything(tmp_path / "metric", kind="metric")
    network = DepthNetwork(folder)
    frames = textured_frames()
    raw = network.raw(frames)
    assert network.predicts_depth and (raw > 0).all()
    assert torch.allclose(network(frames), normalize_disparity(1 / raw.double()), atol=1e-6)


def test_missing_depth_model_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="depth model folder does not exist: .*nowhere"):
        DepthNetwork(tmp_path / "nowhere")
    folder = save_tiny_depth_anything(tmp_path / "model")
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"model has no weights \(model\.safetensors or pytorch_model\.bin\)"):
        DepthNetwork(folder)
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="model has no preprocessor_config.json"):
        DepthNetwork(folder)
