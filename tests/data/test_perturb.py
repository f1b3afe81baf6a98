import pytest
import torch

from any2bokeh.data.perturb import (
    MODES,
    DisparityPerturbation,
    elastic_warp,
    gaussian_blur,
    morphology,
    perlin_bank,
    perlin_noise,
    perturb_disparity,
    subject_band,
)

T, H, W = 3, 64, 128


@pytest.fixture(autouse=True)
def one_thread():
    """These tensors are tiny: thread hand-offs would cost more than the work on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def subject_clip(near=0.8, far=0.2):
    """A near rectangle (the subject) over a far plane: disparity and the subject mask."""
    disparity = torch.full((T, 1, H, W), far)
    disparity[..., 22:42, 20:44] = near
    return disparity, (disparity > 0.5).float()


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def gradient_energy(x):
    return x.diff(dim=-1).square().mean() + x.diff(dim=-2).square().mean()


def subject_area(x):
    return (x > 0.5).sum().item()


def test_mode_I_is_the_identity():
    disparity, _ = subject_clip()
    out = perturb_disparity(disparity, "I", gen())
    assert torch.equal(out, disparity) and out is not disparity


def test_mode_II_blurs():
    disparity, _ = subject_clip()
    out = perturb_disparity(disparity, "II", gen(), blur_sigma=0.03)
    assert out.shape == disparity.shape
    assert gradient_energy(out) < 0.5 * gradient_energy(disparity)
    # Flat regions away from edges keep their value; the blur alone is not random.
    assert torch.allclose(out[..., 32, 32], disparity[..., 32, 32]) and torch.allclose(
        out[..., 2, 2], disparity[..., 2, 2]
    )
    assert torch.equal(out, perturb_disparity(disparity, "II", gen(5), blur_sigma=0.03))


def test_mode_III_moves_edges_beyond_the_blur():
    disparity, _ = subject_clip()
    blurred = perturb_disparity(disparity, "II", gen())
    warped = perturb_disparity(disparity, "III", gen(), elastic_amplitude=0.05)
    assert (warped - blurred).abs().max() > 0.1
    assert 0 <= warped.min() and warped.max() <= 1


def test_mode_IV_changes_the_subject_area_both_ways():
    disparity, _ = subject_clip()
    changes = []
    for seed in range(8):
        warped = perturb_disparity(disparity, "III", gen(seed))
        morphed = perturb_disparity(disparity, "IV", gen(seed), morph_size=0.1)
        changes.append(subject_area(morphed) - subject_area(warped))
    # A 5-pixel square grows or shrinks a 20x24 subject by well over 100 pixels per frame.
    assert all(abs(change) > 100 * T for change in changes)
    assert any(change > 0 for change in changes) and any(change < 0 for change in changes)


@pytest.mark.parametrize("mode", MODES)
def test_modes_are_deterministic_and_stay_in_range(mode):
    disparity = torch.rand(T, 1, H, W)
    out = perturb_disparity(disparity, mode, gen(3))
    assert torch.equal(out, perturb_disparity(disparity, mode, gen(3)))
    assert out.shape == disparity.shape and 0 <= out.min() and out.max() <= 1


def test_random_modes_depend_on_the_generator():
    disparity, _ = subject_clip()
    for mode in ("III", "IV"):
        assert not torch.equal(perturb_disparity(disparity, mode, gen(1)), perturb_disparity(disparity, mode, gen(2)))


def test_subject_mask_confines_warp_and_morphology():
    disparity, mask = subject_clip()
    disparity[..., 10:50, 100:110] = 0.5  # a far structure that must stay put
    out = perturb_disparity(disparity, "IV", gen(), mask, blur_sigma=0.0, morph_size=0.1)
    assert torch.equal(out[..., 90:], disparity[..., 90:])
    assert subject_area(out) != subject_area(disparity)


def test_training_perturbation_p_zero_and_one():
    disparity, mask = subject_clip()
    unchanged = DisparityPerturbation(p=0.0)(disparity, gen(), mask)
    assert torch.equal(unchanged, disparity) and unchanged is not disparity
    changed = DisparityPerturbation(p=1.0)(disparity, gen(), mask)
    assert changed.shape == disparity.shape and 0 <= changed.min() and changed.max() <= 1
    assert (changed - disparity).abs().max() > 0.05


def test_training_perturbation_applies_with_probability_p():
    disparity, _ = subject_clip()
    perturb = DisparityPerturbation(p=0.5)
    generator = gen(11)
    changed = sum(not torch.equal(perturb(disparity, generator), disparity) for _ in range(40))
    assert 10 <= changed <= 30


def test_training_perturbation_is_deterministic():
    disparity, mask = subject_clip()
    perturb = DisparityPerturbation(p=1.0)
    first = perturb(disparity, gen(4), mask)
    assert torch.equal(first, perturb(disparity, gen(4), mask))
    assert not torch.equal(first, perturb(disparity, gen(5), mask))


def test_training_perturbation_stays_near_the_subject():
    disparity, mask = subject_clip()
    out = DisparityPerturbation(p=1.0)(disparity, gen(), mask)
    assert torch.equal(out[..., 90:], disparity[..., 90:])
    assert not torch.equal(out[..., :90], disparity[..., :90])
    # Without a mask the Perlin noise reaches the whole frame.
    everywhere = DisparityPerturbation(p=1.0, step_p=(0.0, 1.0, 0.0))(disparity, gen())
    assert ((everywhere - disparity).abs() > 1e-4).float().mean() > 0.9


def test_training_steps_can_be_switched_off():
    disparity, _ = subject_clip()
    only_morph = DisparityPerturbation(p=1.0, step_p=(0.0, 0.0, 1.0), morph_size=(0.1, 0.1))(disparity, gen())
    # Pure dilation or erosion keeps the two disparity levels exactly.
    assert torch.isclose(only_morph, torch.tensor(0.2)).logical_or(torch.isclose(only_morph, torch.tensor(0.8))).all()
    assert subject_area(only_morph) != subject_area(disparity)


def test_subject_band_is_one_on_the_subject_and_fades_outside():
    _, mask = subject_clip()
    band = subject_band(mask, margin=6)
    assert band.shape == mask.shape and 0 <= band.min() and band.max() <= 1
    assert (band[mask > 0] == 1).all()
    assert band[0, 0, 32, 44 + 6] > 0.9  # within the margin, right of the subject
    assert band[0, 0, 32, 44 + 30] == 0  # well beyond it
    assert ((band > 0.05) & (band < 0.95)).any()  # soft, not a hard step


def test_gaussian_blur_keeps_the_mean():
    disparity, _ = subject_clip()
    assert gaussian_blur(disparity, 0.0) is disparity
    assert torch.allclose(gaussian_blur(disparity, 2.0).mean(), disparity.mean(), atol=1e-3)
    with pytest.raises(ValueError, match="sigma"):
        gaussian_blur(disparity, -1.0)


def test_elastic_warp_displaces_by_about_the_amplitude():
    ramp = (torch.arange(W, dtype=torch.float32) / (W - 1)).expand(T, 1, H, W).contiguous()
    assert torch.equal(elastic_warp(ramp, gen(), 0.0), ramp)
    warped = elastic_warp(ramp, gen(), amplitude=2.0)
    inner = (warped - ramp)[..., 8:-8, 8:-8] * (W - 1)  # horizontal displacement in pixels
    assert 0.8 < inner.std() < 4.0
    # The field drifts smoothly over the clip: neighbouring frames are closer than the ends.
    assert (warped[1] - warped[0]).abs().mean() < (warped[2] - warped[0]).abs().mean()


def test_morphology_grows_and_shrinks_by_half_the_square():
    disparity, _ = subject_clip()
    grown, shrunk = morphology(disparity, 5, "dilate"), morphology(disparity, 5, "erode")
    assert subject_area(grown) == T * (20 + 4) * (24 + 4)
    assert subject_area(shrunk) == T * (20 - 4) * (24 - 4)
    assert morphology(disparity, 1, "dilate") is disparity
    with pytest.raises(ValueError, match="odd"):
        morphology(disparity, 4, "dilate")
    with pytest.raises(ValueError, match="operation"):
        morphology(disparity, 3, "open")


def test_perlin_bank_and_noise():
    bank = perlin_bank()
    assert bank is perlin_bank()  # computed once per process
    assert bank.shape == (3, 8, 32, 32)
    assert torch.allclose(bank.std(dim=(-2, -1)), torch.ones(3, 8), atol=1e-4)
    shape = (T, 1, 96, 128)
    noise = perlin_noise(shape, gen(0))
    assert noise.shape == shape
    assert 0.3 < noise.std() < 2.0
    assert torch.equal(noise, perlin_noise(shape, gen(0)))
    assert not torch.equal(noise, perlin_noise(shape, gen(1)))
    # Smooth: neighbouring pixels differ much less than the noise varies overall.
    assert noise.diff(dim=-1).abs().mean() < 0.3 * noise.std()


def test_bad_arguments():
    disparity, mask = subject_clip()
    with pytest.raises(ValueError, match="unknown perturbation mode 'V'"):
        perturb_disparity(disparity, "V", gen())
    with pytest.raises(ValueError, match=r"\[T, 1, H, W\]"):
        perturb_disparity(disparity[:, 0], "II", gen())
    with pytest.raises(ValueError, match="subject_mask shape"):
        perturb_disparity(disparity, "III", gen(), mask[:1])
    for p in (-0.1, 1.5):
        with pytest.raises(ValueError, match="p must be in"):
            DisparityPerturbation(p=p)
    with pytest.raises(ValueError, match="noise_amplitude"):
        DisparityPerturbation(noise_amplitude=(0.1, 0.0))
    with pytest.raises(ValueError, match="step_p"):
        DisparityPerturbation(step_p=(1.0, 2.0, 0.0))
    with pytest.raises(ValueError, match=r"\[T, 1, H, W\]"):
        DisparityPerturbation()(disparity.expand(2, -1, -1, -1, -1), gen())
