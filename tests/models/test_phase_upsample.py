"""Nearest x2 + 3x3 conv as four 2x2 phase convs: the same as diffusers' Upsample2D, in float64."""

import pytest
import torch
from diffusers.models.upsampling import Upsample2D

from any2bokeh.models import AnyToBokeh
from any2bokeh.models.phase_upsample import PhaseUpsample2D, phase_upsample_conv, set_phase_upsampling


@pytest.mark.parametrize("size", [(5, 7), (8, 8), (1, 3)])
def test_phase_convs_equal_diffusers_upsample2d_in_float64(size):
    torch.manual_seed(0)
    stock = Upsample2D(6, use_conv=True, out_channels=4).double()
    x = torch.randn(3, 6, *size, dtype=torch.float64, requires_grad=True)
    expected = stock(x)
    adopted = PhaseUpsample2D.adopt(stock)
    adopted.phase = True
    out = adopted(x)
    assert out.shape == expected.shape == (3, 4, 2 * size[0], 2 * size[1])
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    # the gradients of the input and of the conv's parameters too (stage 3 trains the decoder)
    grads = torch.autograd.grad(out.square().sum(), [x, adopted.conv.weight, adopted.conv.bias])
    adopted.phase = False
    reference = torch.autograd.grad(adopted(x).square().sum(), [x, adopted.conv.weight, adopted.conv.bias])
    for got, want in zip(grads, reference):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_a_wrong_phase_table_would_show():
    """The check above can fail: a kernel flipped left-right gives another result."""
    torch.manual_seed(1)
    stock = Upsample2D(3, use_conv=True, out_channels=2).double()
    x = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    flipped = phase_upsample_conv(x, stock.conv.weight.flip(-1), stock.conv.bias)
    assert (flipped - stock(x)).abs().max() > 1e-3


def test_the_decoder_with_phase_upsampling_decodes_the_same():
    model = AnyToBokeh.tiny(seed=0).double()
    latents = torch.randn(1, 3, 4, 8, 8, dtype=torch.float64)
    assert set_phase_upsampling(model.vae, False) == 1  # the tiny VAE's one upsampler
    expected = model.decode(latents)
    set_phase_upsampling(model.vae, True)
    torch.testing.assert_close(model.decode(latents), expected, rtol=1e-10, atol=1e-10)
    # the parameter names stay diffusers' (saved models are unchanged)
    names = [name for name, _ in model.vae.named_parameters() if "upsamplers" in name]
    assert names == [
        "vae.decoder.up_blocks.0.upsamplers.0.conv.weight",
        "vae.decoder.up_blocks.0.upsamplers.0.conv.bias",
    ]
