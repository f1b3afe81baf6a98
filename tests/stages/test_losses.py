import pytest
import torch

from any2bokeh.stages import gradient_texture_loss, image_gradients


def test_image_gradients_are_forward_differences():
    frames = torch.tensor([[1.0, 2.0, 4.0], [1.0, 3.0, 9.0]])
    dx, dy = image_gradients(frames)
    assert torch.equal(dx, torch.tensor([[1.0, 2.0], [2.0, 6.0]]))
    assert torch.equal(dy, torch.tensor([[0.0, 1.0, 5.0]]))


def test_texture_loss_matches_eq5_by_hand():
    prediction = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    # target dx = [1, 1] (mean of squares 1); dy = [2, 2] (mean of squares 4); prediction gradients are 0
    assert gradient_texture_loss(prediction, target).item() == pytest.approx(5.0)


def test_texture_loss_ignores_constant_offsets_and_sees_blur():
    target = torch.rand(2, 3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert gradient_texture_loss(target + 0.3, target).item() == pytest.approx(0.0, abs=1e-10)
    blurred = torch.nn.functional.avg_pool2d(target.flatten(0, 1), 3, 1, 1).unflatten(0, (2, 3))
    assert gradient_texture_loss(blurred, target).item() > 0.01


def test_texture_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="equal shapes"):
        gradient_texture_loss(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))


def test_texture_loss_matches_finite_differences_by_loops():
    generator = torch.Generator().manual_seed(1)
    prediction = torch.rand(2, 3, 5, 7, generator=generator)
    target = torch.rand(2, 3, 5, 7, generator=generator)
    squares_x, squares_y = [], []
    for n in range(2):
        for c in range(3):
            for y in range(5):
                for x in range(7):
                    if x + 1 < 7:
                        gx = (prediction[n, c, y, x + 1] - prediction[n, c, y, x]) - (
                            target[n, c, y, x + 1] - target[n, c, y, x]
                        )
                        squares_x.append(float(gx) ** 2)
                    if y + 1 < 5:
                        gy = (prediction[n, c, y + 1, x] - prediction[n, c, y, x]) - (
                            target[n, c, y + 1, x] - target[n, c, y, x]
                        )
                        squares_y.append(float(gy) ** 2)
    expected = sum(squares_x) / len(squares_x) + sum(squares_y) / len(squares_y)
    assert gradient_texture_loss(prediction, target).item() == pytest.approx(expected, rel=1e-5)
