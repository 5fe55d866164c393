"""iPNDM and UniPC (issue 30): order of convergence on an exact Gaussian score, equality with diffusers' UniPC, the
Adams–Bashforth weights, warm-up after a late begin, refusals. The contract itself is checked for them with every
other sampler (``tests/test_scheduler_contract.py``).

A Gaussian N(mu, s^2 I) has the exact score -(x - mu) / (s^2 + sigma^2), and its probability-flow ODE the closed-form
solution x(sigma) = mu + (x(sigma_max) - mu) sqrt((s^2 + sigma^2) / (s^2 + sigma_max^2)): the error of a solve from
sigma_max to sigma_min is known exactly, in float64, with no sampling noise.
"""

import math

import pytest
import torch

from ncsn_pipeline import (
    DPMSolverPlusPlusScheduler,
    GaussianMixtureScore,
    GaussianScore,
    IPNDMScoreScheduler,
    NCSNPipeline,
    UniPCScheduler,
)
from ncsn_pipeline.scheduling_ipndm import FIXED_COEFFICIENTS, adams_bashforth_weights

MEAN, STD = 0.7, 0.5
SIGMA_MAX, SIGMA_MIN = 20.0, 0.05


def _solve_to_sigma_min(scheduler, count):
    """Run ``count`` levels with the exact Gaussian score and return the sample at sigma_min (before the last step,
    whose jump to sigma = 0 is a denoising step, not part of the ODE) and the exact ODE solution there."""
    model = GaussianScore(mean=[MEAN] * 4, covariance=(STD**2 * torch.eye(4)).tolist())
    scheduler.set_timesteps(count)
    start = torch.linspace(-2.0, 2.0, 4, dtype=torch.float64)[None] * SIGMA_MAX
    sample = start.clone()
    for sigma in scheduler.timesteps[:-1]:
        sample = scheduler.step(model(sample, sigma).sample, sigma, sample).prev_sample
    scale = math.sqrt((STD**2 + SIGMA_MIN**2) / (STD**2 + SIGMA_MAX**2))
    return sample, MEAN + (start - MEAN) * scale


def _observed_order(make):
    """log2 of the error ratio when the number of levels doubles (40 -> 80 -> 160), the last ratio."""
    errors = []
    for count in (40, 80, 160):
        sample, exact = _solve_to_sigma_min(make(), count)
        errors.append(float((sample - exact).abs().max()))
    return math.log2(errors[-2] / errors[-1]), errors


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda order: IPNDMScoreScheduler(sigma_max=SIGMA_MAX, sigma_min=SIGMA_MIN, rho=1.0, max_order=order,
                                           coefficients="variable"), None),
        (lambda order: IPNDMScoreScheduler(sigma_max=SIGMA_MAX, sigma_min=SIGMA_MIN, rho=1.0, max_order=order), None),
    ],
    ids=["ipndm-variable", "ipndm-fixed-equal-steps"],
)
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_ipndm_converges_at_its_order_on_an_exact_gaussian(make, expected, order):
    """On equal steps (rho = 1) both coefficient kinds are Adams–Bashforth of order k: the error falls by 2^k when the
    steps halve. Measured slopes are within 0.25 of k (the asymptotic regime at 80 -> 160 levels); a wrong
    coefficient drops the slope to 1 or less."""
    slope, errors = _observed_order(lambda: make(order))
    assert abs(slope - order) < 0.25, (slope, errors)


@pytest.mark.parametrize("order", [2, 3, 4])
def test_variable_step_ipndm_keeps_its_order_on_karras_levels(order):
    """Karras et al.'s levels (rho = 7) are far from equal: the variable coefficients keep order k there."""
    slope, errors = _observed_order(
        lambda: IPNDMScoreScheduler(sigma_max=SIGMA_MAX, sigma_min=SIGMA_MIN, max_order=order, coefficients="variable")
    )
    assert abs(slope - order) < 0.3, (slope, errors)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_unipc_converges_one_order_above_its_predictor(order):
    """UniC raises UniP-p to order p + 1 (Zhao et al. 2023, Theorem 3.1); without it the predictor has order p.
    In lambda = -log sigma the Karras levels are smooth, so the slopes show on them (within 0.35)."""
    corrected, errors = _observed_order(
        lambda: UniPCScheduler(sigma_max=SIGMA_MAX, sigma_min=SIGMA_MIN, solver_order=order, lower_order_final=False)
    )
    assert abs(corrected - (order + 1)) < 0.35, (corrected, errors)
    plain, errors = _observed_order(
        lambda: UniPCScheduler(
            sigma_max=SIGMA_MAX, sigma_min=SIGMA_MIN, solver_order=order, corrector=False, lower_order_final=False
        )
    )
    assert abs(plain - order) < 0.35, (plain, errors)


def test_unipc_without_corrector_at_order_two_is_dpm_solver_plus_plus_2m():
    """UniP-2 with B(h) = e^-h - 1 and rho = 1/2 is DPM-Solver++(2M)'s update (Zhao et al. 2023, section 3.3)."""
    unip = UniPCScheduler(sigma_max=SIGMA_MAX, sigma_min=SIGMA_MIN, solver_order=2, solver_type="bh2", corrector=False,
                          lower_order_final=False)
    dpm = DPMSolverPlusPlusScheduler(sigma_max=SIGMA_MAX, sigma_min=SIGMA_MIN, algorithm="2m")
    a, _ = _solve_to_sigma_min(unip, 12)
    b, _ = _solve_to_sigma_min(dpm, 12)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("solver_type", ["bh1", "bh2"])
@pytest.mark.parametrize("order", [1, 2, 3])
def test_unipc_equals_diffusers_unipc_on_the_same_levels(order, solver_type):
    """diffusers' ``UniPCMultistepScheduler`` (data prediction, ``prediction_type="sample"``) on a variance-preserving
    model: x_vp = x_ve / sqrt(1 + sigma^2) has the same lambda = -log sigma, so given our levels it must produce our
    samples times 1 / sqrt(1 + sigma^2), step by step, to round-off (corrector, warm-up and lower final orders
    included). diffusers' "bh1" returns NaN on the step to sigma = 0 (B(h) = -h is infinite there); ours lands on D,
    so that step is compared for "bh2" only."""
    from diffusers import UniPCMultistepScheduler

    model = GaussianMixtureScore.ncsn_toy()
    ours = UniPCScheduler(sigma_max=20.0, sigma_min=0.01, num_noise_levels=8, solver_order=order,
                          solver_type=solver_type)
    theirs = UniPCMultistepScheduler(
        prediction_type="sample", solver_order=order, solver_type=solver_type, lower_order_final=True,
        final_sigmas_type="zero",
    )
    theirs.set_timesteps(8)
    theirs.sigmas = torch.cat([ours.sigmas, torch.zeros(1, dtype=torch.float64)])
    sample = torch.randn(5, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 20.0
    vp_sample = sample / math.sqrt(1 + 20.0**2)
    for index, (sigma, timestep) in enumerate(zip(ours.timesteps, theirs.timesteps)):
        level = ours.sigmas[index]  # float64 (timesteps are float32)
        sample = ours.step(model(sample, level).sample, sigma, sample).prev_sample
        ve_input = vp_sample * math.sqrt(1 + level**2)
        denoised = ve_input + level**2 * model(ve_input, level).sample
        vp_sample = theirs.step(denoised, timestep, vp_sample).prev_sample
        if index == 7 and solver_type == "bh1":
            assert torch.isnan(vp_sample).all() and torch.isfinite(sample).all()
            break
        next_level = float(theirs.sigmas[index + 1])
        torch.testing.assert_close(sample, vp_sample * math.sqrt(1 + next_level**2), rtol=1e-10, atol=1e-10)


def test_adams_bashforth_weights_are_the_textbook_ones_on_equal_steps():
    for order, fixed in enumerate(FIXED_COEFFICIENTS, start=1):
        nodes = [10.0 - 0.0 + k for k in range(order)]  # start at 10, older nodes above, step -1
        weights = adams_bashforth_weights(nodes, 10.0, 9.0)
        assert weights == pytest.approx(list(fixed), rel=1e-12, abs=1e-12)


def test_adams_bashforth_weights_integrate_polynomials_exactly_on_uneven_nodes():
    nodes, start, end = [1.0, 1.7, 3.1, 6.0], 1.0, 0.3
    weights = adams_bashforth_weights(nodes, start, end)
    for degree in range(4):
        exact = (end ** (degree + 1) - start ** (degree + 1)) / (degree + 1)
        assert (end - start) * sum(w * n**degree for w, n in zip(weights, nodes)) == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize("make", [IPNDMScoreScheduler, UniPCScheduler])
def test_a_run_begun_at_a_later_level_warms_up_from_first_order(make):
    """Begun at level 3 (no history), the first step is Euler's / DDIM's exactly, whatever the history of a full run
    would have been: x' = x + (sigma_4 - sigma_3) d = (sigma_4 / sigma_3) x + (1 - sigma_4 / sigma_3) D."""
    scheduler = make(sigma_max=20.0, sigma_min=0.05, num_noise_levels=8)
    sigmas = scheduler.sigmas.tolist()
    scheduler.set_begin_index(3)
    sample, score = torch.full((2, 3), 1.5, dtype=torch.float64), torch.full((2, 3), -0.2, dtype=torch.float64)
    out = scheduler.step(score, scheduler.timesteps[3], sample).prev_sample
    denoised = sample + sigmas[3] ** 2 * score
    ratio = sigmas[4] / sigmas[3]
    expected = ratio * sample + (1 - ratio) * denoised
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("make", [IPNDMScoreScheduler, UniPCScheduler])
def test_the_new_samplers_recover_the_toy_mixture_in_twenty_calls(make):
    """NCSN's toy 0.2 N((-5,-5), I) + 0.8 N((5,5), I) with sigma_max = 100: the weight of the small mode within 0.025
    (standard error 0.004 at 10,000 samples; the ODE keeps the prior's small mismatch, 0.22 with every ODE solver
    at 40 calls) and the within-mode spread within 6 % of 1 at 20 calls (measured: iPNDM 0.221 / 1.015, UniPC
    0.221 / 0.997). At 10 calls UniPC's first steps in lambda = -log sigma are too long for this toy (spread 1.94,
    1.52 with "bh2"), iPNDM's are not (1.063)."""
    pipe = NCSNPipeline(unet=GaussianMixtureScore.ncsn_toy(), scheduler=make(sigma_max=100.0, num_noise_levels=20))
    pipe.set_progress_bar_config(disable=True)
    points = pipe(batch_size=10_000, generator=torch.Generator().manual_seed(0), output_type="pt").images
    upper = points[points.sum(dim=1) > 0]
    assert abs(1 - len(upper) / len(points) - 0.2) < 0.025
    assert abs(float((upper - 5).std(dim=0).mean()) - 1.0) < 0.06


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: IPNDMScoreScheduler(max_order=5), "max_order"),
        (lambda: IPNDMScoreScheduler(coefficients="adaptive"), "Unknown coefficients 'adaptive'"),
        (lambda: UniPCScheduler(solver_order=0), "solver_order"),
        (lambda: UniPCScheduler(solver_type="bh3"), "Unknown solver_type 'bh3'"),
        (lambda: UniPCScheduler(corrector="yes"), "corrector"),
    ],
)
def test_bad_settings_are_refused(build, message):
    with pytest.raises(ValueError, match=message):
        build()
