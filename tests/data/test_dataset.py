"""Cross-checks of the synthetic data: units of the rendered batch, the all-in-focus frame, subject
alignment, clip timing, seeding and the test-set export, measured on generated scenes."""

import ast
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from any2bokeh.data import SyntheticBokehDataModule
from any2bokeh.data.assets import VideoMatteForegrounds
from any2bokeh.data.dataset import SyntheticBokehDataset, render_batch
from any2bokeh.data.procedural import ProceduralBackgrounds, ProceduralForegrounds
from any2bokeh.data.scenes import VISIBLE_ALPHA, SceneConfig, sample_scene
from any2bokeh.data.testset import TestSetDataset, export_testset
from tests.video_files import write_frame_folder, write_videomatte_clip

DATA_DIR = Path(__file__).resolve().parents[2] / "src" / "any2bokeh" / "data"


def procedural(height=48, width=48):
    return ProceduralForegrounds(num_clips=8, size=height, num_frames=20, seed=1), ProceduralBackgrounds(
        num_images=4, size=(height, width), seed=1
    )


class CodedForegrounds:
    """Opaque 12x8 boxes whose colour encodes the clip and the frame: rgb = (index / 8, frame / 40, 0.5)."""

    def __init__(self, n=4, frames=30):
        self.n, self.frames = n, frames

    def __len__(self):
        return self.n

    def num_frames(self, index):
        return self.frames

    def load(self, index, frame_ids):
        rgb = torch.stack([torch.tensor([index / 8, f / 40, 0.5]).view(3, 1, 1).expand(3, 12, 8) for f in frame_ids])
        return rgb, torch.ones(len(frame_ids), 1, 12, 8)


class BlackBackgrounds:
    def __len__(self):
        return 1

    def load(self, index):
        return torch.zeros(3, 20, 20)


def _normalization(sample):
    """(d_min, span) of a clip's disparity normalization, recovered from its raw and normalized focus and K."""
    span = sample["k"].double() / sample["k_raw"].double()
    return sample["disp_focus_raw"].double() - sample["disp_focus"].double() * span, span


def test_a_point_on_a_layer_blurs_to_k_times_normalized_disparity_offset():
    """In the rendered batch, radius = k·|d_n - d_f,n| px with both in the clip's normalized units."""
    H = W = 48
    ds = SyntheticBokehDataset(*procedural(H, W), size=4, num_frames=2, height=H, width=W, scene={"k_values": (8.0, 12.0), "object_c": (1.5, 5.0)})
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    rho2 = (ys - H // 2) ** 2 + (xs - W // 2) ** 2
    checked = 0
    for index in range(3):
        sample = ds[index]
        d_min, span = _normalization(sample)
        assert span.max() < 0.75, "raw and normalized units must differ for this check to bite"
        for layer in (0, sample["images"].shape[1] - 1):  # the nearest object slot and the background
            # Keep the scene's planes, focus and K; show one white pixel on this layer over black.
            images, alphas = torch.zeros_like(sample["images"]), torch.zeros_like(sample["alphas"])
            alphas[:, -1] = 1.0
            alphas[:, layer, 0, H // 2, W // 2] = 1.0
            images[:, layer, :, H // 2, W // 2] = 1.0
            batch = {name: value[None] for name, value in sample.items()} | {"images": images[None], "alphas": alphas[None]}
            energy = ((render_batch(batch)["bokeh"][0, :, 0] + 1) / 2).double()  # [T, H, W]
            # A uniform disc of radius r has mean squared distance r²/2 from its centre.
            measured = (2 * (energy * rho2).sum(dim=(1, 2)) / energy.sum(dim=(1, 2))).sqrt()
            d_n = (1 / sample["planes"][:, layer, 2].double() - d_min) / span
            expected = sample["k"].double() * (d_n - sample["disp_focus"].double()).abs()
            assert expected.max() <= 12 + 1e-6  # rays through the disc stay inside the frame
            assert (measured - expected).abs().max() < 1.0, (index, layer, measured, expected)
            checked += int((expected > 2).sum())
    assert checked >= 4, "some discs should be well defocused"


@pytest.mark.parametrize("seed", range(6))
def test_subject_focus_is_the_mean_normalized_disparity_inside_the_subject_mask(seed):
    s = sample_scene(*procedural(48, 64), torch.Generator().manual_seed(seed), num_frames=4, height=48, width=64)
    inside = s.subject_mask[:, 0] > VISIBLE_ALPHA  # [T, H, W]
    assert inside.any(dim=(1, 2)).all()
    for t in range(4):
        mean = s.disparity[t, 0][inside[t]].double().mean()
        assert abs(float(mean) - float(s.disp_focus[t])) < 1e-5, (t, float(mean), float(s.disp_focus[t]))


@pytest.mark.parametrize("renderer", ["render_layers", "raytrace"])
def test_the_all_in_focus_frame_is_the_render_at_zero_k(renderer):
    ds = SyntheticBokehDataset(*procedural(32, 32), size=2, num_frames=3, height=32, width=32, samples_per_side=5)
    batch = {name: value[None] for name, value in ds[1].items()}
    batch["k_raw"] = torch.zeros_like(batch["k_raw"])
    out = render_batch(batch, renderer=renderer, samples_per_side=5)
    torch.testing.assert_close(out["bokeh"], out["aif"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_subject_mask_covers_the_target_in_the_same_frame_and_its_clip_advances(stride):
    for seed in range(6):
        s = sample_scene(
            CodedForegrounds(), BlackBackgrounds(), torch.Generator().manual_seed(seed), num_frames=5, height=32,
            width=32, config=SceneConfig(min_objects=2, max_objects=3, clip_stride=stride, object_height=(0.4, 0.5)),
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


def test_mp4_clips_advance_in_time_through_decord(tmp_path):
    n = 24
    levels = (8 * np.arange(n) + 20).astype(np.uint8)
    rgb = np.broadcast_to(levels[:, None, None, None], (n, 32, 32, 3)).copy()
    write_videomatte_clip(tmp_path, "clip", rgb, np.full((n, 32, 32), 255, np.uint8))
    source = VideoMatteForegrounds(tmp_path)
    for seed in range(3):
        s = sample_scene(
            source, BlackBackgrounds(), torch.Generator().manual_seed(seed), num_frames=6, height=32, width=32,
            config=SceneConfig(min_objects=1, max_objects=1, clip_stride=2, object_height=(0.5, 0.6)),
        )
        inside = s.subject_mask[:, 0] > 0.99
        frame = torch.stack([(s.aif[t][:, inside[t]].mean() * 255 - 20) / 8 for t in range(6)])
        torch.testing.assert_close(frame, frame[0] + 2 * torch.arange(6.0), rtol=0, atol=0.3)


def test_splits_differ_and_setup_twice_gives_the_same_samples():
    dm = SyntheticBokehDataModule(*procedural(32, 32), num_frames=2, height=32, width=32, train_size=3, val_size=3, test_size=3)
    dm.setup()
    first = {split: dm.dataset(split)[1] for split in ("train", "val", "test")}
    dm.setup("fit")
    dm.setup()
    for split in ("train", "val", "test"):
        again = dm.dataset(split)[1]
        for name in first[split]:
            assert torch.equal(first[split][name], again[name]), (split, name)
    assert not torch.equal(first["train"]["images"], first["val"]["images"])
    assert not torch.equal(first["train"]["images"], first["test"]["images"])
    assert not torch.equal(first["val"]["images"], first["test"]["images"])


GLOBAL_RNG_CALLS = {
    "rand", "randn", "randint", "randperm", "rand_like", "randn_like", "randint_like", "normal", "multinomial",
    "bernoulli", "poisson", "uniform_", "normal_", "random_", "exponential_", "bernoulli_",
}


def test_data_code_draws_no_global_random_numbers():
    found = []
    for path in sorted(DATA_DIR.glob("*.py")):
        tree = ast.parse(path.read_text())
        # The seeding module's draw helpers take the generator as their first, required argument.
        seeded_helpers = {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "any2bokeh.data.seeding"
            for alias in node.names
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(a.name in ("random", "numpy.random") for a in node.names):
                found.append(f"{path.name}:{node.lineno} import")
            if isinstance(node, ast.ImportFrom) and node.module in ("random", "numpy.random"):
                found.append(f"{path.name}:{node.lineno} import")
            if isinstance(node, ast.Call):
                callee = ast.unparse(node.func)
                name = callee.rsplit(".", 1)[-1]
                if callee in seeded_helpers and node.args:
                    continue
                if name in GLOBAL_RNG_CALLS and not any(k.arg == "generator" for k in node.keywords):
                    found.append(f"{path.name}:{node.lineno} {callee}")
                if callee.startswith(("random.", "np.random.", "numpy.random.")):
                    found.append(f"{path.name}:{node.lineno} {callee}")
    assert not found, found


def test_exported_test_set_is_readable_like_any_other_file(tmp_path):
    """The temporary folder and file of the atomic writes must not leave the set private to its writer."""
    previous = os.umask(0o022)
    try:
        fg, bg = procedural(16, 16)
        out = export_testset(tmp_path / "set", num_videos=1, num_frames=2, height=16, width=16, foregrounds=fg,
                             backgrounds=bg, samples_per_side=5)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((out / "testset.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((out / "video_0000").stat().st_mode) == 0o755
    assert stat.S_IMODE((out / "video_0000" / "meta.json").stat().st_mode) == 0o644
    assert len(TestSetDataset(out)) == 1


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
    torch.testing.assert_close(rgb.mean(dim=(1, 2, 3)) * 255, torch.tensor(levels, dtype=torch.float32), rtol=0, atol=1e-3)
    # Zero-padded names keep their order.
    write_frame_folder(tmp_path / "padded" / "fgr" / "clip", np.broadcast_to(levels[:, None, None, None], (n, 8, 8, 3)))
    write_frame_folder(tmp_path / "padded" / "pha" / "clip", np.broadcast_to(levels[:, None, None, None], (n, 8, 8, 3)))
    rgb, _ = VideoMatteForegrounds(tmp_path / "padded").load(0, [11, 0, 5])
    torch.testing.assert_close(rgb.mean(dim=(1, 2, 3)) * 255, torch.tensor(levels[[11, 0, 5]], dtype=torch.float32), rtol=0, atol=1e-3)


def test_resuming_an_export_with_other_settings_is_refused(tmp_path):
    """Videos kept from an earlier export must have been drawn with the same settings."""
    fg, bg = procedural(16, 16)
    options = dict(num_videos=1, height=16, width=16, foregrounds=fg, backgrounds=bg, samples_per_side=5)
    out = export_testset(tmp_path / "set", num_frames=2, **options)
    export_testset(out, num_frames=2, **options)  # same settings: resumes (nothing to do)
    with pytest.raises(ValueError, match="num_frames"):
        export_testset(out, num_frames=3, **options)
    with pytest.raises(ValueError, match="k_values"):
        export_testset(out, num_frames=2, scene={"k_values": (4.0,)}, **options)
    assert TestSetDataset(out)[0]["k"].shape == (2,)
