import copy
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from any2bokeh.models import AnyToBokeh
from any2bokeh.models.temporal_conv import TemporalConv, adopt_temporal_convs


@pytest.mark.parametrize("kernel, frames", [(3, 1), (3, 2), (3, 5), (1, 3)])
def test_temporal_conv_is_the_conv3d_it_replaces(kernel, frames):
    torch.manual_seed(0)
    conv = nn.Conv3d(6, 4, (kernel, 1, 1), padding=(kernel // 2, 0, 0)).double()
    ours = copy.deepcopy(conv)
    assert adopt_temporal_convs(ours) == 1 and type(ours) is TemporalConv
    # diffusers hands the temporal blocks a permuted, non-contiguous [B, C, T, H, W]
    x = torch.randn(2, frames, 6, 5, 7, dtype=torch.float64).permute(0, 2, 1, 3, 4).requires_grad_()
    expected, actual = conv(x), ours(x)
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)
    grad = torch.randn_like(expected)
    expected_grads = torch.autograd.grad(expected, (x, conv.weight, conv.bias), grad)
    actual_grads = torch.autograd.grad(actual, (x, ours.weight, ours.bias), grad)
    for a, e in zip(actual_grads, expected_grads):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


def test_only_frame_only_convs_are_adopted():
    kept = [
        nn.Conv3d(4, 4, 3, padding=1),  # spans pixels too
        nn.Conv3d(4, 4, (3, 1, 1), stride=(2, 1, 1)),
        nn.Conv3d(4, 4, (3, 1, 1), padding=(1, 0, 0), groups=2),
        nn.Conv3d(4, 4, (3, 1, 1), padding=(1, 0, 0), padding_mode="reflect"),
        nn.Conv3d(4, 4, (3, 1, 1), padding="same"),
    ]
    assert adopt_temporal_convs(nn.Sequential(*kept)) == 0
    assert all(type(conv) is nn.Conv3d for conv in kept)


def test_the_model_has_no_conv3d_left_and_keeps_its_names():
    model = AnyToBokeh.tiny(seed=0, use_image_encoder=False)
    convs = [module for module in model.modules() if isinstance(module, nn.Conv3d)]
    # the UNet's temporal ResNet blocks and the VAE decoder's time_conv_out
    assert convs and all(type(conv) is TemporalConv for conv in convs)
    assert "vae.vae.decoder.time_conv_out.weight" in model.state_dict()


# oneDNN reads the CPU's instruction sets once, at start: a fresh process capped at those of a CPU without
# AMX, where its bf16 Conv3d gave NaN weight gradients for these shapes (on a CPU with fewer, the cap is moot)
NO_AMX = """
import torch, torch.nn.functional as F
from any2bokeh.models.temporal_conv import TemporalConv
torch.manual_seed(0)
for frames, channels, size in ((2, 64, 8), (2, 128, 4), (2, 32, 16), (4, 64, 8)):
    conv = TemporalConv(channels, channels, (3, 1, 1), padding=(1, 0, 0))
    x, grad = torch.randn(2, 1, channels, frames, size, size)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(x)
    out.backward(grad.bfloat16())
    weight = conv.weight.detach().double().requires_grad_()
    F.conv3d(x.double(), weight, conv.bias.detach().double(), padding=(1, 0, 0)).backward(grad.double())
    error = ((conv.weight.grad.double() - weight.grad).norm() / weight.grad.norm()).item()
    # bf16 keeps 8 bits: a relative error of a few 1e-3
    assert torch.isfinite(out).all() and error < 2e-2, (frames, channels, size, error)
print("finite")
"""


@pytest.mark.parametrize("isa", ["AVX512_CORE_BF16", "AVX512_CORE"])
def test_bf16_weight_gradients_are_right_without_amx(isa):
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": isa}
    result = subprocess.run([sys.executable, "-c", NO_AMX], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "finite", result.stderr[-2000:]
