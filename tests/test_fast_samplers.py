"""The few-call samplers (DPM-Solver++ 2M / 2M-SDE / 3M-SDE, EDM's stochastic sampler) on exact scores.

NCSN's 2-D toy, 0.2 N((-5,-5), I) + 0.8 N((5,5), I), with sigma_max = 100 (far above the modes' distance from
the origin, so that starting from N(0, sigma_max^2 I) is nearly exact), 10,000 samples per run.

Tolerances: the weight of a mode estimated from n = 10,000 samples has a standard deviation of
sqrt(0.16 / n) = 0.004; the samplers' own bias at their default budgets was measured at <= 0.017 (the
deterministic 2M, which cannot undo the small remaining prior mismatch), so a weight error above 0.025 is a
defect. The within-mode spread (true 1.0) is estimated to ~1 %; at the default budgets the samplers' measured
excess is <= 9 % (EDM's churn at few levels), <= 2.5 % with 50 levels, so 12 % and 4 % bound them.
"""

import math

import pytest
import torch

from ncsn_pipeline import (
    DPMSolverPlusPlusScheduler,
    EDMStochasticScheduler,
    GaussianMixtureScore,
    NCSNPipeline,
    ProbabilityFlowHeunScheduler,
)

TOY = GaussianMixtureScore.ncsn_toy()
SAMPLES = 10_000


def _sample(scheduler, seed=0, batch=SAMPLES):
    pipe = NCSNPipeline(unet=TOY, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe(batch_size=batch, generator=torch.Generator().manual_seed(seed), output_type="pt").images


def _weights_and_spread(points):
    upper = points[points.sum(dim=1) > 0]
    return TOY.mode_weights(points), float((upper - 5).std(dim=0).mean())


@pytest.mark.parametrize("algorithm", ["2m", "2m-sde", "3m-sde"])
def test_dpm_solver_plus_plus_recovers_the_mixture_at_its_defaults(algorithm):
    scheduler = DPMSolverPlusPlusScheduler(sigma_max=100.0, algorithm=algorithm)
    assert scheduler.num_model_calls == 35
    weights, spread = _weights_and_spread(_sample(scheduler))
    assert abs(weights[0] - 0.2) < 0.025, weights
    assert abs(spread - 1.0) < 0.05, spread


def test_edm_recovers_the_mixture_at_its_defaults_and_converges():
    scheduler = EDMStochasticScheduler(sigma_max=100.0)
    assert scheduler.num_model_calls == 35
    weights, spread = _weights_and_spread(_sample(scheduler))
    assert abs(weights[0] - 0.2) < 0.025 and abs(spread - 1.0) < 0.12, (weights, spread)
    weights, spread = _weights_and_spread(_sample(EDMStochasticScheduler(sigma_max=100.0, num_noise_levels=50)))
    assert abs(weights[0] - 0.2) < 0.025 and abs(spread - 1.0) < 0.04, (weights, spread)


def test_the_sde_variant_without_noise_is_the_ode_solver():
    """eta = 0 turns 2M-SDE's update into Algorithm 2's exactly (same algebra, no noise)."""
    ode = _sample(DPMSolverPlusPlusScheduler(sigma_max=100.0, algorithm="2m", num_noise_levels=12), batch=64)
    sde = _sample(
        DPMSolverPlusPlusScheduler(sigma_max=100.0, algorithm="2m-sde", eta=0.0, num_noise_levels=12), batch=64
    )
    torch.testing.assert_close(ode, sde, rtol=1e-5, atol=1e-5)


def test_edm_without_churn_is_heun_on_the_probability_flow_ode():
    heun = _sample(ProbabilityFlowHeunScheduler(sigma_max=100.0, num_noise_levels=12), batch=64)
    edm = _sample(EDMStochasticScheduler(sigma_max=100.0, num_noise_levels=12, s_churn=0.0), batch=64)
    torch.testing.assert_close(heun, edm, rtol=1e-5, atol=1e-5)


def test_noise_comes_from_the_generator():
    for scheduler in (DPMSolverPlusPlusScheduler(sigma_max=100.0), EDMStochasticScheduler(sigma_max=100.0)):
        first, again, other = (_sample(scheduler, seed, batch=16) for seed in (3, 3, 4))
        assert torch.equal(first, again) and not torch.equal(first, other)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: DPMSolverPlusPlusScheduler(algorithm="4m"), "Unknown algorithm '4m'; choose one of"),
        (lambda: DPMSolverPlusPlusScheduler(eta=1.5), "eta must be a finite number from 0 to 1, got 1.5"),
        (lambda: EDMStochasticScheduler(s_churn=-1.0), "s_churn must be a finite number from 0"),
        (lambda: EDMStochasticScheduler(s_tmin=2.0, s_tmax=1.0), "s_tmax must be a finite number from 2"),
    ],
)
def test_bad_settings_are_refused(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize("algorithm", ["2m", "2m-sde", "3m-sde"])
def test_a_multistep_run_begun_mid_schedule_warms_up_with_first_then_second_order(algorithm):
    """A run begun at level 2 (no earlier predictions) takes a first-order step there, then a second-order one, as
    diffusers' multistep solvers do (``lower_order_nums``): the same steps as a run whose history was empty."""
    scheduler = DPMSolverPlusPlusScheduler(sigma_max=100.0, num_noise_levels=6, algorithm=algorithm, eta=0.0)
    sigmas = scheduler.sigmas.tolist()
    sample, score = torch.full((2, 2), 3.0, dtype=torch.float64), torch.full((2, 2), -0.01, dtype=torch.float64)
    first = scheduler.step(score, float(scheduler.timesteps[2]), sample).prev_sample  # begins at level 2
    denoised = sample + sigmas[2] ** 2 * score
    # 1. First order (DDIM in sigma form): x' = (sigma_3 / sigma_2) x + (1 - sigma_3 / sigma_2) D.
    ratio = sigmas[3] / sigmas[2]
    assert torch.allclose(first, ratio * sample + (1 - ratio) * denoised, rtol=1e-12)
    # 2. Second order with the prediction of the first step (eta = 0: every variant is Algorithm 2's ODE step).
    second = scheduler.step(score, float(scheduler.timesteps[3]), first).prev_sample
    denoised_next = first + sigmas[3] ** 2 * score
    h, h_before = math.log(sigmas[3] / sigmas[4]), math.log(sigmas[2] / sigmas[3])
    r = h_before / h
    if algorithm == "2m":
        prediction = (1 + 1 / (2 * r)) * denoised_next - 1 / (2 * r) * denoised
        expected = (sigmas[4] / sigmas[3]) * first - math.expm1(-h) * prediction
        assert torch.allclose(second, expected, rtol=1e-12)
    first_order = (sigmas[4] / sigmas[3]) * first - math.expm1(-h) * denoised_next
    assert not torch.allclose(second, first_order)  # a correction from the first step's prediction was made


def test_edm_churn_is_computed_in_the_levels_float64():
    """Defect guarded: gamma in float32 moved every sigma_hat by ~1e-8 relative, so samples differed from
    k-diffusion's and NVlabs' (float64 there) by ~1e-6; computed as they do, they agree to round-off."""
    scheduler = EDMStochasticScheduler(sigma_max=80.0, sigma_min=0.002, num_noise_levels=18, s_churn=40.0, s_tmin=0.05)
    gamma = min(40.0 / 18, 2**0.5 - 1)
    for sigma, churned in zip(scheduler.sigmas.tolist(), scheduler.churned_sigmas.tolist()):
        expected = sigma * (1 + gamma) if 0.05 <= sigma <= 50.0 else sigma
        assert churned == pytest.approx(expected, rel=1e-15, abs=0.0)


@pytest.mark.parametrize("s_noise", [1.0, 1.5])
def test_edm_first_level_churn_is_scaled_by_s_noise_like_every_other(s_noise):
    """Defect guarded: the first level's churn (folded into the prior) left out S_noise. Karras et al.'s x_hat_0 is
    sigma_0 z + S_noise sqrt(sigma_hat_0**2 - sigma_0**2) z', whose spread is this init_noise_sigma."""
    scheduler = EDMStochasticScheduler(sigma_max=20.0, s_tmax=100.0, s_noise=s_noise)
    sigma, churned = float(scheduler.sigmas[0]), float(scheduler.churned_sigmas[0])
    assert churned > sigma
    expected = (sigma**2 + s_noise**2 * (churned**2 - sigma**2)) ** 0.5
    assert scheduler.init_noise_sigma == pytest.approx(expected, rel=1e-12)


def test_the_probability_flow_sampler_is_the_edm_sampler_without_churn():
    """One implementation, two names: the same class hierarchy and bit-identical samples."""
    assert issubclass(ProbabilityFlowHeunScheduler, EDMStochasticScheduler)
    heun = _sample(ProbabilityFlowHeunScheduler(sigma_max=100.0, num_noise_levels=12), batch=64)
    edm = _sample(EDMStochasticScheduler(sigma_max=100.0, num_noise_levels=12, s_churn=0.0), batch=64)
    assert torch.equal(heun, edm)
