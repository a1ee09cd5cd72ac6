import pytest
import torch

from slimdiff.diffusion.sampler import ddim_sample, ddim_timesteps
from slimdiff.diffusion.schedule import Diffusion, cosine_alphas_cumprod


def test_cosine_schedule_matches_monai_1_5_reference():
    abar = cosine_alphas_cumprod(1000)
    expected = {0: 0.9999587, 1: 0.9999126, 250: 0.84589, 499: 0.49384, 750: 0.14318, 798: 0.09496, 897: 0.02506}
    for t, v in expected.items():
        assert abar[t].item() == pytest.approx(v, rel=2e-4), t
    assert abar[990].item() == pytest.approx(1.97e-4, rel=0.02)
    assert abar[0] < 1.0 and (abar[1:] < abar[:-1]).all()


def test_timestep_spacings():
    lead = ddim_timesteps(300, 1000, "leading")
    assert lead[:3] == [897, 894, 891] and lead[-1] == 0 and len(lead) == 300
    assert ddim_timesteps(400, 1000, "leading")[0] == 798
    assert ddim_timesteps(500, 1000, "leading")[0] == 998
    trail = ddim_timesteps(300, 1000, "trailing")
    assert trail[0] == 999 and len(trail) == 300 and trail == sorted(trail, reverse=True)
    for steps in range(1, 1001):  # float-step grids used to gain a step ending at t = -1 (e.g. 61 steps)
        trail = ddim_timesteps(steps, 1000, "trailing")
        assert len(trail) == steps and trail[0] == 999 and trail[-1] >= 0, steps
        assert all(a > b for a, b in zip(trail, trail[1:], strict=False)), steps
    with pytest.raises(ValueError):
        ddim_timesteps(0)


@pytest.mark.parametrize("prediction", ["epsilon", "v", "x0"])
def test_parameterisations_invert(prediction):
    d = Diffusion(1000, prediction)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 2, 8, 8, generator=g) * 2 - 1
    eps = torch.randn(4, 2, 8, 8, generator=g)
    t = torch.tensor([0, 10, 500, 990])
    x_t = d.q_sample(x0, t, eps)
    out = d.target(x0, t, eps)
    assert torch.allclose(d.x0_from_output(out, x_t, t), x0, atol=2e-3 if prediction == "epsilon" else 1e-5)
    assert torch.allclose(d.eps_from_x0(x0, x_t, t), eps, atol=1e-3)


def perfect_net(diffusion, x0, calls=None):
    """A network that knows the answer: returns the target implied by x_t and the true x0."""

    def net(x_t, t, tokens, x0_sc):
        if calls is not None:
            calls.append(None if x0_sc is None else x0_sc.clone())
        eps = diffusion.eps_from_x0(x0, x_t, t)
        return diffusion.target(x0, t, eps)

    return net


@pytest.mark.parametrize("prediction", ["epsilon", "v", "x0"])
@pytest.mark.parametrize("eta", [0.0, 0.2])
def test_ddim_with_a_perfect_predictor_returns_x0(prediction, eta):
    d = Diffusion(1000, prediction)
    g = torch.Generator().manual_seed(1)
    x0 = (torch.rand(3, 2, 16, 16, generator=g) * 2 - 1).double()
    x_T = torch.randn(3, 2, 16, 16, generator=g).double()
    tokens = torch.zeros(3, dtype=torch.long)
    out = ddim_sample(perfect_net(d, x0), d, x_T, tokens, steps=20, eta=eta, spacing="leading")
    assert torch.allclose(out, x0, atol=1e-4)


def test_ddim_eta0_stays_on_the_deterministic_trajectory():
    """With eta = 0 and a perfect predictor, every step lands on sqrt(abar) x0 + sqrt(1 - abar) eps_T."""
    d = Diffusion(1000, "x0")
    g = torch.Generator().manual_seed(2)
    x0 = (torch.rand(2, 2, 8, 8, generator=g) * 2 - 1).double()
    eps = torch.randn(2, 2, 8, 8, generator=g).double()
    grid = ddim_timesteps(10, 1000, "trailing")
    x_T = d.q_sample(x0, torch.full((2,), grid[0]), eps)
    seen = []

    def net(x_t, t, tokens, x0_sc):
        seen.append((int(t[0]), x_t.clone()))
        return x0

    ddim_sample(net, d, x_T, torch.zeros(2, dtype=torch.long), steps=10, spacing="trailing")
    for t, x_t in seen:
        assert torch.allclose(x_t, d.q_sample(x0, torch.full((2,), t), eps), atol=1e-6), t


def test_self_conditioning_feeds_back_the_clamped_estimate():
    d = Diffusion(1000, "x0")
    target = torch.full((1, 2, 4, 4), 3.0)  # outside [-1, 1]: the fed-back estimate must be clamped
    calls = []

    def net(x_t, t, tokens, x0_sc):
        calls.append(x0_sc.clone())
        return target

    ddim_sample(net, d, torch.randn(1, 2, 4, 4), torch.zeros(1, dtype=torch.long), steps=4, self_condition=True)
    assert torch.equal(calls[0], torch.zeros(1, 2, 4, 4))
    assert all(torch.equal(c, torch.ones(1, 2, 4, 4)) for c in calls[1:])


def test_eta_noise_comes_from_the_noise_function():
    d = Diffusion(1000, "x0")
    x0 = torch.zeros(1, 2, 4, 4)
    used = []

    def noise(step, shape):
        used.append(step)
        return torch.ones(shape)

    ddim_sample(
        lambda x, t, k, s: x0,
        d,
        torch.randn(1, 2, 4, 4),
        torch.zeros(1, dtype=torch.long),
        steps=5,
        eta=0.5,
        noise=noise,
    )
    assert used == [0, 1, 2, 3]  # no noise after the last step


def test_classifier_free_guidance_combines_passes():
    from slimdiff.diffusion.sampler import classifier_free_guidance

    def net(x_t, t, tokens, x0_sc):
        return tokens.float().view(-1, 1, 1, 1).expand_as(x_t)  # output = token value

    guided = classifier_free_guidance(net, null_token=10, scale=3.0)
    out = guided(torch.zeros(2, 2, 2, 2), torch.tensor([5, 5]), torch.tensor([2, 4]))
    # uncond token = token + 10 (null, z-bin kept), cond = token: (token + 10) + 3 * (token - (token + 10))
    assert torch.allclose(out[:, 0, 0, 0], torch.tensor([-18.0, -16.0]))
    assert classifier_free_guidance(net, 10, 1.0) is net
