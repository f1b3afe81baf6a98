"""What a random scene may look like: `SceneConfig`, checked on construction.

`any2bokeh.data.scenes.sample_scene` draws scenes from it; the data configs build it from their
`scene:` block.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

FOCUS_MODES = ("subject", "fixed", "ramp")


def _as_range(value: float | Sequence[float], name: str) -> tuple[float, float]:
    """A number or a [lo, hi] pair as a (lo, hi) tuple, checked lo <= hi."""
    if isinstance(value, (int, float)):
        return float(value), float(value)
    pair = tuple(float(v) for v in value)
    if len(pair) != 2 or pair[0] > pair[1]:
        raise ValueError(f"{name} must be a number or a [lo, hi] pair with lo <= hi, got {value!r}")
    return pair


@dataclass
class SceneConfig:
    """What a random scene may look like. Frame count and size are passed to `sample_scene`.

    Objects: `min_objects`..`max_objects` matted clips, each on a plane with c in `object_c`.
    Each object's height on frame 0 is `object_height` (a fraction of the image height); its
    centre starts in `start_region` (fractions of width and height) and moves by up to `motion`
    (fraction of the image) over the clip; its depth c changes by a factor up to
    exp(±`depth_motion`). Trajectories are cubic Bézier curves, smooth in x, y and c. Object
    clips advance `clip_stride` source frames per output frame from a random start.

    Focus (`focus_modes`, a weight per mode, drawn once per clip):
      subject: d_f is the target object's alpha-weighted mean disparity in each frame;
      fixed: d_f,n drawn once from `focus_value` (normalized units, inside (0, 1]);
      ramp: a focus pull, piecewise linear through `focus_ramp_points` values drawn from
            `focus_ramp` (normalized units, inside (0, 1]).
    K: drawn from `k_values`, or uniformly from `k_range` when it is set; with probability
    `k_ramp_prob` a second K is drawn and K ramps linearly to it over the clip.
    """

    min_objects: int = 1
    max_objects: int = 4
    object_c: tuple[float, float] = (1.0, 5.0)
    background_c: tuple[float, float] = (100.0, 200.0)
    tilt: float = 0.0
    object_height: tuple[float, float] = (0.3, 0.7)
    start_region: tuple[float, float] = (0.2, 0.8)
    motion: float = 0.25
    depth_motion: float = 0.5
    clip_stride: int = 1
    background_zoom: tuple[float, float] = (1.0, 1.25)
    focus_modes: Mapping[str, float] = field(default_factory=lambda: {"subject": 1.0})
    focus_value: float | tuple[float, float] = (0.05, 1.0)
    focus_ramp: tuple[float, float] = (0.05, 1.0)
    focus_ramp_points: int = 3
    k_values: tuple[float, ...] = (12.0, 16.0, 20.0, 24.0, 28.0)
    k_range: tuple[float, float] | None = None
    k_ramp_prob: float = 0.0

    def __post_init__(self) -> None:
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError(f"need 1 <= min_objects <= max_objects, got {self.min_objects} and {self.max_objects}")
        self.object_c = _as_range(self.object_c, "object_c")
        self.background_c = _as_range(self.background_c, "background_c")
        if self.object_c[0] <= 0 or self.background_c[0] <= self.object_c[1]:
            raise ValueError(
                f"need 0 < object_c and the background behind every object, got object_c={self.object_c}, "
                f"background_c={self.background_c}"
            )
        if not 0.0 <= self.tilt <= 0.4:
            raise ValueError(f"tilt must be in [0, 0.4] (disparity change across the image), got {self.tilt}")
        if self.tilt > 0 and self.object_c[0] < 1 + 2 * self.tilt:
            # A tilted plane reaches up to (1 + 2·tilt)/c; the renderer needs disparities <= 1.
            raise ValueError(
                f"with tilt={self.tilt}, object_c must start at >= {1 + 2 * self.tilt}, got {self.object_c}"
            )
        self.object_height = _as_range(self.object_height, "object_height")
        self.start_region = _as_range(self.start_region, "start_region")
        self.background_zoom = _as_range(self.background_zoom, "background_zoom")
        if self.object_height[0] <= 0 or self.background_zoom[0] < 1.0:
            raise ValueError(
                f"need object_height > 0 and background_zoom >= 1, got {self.object_height}, {self.background_zoom}"
            )
        if self.motion < 0 or self.depth_motion < 0 or self.clip_stride < 1:
            raise ValueError(
                f"need motion >= 0, depth_motion >= 0, clip_stride >= 1, got {self.motion}, "
                f"{self.depth_motion}, {self.clip_stride}"
            )
        self.focus_modes = {str(k): float(v) for k, v in dict(self.focus_modes).items()}
        unknown = set(self.focus_modes) - set(FOCUS_MODES)
        if unknown or not self.focus_modes or min(self.focus_modes.values()) < 0 or sum(self.focus_modes.values()) <= 0:
            raise ValueError(f"focus_modes must weight some of {FOCUS_MODES} with weights >= 0, got {self.focus_modes}")
        self.focus_value = _as_range(self.focus_value, "focus_value")
        self.focus_ramp = _as_range(self.focus_ramp, "focus_ramp")
        for name in ("focus_value", "focus_ramp"):
            lo, hi = getattr(self, name)
            if not (0.0 < lo and hi <= 1.0):
                raise ValueError(f"{name}: d_f (normalized disparity) must lie in (0, 1], got {getattr(self, name)}")
        if self.focus_ramp_points < 2:
            raise ValueError(f"focus_ramp_points must be >= 2, got {self.focus_ramp_points}")
        self.k_values = tuple(float(k) for k in self.k_values)
        if self.k_range is not None:
            self.k_range = _as_range(self.k_range, "k_range")
        ks = list(self.k_values) + list(self.k_range or ())
        if not ks:
            raise ValueError("k_values is empty and k_range is not set: no K to draw")
        if min(ks) < 0:
            raise ValueError(f"K must be >= 0, got k_values={self.k_values}, k_range={self.k_range}")
        if not 0.0 <= self.k_ramp_prob <= 1.0:
            raise ValueError(f"k_ramp_prob must be in [0, 1], got {self.k_ramp_prob}")
