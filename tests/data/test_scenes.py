import math

import pytest
import torch

from any2bokeh.data.scenes import VISIBLE_ALPHA, SceneConfig, plane_disparity, sample_scene
from any2bokeh.optics import composite_over
from tests.helpers.scene_sources import BlackBackgrounds, CodedForegrounds, procedural


class BoxForegrounds:
    """Opaque rectangles (alpha 1 inside), a distinct flat colour per clip and frame."""

    def __init__(self, n=3, size=(20, 10), frames=6):
        self.n, self.size, self.frames = n, size, frames

    def __len__(self):
        return self.n

    def num_frames(self, index):
        return self.frames

    def load(self, index, frame_ids):
        h, w = self.size
        rgb = torch.stack([torch.full((3, h, w), 0.1 + 0.8 * ((index * 7 + f) % 10) / 10) for f in frame_ids])
        return rgb, torch.ones(len(frame_ids), 1, h, w)


class NoiseBackgrounds:
    def __len__(self):
        return 2

    def load(self, index):
        return torch.rand(3, 30, 40, generator=torch.Generator().manual_seed(index))


def scene(seed=0, T=4, H=24, W=32, **options):
    return sample_scene(
        BoxForegrounds(),
        NoiseBackgrounds(),
        torch.Generator().manual_seed(seed),
        num_frames=T,
        height=H,
        width=W,
        config=SceneConfig(**options),
    )


def test_shapes_and_ranges():
    s = scene(max_objects=3)
    assert s.images.shape == (4, 4, 3, 24, 32) and s.alphas.shape == (4, 4, 1, 24, 32)
    assert s.planes.shape == (4, 4, 3)
    assert s.aif.shape == (4, 3, 24, 32) and s.disparity.shape == (4, 1, 24, 32)
    assert s.subject_mask.shape == (4, 1, 24, 32)
    for v in (s.disp_focus, s.k, s.disp_focus_raw, s.k_raw):
        assert v.shape == (4,)
    for v in (s.images, s.alphas, s.aif, s.disparity, s.subject_mask):
        assert v.min() >= 0 and v.max() <= 1
    # Normalized over the clip: its extremes are exactly 0 and 1.
    assert s.disparity.min() == 0 and s.disparity.max() == 1
    assert (s.disp_focus > 0).all() and (s.disp_focus <= 1).all()
    assert (s.disp_focus_raw > 0).all() and (s.disp_focus_raw <= 1).all()
    assert (s.alphas[:, -1] == 1).all()


def test_raw_and_normalized_units_agree():
    s = scene(seed=3)
    d_min, d_max = s.disp_range.double()
    span = d_max - d_min
    torch.testing.assert_close(s.k_raw.double() * span, s.k.double(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(s.disp_focus_raw.double(), d_min + s.disp_focus.double() * span, rtol=1e-5, atol=1e-6)
    # The blur radius K·|d - d_f| is the same in both units, pixel by pixel.
    raw = d_min + s.disparity.double() * span
    r_raw = s.k_raw.double()[:, None, None, None] * (raw - s.disp_focus_raw.double()[:, None, None, None]).abs()
    r_norm = (
        s.k.double()[:, None, None, None] * (s.disparity.double() - s.disp_focus.double()[:, None, None, None]).abs()
    )
    torch.testing.assert_close(r_raw, r_norm, rtol=1e-4, atol=1e-4)


def test_layers_nearest_first_and_background_last():
    for seed in range(4):
        s = scene(seed=seed, min_objects=4, max_objects=4, motion=0.4, depth_motion=1.0)
        disp = 1 / s.planes[..., 2]  # fronto-parallel: d = 1/c
        assert (s.planes[..., :2] == 0).all()
        assert (disp[:, :-1] >= disp[:, 1:]).all()
        assert (s.planes[:, :-1, 2] <= 5).all() and (s.planes[:, :-1, 2] >= 1).all()
        assert (s.planes[:, -1, 2] >= 100).all() and (s.planes[:, -1, 2] <= 200).all()


def test_unused_slots_are_empty_on_the_background_plane():
    assert scene(min_objects=1, max_objects=1).alphas.shape[1] == 2
    found = 0
    for seed in range(8):
        s = scene(seed=seed, T=2, H=16, W=16, min_objects=1, max_objects=4)
        empty = s.alphas.flatten(2).amax(dim=(0, 2)) == 0  # [L]
        found += int(empty.any())
        # Empty slots come last among the objects, on the background's plane.
        slots = torch.nonzero(empty).flatten().tolist()
        assert slots == list(range(4 - len(slots), 4))
        for slot in slots:
            assert (s.images[:, slot] == 0).all() and (s.planes[:, slot] == s.planes[:, -1]).all()
    assert found >= 2


def test_aif_is_the_over_composite_and_disparity_the_front_layer():
    s = scene(seed=1)
    torch.testing.assert_close(s.aif, composite_over(s.images, s.alphas).clamp(0, 1))
    # Where no object covers a pixel, the frame shows the background at its (normalized) disparity 0.
    uncovered = s.alphas[:, :-1, 0].amax(dim=1) == 0  # [T, H, W]
    assert uncovered.any()
    assert (s.aif.permute(1, 0, 2, 3)[:, uncovered] == s.images[:, -1].permute(1, 0, 2, 3)[:, uncovered]).all()
    assert (s.disparity[:, 0][uncovered] == 0).all()
    raw = plane_disparity(s.planes.double(), 24, 32)  # [T, L, H, W]
    front = (s.alphas[:, :, 0] >= 0.5).to(torch.uint8).argmax(dim=1, keepdim=True)
    expected = raw.gather(1, front)
    d_min, d_max = s.disp_range.double()
    torch.testing.assert_close(s.disparity.double(), (expected - d_min) / (d_max - d_min), rtol=0, atol=1e-5)


def test_subject_focus_is_the_targets_mean_disparity():
    s = scene(seed=2, min_objects=2, max_objects=3)
    d_min, d_max = s.disp_range.double()
    # The subject mask marks a layer; with fronto-parallel boxes, the disparity under the
    # visible subject equals d_f everywhere.
    checked = 0
    for t in range(4):
        visible = s.subject_mask[t, 0] > 0.99
        if not visible.any():  # occluded in this frame
            continue
        checked += 1
        values = s.disparity[t, 0][visible]
        torch.testing.assert_close(values, torch.full_like(values, float(s.disp_focus[t])), rtol=0, atol=1e-5)
        target = (1 / s.planes[t, :, 2]).double()
        assert torch.isclose(target, d_min + s.disp_focus[t].double() * (d_max - d_min), atol=1e-5).any()
    assert checked >= 2


def test_scale_follows_inverse_depth():
    s = sample_scene(
        BoxForegrounds(n=1, size=(20, 10)),
        NoiseBackgrounds(),
        torch.Generator().manual_seed(5),
        num_frames=6,
        height=64,
        width=64,
        config=SceneConfig(
            min_objects=1,
            max_objects=1,
            start_region=(0.5, 0.5),
            motion=0.0,
            object_height=(0.25, 0.25),
            depth_motion=0.6,
            object_c=(1.0, 5.0),
        ),
    )
    c = s.planes[:, 0, 2].double()
    assert c.max() / c.min() > 1.2, "the trajectory should change depth"
    area = s.alphas[:, 0].double().sum(dim=(1, 2, 3))
    # Area scales with 1/c²; the box's height on frame 0 is 0.25 of 64 px and its width half that.
    expected = (16 * c[0] / c) * (8 * c[0] / c)
    torch.testing.assert_close(area, expected, rtol=0.06, atol=0)


def test_trajectories_are_smooth():
    s = scene(
        seed=4,
        T=12,
        H=64,
        W=64,
        min_objects=1,
        max_objects=1,
        motion=0.15,
        start_region=(0.4, 0.6),
        object_height=(0.2, 0.2),
        depth_motion=0.3,
    )
    # Bezier trajectories: the centre is a cubic polynomial of time (up to pixel sampling).
    alpha = s.alphas[:, 0, 0].double()
    ys, xs = torch.meshgrid(
        torch.arange(64.0, dtype=torch.float64), torch.arange(64.0, dtype=torch.float64), indexing="ij"
    )
    centre = (
        torch.stack([(alpha * xs).sum(dim=(1, 2)), (alpha * ys).sum(dim=(1, 2))], dim=1)
        / alpha.sum(dim=(1, 2))[:, None]
    )
    assert (centre.max(dim=0).values - centre.min(dim=0).values).max() > 2, "the object should move"
    time = torch.linspace(0, 1, 12, dtype=torch.float64)
    basis = torch.stack([time**p for p in range(4)], dim=1)
    fit = basis @ torch.linalg.lstsq(basis, centre).solution
    assert (fit - centre).abs().max() < 0.1


def test_same_generator_same_scene_other_seed_other_scene():
    a, b, c = scene(seed=11), scene(seed=11), scene(seed=12)
    for name in ("images", "alphas", "planes", "disparity", "disp_focus", "k"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert not torch.equal(a.images, c.images)


def test_fixed_and_ramped_focus():
    s = scene(focus_modes={"fixed": 1.0}, focus_value=(0.3, 0.6))
    assert (s.disp_focus == s.disp_focus[0]).all() and 0.3 <= float(s.disp_focus[0]) <= 0.6
    s = scene(T=9, focus_modes={"ramp": 1.0}, focus_ramp=(0.1, 0.9), focus_ramp_points=3)
    f = s.disp_focus.double()
    assert f.min() >= 0.1 - 1e-6 and f.max() <= 0.9 + 1e-6
    # Piecewise linear through 3 knots at frames 0, 4, 8: constant slope on each half.
    torch.testing.assert_close(f[:5].diff(n=2), torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-6)
    torch.testing.assert_close(f[4:].diff(n=2), torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-6)


def test_k_from_set_range_and_ramp():
    ks = {float(scene(seed=i, T=2, H=8, W=8).k[0]) for i in range(12)}
    assert ks <= {12.0, 16.0, 20.0, 24.0, 28.0} and len(ks) > 1
    s = scene(T=5, k_range=(1.0, 32.0), k_ramp_prob=1.0)
    k = s.k.double()
    assert k.min() >= 1 and k.max() <= 32
    torch.testing.assert_close(k.diff(n=2), torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-4)
    s = scene(T=5, k_values=(8,), k_ramp_prob=0.0)
    assert (s.k == 8).all()


def test_tilted_planes():
    s = scene(seed=6, tilt=0.3, object_c=(1.6, 5.0), min_objects=2, max_objects=2)
    assert (s.planes[:, :-1, :2] != 0).any()
    raw = plane_disparity(s.planes.double(), 24, 32)
    assert raw.min() > 0 and raw.max() <= 1
    assert s.disparity.min() == 0 and s.disparity.max() == 1


@pytest.mark.parametrize(
    "options, message",
    [
        ({"k_values": (8, -1)}, "K must be >= 0"),
        ({"k_range": (-2.0, 4.0)}, "K must be >= 0"),
        ({"k_values": ()}, "no K"),
        ({"focus_value": 0.0}, r"\(0, 1\]"),
        ({"focus_value": (0.5, 1.5)}, r"\(0, 1\]"),
        ({"focus_ramp": (-0.1, 0.5)}, r"\(0, 1\]"),
        ({"focus_modes": {"autofocus": 1.0}}, "autofocus"),
        ({"min_objects": 3, "max_objects": 2}, "min_objects"),
        ({"object_c": (5.0, 1.0)}, "object_c"),
        ({"background_c": (3.0, 10.0)}, "background"),
        ({"tilt": 0.3}, "object_c must start"),
    ],
)
def test_bad_config_is_refused(options, message):
    with pytest.raises(ValueError, match=message):
        SceneConfig(**options)


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="num_frames"):
        scene(T=0)
    assert math.isfinite(float(scene(T=1).disp_focus[0]))


@pytest.mark.parametrize("seed", range(6))
def test_subject_focus_is_the_mean_normalized_disparity_inside_the_subject_mask(seed):
    s = sample_scene(*procedural(48, 64), torch.Generator().manual_seed(seed), num_frames=4, height=48, width=64)
    inside = s.subject_mask[:, 0] > VISIBLE_ALPHA  # [T, H, W]
    assert inside.any(dim=(1, 2)).all()
    for t in range(4):
        mean = s.disparity[t, 0][inside[t]].double().mean()
        assert abs(float(mean) - float(s.disp_focus[t])) < 1e-5, (t, float(mean), float(s.disp_focus[t]))


@pytest.mark.parametrize("stride", [1, 2])
def test_subject_mask_covers_the_target_in_the_same_frame_and_its_clip_advances(stride):
    for seed in range(6):
        s = sample_scene(
            CodedForegrounds(),
            BlackBackgrounds(),
            torch.Generator().manual_seed(seed),
            num_frames=5,
            height=32,
            width=32,
            config=SceneConfig(min_objects=2, max_objects=3, clip_stride=stride, object_height=(0.4, 0.5)),
        )
        inside = s.subject_mask[:, 0] > 0.99
        assert inside.any(dim=(1, 2)).all()
        colours = torch.stack([s.aif[t][:, inside[t]].mean(dim=1) for t in range(5)])  # [T, 3]
        clip, frame = colours[:, 0] * 8, colours[:, 1] * 40
        # One clip under the mask in every frame, read at start + stride·t.
        torch.testing.assert_close(clip, clip[:1].expand(5), rtol=0, atol=1e-4)
        torch.testing.assert_close(frame, frame[0] + stride * torch.arange(5.0), rtol=0, atol=1e-4)
        # The masked object is the one in focus, in every frame.
        for t in range(5):
            under = s.disparity[t, 0][inside[t]]
            torch.testing.assert_close(under, torch.full_like(under, float(s.disp_focus[t])), rtol=0, atol=1e-5)
