"""Built-in procedural assets, so that the whole project runs with no download.

- ``ProceduralForegrounds``: textured blobby silhouettes whose boundary carries fine hair-like
  strands or a fuzzy edge (partial alpha), and which morph, sway and drift slowly over time.
- ``ProceduralBackgrounds``: multi-octave noise textures in a random palette, with small bright
  highlights (spots with a channel at or near 1.0) that turn into visible bokeh discs.

Every output is a pure function of (seed, index, frame): each clip draws its parameters from a
``torch.Generator`` seeded by (seed, index), and frames only enter through smooth functions of
the frame number. Rendering is vectorised torch on the CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from kornia.color import hsv_to_rgb

from any2bokeh.data.assets import BackgroundSource, ForegroundSource
from any2bokeh.data.seeding import (
    bernoulli,
    keyed_generator,
    randint,
    uniform,
    uniforms,
)


def _random_colours(generator: torch.Generator, count: int, saturation, value) -> torch.Tensor:
    """count colours [count, 3] in [0, 1] from uniform hue and the given (low, high) ranges."""
    hsv = torch.stack(
        [
            uniforms(generator, 0.0, 2 * math.pi, (count,)),
            uniforms(generator, *saturation, (count,)),
            uniforms(generator, *value, (count,)),
        ]
    )
    return hsv_to_rgb(hsv[:, :, None])[:, :, 0].T.contiguous()


def _pair(size: int | tuple[int, int], name: str) -> tuple[int, int]:
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if height < 8 or width < 8:
        raise ValueError(f"{name} must be at least 8x8, got {size}")
    return int(height), int(width)


def _check_count(count: int, name: str) -> None:
    if count < 1:
        raise ValueError(f"{name} must be >= 1, got {count}")


@dataclass
class _ShapeParams:
    """Everything that defines one procedural foreground clip (drawn once per clip)."""

    center: torch.Tensor  # [2] rest position (x, y), in half-canvas units
    drift: torch.Tensor  # [2] amplitude of the slow wander
    drift_speed: torch.Tensor  # [2] rad/frame
    drift_phase: torch.Tensor  # [2]
    angle: float
    spin: float  # amplitude of the slow rocking, rad
    spin_speed: float
    stretch: torch.Tensor  # [2] axis scales: < 1 squeezes the silhouette
    radius: float
    harmonic_amp: torch.Tensor  # [K] boundary harmonics 2..K+1
    harmonic_phase: torch.Tensor  # [K]
    harmonic_speed: torch.Tensor  # [K] rad/frame: the silhouette morphs
    softness: float  # edge width of the solid core, canvas units
    fuzz: float  # how much noise roughens the core edge, relative to the radius
    strands: int  # number of hair strands around the full circle (0: no hair)
    strand_width: float  # strand thickness, canvas units
    hair_length: float  # longest strand, relative to the radius
    hair_direction: float  # angle around which hair grows
    hair_cover: float  # cos threshold: < -1 covers the whole boundary
    hair_curl: float
    hair_sway: float
    sway_speed: float
    sway_phase: float
    length_phase: torch.Tensor  # [2] phases of the per-strand length modulation
    colours: torch.Tensor  # [3, 3] two texture colours and the hair colour
    pattern: torch.Tensor  # [3] weights of stripes, noise and checks
    stripe_freq: float
    stripe_angle: float
    check_freq: float
    shade: float
    noise: torch.Tensor  # [1, 2, n, n] value-noise lattices (coarse in channel 0, fine in 1)


class ProceduralForegrounds(ForegroundSource):
    """Procedural RGBA clips: textured silhouettes with soft, hair-like alpha edges.

    Args:
        num_clips: number of distinct clips.
        size: canvas (h, w) or a square side; the silhouette fills the middle of it.
        num_frames: stored length of each clip; frame ids past it are reflected like file clips.
        seed: with the clip index and frame number, fully determines the output.
        hair_probability: share of clips whose boundary grows strands (others have a fuzzy edge).
    """

    def __init__(
        self,
        num_clips: int = 1000,
        size: int | tuple[int, int] = 256,
        num_frames: int = 100,
        seed: int = 0,
        hair_probability: float = 0.7,
    ):
        _check_count(num_clips, "num_clips")
        _check_count(num_frames, "num_frames")
        if not 0.0 <= hair_probability <= 1.0:
            raise ValueError(f"hair_probability must be in [0, 1], got {hair_probability}")
        self.num_clips = num_clips
        self.size = _pair(size, "size")
        self.clip_length = num_frames
        self.seed = seed
        self.hair_probability = hair_probability

    def __len__(self) -> int:
        return self.num_clips

    def num_frames(self, index: int) -> int:
        self._check_index(index)
        return self.clip_length

    def _params(self, index: int) -> _ShapeParams:
        g = keyed_generator(self.seed, "foreground", index)

        # Higher harmonics get smaller amplitudes so that the silhouette stays one blob.
        num_harmonics = 5
        harmonic_amp = uniforms(g, 0.0, 1.0, (num_harmonics,)) / torch.arange(2, 2 + num_harmonics)
        harmonic_amp = harmonic_amp * (uniform(g, 0.1, 0.3) / harmonic_amp.sum())
        hairy = bernoulli(g, self.hair_probability)
        # Drawn either way, so that hair_probability changes only the hair, not the rest of the clip.
        hair_length = uniform(g, 0.1, 0.35) * hairy
        center, drift, fuzz = uniforms(g, -0.05, 0.05, (2,)), uniforms(g, 0.0, 0.04, (2,)), uniform(g, 0.0, 0.06)
        # Shrink the radius so that the worst-case extent (harmonics in phase, longest strands,
        # full drift) stays inside the canvas: a clip must never be cut by its own frame.
        extent = (1 + float(harmonic_amp.sum()) + fuzz) * (1 + hair_length)
        room = 0.95 - float((center.abs() + drift).max())
        radius = min(uniform(g, 0.5, 0.62), room / extent)
        scale = min(self.size) / 2  # pixels per canvas unit
        strand_spacing = uniform(g, 2.0, 5.0)  # pixels between strand roots
        return _ShapeParams(
            center=center,
            drift=drift,
            drift_speed=uniforms(g, 0.02, 0.08, (2,)),
            drift_phase=uniforms(g, 0.0, 2 * math.pi, (2,)),
            angle=uniform(g, -math.pi, math.pi),
            spin=uniform(g, 0.0, 0.15),
            spin_speed=uniform(g, 0.02, 0.08),
            stretch=uniforms(g, 0.7, 1.0, (2,)),
            radius=radius,
            harmonic_amp=harmonic_amp,
            harmonic_phase=uniforms(g, 0.0, 2 * math.pi, (num_harmonics,)),
            harmonic_speed=uniforms(g, -0.08, 0.08, (num_harmonics,)),
            softness=uniform(g, 0.3, 1.5) / scale,
            fuzz=fuzz,
            strands=max(8, round(2 * math.pi * radius * scale / strand_spacing)) if hairy else 0,
            strand_width=uniform(g, 0.6, 1.6) / scale,
            hair_length=hair_length,
            hair_direction=uniform(g, -math.pi, math.pi),
            hair_cover=uniform(g, -1.5, 0.3),
            hair_curl=uniform(g, -0.25, 0.25),
            hair_sway=uniform(g, 0.0, 0.1),
            sway_speed=uniform(g, 0.05, 0.2),
            sway_phase=uniform(g, 0.0, 2 * math.pi),
            length_phase=uniforms(g, 0.0, 2 * math.pi, (2,)),
            colours=_random_colours(g, 3, saturation=(0.1, 0.9), value=(0.25, 0.95)),
            pattern=_dirichlet(g, 3),
            stripe_freq=uniform(g, 6.0, 30.0),
            stripe_angle=uniform(g, 0.0, math.pi),
            check_freq=uniform(g, 5.0, 20.0),
            shade=uniform(g, 0.1, 0.45),
            noise=torch.cat(
                [
                    F.interpolate(torch.rand(1, 1, 6, 6, generator=g), size=48, mode="bicubic", align_corners=True),
                    torch.rand(1, 1, 48, 48, generator=g),
                ],
                dim=1,
            ),
        )

    def _load(self, index: int, frame_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        time = torch.tensor(frame_ids, dtype=torch.float32)
        return render_foreground(self._params(index), time, *self.size)


def _dirichlet(generator: torch.Generator, count: int) -> torch.Tensor:
    weights = -torch.log(torch.rand(count, generator=generator).clamp_min(1e-6))
    return weights / weights.sum()


_ANGLE_BINS = 2049


def _angular_profiles(p: _ShapeParams, time: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Functions of the polar angle, per frame, as a [T, 3, 1, bins] table.

    Channels: the star-shaped boundary radius r_b(theta, t), the per-strand length factor and
    the hair coverage. Integer angular frequencies keep each one continuous across +-pi.
    """
    k = torch.arange(2, 2 + len(p.harmonic_amp), dtype=torch.float32).view(1, -1, 1)
    phase = (p.harmonic_phase + p.harmonic_speed * time.view(-1, 1))[:, :, None]  # [T, K, 1]
    harmonics = (p.harmonic_amp.view(1, -1, 1) * torch.cos(k * angles + phase)).sum(1)  # [T, bins]
    boundary = p.radius * (1 + harmonics)
    n = max(p.strands, 1)
    length_mod = 0.55 + 0.45 * torch.cos(round(0.37 * n) * angles + p.length_phase[0]) * torch.cos(
        round(0.23 * n) * angles + p.length_phase[1]
    )
    cover = torch.sigmoid((torch.cos(angles - p.hair_direction) - p.hair_cover) * 6)
    rows = [boundary, length_mod.expand_as(boundary), cover.expand_as(boundary)]
    return torch.stack(rows, dim=1)[:, :, None]


def render_foreground(p: _ShapeParams, time: torch.Tensor, height: int, width: int):
    """Draw frames time [T] (float frame numbers) of one clip: rgb [T, 3, H, W], alpha [T, 1, H, W]."""
    scale = min(height, width) / 2
    y = ((torch.arange(height) + 0.5 - height / 2) / scale).view(1, height, 1)
    x = ((torch.arange(width) + 0.5 - width / 2) / scale).view(1, 1, width)
    t = time.view(-1, 1, 1)  # [T, 1, 1]

    # Object frame: a slowly wandering, rocking centre, then an anisotropic squeeze.
    cx = p.center[0] + p.drift[0] * torch.sin(p.drift_speed[0] * t + p.drift_phase[0])
    cy = p.center[1] + p.drift[1] * torch.sin(p.drift_speed[1] * t + p.drift_phase[1])
    angle = p.angle + p.spin * torch.sin(p.spin_speed * t)
    cos, sin = torch.cos(angle), torch.sin(angle)
    u = ((x - cx) * cos + (y - cy) * sin) / p.stretch[0]  # [T, H, W]
    v = (-(x - cx) * sin + (y - cy) * cos) / p.stretch[1]
    rho = torch.hypot(u, v)
    theta = torch.atan2(v, u)

    # Everything that depends on the angle alone is tabulated on a fine angle grid and read back
    # by interpolation: far cheaper than evaluating the harmonics at every pixel.
    angles = torch.linspace(-math.pi, math.pi, _ANGLE_BINS)
    profiles = _angular_profiles(p, time, angles)  # [T, 3, 1, bins]: boundary, strand length, cover
    lookup = torch.stack([theta / math.pi, torch.zeros_like(theta)], dim=-1)  # [T, H, W, 2]
    boundary, length_mod, cover = F.grid_sample(profiles, lookup, mode="bilinear", align_corners=True).unbind(1)

    # Value noise in object coordinates, so texture and edge roughness move with the object.
    grid = torch.stack([u, v], dim=-1) * 0.5  # [T, H, W, 2]
    noise = F.grid_sample(
        p.noise.expand(len(time), -1, -1, -1), grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )  # [T, 2, H, W]
    coarse, fine = noise[:, 0], noise[:, 1]

    inside = boundary - rho + p.fuzz * (fine - 0.5) * boundary
    core = torch.sigmoid(inside / p.softness)

    hair = torch.zeros_like(core)
    if p.strands > 0:
        n = p.strands
        along = (rho - boundary) / (p.hair_length * p.radius * length_mod)  # 0 at the root, 1 at the tip
        along_clamped = along.clamp(0.0, 1.0)
        sway = p.hair_sway * torch.sin(p.sway_speed * t + p.sway_phase)
        bent = theta + (p.hair_curl * along_clamped + sway) * along_clamped
        # Distance across the nearest strand, as an arc length, drawn as an anti-aliased line.
        cycles = bent * (n / (2 * math.pi))
        across = (cycles - torch.round(cycles)).abs() * (2 * math.pi / n) * rho
        strand = ((p.strand_width / 2 - across) / p.softness + 0.5).clamp(0.0, 1.0)
        hair = strand * (1 - along_clamped**2) * (along > 0) * cover
    alpha = 1 - (1 - core) * (1 - hair)

    stripes = 0.5 + 0.5 * torch.sin(
        p.stripe_freq * (u * math.cos(p.stripe_angle) + v * math.sin(p.stripe_angle)) + 4 * coarse
    )
    checks = torch.sigmoid(8 * torch.sin(p.check_freq * u) * torch.sin(p.check_freq * v))
    pattern = p.pattern[0] * stripes + p.pattern[1] * coarse + p.pattern[2] * checks  # [T, H, W]
    shading = 1 - p.shade * (rho / boundary).clamp(0.0, 1.0) ** 2 + 0.1 * (fine - 0.5)
    low, high = p.colours[0].view(1, 3, 1, 1), p.colours[1].view(1, 3, 1, 1)
    rgb = torch.lerp(low, high, pattern[:, None]) * shading[:, None]  # [T, 3, H, W]
    # Strands take the hair colour where the solid core does not cover them.
    rgb = torch.lerp(rgb, p.colours[2].view(1, 3, 1, 1), (hair * (1 - core))[:, None])
    return rgb.clamp(0.0, 1.0), alpha[:, None].clamp(0.0, 1.0)


class ProceduralBackgrounds(BackgroundSource):
    """Procedural background images: palette-mapped multi-octave noise with bright highlights.

    Args:
        num_images: number of distinct images.
        size: (h, w) or a square side.
        seed: with the index, fully determines the image.
        num_highlights: (low, high) number of small bright spots per image.
        highlight_radius: (low, high) spot radius in pixels at a 576-pixel short side; it scales
            with the image.
    """

    def __init__(
        self,
        num_images: int = 1000,
        size: int | tuple[int, int] = (576, 1024),
        seed: int = 0,
        num_highlights: tuple[int, int] = (20, 80),
        highlight_radius: tuple[float, float] = (1.0, 4.0),
    ):
        _check_count(num_images, "num_images")
        if not 0 <= num_highlights[0] <= num_highlights[1]:
            raise ValueError(f"num_highlights must be (low, high) with 0 <= low <= high, got {num_highlights}")
        if not 0 < highlight_radius[0] <= highlight_radius[1]:
            raise ValueError(f"highlight_radius must be (low, high) with 0 < low <= high, got {highlight_radius}")
        self.num_images = num_images
        self.size = _pair(size, "size")
        self.seed = seed
        self.num_highlights = tuple(num_highlights)
        self.highlight_radius = tuple(highlight_radius)

    def __len__(self) -> int:
        return self.num_images

    def _load(self, index: int) -> torch.Tensor:
        g = keyed_generator(self.seed, "background", index)
        height, width = self.size
        image = _noise_texture(g, height, width)
        count = randint(g, self.num_highlights[0], self.num_highlights[1] + 1)
        if count == 0:
            return image
        radius_scale = max(min(height, width) / 576, 0.25)
        radii = uniforms(g, *self.highlight_radius, (count,)) * radius_scale
        return _add_highlights(g, image, radii)


def _noise_texture(g: torch.Generator, height: int, width: int) -> torch.Tensor:
    """Palette-mapped fractal value noise with a vertical light gradient: [3, H, W] in [0, 0.85]."""
    cells = randint(g, 2, 5)
    field = torch.zeros(1, 1, height, width)
    amplitude = 1.0
    for octave in range(5):
        rows = cells * 2**octave + 1
        cols = max(2, round(rows * width / height))
        lattice = torch.rand(1, 1, rows, cols, generator=g)
        field += amplitude * F.interpolate(lattice, size=(height, width), mode="bilinear", align_corners=True)
        amplitude *= uniform(g, 0.4, 0.65)
    field = field[0, 0]
    field = (field - field.min()) / (field.max() - field.min()).clamp_min(1e-6)
    if bernoulli(g, 0.3):
        # Regular structure (blinds, fences, windows) under the noise.
        angle = uniform(g, 0.0, math.pi)
        freq = uniform(g, 10.0, 60.0) / max(height, width)
        yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
        stripes = torch.sin(2 * math.pi * freq * (xx * math.cos(angle) + yy * math.sin(angle)))
        field = (0.75 * field + 0.25 * (stripes > 0).float()).clamp(0.0, 1.0)

    palette = _random_colours(g, 3, saturation=(0.1, 0.8), value=(0.1, 0.8))  # [3 colours, 3]
    # Piecewise-linear palette: field 0 -> colour 0, 0.5 -> colour 1, 1 -> colour 2.
    low = (field * 2).clamp(0.0, 1.0)[None]
    high = (field * 2 - 1).clamp(0.0, 1.0)[None]
    image = palette[0].view(3, 1, 1) * (1 - low) + palette[1].view(3, 1, 1) * low
    image = image * (1 - high) + palette[2].view(3, 1, 1) * high
    gradient = 1 + uniform(g, -0.4, 0.4) * (torch.linspace(-0.5, 0.5, height).view(1, height, 1))
    return (image * gradient).clamp(0.0, 0.85)


def _add_highlights(g: torch.Generator, image: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """Paint anti-aliased bright discs of the given radii [N] into image [3, H, W]."""
    _, height, width = image.shape
    count = len(radii)
    # Half the spots gather in a few clusters (street lights, foliage glints), half are scattered.
    num_clusters = randint(g, 1, 5)
    centres = torch.rand(num_clusters, 2, generator=g) * torch.tensor([height, width])
    clustered = centres[torch.randint(num_clusters, (count,), generator=g)] + torch.randn(count, 2, generator=g) * (
        0.08 * min(height, width)
    )
    scattered = torch.rand(count, 2, generator=g) * torch.tensor([height, width])
    positions = torch.where(torch.rand(count, 1, generator=g) < 0.5, clustered, scattered)  # [N, 2] (y, x)
    colours = _random_colours(g, count, saturation=(0.0, 0.7), value=(1.0, 1.0))  # [N, 3], max channel 1
    colours = colours * uniforms(g, 0.92, 1.0, (count, 1))

    # Each spot touches a (2R+1)^2 patch around it; scatter with max so overlaps stay <= 1.
    reach = math.ceil(radii.max().item()) + 1
    offsets = torch.arange(-reach, reach + 1)
    dy, dx = torch.meshgrid(offsets, offsets, indexing="ij")
    pixel_y = positions[:, :1].floor() + dy.reshape(1, -1)  # [N, P]
    pixel_x = positions[:, 1:].floor() + dx.reshape(1, -1)
    distance = torch.hypot(pixel_y + 0.5 - positions[:, :1], pixel_x + 0.5 - positions[:, 1:])
    coverage = (radii[:, None] + 0.5 - distance).clamp(0.0, 1.0)  # [N, P]
    valid = (pixel_y >= 0) & (pixel_y < height) & (pixel_x >= 0) & (pixel_x < width) & (coverage > 0)
    flat_index = (pixel_y * width + pixel_x)[valid].long()

    mask = torch.zeros(height * width).scatter_reduce_(0, flat_index, coverage[valid], "amax")
    spots = torch.zeros(3, height * width)
    for channel in range(3):
        values = (coverage * colours[:, channel : channel + 1])[valid]
        spots[channel].scatter_reduce_(0, flat_index, values, "amax")
    image = image * (1 - mask.view(1, height, width)) + spots.view(3, height, width)
    return image.clamp(0.0, 1.0)
