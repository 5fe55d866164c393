"""Likelihoods through the probability-flow ODE, against closed forms (exact-score Gaussian models).

For an exact score the flow maps ``p_sigma_min`` onto ``p_sigma_max`` exactly, so the integrated divergence must
equal ``log p_sigma_min(x) - log p_sigma_max(x(sigma_max))``, both known in closed form
(`GaussianMixtureScore.log_prob`); what remains is the solver's error, bounded by its tolerances: with rtol = atol
= 1e-6 on values of a few hundred nats the measured error is below 2e-3 nats, so 1e-2 flags a defect (a sign or a
factor in the divergence moves it by whole nats). The prior term is then the only approximation, and its mean
is the closed-form `gaussian_prior_mismatch`.
"""

import math

import pytest
import torch

from ncsn_pipeline import GaussianMixtureScore, NCSNPipeline, NCSNScheduler, NCSNScoreModel
from ncsn_pipeline.likelihood import (
    bits_per_dim,
    draw_probes,
    gaussian_prior_mismatch,
    log_likelihood,
    score_divergence,
    uniform_dequantize,
)

DIMS = 16
SIGMA_MIN, SIGMA_MAX = 0.05, 50.0
TOLERANCES = dict(rtol=1e-6, atol=1e-6)


def _gaussian():
    mean = torch.linspace(-1.0, 1.0, DIMS).tolist()
    return GaussianMixtureScore(weights=[1.0], means=[mean], stds=[0.7])


def _mixture():
    generator = torch.Generator().manual_seed(0)
    means = torch.randn(2, DIMS, generator=generator)
    return GaussianMixtureScore(weights=[0.3, 0.7], means=means.tolist(), stds=[0.5, 0.8])


def _points(model, count, seed=0):
    """Samples of p_sigma_min (the data the estimate is the density of)."""
    generator = torch.Generator().manual_seed(seed)
    weights = model.mode_log_weights.exp()
    modes = torch.multinomial(weights, count, replacement=True, generator=generator)
    std = (model.mode_variances[modes] + SIGMA_MIN**2).sqrt()[:, None]
    return (model.mode_means[modes] + std * torch.randn(count, DIMS, generator=generator, dtype=torch.float64)).float()


def _score(model):
    return lambda x, sigma: model(x, sigma).sample.to(x.dtype)


@pytest.mark.parametrize("build", [_gaussian, _mixture], ids=["gaussian", "two-component mixture"])
def test_the_integrated_divergence_is_the_change_of_log_density_along_the_flow(build):
    model = build()
    points = _points(model, 32).double()
    result = log_likelihood(_score(model), points, SIGMA_MIN, SIGMA_MAX, divergence="exact", **TOLERANCES)
    expected = model.log_prob(points, SIGMA_MIN) - model.log_prob(result.latent, SIGMA_MAX)
    assert (result.delta_log_prob - expected).abs().max() < 1e-2
    # The estimate is the true log p_sigma_min up to the prior's mismatch at the end of the flow.
    mismatch = result.prior_log_prob - model.log_prob(result.latent, SIGMA_MAX)
    truth = model.log_prob(points, SIGMA_MIN)
    assert (result.log_likelihood - (truth + mismatch)).abs().max() < 1e-2
    assert result.num_model_calls > 10


def test_the_mean_bias_of_a_gaussian_is_the_closed_form_prior_mismatch():
    """Over many points the estimate's mean error is -KL(p_sigma_max || prior) (`gaussian_prior_mismatch`): here
    with a small sigma_max, so that the bias (-0.34 nats) dwarfs the solver's error. Per point the error is
    ``|y|^2 / (2 b) - |y - mu|^2 / (2 a) + const`` for the flow's end ``y ~ N(mu, a I)``, ``b = sigma_max^2``, whose
    standard deviation is about ``|mu| sqrt(a) / b = 0.84`` nats: over 2,048 points the mean's is 0.019, and 0.08
    is four of them."""
    model, sigma_max = _gaussian(), 3.0
    points = _points(model, 2048, seed=1).double()
    result = log_likelihood(_score(model), points, SIGMA_MIN, sigma_max, divergence="exact", **TOLERANCES)
    error = result.log_likelihood - model.log_prob(points, SIGMA_MIN)
    # The flow starts from data perturbed to sigma_min: its p_sigma_max is N(mu, (0.7^2 + sigma_max^2) I).
    expected = gaussian_prior_mismatch(float(model.mode_means[0].norm()), 0.7, DIMS, sigma_max)
    assert expected < -0.3 and abs(float(error.mean()) - expected) < 0.08, (float(error.mean()), expected)


def test_rademacher_hutchinson_is_exact_for_an_isotropic_gaussian():
    """The Jacobian of an isotropic Gaussian's score is c I, and eps^T (c I) eps = c D for every +-1 probe."""
    model = _gaussian()
    points = _points(model, 8).double()
    exact = log_likelihood(_score(model), points, SIGMA_MIN, SIGMA_MAX, divergence="exact", **TOLERANCES)
    estimate = log_likelihood(
        _score(model), points, SIGMA_MIN, SIGMA_MAX, generator=torch.Generator().manual_seed(0), **TOLERANCES
    )
    torch.testing.assert_close(estimate.log_likelihood, exact.log_likelihood, rtol=0, atol=1e-4)


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_agrees_with_the_exact_divergence_on_small_data(probe):
    """On the mixture (a full Jacobian J), the mean over K probes has variance 2 sum_{i != j} J_ij^2 / K
    (Rademacher) or 2 |J|_F^2 / K (Gaussian), computed here from J itself: the estimate must lie within 4 of its
    standard deviations of the exact divergence."""
    model = _mixture()
    points = _points(model, 4).double()
    sigma = torch.full((4,), 2.0, dtype=torch.float64)  # the modes overlap: J has off-diagonal terms
    _, exact = score_divergence(_score(model), points, sigma)
    probes = draw_probes(points.shape, 4000, probe, torch.Generator().manual_seed(0), dtype=torch.float64)
    _, estimate = score_divergence(_score(model), points, sigma, probes)
    for index in range(4):
        jacobian = torch.autograd.functional.jacobian(lambda x: _score(model)(x[None], sigma[:1])[0], points[index])
        symmetric = 0.5 * (jacobian + jacobian.T)
        off_diagonal = (symmetric**2).sum() - (symmetric.diagonal() ** 2).sum()
        variance = 2 * (off_diagonal if probe == "rademacher" else (symmetric**2).sum()) / len(probes)
        assert abs(float(estimate[index] - exact[index])) <= 4 * float(variance.sqrt()) + 1e-9, index


def test_more_probes_agree_with_the_exact_log_likelihood_on_average():
    model = _mixture()
    points = _points(model, 16).double()
    exact = log_likelihood(_score(model), points, SIGMA_MIN, SIGMA_MAX, divergence="exact", **TOLERANCES)
    estimate = log_likelihood(
        _score(model), points, SIGMA_MIN, SIGMA_MAX, num_probes=8, generator=torch.Generator().manual_seed(0)
    )
    difference = estimate.log_likelihood - exact.log_likelihood
    # Unbiased: the mean difference over 16 points is within 4 standard errors of 0.
    assert abs(float(difference.mean())) < 4 * float(difference.std()) / math.sqrt(16) + 1e-3


def test_bits_per_dim_offsets_and_dequantization():
    nats = torch.tensor([-1000.0])
    assert float(bits_per_dim(nats, 100)[0]) == pytest.approx(1000 / (100 * math.log(2)) + math.log2(255))
    assert float(bits_per_dim(nats, 100, data_range=(-1, 1))[0]) == pytest.approx(
        1000 / (100 * math.log(2)) + math.log2(127.5)
    )
    # Bins are centred on the values ncsn-train encodes levels as (k / (K - 1)), here the digits' 17 levels.
    levels = torch.arange(17).repeat(100, 1)
    x = uniform_dequantize(levels, 17, generator=torch.Generator().manual_seed(0))
    assert ((x * 16).round() == levels).all() and ((x * 16 - levels).abs() <= 0.5).all()
    assert (x * 16 - levels).std() == pytest.approx(1 / math.sqrt(12), rel=0.05)  # uniform over the bin
    with pytest.raises(ValueError, match=r"levels must lie in 0 .. 255, got values from 0 to 256"):
        uniform_dequantize(torch.tensor([[0, 256]]))
    with pytest.raises(ValueError, match="levels must hold integers"):
        uniform_dequantize(torch.tensor([[0.5]]))


@pytest.mark.slow  # probability-flow ODE solves on a trained model (~18 s)
def test_the_pipeline_reports_nats_and_bits_per_dim_in_batches():
    model = NCSNScoreModel(in_channels=1, sample_size=8, ngf=8)
    pipe = NCSNPipeline(model, NCSNScheduler(sigma_max=2.0, sigma_min=0.05, num_noise_levels=4), data_range=(0, 1))
    pipe.set_progress_bar_config(disable=True)
    levels = torch.randint(0, 17, (5, 1, 8, 8), generator=torch.Generator().manual_seed(0))  # digits-like
    data = uniform_dequantize(levels, num_levels=17, generator=torch.Generator().manual_seed(1)).float()
    options = dict(num_levels=17, rtol=1e-3, atol=1e-3, generator=torch.Generator().manual_seed(2))
    whole = pipe.log_likelihood(data, batch_size=5, **options)
    split = pipe.log_likelihood(data, batch_size=2, **dict(options, generator=torch.Generator().manual_seed(2)))
    assert whole.log_likelihood.shape == (5,) and torch.isfinite(whole.log_likelihood).all()
    torch.testing.assert_close(whole.bits_per_dim, bits_per_dim(whole.log_likelihood, 64, 17, (0, 1)))
    assert split.num_model_calls > whole.num_model_calls  # three ODE solves instead of one
    with pytest.raises(ValueError, match=r"samples must have shape \(N, 1, 8, 8\) for this pipeline, got \(5, 64\)"):
        pipe.log_likelihood(data.reshape(5, 64))


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(divergence="trace"), "Unknown divergence 'trace'; choose one of"),
        (dict(probe="uniform"), "Unknown probe 'uniform'; choose one of"),
        (dict(num_probes=0), "num_probes must be a whole number from 1 to 1000, got 0"),
        (dict(sigma_min=60.0), r"sigma_min \(60.0\) must be smaller than sigma_max \(50.0\)"),
        (dict(rtol=0.0), "rtol must be a positive finite number, got 0.0"),
    ],
)
def test_bad_settings_are_refused(options, message):
    model = _gaussian()
    arguments = {"sigma_min": SIGMA_MIN, "sigma_max": SIGMA_MAX, **options}
    with pytest.raises(ValueError, match=message):
        log_likelihood(_score(model), _points(model, 2), **arguments)
