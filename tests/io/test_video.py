from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from PIL import Image

from any2bokeh.io import (
    DEFAULT_FPS,
    MediaError,
    VideoReader,
    float_to_uint8,
    has_audio,
    read_image_array,
    read_video,
    uint8_to_float,
    write_mp4,
    write_png_frames,
)
from any2bokeh.io import video as video_module
from any2bokeh.utils.atomic import atomic_path
from tests.helpers.video_files import write_corrupt_mp4, write_frame_folder, write_video_with_audio
from tests.helpers.video_files import write_mp4 as write_test_mp4


def make_frames(count=6, height=16, width=32, seed=0):
    """Smooth gradients, different in every frame, that H.264 keeps within a few levels."""
    yy, xx = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    frames = [
        np.stack([20 + 150 * xx + 10 * t, 30 + 150 * yy + 12 * t, np.full_like(xx, 40 + 20 * t + seed)], -1)
        for t in range(count)
    ]
    return np.clip(np.stack(frames), 0, 255).round().astype(np.uint8)


def decoded_packets(path, kind):
    with av.open(str(path)) as container:
        stream = getattr(container.streams, kind)[0]
        return [bytes(packet) for packet in container.demux(stream) if packet.size > 0]


# ---- reading ----


@pytest.mark.parametrize("width", [32, 24], ids=["decord", "decord-fails-pyav-reads"])
def test_read_mp4_gives_uint8_frames_and_the_frame_rate(tmp_path, width):
    frames = make_frames(width=width)
    path = write_test_mp4(tmp_path / "clip.mp4", frames, fps=12)
    video = read_video(path)
    assert video.frames.dtype == np.uint8 and video.frames.shape == frames.shape
    assert np.abs(video.frames.astype(int) - frames).max() <= 8
    assert video.fps == 12 and video.num_frames == 6 and video.size == (16, width)
    reader = VideoReader(path)
    reader.get_frames([0])
    assert reader.backend == ("decord" if width == 32 else "pyav")


def test_pyav_reads_when_decord_is_missing(tmp_path, monkeypatch):
    frames = make_frames()
    path = write_test_mp4(tmp_path / "clip.mp4", frames, fps=12)
    with_decord = VideoReader(path)
    assert with_decord.backend == "decord"
    monkeypatch.setattr(video_module, "_open_with_decord", lambda path: None)
    reader = VideoReader(path)
    assert reader.backend == "pyav" and len(reader) == 6 and reader.fps == 12
    # random access in any order, repeats included, as the matte loader asks
    np.testing.assert_array_equal(reader.get_frames([4, 1, 4]), with_decord.get_frames([4, 1, 4]))
    with pytest.raises(IndexError, match=r"frames \[6\] outside the 6 frames of .*clip\.mp4"):
        reader.get_frames([0, 6])
    with pytest.raises(ValueError, match="no frame ids"):
        reader.get_frames([])


def test_frame_folder_reads_in_frame_number_order(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for t in (10, 2, 1):  # frame_10 sorts before frame_2 as text
        Image.fromarray(np.full((8, 10, 3), t * 10, np.uint8)).save(folder / f"frame_{t}.png")
    video = read_video(folder, fps=30)
    assert video.frames[:, 0, 0, 0].tolist() == [10, 20, 100]
    assert video.fps == 30 and read_video(folder).fps == DEFAULT_FPS


def test_single_image_is_a_clip_of_one_frame(tmp_path):
    image = make_frames(1)[0]
    Image.fromarray(image).save(tmp_path / "still.png")
    video = read_video(tmp_path / "still.png")
    np.testing.assert_array_equal(video.frames, image[None])
    assert video.fps == DEFAULT_FPS


def test_sixteen_bit_images_keep_their_precision(tmp_path):
    values = (np.arange(64, dtype=np.uint16) * 1031).reshape(4, 16)  # steps an 8-bit image cannot hold
    Image.fromarray(values).save(tmp_path / "depth.png")
    array = read_image_array(tmp_path / "depth.png", "L")
    assert array.dtype == np.uint16
    np.testing.assert_array_equal(array, values)
    floats = np.linspace(-2.5, 1e6, 64, dtype=np.float32).reshape(4, 16)  # float TIFF depth
    Image.fromarray(floats).save(tmp_path / "depth.tif")
    np.testing.assert_array_equal(read_image_array(tmp_path / "depth.tif"), floats)


def test_bad_inputs_name_the_path(tmp_path):
    corrupt = write_corrupt_mp4(tmp_path / "broken.mp4")
    with pytest.raises(MediaError, match=r"cannot decode video .*broken\.mp4"):
        read_video(corrupt)
    with pytest.raises(MediaError, match="nowhere"):
        read_video(tmp_path / "nowhere.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MediaError, match="no frames .*empty"):
        read_video(tmp_path / "empty")
    write_frame_folder(tmp_path / "mixed", make_frames(2))
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "mixed" / "00002.png")
    with pytest.raises(MediaError, match="different sizes .*mixed"):
        read_video(tmp_path / "mixed")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(MediaError, match=r"cannot decode image .*bad\.png"):
        read_video(tmp_path / "bad.png")


def test_float_conversion_round_trips():
    frames = make_frames(2)
    floats = uint8_to_float(frames)
    assert floats.shape == (2, 3, 16, 32) and floats.dtype == torch.float32
    np.testing.assert_array_equal(float_to_uint8(floats), frames)


# ---- writing ----


def test_write_mp4_keeps_frame_count_size_and_a_fractional_rate(tmp_path):
    frames = make_frames(7, height=18, width=40)
    path = write_mp4(tmp_path / "out" / "clip.mp4", frames, fps=30000 / 1001)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert stream.average_rate == Fraction(30000, 1001)
    video = read_video(path)
    assert video.frames.shape == frames.shape
    assert np.abs(video.frames.astype(int) - frames).mean() < 3
    assert not has_audio(path)
    # a source without audio adds none
    assert not has_audio(write_mp4(tmp_path / "again.mp4", frames, fps=10, audio_from=path))


def test_write_mp4_accepts_torch_frames_and_pads_odd_sizes(tmp_path):
    frames = torch.from_numpy(make_frames(3, height=16, width=32)[:, :15, :31])
    video = read_video(write_mp4(tmp_path / "odd.mp4", frames, fps=5))
    assert video.frames.shape == (3, 16, 32, 3)


def test_audio_packets_are_copied_unchanged(tmp_path):
    source = write_video_with_audio(tmp_path / "source.mp4", make_frames(10), fps=10)
    rendered = 255 - read_video(source).frames
    out = write_mp4(tmp_path / "out.mp4", rendered, fps=10, audio_from=source)
    assert decoded_packets(out, "audio") == decoded_packets(source, "audio")
    with av.open(str(out)) as container:
        audio, video = container.streams.audio[0], container.streams.video[0]
        assert audio.codec_context.name == "aac" and audio.rate == 44100
        assert abs(float(audio.duration * audio.time_base) - float(video.duration * video.time_base)) < 0.1
    assert read_video(out).num_frames == 10


def test_audio_that_mp4_cannot_hold_is_reencoded_to_aac(tmp_path):
    source = write_video_with_audio(tmp_path / "source.mov", make_frames(10), fps=10, audio_codec="pcm_s16le")
    out = write_mp4(tmp_path / "out.mp4", read_video(source).frames, fps=10, audio_from=source)
    with av.open(str(out)) as container:
        assert container.streams.audio[0].codec_context.name == "aac"
        samples = np.concatenate([frame.to_ndarray()[0] for frame in container.decode(audio=0)])
    # one second of a 0.3-amplitude tone, give or take the encoder's padding
    assert abs(len(samples) - 44100) < 3 * 1024
    assert 0.25 < np.abs(samples).max() < 0.35


def test_writes_are_atomic(tmp_path):
    target = tmp_path / "clip.mp4"
    target.write_bytes(b"finished earlier")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_bytes(b"half")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"finished earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
    with pytest.raises(ValueError, match="uint8"):
        write_mp4(target, np.zeros((2, 8, 8, 3), np.float32))
    assert target.read_bytes() == b"finished earlier"
    write_mp4(target, make_frames(2))
    assert read_video(target).num_frames == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_png_frames_round_trip_and_replace_a_folder(tmp_path):
    frames = make_frames(3)
    write_png_frames(tmp_path / "frames", make_frames(5, seed=1))
    folder = write_png_frames(tmp_path / "frames", frames)
    np.testing.assert_array_equal(read_video(folder).frames, frames)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]
