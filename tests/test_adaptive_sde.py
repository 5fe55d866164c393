"""The adaptive-step SDE solver (Gotta Go Fast): exact-score correctness, its error control and its call budget.

NCSN's 2-D toy with sigma_max = 100 and the 64-D five-mode mixture of ``benchmarks/sampler_quality.py``, 10,000
samples per run. Tolerances: a mode weight from n = 10,000 samples has a standard deviation <= 0.005, and the
solver's measured bias at its defaults is <= 0.004 (weights) and -2.5 % (within-mode spread: an SDE solver with
finite steps removes slightly too much noise), so 0.02 and 5 % flag a defect (a wrong drift or noise scale moves
the spread by tens of percent).
"""

import logging

import pytest
import torch
from diffusers.utils import logging as diffusers_logging

from ncsn_pipeline import AdaptiveSDEScheduler, GaussianMixtureScore, NCSNPipeline, NCSNv1ScoreModel

TOY = GaussianMixtureScore.ncsn_toy()


def _sample(scheduler, model=TOY, seed=0, batch=10_000):
    pipe = NCSNPipeline(unet=model, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe(batch_size=batch, generator=torch.Generator().manual_seed(seed), output_type="pt").images


def test_it_recovers_the_toy_mixture_at_its_defaults():
    scheduler = AdaptiveSDEScheduler(sigma_max=100.0)
    points = _sample(scheduler)
    weights = TOY.mode_weights(points)
    upper = points[points.sum(dim=1) > 0]
    assert abs(weights[0] - 0.2) < 0.02, weights
    assert abs(float((upper - 5).std(dim=0).mean()) - 1.0) < 0.05
    # Each accepted step costs two calls, each rejected one a single call (the start's score is reused).
    assert scheduler.num_model_calls == 2 * scheduler.accepted_steps + scheduler.rejected_steps + 1
    assert 20 < scheduler.num_model_calls < scheduler.max_model_calls


def test_it_recovers_a_64_dimensional_mixture():
    generator = torch.Generator().manual_seed(0)
    means = (torch.rand(5, 1, 8, 8, generator=generator) * 2 - 1) * 1.5
    weights, stds = [0.35, 0.25, 0.2, 0.12, 0.08], [0.3, 0.4, 0.5, 0.6, 0.7]
    model = GaussianMixtureScore(weights=weights, means=means.tolist(), stds=stds)
    samples = _sample(AdaptiveSDEScheduler(sigma_max=30.0), model=model).reshape(10_000, -1).double()
    nearest = torch.cdist(samples, model.mode_means).argmin(dim=1)
    found = torch.bincount(nearest, minlength=5).double() / len(samples)
    assert (found - torch.tensor(weights, dtype=torch.float64)).abs().max() < 0.02, found
    for mode, std in enumerate(stds):
        spread = float((samples[nearest == mode] - model.mode_means[mode]).std(dim=0).mean())
        assert abs(spread / std - 1) < 0.05, (mode, spread / std)


def test_a_tighter_tolerance_takes_more_calls_and_rejects_fewer_steps():
    calls = {}
    for rel_tol in (0.2, 0.05, 0.02):
        scheduler = AdaptiveSDEScheduler(sigma_max=100.0, rel_tol=rel_tol)
        _sample(scheduler, batch=256)
        calls[rel_tol] = scheduler.num_model_calls
    assert calls[0.2] < calls[0.05] < calls[0.02], calls


def test_the_run_never_exceeds_max_model_calls_and_says_so(caplog):
    """Defect guarded: a strict tolerance that loops (or silently overruns the demo's budget)."""
    scheduler = AdaptiveSDEScheduler(sigma_max=100.0, rel_tol=1e-4, abs_tol=1e-4, max_model_calls=30)
    diffusers_logging.enable_propagation()
    try:
        with caplog.at_level(logging.WARNING):
            points = _sample(scheduler, batch=64)
    finally:
        diffusers_logging.disable_propagation()
    assert scheduler.num_model_calls <= 30 and scheduler.timesteps[-1] == pytest.approx(0.01)
    assert torch.isfinite(points).all()
    assert any("reached its budget of max_model_calls=30" in record.getMessage() for record in caplog.records)


def test_same_seed_same_samples_and_the_noise_comes_from_the_generator():
    first, again, other = (_sample(AdaptiveSDEScheduler(sigma_max=100.0), seed=seed, batch=32) for seed in (3, 3, 4))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_a_model_that_knows_only_its_training_levels_is_refused_before_sampling():
    model = NCSNv1ScoreModel(in_channels=1, sample_size=8, ngf=8, num_noise_levels=4, sigma_max=1.0, sigma_min=0.1)
    pipe = NCSNPipeline(unet=model, scheduler=AdaptiveSDEScheduler(sigma_max=1.0, sigma_min=0.1), data_range=(0, 1))
    with pytest.raises(ValueError, match="knows only its 4 training noise levels, but AdaptiveSDEScheduler decides"):
        pipe(batch_size=1, output_type="np")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"rel_tol": 0.0}, "rel_tol must be a positive finite number, got 0.0"),
        ({"abs_tol": -1.0}, "abs_tol must be a positive finite number, got -1.0"),
        ({"safety": 2.0}, "safety must be a finite number from 0.1 to 1, got 2.0"),
        ({"max_model_calls": 3}, "max_model_calls must be a whole number from 4 to 100000, got 3"),
        ({"max_model_calls": 2, "final_denoise": False}, "max_model_calls must be a whole number from 3 to"),
        ({"final_denoise": "yes"}, "final_denoise must be True or False, got 'yes'"),
    ],
)
def test_bad_settings_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        AdaptiveSDEScheduler(**options)
