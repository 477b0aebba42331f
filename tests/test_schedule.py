import pytest
import torch
from diffusers import DDIMScheduler

from eve.diffusion.schedule import NoiseSchedule

CONFIGS = [
    dict(beta_schedule="scaled_linear", prediction_type="epsilon", zero_terminal_snr=False),
    dict(beta_schedule="scaled_linear", prediction_type="v_prediction", zero_terminal_snr=True),
    dict(beta_schedule="linear", prediction_type="sample", zero_terminal_snr=False),
    dict(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction", zero_terminal_snr=False),
]


@pytest.mark.parametrize("c", CONFIGS)
def test_alphas_cumprod_match_diffusers(c):
    ours = NoiseSchedule.from_config(beta_start=0.00085, beta_end=0.012, **c)
    ref = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule=c["beta_schedule"],
        prediction_type=c["prediction_type"],
        rescale_betas_zero_snr=c["zero_terminal_snr"],
    )
    torch.testing.assert_close(ours.alphas_cumprod, ref.alphas_cumprod.float(), atol=1e-6, rtol=1e-5)


def test_zero_terminal_snr_endpoints():
    plain = NoiseSchedule.from_config(prediction_type="v_prediction")
    z = NoiseSchedule.from_config(prediction_type="v_prediction", zero_terminal_snr=True)
    assert z.alphas_cumprod[-1] == 0 and plain.alphas_cumprod[-1] > 0
    torch.testing.assert_close(z.alphas_cumprod[0], plain.alphas_cumprod[0])
    assert torch.all(z.alphas_cumprod[1:] < z.alphas_cumprod[:-1])


def test_epsilon_with_zero_terminal_snr_is_rejected():
    with pytest.raises(ValueError, match="zero-terminal-SNR"):
        NoiseSchedule.from_config(prediction_type="epsilon", zero_terminal_snr=True)


@pytest.mark.parametrize("c", CONFIGS)
def test_parameterisation_round_trip(c):
    s = NoiseSchedule.from_config(**c)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(5, 2, 3, 4, 4, generator=g), torch.randn(5, 2, 3, 4, 4, generator=g)
    t = torch.tensor([0, 10, 500, 900, 999])
    xt = s.add_noise(x0, eps, t)
    out = s.output_from(x0, eps, t)
    x0_back = s.x0_from_output(xt, out, t)
    # t=999 under zero-terminal SNR carries no signal: only check where alpha_t > 0
    keep = s.alpha[t] > 1e-3
    torch.testing.assert_close(x0_back[keep], x0[keep], atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(s.eps_from_x0(xt, x0, t), eps, atol=2e-4, rtol=1e-4)


def test_unknown_prediction_type():
    with pytest.raises(ValueError, match="prediction_type"):
        NoiseSchedule(torch.linspace(0.99, 0.01, 10), "flow")
