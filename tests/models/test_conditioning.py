import math

import pytest
import torch

from any2bokeh.models import fourier_k, mpi_regions, mpi_thresholds, vd_image, vd_map


def reference_regions(disparity, disp_focus, n_planes, alpha):
    """Pixel-by-pixel eq. (2)-(3) in plain Python floats."""
    focus = max(float(disp_focus), 1e-6)
    thresholds = [(i / n_planes) ** (1.0 / focus**alpha) for i in range(1, n_planes)]
    flat = [sum(abs(float(d) - float(disp_focus)) > h for h in thresholds) for d in disparity.flatten()]
    return torch.tensor(flat).reshape(disparity.shape)


@pytest.mark.parametrize("n_planes, alpha", [(4, 1.0), (4, 1.5), (2, 1.0), (8, 1.0)])
def test_mpi_regions_follows_the_formula_on_random_inputs(n_planes, alpha):
    generator = torch.Generator().manual_seed(n_planes)
    disparity = torch.rand(2, 3, 7, 9, generator=generator, dtype=torch.float64)
    disp_focus = torch.rand(2, 3, generator=generator, dtype=torch.float64)
    regions = mpi_regions(disparity, disp_focus, n_planes=n_planes, alpha=alpha)
    assert regions.dtype == torch.int64 and regions.shape == disparity.shape
    for b in range(2):
        for t in range(3):
            expected = reference_regions(disparity[b, t], disp_focus[b, t], n_planes, alpha)
            assert torch.equal(regions[b, t], expected), (b, t)
    assert int(regions.min()) >= 0 and int(regions.max()) <= n_planes - 1


def test_mpi_regions_focus_one_gives_linear_thresholds_and_strict_comparison():
    # d_f = 1: thresholds 0.25, 0.5, 0.75; |d - d_f| equal to a threshold does not exceed it
    disparity = torch.tensor([[1.0, 0.9, 0.75, 0.7, 0.5, 0.4, 0.2, 0.0]])
    regions = mpi_regions(disparity, torch.tensor(1.0))
    assert regions.tolist() == [[0, 0, 0, 1, 1, 2, 3, 3]]


@pytest.mark.parametrize("disp_focus", [0.0, 1e-9, 1e-3])
def test_mpi_regions_zero_and_tiny_focus_put_everything_off_focus_in_the_last_region(disp_focus):
    disparity = torch.tensor([[disp_focus, 0.01, 0.3, 1.0]])
    regions = mpi_regions(disparity, disp_focus)
    assert regions.tolist() == [[0, 3, 3, 3]]
    assert torch.isfinite(mpi_thresholds(torch.tensor(disp_focus))).all()


def test_mpi_regions_with_a_channel_dim_and_float_focus():
    disparity = torch.rand(2, 3, 1, 5, 6)
    disp_focus = torch.rand(2, 3)
    with_channel = mpi_regions(disparity, disp_focus)
    assert with_channel.shape == (2, 3, 1, 5, 6)
    assert torch.equal(with_channel[:, :, 0], mpi_regions(disparity[:, :, 0], disp_focus))
    assert torch.equal(mpi_regions(disparity[0, 0, 0], 0.4), mpi_regions(disparity[0, 0, 0], torch.tensor(0.4)))


def test_mpi_regions_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="disp_focus"):
        mpi_regions(torch.rand(2, 3, 4, 4), torch.rand(3, 2))
    with pytest.raises(ValueError, match="disparity"):
        mpi_regions(torch.rand(4), torch.tensor(0.5))
    with pytest.raises(ValueError, match="n_planes"):
        mpi_regions(torch.rand(4, 4), 0.5, n_planes=0)


def test_mpi_thresholds_run_from_zero_to_one_and_grow():
    thresholds = mpi_thresholds(torch.tensor([0.2, 0.7, 1.0]), n_planes=4)
    assert thresholds.shape == (3, 5)
    assert torch.equal(thresholds[:, 0], torch.zeros(3)) and torch.equal(thresholds[:, -1], torch.ones(3))
    assert (thresholds.diff(dim=-1) > 0).all()
    # a nearer focus (larger d_f) gives wider inner thresholds
    assert (thresholds[1, 1:-1] < thresholds[2, 1:-1]).all() and (thresholds[0, 1:-1] < thresholds[1, 1:-1]).all()


def test_vd_map_and_image():
    disparity = torch.tensor([[[[0.0, 0.5], [0.8, 1.0]]]])  # [1, 1, 2, 2] = [T, 1, H, W]
    disp_focus = torch.tensor([0.5])
    assert torch.allclose(vd_map(disparity, disp_focus), torch.tensor([[[[0.5, 0.0], [0.3, 0.5]]]]))
    image = vd_image(disparity, disp_focus)
    assert image.shape == (1, 3, 2, 2)
    assert torch.allclose(image[0, 2], torch.tensor([[0.0, -1.0], [-0.4, 0.0]]))
    assert torch.equal(image[0, 0], image[0, 1])
    with pytest.raises(ValueError, match=r"\[\.\.\., 1, H, W\]"):
        vd_image(torch.rand(2, 3, 4, 4), torch.rand(2))


def test_fourier_k_raw_uses_16_log_spaced_frequencies_from_1_to_100():
    k = torch.tensor([[0.0, 4.0], [16.0, 32.0]])
    embedding = fourier_k(k, encoding="raw")
    assert embedding.shape == (2, 2, 32)
    frequencies = [10 ** (2 * i / 15) for i in range(16)]
    assert frequencies[0] == 1.0 and math.isclose(frequencies[-1], 100.0)
    expected = torch.tensor([math.sin(16.0 * f) for f in frequencies] + [math.cos(16.0 * f) for f in frequencies])
    assert torch.allclose(embedding[1, 0], expected, atol=1e-4)
    assert torch.equal(embedding[0, 0], torch.cat([torch.zeros(16), torch.ones(16)]))
    assert fourier_k(8.0).shape == (32,)


def test_fourier_k_log_encoding_embeds_octaves_of_blur():
    k = torch.tensor([0.0, 1.0, 3.0, 7.0, 15.0, 127.0])
    embedding = fourier_k(k)
    assert torch.equal(embedding, fourier_k(k, encoding="log"))
    u = torch.log2(1 + k)
    frequencies = torch.logspace(math.log10(0.25), math.log10(8.0), 16)
    assert torch.allclose(
        embedding, torch.cat([(u[:, None] * frequencies).sin(), (u[:, None] * frequencies).cos()], -1), atol=1e-5
    )
    # the slowest cosine falls with K over the whole range: the embedding orders K
    assert (embedding[1:, 16] < embedding[:-1, 16]).all()
    # K = 0 sits at the origin of the angles, as with the raw encoding
    assert torch.equal(embedding[0], torch.cat([torch.zeros(16), torch.ones(16)]))


def test_fourier_k_log_encoding_keeps_k_and_2k_close_where_raw_does_not():
    k = torch.linspace(2.0, 8.0, 25)

    def distance_to_double(encoding):
        return (fourier_k(2 * k, encoding)[:, :4] - fourier_k(k, encoding)[:, :4]).norm(dim=-1)

    # the four slowest components: a smooth, K-independent step under log; at least 1 rad of turn under raw
    log_step, raw_step = distance_to_double("log"), distance_to_double("raw")
    assert log_step.max() < 0.6 * raw_step.mean()
    assert log_step.max() - log_step.min() < 0.5 * (raw_step.max() - raw_step.min())
    with pytest.raises(ValueError, match="encoding"):
        fourier_k(k, encoding="linear")
