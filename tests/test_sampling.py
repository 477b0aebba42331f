import pytest
import torch
from diffusers import DDIMScheduler

from eve.diffusion import NoiseSchedule, cfg, ddim_step, ddim_timesteps, dual_cfg, sample

SCHEDULES = [("epsilon", False), ("v_prediction", False), ("v_prediction", True), ("sample", False)]


@pytest.mark.parametrize("pred,ztsnr", SCHEDULES)
@pytest.mark.parametrize("steps", [1, 3, 25])
def test_ddim_with_oracle_recovers_x0(pred, ztsnr, steps):
    s = NoiseSchedule.from_config(prediction_type=pred, zero_terminal_snr=ztsnr)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 3, 4, 5, 5, generator=g)
    x = torch.randn(2, 3, 4, 5, 5, generator=g)
    calls = []

    def oracle(xt, t):
        calls.append(int(t[0]))
        return x0

    out = sample(oracle, x, ddim_timesteps(steps, 1000), s)
    torch.testing.assert_close(out, x0)
    assert calls == ddim_timesteps(steps, 1000).tolist()


@pytest.mark.parametrize("pred,ztsnr", SCHEDULES[:3])
def test_ddim_step_matches_diffusers(pred, ztsnr):
    ref = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type=pred,
        rescale_betas_zero_snr=ztsnr,
        timestep_spacing="trailing",
        clip_sample=False,
    )
    ref.set_timesteps(10)
    s = NoiseSchedule.from_config(prediction_type=pred, zero_terminal_snr=ztsnr)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 6, 6, generator=g)
    for i, t in enumerate(ref.timesteps[:-1]):
        out = torch.randn(1, 4, 6, 6, generator=g)
        expected = ref.step(out, t, x, eta=0.0).prev_sample
        t_ = torch.tensor([int(t)])
        ours = ddim_step(s, x, s.x0_from_output(x, out, t_), t_, torch.tensor([int(ref.timesteps[i + 1])]))
        torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)
        x = expected


def test_gradients_flow_through_every_step():
    s = NoiseSchedule.from_config(prediction_type="v_prediction", zero_terminal_snr=True)
    w = torch.nn.Parameter(torch.tensor(0.5))
    out = sample(lambda xt, t: w * xt, torch.ones(1, 2), [999, 600, 300], s)
    out.sum().backward()
    assert w.grad is not None and w.grad != 0


def test_sample_rejects_non_descending():
    s = NoiseSchedule.from_config()
    with pytest.raises(ValueError, match="descending"):
        sample(lambda xt, t: xt, torch.zeros(1, 1), [10, 10], s)


def test_guidance_combinations():
    u, i, f = torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([4.0])
    assert cfg(u, f, 1.0) == f and cfg(u, f, 0.0) == u and cfg(u, f, 2.0) == 7.0
    assert dual_cfg(u, i, f, 1.0, 1.0) == f
    assert dual_cfg(u, i, f, 2.0, 1.5) == 1 + 1.5 * 1 + 2 * 2
