"""The conditioning probes: each alters exactly one signal, and a model that ignores a signal scores the same."""

import torch
import torch.nn.functional as F

from any2bokeh.models import AnyToBokeh
from any2bokeh.stages.probes import PROBES, ceilings, conditioning_probes, gate_strengths, pixel_scores
from tests.helpers.training_batches import batch


def batches(count=2):
    clips = [batch(frames=2, size=32, seed=seed) for seed in range(count)]
    for clip in clips:
        clip["disp_focus"] = torch.tensor([[0.2, 0.3]])  # 1 - d_f differs from d_f
    return clips


def randomize(model, names, seed=0):
    generator = torch.Generator().manual_seed(seed)
    state = model.state_dict()
    with torch.no_grad():
        for name in names:
            state[name].copy_(torch.randn(state[name].shape, generator=generator) * 0.5)


def test_a_model_at_initialisation_ignores_k_and_the_mpi_signals():
    """Gates and K's projection start at zero: only d_f (through V_D) changes the prediction."""
    model = AnyToBokeh.tiny(seed=0, use_image_encoder=False).eval()
    mse = conditioning_probes(model, batches())
    assert set(mse) == set(PROBES)
    for name in ("k_half", "k_double", "one_region", "no_condition"):
        assert mse[name] == mse["true"], name
    assert mse["wrong_focus"] != mse["true"]
    # identity is the all-in-focus latents scored against the ground truth's
    clips = batches()
    expected = sum(F.mse_loss(model.encode(c["aif"]), model.encode(c["bokeh"])).item() for c in clips) / 2
    assert abs(mse["identity"] - expected) < 1e-6 * expected


def test_probes_see_the_signals_a_model_uses():
    model = AnyToBokeh.tiny(seed=0, use_image_encoder=False).eval()
    randomize(model, model.new_parameter_names())
    mse = conditioning_probes(model, batches())
    for name in ("k_half", "k_double", "one_region", "no_condition", "wrong_focus"):
        assert mse[name] != mse["true"], name
    assert gate_strengths(model)["gate_attn"] > 0


def test_gate_strengths_and_pixel_scores():
    model = AnyToBokeh.tiny(seed=0, use_image_encoder=False).eval()
    assert gate_strengths(model) == {"gate_attn": 0.0, "gate_ff": 0.0}
    with torch.no_grad():
        for block in model.unet.mpi_blocks:
            block.gate_attn.fill_(0.5)
            block.gate_ff.fill_(-1.0)
    strengths = gate_strengths(model)
    assert abs(strengths["gate_attn"] - torch.tensor(0.5).tanh().item()) < 1e-6
    assert abs(strengths["gate_ff"] - torch.tensor(1.0).tanh().item()) < 1e-6
    clips = batches(1)
    scores = pixel_scores(model, clips)
    aif, gt = ((clips[0][key] + 1) / 2 for key in ("aif", "bokeh"))
    mse = ((aif - gt) ** 2).flatten(2).mean(-1).mean(-1)  # per frame
    assert abs(scores["psnr_input"] - (10 * torch.log10(1 / mse)).mean().item()) < 1e-3
    assert scores["psnr"] != scores["psnr_input"]


def test_ceilings_move_the_prediction_by_the_ground_truths_change():
    model = AnyToBokeh.tiny(seed=0, use_image_encoder=False).eval()
    clips = batches()
    assert ceilings(model, clips, {"same": clips}) == {"same": 0.0}
    # the ground truth of an altered signal (another K or focus): a darker bokeh; its latents' change is added to the model's error
    others = [{**clip, "bokeh": clip["bokeh"] * 0.5 - 0.2} for clip in clips]
    model_mse = moved_mse = 0.0
    with torch.no_grad():
        for clip, other in zip(clips, others):
            target = model.encode(clip["bokeh"])
            pred = model.predict_latents(clip["aif"], clip["disparity"], clip["disp_focus"], clip["k"])
            model_mse += F.mse_loss(pred, target).item()
            moved_mse += F.mse_loss(pred + model.encode(other["bokeh"]) - target, target).item()
    rises = ceilings(model, clips, {"other": others, "same": clips})
    assert abs(rises["other"] - (moved_mse / model_mse - 1)) < 1e-4 and rises["same"] == 0.0
