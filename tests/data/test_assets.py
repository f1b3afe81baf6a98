import numpy as np
import pytest
import torch
from PIL import Image

from any2bokeh.data.assets import (
    AssetError,
    ImageBackgrounds,
    ImageMatteForegrounds,
    VideoMatteForegrounds,
    reflect_frame_ids,
    shrink_to_max_size,
)
from any2bokeh.data.scenes import SceneConfig, sample_scene
from tests.helpers.scene_sources import BlackBackgrounds
from tests.helpers.video_files import (
    write_corrupt_mp4,
    write_frame_folder,
    write_image_mattes,
    write_mp4,
    write_videomatte_clip,
)

# decord 0.6 mis-reads some widths; 32 and 64 are safe (see tests/video_files.py).
HEIGHT, WIDTH, FRAMES = 16, 32, 5


def make_clip(num_frames=FRAMES, height=HEIGHT, width=WIDTH, offset=0):
    """Frame t is flat grey at level 30 * t + offset, with an alpha square of level 200 - 30 * t."""
    levels = 30 * np.arange(num_frames) + offset
    rgb = np.broadcast_to(levels[:, None, None, None], (num_frames, height, width, 3)).astype(np.uint8)
    alpha = np.zeros((num_frames, height, width), np.uint8)
    alpha[:, 4:12, 8:24] = (200 - 30 * np.arange(num_frames))[:, None, None]
    return rgb, alpha


@pytest.mark.parametrize("as_frames", [False, True], ids=["mp4", "frames"])
def test_video_mattes_read_the_requested_frames(tmp_path, as_frames):
    rgb, alpha = make_clip()
    write_videomatte_clip(tmp_path, "b_clip", rgb, alpha, as_frames=as_frames)
    write_videomatte_clip(tmp_path, "a_clip", *make_clip(3, offset=5), as_frames=as_frames)
    source = VideoMatteForegrounds(tmp_path)

    assert len(source) == 2
    assert source.names == ["a_clip", "b_clip"]
    assert source.num_frames(0) == 3 and source.num_frames(1) == FRAMES
    frames, alphas = source.load(1, [3, 0, 3])
    assert frames.shape == (3, 3, HEIGHT, WIDTH) and alphas.shape == (3, 1, HEIGHT, WIDTH)
    assert frames.dtype == torch.float32 and alphas.dtype == torch.float32
    assert 0 <= frames.min() and frames.max() <= 1 and 0 <= alphas.min() and alphas.max() <= 1
    # Lossy H.264 keeps flat frames within a couple of levels.
    expected = torch.tensor([90, 0, 90]) / 255
    assert torch.allclose(frames.mean(dim=(1, 2, 3)), expected, atol=3 / 255)
    assert torch.allclose(alphas[:, 0, 8, 16], torch.tensor([110, 200, 110]) / 255, atol=4 / 255)
    assert alphas[:, 0, 0, 0].max() < 4 / 255


def test_frame_ids_past_the_end_are_reflected(tmp_path):
    write_videomatte_clip(tmp_path, "clip", *make_clip(), as_frames=True)
    source = VideoMatteForegrounds(tmp_path)
    frames, _ = source.load(0, [5, 6, 8, 9, -1])  # -> 3, 2, 0, 1, 1
    assert torch.allclose(frames.mean(dim=(1, 2, 3)), torch.tensor([90, 60, 0, 30, 30]) / 255, atol=1e-6)
    assert reflect_frame_ids(range(10), 4) == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]
    assert reflect_frame_ids([0, 7, -3], 1) == [0, 0, 0]


def test_video_mattes_max_size_downscales(tmp_path):
    write_videomatte_clip(tmp_path, "clip", *make_clip(height=32, width=64))
    frames, alphas = VideoMatteForegrounds(tmp_path, max_size=16).load(0, [0, 1])
    assert frames.shape == (2, 3, 8, 16) and alphas.shape == (2, 1, 8, 16)


def test_image_mattes_pair_by_stem(tmp_path):
    stems = write_image_mattes(tmp_path / "original", tmp_path / "mask", n=3, size=(20, 30))
    source = ImageMatteForegrounds(tmp_path / "original", tmp_path / "mask")
    assert len(source) == 3 and source.names == stems
    assert source.num_frames(2) == 1
    rgb, alpha = source.load(2, [0, 1, 7])
    assert rgb.shape == (3, 3, 20, 30) and alpha.shape == (3, 1, 20, 30)
    assert torch.equal(rgb[0], rgb[2])
    # The written alpha is a soft disc: opaque centre, clear corner, partial values between.
    assert alpha[0, 0, 10, 15] == 1 and alpha[0, 0, 0, 0] == 0
    assert ((alpha > 0.05) & (alpha < 0.95)).any()
    small, _ = ImageMatteForegrounds(tmp_path / "original", tmp_path / "mask", max_size=15).load(0, [0])
    assert small.shape == (1, 3, 10, 15)


def test_image_backgrounds_search_subfolders(tmp_path):
    rng = np.random.default_rng(0)
    write_frame_folder(tmp_path / "train", rng.integers(0, 256, (2, 12, 18, 3), dtype=np.uint8), "jpg")
    write_frame_folder(tmp_path / "testval", rng.integers(0, 256, (1, 12, 18, 3), dtype=np.uint8), "png")
    (tmp_path / "notes.txt").write_text("not an image")
    source = ImageBackgrounds(tmp_path)
    assert len(source) == 3
    image = source.load(2)
    assert image.shape == (3, 12, 18) and image.dtype == torch.float32
    assert 0 <= image.min() and image.max() <= 1
    for index in range(3):  # the PNG and the JPEGs (which take the decoder's draft shortcut)
        assert ImageBackgrounds(tmp_path, max_size=9).load(index).shape == (3, 6, 9)
    with pytest.raises(IndexError, match="3"):
        source.load(3)


def test_hidden_files_and_folders_are_ignored(tmp_path):
    rgb, alpha = make_clip()
    write_videomatte_clip(tmp_path, "clip", rgb, alpha, as_frames=True)
    (tmp_path / "fgr" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "fgr" / "clip" / "._00000.png").write_bytes(b"macOS resource fork")
    source = VideoMatteForegrounds(tmp_path)
    assert source.names == ["clip"] and source.num_frames(0) == FRAMES


def test_sixteen_bit_alpha_keeps_its_range(tmp_path):
    write_image_mattes(tmp_path / "img", tmp_path / "alpha", n=1, size=(8, 8))
    alpha16 = np.full((8, 8), 32768, np.uint16)
    alpha16[0, 0] = 65535
    Image.fromarray(alpha16).save(tmp_path / "alpha" / "m_000.png")
    _, alpha = ImageMatteForegrounds(tmp_path / "img", tmp_path / "alpha").load(0, [0])
    assert torch.allclose(alpha[0, 0, 1, 1], torch.tensor(0.5), atol=1e-4)
    assert alpha.max() == 1


def test_shrink_to_max_size_never_upscales():
    images = torch.rand(2, 3, 10, 20)
    assert shrink_to_max_size(images, 40) is images
    assert shrink_to_max_size(images, None) is images
    assert shrink_to_max_size(images, 10).shape == (2, 3, 5, 10)


# ---- bad inputs: each error names the offending path ----


def test_missing_folders(tmp_path):
    missing = tmp_path / "nowhere"
    for build in (
        lambda: VideoMatteForegrounds(missing),
        lambda: ImageMatteForegrounds(missing, tmp_path),
        lambda: ImageBackgrounds(missing),
    ):
        with pytest.raises(AssetError, match="nowhere"):
            build()
    (tmp_path / "fgr").mkdir()
    with pytest.raises(AssetError, match="pha"):
        VideoMatteForegrounds(tmp_path)


def test_empty_folders(tmp_path):
    (tmp_path / "fgr").mkdir()
    (tmp_path / "pha").mkdir()
    with pytest.raises(AssetError, match="no clips.*fgr"):
        VideoMatteForegrounds(tmp_path)
    with pytest.raises(AssetError, match="no images.*fgr"):
        ImageMatteForegrounds(tmp_path / "fgr", tmp_path / "pha")
    with pytest.raises(AssetError, match="no images.*pha"):
        ImageBackgrounds(tmp_path / "pha")


def test_foreground_alpha_name_mismatch(tmp_path):
    rgb, alpha = make_clip()
    write_videomatte_clip(tmp_path, "shared", rgb, alpha, as_frames=True)
    write_frame_folder(tmp_path / "fgr" / "lonely", rgb)
    with pytest.raises(AssetError, match="only in .*fgr.*lonely"):
        VideoMatteForegrounds(tmp_path)

    write_image_mattes(tmp_path / "img", tmp_path / "alpha", n=2)
    (tmp_path / "alpha" / "m_001.png").unlink()
    with pytest.raises(AssetError, match="only in .*img.*m_001"):
        ImageMatteForegrounds(tmp_path / "img", tmp_path / "alpha")


@pytest.mark.parametrize("as_frames", [False, True], ids=["mp4", "frames"])
def test_foreground_alpha_frame_count_mismatch(tmp_path, as_frames):
    rgb, alpha = make_clip()
    write_videomatte_clip(tmp_path, "clip", rgb, alpha[:4], as_frames=as_frames)
    source = VideoMatteForegrounds(tmp_path)
    with pytest.raises(AssetError, match=r"frame counts differ.*fgr.clip.*5 frames.*pha.clip.*4"):
        source.load(0, [0])


def test_foreground_alpha_size_mismatch(tmp_path):
    rgb, _ = make_clip()
    _, alpha = make_clip(height=HEIGHT + 2)
    write_videomatte_clip(tmp_path, "clip", rgb, alpha, as_frames=True)
    with pytest.raises(AssetError, match="sizes differ"):
        VideoMatteForegrounds(tmp_path).load(0, [0])


def test_frames_of_different_sizes_in_one_folder(tmp_path):
    rgb, alpha = make_clip()
    write_videomatte_clip(tmp_path, "clip", rgb, alpha, as_frames=True)
    write_frame_folder(tmp_path / "fgr" / "clip", np.zeros((1, 8, 8, 3), np.uint8))  # overwrites frame 0
    with pytest.raises(AssetError, match=r"frames of different sizes .*fgr.clip"):
        VideoMatteForegrounds(tmp_path).load(0, [0, 1])


def test_corrupt_video(tmp_path):
    rgb, alpha = make_clip()
    write_mp4(tmp_path / "fgr" / "clip.mp4", rgb)
    write_corrupt_mp4(tmp_path / "pha" / "clip.mp4")
    source = VideoMatteForegrounds(tmp_path)  # names match; the file is only opened on use
    with pytest.raises(AssetError, match=r"cannot decode video .*pha.clip\.mp4"):
        source.load(0, [0])


def test_corrupt_images(tmp_path):
    write_image_mattes(tmp_path / "img", tmp_path / "alpha", n=1)
    (tmp_path / "alpha" / "m_000.png").write_bytes(b"not a png at all")
    with pytest.raises(AssetError, match=r"cannot decode image .*m_000\.png"):
        ImageMatteForegrounds(tmp_path / "img", tmp_path / "alpha").load(0, [0])
    (tmp_path / "bg").mkdir()
    (tmp_path / "bg" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(AssetError, match=r"broken\.jpg"):
        ImageBackgrounds(tmp_path / "bg").load(0)


def test_bad_index_and_empty_frame_ids(tmp_path):
    write_image_mattes(tmp_path / "img", tmp_path / "alpha", n=1)
    source = ImageMatteForegrounds(tmp_path / "img", tmp_path / "alpha")
    with pytest.raises(IndexError, match="index 1"):
        source.load(1, [0])
    with pytest.raises(ValueError, match="frame_ids is empty"):
        source.load(0, [])


def test_mp4_clips_advance_in_time_through_decord(tmp_path):
    n = 24
    levels = (8 * np.arange(n) + 20).astype(np.uint8)
    rgb = np.broadcast_to(levels[:, None, None, None], (n, 32, 32, 3)).copy()
    write_videomatte_clip(tmp_path, "clip", rgb, np.full((n, 32, 32), 255, np.uint8))
    source = VideoMatteForegrounds(tmp_path)
    for seed in range(3):
        s = sample_scene(
            source,
            BlackBackgrounds(),
            torch.Generator().manual_seed(seed),
            num_frames=6,
            height=32,
            width=32,
            config=SceneConfig(min_objects=1, max_objects=1, clip_stride=2, object_height=(0.5, 0.6)),
        )
        inside = s.subject_mask[:, 0] > 0.99
        frame = torch.stack([(s.aif[t][:, inside[t]].mean() * 255 - 20) / 8 for t in range(6)])
        torch.testing.assert_close(frame, frame[0] + 2 * torch.arange(6.0), rtol=0, atol=0.3)


def test_frame_folders_play_in_frame_number_order_without_zero_padding(tmp_path):
    """frame_2 comes before frame_10: unpadded frame names must not reorder the clip."""
    n = 12
    levels = (20 * np.arange(n)).astype(np.uint8)
    for sub in ("fgr", "pha"):
        folder = tmp_path / sub / "clip"
        folder.mkdir(parents=True)
        for t in range(n):
            Image.fromarray(np.full((8, 8, 3), levels[t], np.uint8)).save(folder / f"frame_{t + 1}.png")
    rgb, _ = VideoMatteForegrounds(tmp_path).load(0, list(range(n)))
    torch.testing.assert_close(
        rgb.mean(dim=(1, 2, 3)) * 255, torch.tensor(levels, dtype=torch.float32), rtol=0, atol=1e-3
    )
    # Zero-padded names keep their order.
    write_frame_folder(tmp_path / "padded" / "fgr" / "clip", np.broadcast_to(levels[:, None, None, None], (n, 8, 8, 3)))
    write_frame_folder(tmp_path / "padded" / "pha" / "clip", np.broadcast_to(levels[:, None, None, None], (n, 8, 8, 3)))
    rgb, _ = VideoMatteForegrounds(tmp_path / "padded").load(0, [11, 0, 5])
    torch.testing.assert_close(
        rgb.mean(dim=(1, 2, 3)) * 255, torch.tensor(levels[[11, 0, 5]], dtype=torch.float32), rtol=0, atol=1e-3
    )
