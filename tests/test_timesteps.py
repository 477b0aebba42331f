import pytest
import torch
from diffusers import DDIMScheduler

from eve.diffusion.timesteps import ddim_timesteps, evenly_spaced_timesteps, kbin_edges, kbin_timesteps


@pytest.mark.parametrize("k,T", [(1, 1000), (3, 1000), (4, 1000), (7, 100), (3, 10)])
def test_kbin_draws_one_step_per_bin_descending(k, T):
    edges = kbin_edges(k, T)
    assert edges[0][1] == T and edges[-1][0] == 0
    assert all(a[0] == b[1] for a, b in zip(edges, edges[1:])), "bins tile [0, T)"
    for pin in (True, False):
        for seed in range(20):
            ts = kbin_timesteps(k, T, generator=torch.Generator().manual_seed(seed), pin_first=pin)
            assert ts.dtype == torch.long and ts.shape == (k,)
            assert all(lo <= int(t) < hi for t, (lo, hi) in zip(ts, edges))
            assert torch.all(ts[:-1] > ts[1:])
            if pin:
                assert ts[0] == T - 1


def test_kbin_is_reproducible_and_random():
    draw = lambda s: kbin_timesteps(3, 1000, generator=torch.Generator().manual_seed(s), pin_first=False)  # noqa
    assert torch.equal(draw(1), draw(1))
    assert len({tuple(draw(s).tolist()) for s in range(10)}) > 1


def test_kbin_covers_each_bin():
    """Over many draws every step of a bin is reachable: the draw is uniform inside the bin, not a fixed grid."""
    g = torch.Generator().manual_seed(0)
    seen = torch.stack([kbin_timesteps(3, 30, generator=g, pin_first=False) for _ in range(400)])
    for j, (lo, hi) in enumerate(kbin_edges(3, 30)):
        assert set(seen[:, j].tolist()) == set(range(lo, hi))


def test_evenly_spaced_is_fixed_top_of_bins():
    assert evenly_spaced_timesteps(3, 1000).tolist() == [999, 666, 332]
    assert evenly_spaced_timesteps(1, 1000).tolist() == [999]


def test_kbin_rejects_bad_k():
    with pytest.raises(ValueError):
        kbin_timesteps(0, 1000)
    with pytest.raises(ValueError):
        kbin_timesteps(11, 10)


@pytest.mark.parametrize("spacing", ["trailing", "leading", "linspace"])
@pytest.mark.parametrize("n", [1, 3, 20, 50])
def test_ddim_timesteps_match_diffusers(spacing, n):
    ref = DDIMScheduler(timestep_spacing=spacing, steps_offset=1 if spacing == "leading" else 0)
    ref.set_timesteps(n)
    ours = ddim_timesteps(n, 1000, spacing, steps_offset=1 if spacing == "leading" else 0)
    assert ours.tolist() == ref.timesteps.tolist()
