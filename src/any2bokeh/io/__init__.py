"""Media in and out: video files, frame folders and images (read), H.264 mp4s and PNG frames (written).

Sits below ``data`` and ``callbacks``, which read and write through it. Frames are uint8 numpy
arrays [T, H, W, 3]; see ``any2bokeh.io.video`` for the contracts.
"""

from .files import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    MediaError,
    float_to_uint8,
    frame_number_order,
    is_visible,
    list_files,
    list_frames,
    read_image,
    read_image_array,
    uint8_to_float,
    write_png_frames,
)
from .video import DEFAULT_FPS, Video, VideoReader, has_audio, read_video, write_mp4

__all__ = [
    "DEFAULT_FPS",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "MediaError",
    "Video",
    "VideoReader",
    "float_to_uint8",
    "frame_number_order",
    "has_audio",
    "is_visible",
    "list_files",
    "list_frames",
    "read_image",
    "read_image_array",
    "read_video",
    "uint8_to_float",
    "write_mp4",
    "write_png_frames",
]
