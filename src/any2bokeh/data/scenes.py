"""Random layered scenes: moving matted objects on planes over a background plane.

A scene is a stack of planar RGBA layers per frame, the input of `any2bokeh.optics`. Every
random draw comes from one `torch.Generator`, so a scene is a pure function of the generator's
seed and the sources (which are deterministic).

Geometry (App. A.2). Layer l is the plane d = (1 - a·x - b·y) / c at pixel x = column,
y = row. Objects have c in [1, 5], the background c in [100, 200]; planes are fronto-parallel
(a = b = 0) unless `SceneConfig.tilt` > 0. An object's depth c(t) follows a smooth trajectory,
and its on-screen size follows 1/c(t): an object that comes twice as near is drawn twice as big.

Disparity units. Two sets of units are kept apart:

- raw: d = 1/c, the units of the planes. The renderer takes K and d_f in these units.
- normalized: the disparity map is min-max normalized over the whole clip, as a depth
  estimator's maps of a real video are (Sec. 3.1; `any2bokeh.data.disparity`):
  d_n = (d - d_min) / (d_max - d_min), with d_min, d_max the extremes of the clip's disparity
  map. d_f is normalized with the same affine map, and the model's K is in pixels per unit of
  *normalized* disparity, so the blur radius r = k·|d_n - d_f,n| (Eq. 1) is the same in both
  units. The renderer therefore gets d_f,raw = d_min + d_f,n·(d_max - d_min) and
  K_raw = k / (d_max - d_min). `Scene` keeps both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from any2bokeh.data.disparity import MIN_DISP_FOCUS, normalize_disparity, subject_focus
from any2bokeh.data.scene_config import SceneConfig
from any2bokeh.data.seeding import bernoulli, choice, randint, uniform, uniforms
from any2bokeh.optics.composite import composite_over

# A pixel belongs to the front-most layer whose alpha reaches this.
VISIBLE_ALPHA = 0.5


@dataclass
class Scene:
    """One sampled clip. T frames, L = max_objects + 1 layers (nearest first, background last).

    images      [T, L, 3, H, W] float [0, 1] (not premultiplied; 0 where alpha is 0)
    alphas      [T, L, 1, H, W] float [0, 1]; the background layer is 1 everywhere,
                unused object slots are 0 everywhere.
    planes      [T, L, 3] (a, b, c) in raw units, d = (1 - a·x - b·y) / c
    aif         [T, 3, H, W] float [0, 1]: the layers composited nearest first (`composite_over`)
    disparity   [T, 1, H, W] float [0, 1]: raw disparity of the front-most layer with
                alpha >= 0.5, min-max normalized over the clip
    subject_mask [T, 1, H, W] float [0, 1]: the target's visible alpha (its alpha times the
                transmittance of the layers in front of it)
    disp_focus  [T] normalized d_f, in (0, 1]
    k           [T] K in pixels per unit of normalized disparity
    disp_focus_raw [T], k_raw [T]: the same in the planes' units, for the renderer
    disp_range  [2] (d_min, d_max) raw: the normalization of this clip
    """

    images: torch.Tensor
    alphas: torch.Tensor
    planes: torch.Tensor
    aif: torch.Tensor
    disparity: torch.Tensor
    subject_mask: torch.Tensor
    disp_focus: torch.Tensor
    k: torch.Tensor
    disp_focus_raw: torch.Tensor
    k_raw: torch.Tensor
    disp_range: torch.Tensor


def _bezier(points: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Cubic Bézier through control points [4, D] at times s [T] -> [T, D]; stays in their hull."""
    s = s[:, None]
    weights = [(1 - s) ** 3, 3 * (1 - s) ** 2 * s, 3 * (1 - s) * s**2, s**3]
    return sum(w * p for w, p in zip(weights, points))


def _clip_times(num_frames: int) -> torch.Tensor:
    return (
        torch.linspace(0.0, 1.0, num_frames, dtype=torch.float64)
        if num_frames > 1
        else torch.zeros(1, dtype=torch.float64)
    )


def _draw_k(config: SceneConfig, generator: torch.Generator) -> float:
    if config.k_range is not None:
        return uniform(generator, *config.k_range)
    return config.k_values[randint(generator, 0, len(config.k_values))]


def sample_k(config: SceneConfig, num_frames: int, generator: torch.Generator) -> torch.Tensor:
    """K per frame [T] (float32): constant, or a linear ramp with probability k_ramp_prob."""
    k0 = _draw_k(config, generator)
    ramp = bernoulli(generator, config.k_ramp_prob)
    k1 = _draw_k(config, generator) if ramp else k0
    s = _clip_times(num_frames)
    return (k0 + (k1 - k0) * s).float()


def _draw_focus_mode(config: SceneConfig, generator: torch.Generator) -> str:
    modes = list(config.focus_modes)
    return modes[choice(generator, [config.focus_modes[m] for m in modes])]


def _focus_curve(config: SceneConfig, mode: str, num_frames: int, generator: torch.Generator) -> torch.Tensor:
    """Normalized d_f per frame [T] (float64) for the 'fixed' and 'ramp' modes."""
    s = _clip_times(num_frames)
    if mode == "fixed":
        return torch.full((num_frames,), uniform(generator, *config.focus_value), dtype=torch.float64)
    n = config.focus_ramp_points
    knots = uniforms(generator, *config.focus_ramp, (n,), torch.float64)
    # Piecewise linear through n equally spaced knots (a focus pull between n values).
    pos = s * (n - 1)
    i = pos.floor().long().clamp(max=n - 2)
    w = pos - i
    return knots[i] * (1 - w) + knots[i + 1] * w


@dataclass
class _Object:
    rgb: torch.Tensor  # [T, 3, H, W]
    alpha: torch.Tensor  # [T, 1, H, W]
    planes: torch.Tensor  # [T, 3]
    centre_disparity: torch.Tensor  # [T] raw disparity at the object's centre


def _cover_background(image: torch.Tensor, height: int, width: int, generator: torch.Generator, zoom) -> torch.Tensor:
    """Scale a [3, h, w] image to cover height x width (times a random zoom) and crop at random."""
    _, h, w = image.shape
    scale = max(height / h, width / w) * uniform(generator, *zoom)
    new_h, new_w = max(height, math.ceil(h * scale)), max(width, math.ceil(w * scale))
    resized = F.interpolate(image[None], size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)[0]
    top = randint(generator, 0, new_h - height + 1)
    left = randint(generator, 0, new_w - width + 1)
    return resized[:, top : top + height, left : left + width].clamp(0, 1)


def _load_clip(source, index: int, frame_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Load frames, decoding each distinct frame once (an image matte repeats frame 0)."""
    unique = sorted(set(frame_ids))
    rgb, alpha = source.load(index, unique)
    where = torch.tensor([unique.index(f) for f in frame_ids])
    return rgb.float()[where], alpha.float()[where]


def _place(rgb: torch.Tensor, alpha: torch.Tensor, centre: torch.Tensor, size: torch.Tensor, height: int, width: int):
    """Draw a clip [T, 3|1, h, w] at centre [T, 2] (pixels, x then y) and size [T, 2] (pixels, w then h).

    Premultiplied colour and alpha are resampled together, so no colour from alpha-0 pixels
    leaks into the edges; the source is first shrunk with antialiasing to the largest size
    the object takes in the clip.
    """
    num_frames, _, h, w = rgb.shape
    premult = torch.cat([rgb * alpha, alpha], dim=1)  # [T, 4, h, w]
    max_h = float(size[:, 1].max())
    if max_h < h:
        new_h = max(2, math.ceil(max_h))
        new_w = max(2, math.ceil(w * new_h / h))
        premult = F.interpolate(premult, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
    # Affine map from output normalized coordinates to the object's (align_corners=False):
    # x_src = x_out * W / w_obj + (W - 2 c_x) / w_obj, and the same for y.
    theta = torch.zeros(num_frames, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = width / size[:, 0]
    theta[:, 0, 2] = (width - 2 * centre[:, 0]) / size[:, 0]
    theta[:, 1, 1] = height / size[:, 1]
    theta[:, 1, 2] = (height - 2 * centre[:, 1]) / size[:, 1]
    grid = F.affine_grid(theta.float(), [num_frames, 4, height, width], align_corners=False)
    out = F.grid_sample(premult, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    out_alpha = out[:, 3:].clamp(0, 1)
    out_rgb = torch.where(out_alpha > 1e-4, out[:, :3] / out_alpha.clamp(min=1e-4), torch.zeros_like(out[:, :3]))
    return out_rgb.clamp(0, 1), out_alpha


def _tilted_planes(centre_disp: torch.Tensor, centre: torch.Tensor, tilt_xy: torch.Tensor, height: int, width: int):
    """Planes [T, 3] with disparity centre_disp [T] at centre [T, 2] (pixel-extent coords) and a
    relative disparity change tilt_xy [2] across the image width and height."""
    gx = centre_disp * tilt_xy[0] / width  # d disparity / d column
    gy = centre_disp * tilt_xy[1] / height
    # Pixel indices x = column sit at pixel-extent coordinate x + 0.5.
    cx, cy = centre[:, 0] - 0.5, centre[:, 1] - 0.5
    c = 1.0 / (centre_disp - gx * cx - gy * cy)
    return torch.stack([-gx * c, -gy * c, c], dim=-1)


def _sample_object(config, source, num_frames, height, width, generator) -> _Object:
    index = randint(generator, 0, len(source))
    length = int(source.num_frames(index))
    span = (num_frames - 1) * config.clip_stride
    start = randint(generator, 0, max(1, length - span))
    frame_ids = [start + t * config.clip_stride for t in range(num_frames)]
    rgb, alpha = _load_clip(source, index, frame_ids)

    s = _clip_times(num_frames)
    # Depth: log c on a Bézier curve, control points within depth_motion of the start, inside object_c.
    lo, hi = math.log(config.object_c[0]), math.log(config.object_c[1])
    log_c0 = uniforms(generator, lo, hi, (1,), torch.float64)
    log_c = (log_c0 + uniforms(generator, -config.depth_motion, config.depth_motion, (3,), torch.float64)).clamp(lo, hi)
    c = _bezier(torch.cat([log_c0, log_c])[:, None], s)[:, 0].exp()  # [T]
    # Centre in fractions of the image, control points within `motion` of the start.
    start_xy = uniforms(generator, *config.start_region, (2,), torch.float64)
    moves = uniforms(generator, -config.motion, config.motion, (3, 2), torch.float64)
    xy = _bezier(torch.cat([start_xy[None], (start_xy + moves).clamp(0.05, 0.95)]), s)  # [T, 2]
    centre = xy * torch.tensor([width, height], dtype=torch.float64)
    # Size follows 1/c relative to the first frame.
    h0 = uniform(generator, *config.object_height) * height
    obj_h = h0 * c[0] / c
    aspect = rgb.shape[-1] / rgb.shape[-2]
    size = torch.stack([obj_h * aspect, obj_h], dim=-1)  # [T, 2] (w, h)
    layer_rgb, layer_alpha = _place(rgb, alpha, centre, size, height, width)

    centre_disp = 1.0 / c
    if config.tilt > 0:
        tilt_xy = uniforms(generator, -config.tilt, config.tilt, (2,), torch.float64)
        planes = _tilted_planes(centre_disp, centre, tilt_xy, height, width)
    else:
        planes = torch.stack([torch.zeros_like(c), torch.zeros_like(c), c], dim=-1)
    return _Object(layer_rgb, layer_alpha, planes, centre_disp)


def plane_disparity(planes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Per-pixel raw disparity of planes [..., 3] -> [..., H, W] (x = column, y = row)."""
    ys = torch.arange(height, dtype=planes.dtype, device=planes.device)[:, None]
    xs = torch.arange(width, dtype=planes.dtype, device=planes.device)[None, :]
    a, b, c = (planes[..., i, None, None] for i in range(3))
    return (1 - a * xs - b * ys) / c


def sample_scene(
    foregrounds,
    backgrounds,
    generator: torch.Generator,
    *,
    num_frames: int,
    height: int,
    width: int,
    config: SceneConfig | None = None,
) -> Scene:
    """Draw one scene of num_frames frames at height x width from the sources.

    foregrounds: a ForegroundSource; backgrounds: a BackgroundSource (any2bokeh.data.assets).
    All randomness comes from `generator` (a CPU torch.Generator).
    """
    config = config or SceneConfig()
    if num_frames < 1 or height < 2 or width < 2:
        raise ValueError(f"need num_frames >= 1 and height, width >= 2, got {num_frames}, {height}, {width}")
    T, H, W, L = num_frames, height, width, config.max_objects + 1

    background = _cover_background(
        backgrounds.load(randint(generator, 0, len(backgrounds))).float(), H, W, generator, config.background_zoom
    )
    bg_c = uniform(generator, *config.background_c)
    n_objects = randint(generator, config.min_objects, config.max_objects + 1)
    objects = [_sample_object(config, foregrounds, T, H, W, generator) for _ in range(n_objects)]
    target = randint(generator, 0, n_objects)
    focus_mode = _draw_focus_mode(config, generator)
    focus_curve = _focus_curve(config, focus_mode, T, generator) if focus_mode != "subject" else None
    k = sample_k(config, T, generator)

    # Objects sorted nearest first in each frame; unused slots (alpha 0) sit on the background
    # plane just in front of it.
    centre_disp = torch.stack([o.centre_disparity for o in objects], dim=1)  # [T, n]
    order = torch.argsort(centre_disp, dim=1, descending=True, stable=True)  # [T, n]
    rows = torch.arange(T)[:, None]
    obj_rgb = torch.stack([o.rgb for o in objects], dim=1)[rows, order]  # [T, n, 3, H, W]
    obj_alpha = torch.stack([o.alpha for o in objects], dim=1)[rows, order]
    obj_planes = torch.stack([o.planes for o in objects], dim=1)[rows, order]  # [T, n, 3]
    target_slot = (order == target).float().argmax(dim=1)  # [T]

    images = torch.zeros(T, L, 3, H, W)
    alphas = torch.zeros(T, L, 1, H, W)
    planes = torch.zeros(T, L, 3, dtype=torch.float64)
    images[:, :n_objects], alphas[:, :n_objects], planes[:, :n_objects] = obj_rgb, obj_alpha, obj_planes
    images[:, -1], alphas[:, -1] = background, 1.0
    planes[:, n_objects:, 2] = bg_c

    # Disparity map: the front-most layer with alpha >= 0.5 (the background always qualifies),
    # painted back to front. Subject mask: the target's alpha times the transmittance of the
    # layers in front of it ("over" compositing).
    raw = plane_disparity(planes[:, -1], H, W)[:, None]  # [T, 1, H, W] float64
    for layer in reversed(range(n_objects)):
        visible = alphas[:, layer] >= VISIBLE_ALPHA  # [T, 1, H, W]
        raw = torch.where(visible, plane_disparity(planes[:, layer], H, W)[:, None], raw)
    disparity = normalize_disparity(raw)
    # The same affine map, kept to carry d_f and K between normalized and raw units.
    d_min, d_max = raw.min(), raw.max()
    d_span = (d_max - d_min).clamp(min=1e-6)

    frames = torch.arange(T)
    subject_mask = alphas[frames, target_slot]  # [T, 1, H, W]
    for layer in range(n_objects):
        in_front = (target_slot > layer).float()[:, None, None, None]  # [T, 1, 1, 1]
        subject_mask = subject_mask * (1 - in_front * alphas[:, layer])

    # d_f (subject mode): the target's alpha-weighted mean disparity over its own plane.
    t_alpha = alphas[frames, target_slot]  # [T, 1, H, W]
    t_disp = plane_disparity(planes[frames, target_slot], H, W)  # [T, H, W]
    mean_disp = subject_focus(t_disp, t_alpha).double()
    # An object entirely off screen (NaN) falls back to its disparity at its centre.
    focus_subject = torch.where(mean_disp.isnan(), centre_disp[:, target], mean_disp)

    if focus_curve is None:
        disp_focus = ((focus_subject - d_min) / d_span).clamp(MIN_DISP_FOCUS, 1.0)
    else:
        disp_focus = focus_curve
    disp_focus_raw = d_min + disp_focus * d_span

    return Scene(
        images=images,
        alphas=alphas,
        planes=planes.float(),
        aif=composite_over(images, alphas).clamp(0, 1),
        disparity=disparity,
        subject_mask=subject_mask.clamp(0, 1),
        disp_focus=disp_focus.float(),
        k=k,
        disp_focus_raw=disp_focus_raw.float(),
        k_raw=(k.double() / d_span).float(),
        disp_range=torch.stack([d_min, d_max]).float(),
    )
