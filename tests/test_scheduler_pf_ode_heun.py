"""`ProbabilityFlowHeunScheduler`: the probability-flow ODE solved with Heun's method, against closed forms."""

import pytest
import torch

from ncsn_pipeline import GaussianMixtureScore, NCSNPipeline, NCSNScheduler, ProbabilityFlowHeunScheduler


def _solve(scheduler, model, start):
    x = start.clone()
    scheduler.set_timesteps()
    for sigma in scheduler.timesteps:
        x = scheduler.step(model(x, sigma).sample, sigma, x).prev_sample
    return x


def test_single_gaussian_follows_the_closed_form_flow():
    # For data N(mu, s^2 I) the ODE dx/dsigma = -sigma s(x, sigma) gives x(sigma) - mu proportional to
    # sqrt(s^2 + sigma^2): from sigma_max to 0 every point contracts towards mu by s / sqrt(s^2 + sigma_max^2).
    model = GaussianMixtureScore(weights=[1.0], means=[[1.0, -2.0]], stds=[0.5])
    scheduler = ProbabilityFlowHeunScheduler(sigma_max=10.0, sigma_min=0.01, num_noise_levels=35)
    start = 10 * torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    mean = torch.tensor([1.0, -2.0], dtype=torch.float64)
    expected = mean + (start - mean) * 0.5 / (0.25 + 100.0) ** 0.5
    # Heun's error with 35 levels was measured at 0.005 on deviations up to ~1.1; 0.02 is 4x that.
    torch.testing.assert_close(_solve(scheduler, model, start), expected, atol=0.02, rtol=0)


def test_ncsn_toy_mode_weights_and_spread_with_the_exact_score():
    scheduler = ProbabilityFlowHeunScheduler(sigma_max=100.0, sigma_min=0.01, num_noise_levels=35)
    pipe = NCSNPipeline(GaussianMixtureScore.ncsn_toy(), scheduler)
    pipe.set_progress_bar_config(disable=True)
    points = pipe(batch_size=4000, generator=torch.Generator().manual_seed(0), output_type="pt").images
    assert len(scheduler.timesteps) == 2 * 35 - 1
    # Binomial standard error 0.0063. The ODE keeps any mismatch between the N(0, 100^2) start and the true
    # p_100 (mean (3, 3)): measured weight 0.784, so 0.035 = that bias + 3 standard errors.
    assert GaussianMixtureScore.ncsn_toy().mode_weights(points)[1] == pytest.approx(0.8, abs=0.035)
    upper = points[points.sum(dim=1) > 0]
    assert upper.var(dim=0).mean().item() == pytest.approx(1.0, rel=0.10)  # the data's unit variance


def test_deterministic_given_the_start_and_interchangeable():
    model = GaussianMixtureScore.ncsn_toy()
    start = 20 * torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    scheduler = ProbabilityFlowHeunScheduler.from_config(NCSNScheduler.from_preset("ncsn-toy").config)
    assert scheduler.config.sigma_max == 20.0 and scheduler.config.sigma_min == 1.0
    assert torch.equal(_solve(scheduler, model, start), _solve(scheduler, model, start))


@pytest.mark.parametrize(
    ("config", "match"),
    [
        (dict(sigma_min=60.0), r"sigma_min \(60.0\) must be smaller than sigma_max \(50.0\)"),
        (dict(num_noise_levels=1), "num_noise_levels must be a whole number from 2 to 100000, got 1"),
        (dict(rho=0.0), "rho must be a positive finite number, got 0.0"),
    ],
)
def test_bad_config(config, match):
    with pytest.raises(ValueError, match=match):
        ProbabilityFlowHeunScheduler(**config)
