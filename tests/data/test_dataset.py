"""The rendered batch: units of the blur, and the all-in-focus frame, measured on generated scenes."""

import pytest
import torch

from any2bokeh.data.dataset import SyntheticBokehDataset, render_batch
from tests.helpers.scene_sources import procedural


def _normalization(sample):
    """(d_min, span) of a clip's disparity normalization, recovered from its raw and normalized focus and K."""
    span = sample["k"].double() / sample["k_raw"].double()
    return sample["disp_focus_raw"].double() - sample["disp_focus"].double() * span, span


def test_a_point_on_a_layer_blurs_to_k_times_normalized_disparity_offset():
    """In the rendered batch, radius = k·|d_n - d_f,n| px with both in the clip's normalized units."""
    H = W = 48
    ds = SyntheticBokehDataset(
        *procedural(H, W),
        size=4,
        num_frames=2,
        height=H,
        width=W,
        scene={"k_values": (8.0, 12.0), "object_c": (1.5, 5.0)},
    )
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
            batch = {name: value[None] for name, value in sample.items()} | {
                "images": images[None],
                "alphas": alphas[None],
            }
            energy = ((render_batch(batch)["bokeh"][0, :, 0] + 1) / 2).double()  # [T, H, W]
            # A uniform disc of radius r has mean squared distance r²/2 from its centre.
            measured = (2 * (energy * rho2).sum(dim=(1, 2)) / energy.sum(dim=(1, 2))).sqrt()
            d_n = (1 / sample["planes"][:, layer, 2].double() - d_min) / span
            expected = sample["k"].double() * (d_n - sample["disp_focus"].double()).abs()
            assert expected.max() <= 12 + 1e-6  # rays through the disc stay inside the frame
            assert (measured - expected).abs().max() < 1.0, (index, layer, measured, expected)
            checked += int((expected > 2).sum())
    assert checked >= 4, "some discs should be well defocused"


@pytest.mark.parametrize("renderer", ["render_layers", "raytrace"])
def test_the_all_in_focus_frame_is_the_render_at_zero_k(renderer):
    ds = SyntheticBokehDataset(*procedural(32, 32), size=2, num_frames=3, height=32, width=32, samples_per_side=5)
    batch = {name: value[None] for name, value in ds[1].items()}
    batch["k_raw"] = torch.zeros_like(batch["k_raw"])
    out = render_batch(batch, renderer=renderer, samples_per_side=5)
    torch.testing.assert_close(out["bokeh"], out["aif"], rtol=0, atol=1e-5)
