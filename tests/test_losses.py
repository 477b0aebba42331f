import pytest
import torch

from eve.diffusion.schedule import NoiseSchedule
from eve.losses import hinge_d_loss, hinge_g_loss, r1_penalty, sds_loss, sds_weight


@pytest.mark.parametrize("weighting", ["sds", "uniform", "add_exponential"])
def test_sds_surrogate_gradient_is_weighted_residual(weighting):
    g = torch.Generator().manual_seed(0)
    s = NoiseSchedule.from_config(prediction_type="v_prediction", zero_terminal_snr=True)
    x0 = torch.randn(2, 3, 4, 5, 5, generator=g, requires_grad=True)
    eps, eps_hat = torch.randn(2, 3, 4, 5, 5, generator=g), torch.randn(2, 3, 4, 5, 5, generator=g)
    t = torch.tensor([100, 800])
    a, sig = s.coefficients(t, x0)
    w = sds_weight(a, sig, weighting)
    loss, signal = sds_loss(x0, eps_hat, eps, w)
    loss.backward()
    expected = w * (eps_hat - eps)
    torch.testing.assert_close(signal, expected)
    torch.testing.assert_close(x0.grad * x0.numel(), expected, atol=1e-5, rtol=1e-5)
    assert not signal.requires_grad


def test_sds_weightings_values():
    a, s = torch.tensor([0.6]), torch.tensor([0.8])
    assert sds_weight(a, s, "sds") == pytest.approx(0.64)
    assert sds_weight(a, s, "uniform") == 1
    assert sds_weight(a, s, "add_exponential") == pytest.approx(1.6)
    with pytest.raises(ValueError):
        sds_weight(a, s, "fantasy")


def test_sds_mask_stops_gradient_on_known_frames():
    x0 = torch.randn(1, 3, 2, 2, 2, requires_grad=True)
    mask = torch.tensor([0.0, 1.0, 1.0]).view(1, 3, 1, 1, 1)
    loss, _ = sds_loss(x0, torch.ones_like(x0), torch.zeros_like(x0), torch.ones(1, 1, 1, 1, 1), mask)
    loss.backward()
    assert torch.all(x0.grad[:, 0] == 0) and torch.all(x0.grad[:, 1:] != 0)


def test_hinge_losses_at_known_logits():
    real, fake = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-2.0, 0.0, 1.0])
    # D: mean(relu(1 - real)) + mean(relu(1 + fake)) = (0 + 0.5 + 2)/3 + (0 + 1 + 2)/3
    assert hinge_d_loss(real, fake).item() == pytest.approx(2.5 / 3 + 3 / 3)
    # G, as printed in the paper: -mean(relu(1 + fake)) = -(0 + 1 + 2)/3
    assert hinge_g_loss(fake, "paper_clipped").item() == pytest.approx(-1.0)
    assert hinge_g_loss(fake, "add_linear").item() == pytest.approx(1.0 / 3)
    with pytest.raises(ValueError):
        hinge_g_loss(fake, "wgan")


def test_paper_generator_form_has_no_gradient_below_minus_one():
    fake = torch.tensor([-3.0, -0.5], requires_grad=True)
    hinge_g_loss(fake, "paper_clipped").backward()
    assert fake.grad.tolist() == [0.0, -0.5]


def test_r1_penalty_of_a_linear_critic():
    x = torch.randn(4, 3, requires_grad=True)
    w = torch.tensor([1.0, 2.0, 2.0])
    assert r1_penalty(x @ w, [x]).item() == pytest.approx(9.0)
