"""NCSN/NCSNv2 noise schedules: geometric levels, step sizes and the data-driven techniques."""

import math

import pytest
import torch

from ncsn_pipeline import NCSN_PRESETS, NCSNScheduler
from ncsn_pipeline.noise_schedules import (
    annealed_step_sizes,
    geometric_noise_levels,
    langevin_variance_ratio,
    max_pairwise_distance,
    ncsnv2_noise_schedule,
    noise_level_overlap,
    num_noise_levels_for,
    ratio_for_overlap,
)

# Released NCSNv2 settings: (preset, data dimension D, sigma_max, T, published L, published step_lr).
PUBLISHED = [
    ("ncsnv2-cifar10", 3 * 32 * 32, 50.0, 5, 232, "6.2e-06"),
    ("ncsnv2-celeba", 3 * 64 * 64, 90.0, 5, 500, "3.3e-06"),
    ("ncsnv2-lsun-bedroom", 3 * 128 * 128, 190.0, 3, 1086, "1.8e-06"),
    ("ncsnv2-ffhq", 3 * 256 * 256, 348.0, 3, 2311, "9e-07"),
]


def _round_like(value: float, published: str) -> str:
    """Format ``value`` with as many significant digits as the published string has."""
    digits = len(published.split("e")[0].replace(".", ""))
    return f"{value:.{digits - 1}e}"


def test_geometric_levels_have_endpoints_and_constant_ratio():
    levels = geometric_noise_levels(50.0, 0.01, 232)
    assert levels.shape == (232,)
    assert levels[0].item() == pytest.approx(50.0, rel=1e-12)
    assert levels[-1].item() == pytest.approx(0.01, rel=1e-12)
    ratios = levels[:-1] / levels[1:]
    torch.testing.assert_close(ratios, torch.full_like(ratios, (5000.0) ** (1 / 231)), rtol=1e-10, atol=0)


def test_single_level_is_sigma_min():
    assert geometric_noise_levels(1.0, 0.5, 1).tolist() == [0.5]


def test_step_sizes_scale_with_sigma_squared():
    levels = geometric_noise_levels(1.0, 0.01, 10)
    steps = annealed_step_sizes(levels, 2e-5)
    assert steps[-1].item() == pytest.approx(2e-5)
    torch.testing.assert_close(steps, 2e-5 * levels**2 / 0.01**2)


def test_max_pairwise_distance_matches_brute_force_across_chunks():
    data = torch.randn(37, 3, 2, 2, generator=torch.Generator().manual_seed(3))
    flat = data.reshape(37, -1).double()
    brute = max((flat[i] - flat[j]).norm().item() for i in range(37) for j in range(37))
    assert max_pairwise_distance(data, chunk_size=5) == pytest.approx(brute, rel=1e-12)


@pytest.mark.parametrize(("preset", "dim", "sigma_max", "steps", "levels", "step_lr"), PUBLISHED)
def test_techniques_reproduce_published_levels_and_step_lr(preset, dim, sigma_max, steps, levels, step_lr):
    schedule = ncsnv2_noise_schedule(data_dim=dim, sigma_max=sigma_max, sigma_min=0.01, steps_per_level=steps)
    assert schedule.num_noise_levels == levels
    assert _round_like(schedule.step_lr, step_lr) == step_lr
    # The presets hold exactly the published numbers.
    assert NCSN_PRESETS[preset]["num_noise_levels"] == levels
    assert NCSN_PRESETS[preset]["step_lr"] == float(step_lr)


def test_papers_nominal_overlap_of_one_half_gives_fewer_levels():
    # Documented difference: the text's "about 0.5" gives 219 levels for CIFAR-10, not the released 232.
    assert num_noise_levels_for(50.0, 0.01, 3072, target_overlap=0.5) == 219


def test_ratio_solves_the_overlap_equation():
    for dim in (64, 3072):
        gamma = ratio_for_overlap(dim, target_overlap=0.5)
        assert gamma > 1
        assert noise_level_overlap(gamma, dim) == pytest.approx(0.5, abs=1e-9)


def test_step_lr_minimises_the_variance_objective():
    gamma = 5000.0 ** (1 / 231)
    best = ncsnv2_noise_schedule(data_dim=3072, sigma_max=50.0, steps_per_level=5).step_lr
    at_best = langevin_variance_ratio(best, gamma, 0.01, 5)
    for factor in (0.8, 1.25):
        assert abs(langevin_variance_ratio(best * factor, gamma, 0.01, 5) - 1) > abs(at_best - 1)


def test_schedule_from_data_uses_the_largest_pairwise_distance():
    data = torch.rand(200, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    schedule = ncsnv2_noise_schedule(data, steps_per_level=5)
    assert schedule.sigma_max == pytest.approx(max_pairwise_distance(data))
    assert schedule.num_noise_levels == num_noise_levels_for(schedule.sigma_max, 0.01, 16)
    scheduler = NCSNScheduler.from_data(data, steps_per_level=5)
    assert scheduler.config.num_noise_levels == schedule.num_noise_levels
    assert scheduler.config.step_lr == pytest.approx(schedule.step_lr)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: geometric_noise_levels(0.01, 1.0, 10), r"sigma_min \(1.0\) must be smaller than sigma_max \(0.01\)"),
        (lambda: geometric_noise_levels(float("nan"), 0.01, 10), "sigma_max must be a positive finite number, got nan"),
        (lambda: geometric_noise_levels(1.0, 0.01, 0), "num_levels must be an integer >= 1, got 0"),
        (lambda: annealed_step_sizes(torch.ones(2), -1.0), "step_lr must be a positive finite number, got -1.0"),
        (lambda: ratio_for_overlap(2), "data_dim=2"),
        (lambda: max_pairwise_distance(torch.ones(1, 3)), r"got \(1, 3\)"),
        (lambda: max_pairwise_distance(torch.tensor([[0.0], [float("inf")]])), "NaN or infinite"),
        (lambda: ncsnv2_noise_schedule(data_dim=3072), "Pass either `data`"),
    ],
)
def test_bad_arguments_raise_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_paper_overlap_formula_value():
    # At gamma = 1 two identical levels overlap by P(|Z| < 3) = 0.9973.
    assert noise_level_overlap(1.0, 3072) == pytest.approx(math.erf(3 / math.sqrt(2)), abs=1e-12)


# ---------------------------------------------------------------------------------------------- the prior rule
def _gaussian_total_variation(mean: float, variance: float, sigma: float) -> float:
    """TV between N(mean, variance + sigma**2) and N(0, sigma**2) in 1-D, by quadrature on a fine grid."""
    from math import pi

    grid = torch.linspace(-60 * sigma - abs(mean), 60 * sigma + abs(mean), 400001, dtype=torch.float64)
    wide = variance + sigma**2
    p = torch.exp(-((grid - mean) ** 2) / (2 * wide)) / (2 * pi * wide) ** 0.5
    q = torch.exp(-(grid**2) / (2 * sigma**2)) / (2 * pi * sigma**2) ** 0.5
    return float(0.5 * torch.trapezoid((p - q).abs(), grid))


@pytest.mark.parametrize(
    "mean, variance, sigma", [(3.0, 1.0, 10.0), (0.0, 4.0, 3.0), (5.0, 0.1, 50.0), (1.0, 1.0, 1.0)]
)
def test_prior_mismatch_bounds_the_total_variation_to_the_prior(mean, variance, sigma):
    """The rule's bound (closed-form KL of the Gaussian fit, Pinsker) is at least the true TV between p_sigma and the
    prior, and within a factor of 2 of it here (a loose bound would waste noise levels)."""
    from ncsn_pipeline.noise_schedules import prior_mismatch

    bound = prior_mismatch(torch.tensor([mean]), torch.tensor([variance]), sigma)
    exact = _gaussian_total_variation(mean, variance, sigma)
    assert exact <= bound <= 2 * exact + 1e-9, (exact, bound)


def test_sigma_max_for_prior_is_the_smallest_level_within_the_tolerance():
    from ncsn_pipeline.noise_schedules import gaussian_fit, prior_mismatch, sigma_max_for_prior

    generator = torch.Generator().manual_seed(0)
    data = torch.randn(3000, 2, generator=generator) + torch.tensor([3.0, 3.0])
    mean, eigenvalues = gaussian_fit(data)
    for tolerance in (0.05, 0.01):
        sigma = sigma_max_for_prior(data, tolerance)
        assert prior_mismatch(mean, eigenvalues, sigma) <= tolerance < prior_mismatch(mean, eigenvalues, 0.99 * sigma)
    # Far from the origin the mean dominates: sigma ~ |mean| / (2 tolerance) = 4.24 / 0.02.
    assert sigma_max_for_prior(data, 0.01) == pytest.approx(float(mean.norm()) / 0.02, rel=0.02)
    # The same spread at the origin needs far less.
    assert sigma_max_for_prior(data - mean, 0.01) < 0.1 * sigma_max_for_prior(data, 0.01)


def test_gaussian_fit_agrees_with_the_covariance_whichever_side_is_smaller():
    from ncsn_pipeline.noise_schedules import gaussian_fit

    generator = torch.Generator().manual_seed(1)
    for shape in ((50, 8), (8, 50)):  # N > D (covariance) and N < D (Gram matrix)
        data = torch.randn(*shape, generator=generator, dtype=torch.float64)
        mean, eigenvalues = gaussian_fit(data)
        expected = torch.linalg.eigvalsh(torch.cov(data.T, correction=0))
        top = min(shape)
        torch.testing.assert_close(mean, data.mean(dim=0))
        torch.testing.assert_close(eigenvalues[-top + 1 :], expected[-top + 1 :], atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("tolerance", [0.0, -0.1, 1.0, float("nan")])
def test_a_bad_prior_tolerance_is_refused_by_name(tolerance):
    from ncsn_pipeline.noise_schedules import sigma_max_for_prior

    with pytest.raises(ValueError, match="tolerance"):
        sigma_max_for_prior(torch.randn(10, 2), tolerance)


def test_from_data_raises_technique_1_to_the_prior_rule_only_where_it_is_larger():
    from ncsn_pipeline import NCSNScheduler
    from ncsn_pipeline.noise_schedules import max_pairwise_distance, sigma_max_for_prior

    generator = torch.Generator().manual_seed(2)
    centred = torch.randn(500, 8, generator=generator)
    far = centred + 20.0
    for data in (centred, far):
        plain = NCSNScheduler.from_data(data).config.sigma_max
        ruled = NCSNScheduler.from_data(data, prior_tolerance=0.01).config.sigma_max
        assert plain == pytest.approx(max_pairwise_distance(data))
        assert ruled == pytest.approx(max(plain, sigma_max_for_prior(data, 0.01)))
    assert NCSNScheduler.from_data(centred, prior_tolerance=0.5).config.sigma_max == pytest.approx(
        max_pairwise_distance(centred)
    )
    assert NCSNScheduler.from_data(far, prior_tolerance=0.01).config.sigma_max > 10 * max_pairwise_distance(far)
