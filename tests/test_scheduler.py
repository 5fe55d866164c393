"""Conformance of `NCSNScheduler`, after the pattern of diffusers' common scheduler tests."""

import math

import pytest
import torch

from ncsn_pipeline import NCSN_PRESETS, GaussianMixtureScore, NCSNScheduler, NCSNSchedulerOutput
from ncsn_pipeline.sampling import langevin_dynamics

SMALL_CONFIG = dict(sigma_max=2.0, sigma_min=0.1, num_noise_levels=4, steps_per_level=3, step_lr=1e-3)


def _scheduler(**overrides) -> NCSNScheduler:
    return NCSNScheduler(**{**SMALL_CONFIG, **overrides})


def _run(scheduler: NCSNScheduler, sample: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A full sampling loop with a fixed linear 'score' s(x) = -x."""
    generator = torch.Generator(device=sample.device).manual_seed(seed)
    scheduler.set_timesteps(device=sample.device)
    for sigma in scheduler.timesteps:
        sample = scheduler.step(-sample, sigma, sample, generator=generator).prev_sample
    return sample


def test_timesteps_repeat_each_level_and_end_with_the_denoising_call():
    scheduler = _scheduler(final_denoise=True)
    levels = scheduler.sigmas
    assert len(scheduler.timesteps) == 4 * 3 + 1
    torch.testing.assert_close(scheduler.timesteps[:-1], levels.repeat_interleave(3).float())
    assert scheduler.timesteps[-1].item() == pytest.approx(0.1)
    assert scheduler.timesteps.dtype == torch.float32
    assert len(_scheduler(final_denoise=False).timesteps) == 12
    assert len(scheduler) == 4
    assert scheduler.init_noise_sigma == 2.0


def test_set_timesteps_changes_levels_and_steps_per_level_is_config():
    scheduler = NCSNScheduler.from_config(_scheduler().config, steps_per_level=2)
    scheduler.set_timesteps(num_inference_steps=7)
    assert len(scheduler.sigmas) == 7 and len(scheduler.timesteps) == 7 * 2 + 1
    assert scheduler.sigmas[0].item() == pytest.approx(2.0) and scheduler.sigmas[-1].item() == pytest.approx(0.1)
    # Training levels stay those of the config.
    assert len(scheduler.noise_levels) == 4


def test_config_save_load_and_from_config_round_trip(tmp_path):
    scheduler = _scheduler(final_denoise=False)
    scheduler.save_config(tmp_path)
    loaded = NCSNScheduler.from_pretrained(tmp_path)
    assert dict(loaded.config) == dict(scheduler.config)
    rebuilt = NCSNScheduler.from_config(scheduler.config)
    assert dict(rebuilt.config) == dict(scheduler.config)
    sample = torch.randn(3, 2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(_run(loaded, sample), _run(scheduler, sample))
    assert torch.equal(_run(rebuilt, sample), _run(scheduler, sample))


def test_step_is_deterministic_given_a_generator():
    sample = torch.randn(4, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(_run(_scheduler(), sample, seed=5), _run(_scheduler(), sample, seed=5))
    assert not torch.equal(_run(_scheduler(), sample, seed=5), _run(_scheduler(), sample, seed=6))


def test_dict_and_tuple_outputs_are_equal():
    sample = torch.randn(2, 3, generator=torch.Generator().manual_seed(1))
    first, second = _scheduler(), _scheduler()
    sigma = first.timesteps[0]
    as_dict = first.step(-sample, sigma, sample, generator=torch.Generator().manual_seed(0))
    as_tuple = second.step(-sample, sigma, sample, generator=torch.Generator().manual_seed(0), return_dict=False)
    assert isinstance(as_dict, NCSNSchedulerOutput) and isinstance(as_tuple, tuple)
    assert torch.equal(as_dict.prev_sample, as_tuple[0])
    assert torch.equal(as_dict.prev_sample_mean, as_tuple[1])


@pytest.mark.parametrize("shape", [(5, 2), (2, 3, 8, 8), (1, 1, 4, 6)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_shape_dtype_and_device_are_preserved(shape, dtype):
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        sample = torch.randn(shape, device=device).to(dtype)
        result = _run(_scheduler(), sample)
        assert result.shape == sample.shape and result.dtype == dtype and result.device == sample.device


def test_step_follows_the_reference_code_convention():
    # x <- x + alpha_i * s + sqrt(2 alpha_i) z with alpha_i = step_lr * sigma_i^2 / sigma_L^2 (not the paper's alpha/2).
    scheduler = _scheduler(final_denoise=True)
    sample = torch.randn(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    score = torch.randn(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    for index, sigma in enumerate(scheduler.timesteps[:-1]):
        level = index // 3
        alpha = 1e-3 * (scheduler.sigmas[level].item() / 0.1) ** 2
        noise = torch.randn(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(index))
        result = scheduler.step(score, sigma, sample, generator=torch.Generator().manual_seed(index))
        torch.testing.assert_close(result.prev_sample, sample + alpha * score + math.sqrt(2 * alpha) * noise)
        torch.testing.assert_close(result.prev_sample_mean, sample + alpha * score)
    # Final step: Tweedie denoising x + sigma_L^2 s, without noise.
    result = scheduler.step(score, scheduler.timesteps[-1], sample, generator=torch.Generator().manual_seed(99))
    torch.testing.assert_close(result.prev_sample, sample + 0.1**2 * score)


def test_langevin_at_one_level_has_the_expected_stationary_variance():
    # For a Gaussian score -x/v the update x' = (1 - a/v) x + sqrt(2a) z has stationary variance
    # v / (1 - a / (2v)); getting the sqrt(2) wrong halves it. 20000 chains: the sample variance has a
    # relative standard error of sqrt(2/20000) = 1%, so a 5% tolerance is 5 standard errors.
    model = GaussianMixtureScore(weights=[1.0], means=[[0.0]], stds=[1.0])  # v = 1 + sigma^2 = 2 at sigma = 1
    start = torch.zeros(20000, 1, dtype=torch.float64)
    samples = langevin_dynamics(
        model, start, sigma=1.0, step_size=0.2, num_steps=300, generator=torch.Generator().manual_seed(0)
    )
    assert samples.var().item() == pytest.approx(2.0 / (1 - 0.2 / (2 * 2.0)), rel=0.05)


def test_add_noise_uses_sigma_per_example():
    scheduler = _scheduler()
    clean = torch.ones(3, 1, 2, 2)
    noise = torch.randn(3, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    sigmas = torch.tensor([0.1, 1.0, 2.0])
    torch.testing.assert_close(scheduler.add_noise(clean, noise, sigmas), clean + sigmas.view(3, 1, 1, 1) * noise)
    torch.testing.assert_close(scheduler.add_noise(clean, noise, 0.5), clean + 0.5 * noise)
    with pytest.raises(ValueError, match=r"of shape \(1,\) or \(3,\) for a batch of 3, got shape \(2,\)"):
        scheduler.add_noise(clean, noise, torch.tensor([0.1, 0.2]))


@pytest.mark.parametrize("name", sorted(NCSN_PRESETS))
def test_presets_build_with_their_settings(name):
    scheduler = NCSNScheduler.from_preset(name)
    for key, value in NCSN_PRESETS[name].items():
        assert scheduler.config[key] == value


def test_reference_settings():
    v1 = NCSNScheduler.from_preset("ncsn-v1")
    assert len(v1.timesteps) == 1000  # 10 levels x 100 steps, no denoising step
    v2 = NCSNScheduler.from_preset("ncsnv2-cifar10")
    assert len(v2.timesteps) == 1161  # 232 x 5 + 1
    defaults = NCSNScheduler().config  # the defaults are NCSNv2 CIFAR-10
    assert {key: defaults[key] for key in NCSN_PRESETS["ncsnv2-cifar10"]} == NCSN_PRESETS["ncsnv2-cifar10"]


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (dict(sigma_min=2.0), r"sigma_min \(2.0\) must be smaller than sigma_max \(2.0\)"),
        (dict(sigma_min=3.0), r"sigma_min \(3.0\) must be smaller than sigma_max \(2.0\)"),
        (dict(sigma_max=float("nan")), "sigma_max must be a positive finite number, got nan"),
        (dict(sigma_max=float("inf")), "sigma_max must be a positive finite number, got inf"),
        (dict(sigma_min=-0.1), "sigma_min must be a positive finite number, got -0.1"),
        (dict(num_noise_levels=0), "num_noise_levels must be a whole number from 2 to 100000, got 0"),
        (dict(num_noise_levels=2.5), "num_noise_levels must be a whole number from 2 to 100000, got 2.5"),
        (dict(steps_per_level=0), "steps_per_level must be a whole number from 1 to 10000, got 0"),
        (dict(step_lr=0.0), "step_lr must be a positive finite number, got 0.0"),
        (dict(step_lr=-1e-5), "step_lr must be a positive finite number, got -1e-05"),
        (dict(step_lr=float("nan")), "step_lr must be a positive finite number, got nan"),
        (dict(final_denoise="yes"), "final_denoise must be True or False, got 'yes'"),
    ],
)
def test_bad_config_is_refused_at_construction(overrides, match):
    with pytest.raises(ValueError, match=match):
        _scheduler(**overrides)


def test_unknown_preset_lists_the_choices():
    with pytest.raises(ValueError, match="Unknown preset 'cifar'.*ncsnv2-cifar10"):
        NCSNScheduler.from_preset("cifar")


def test_bad_runtime_arguments():
    scheduler = _scheduler()
    with pytest.raises(ValueError, match="num_inference_steps must be a whole number from 2 to 100000, got 1"):
        scheduler.set_timesteps(num_inference_steps=1)
    scheduler.set_timesteps()
    sample = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="timestep 123.0 is not one of this scheduler's noise levels"):
        scheduler.step(sample, 123.0, sample)
    with pytest.raises(ValueError, match=r"model_output shape \(2, 3\) != sample shape \(2, 2\)"):
        scheduler.step(torch.zeros(2, 3), scheduler.timesteps[0], sample)
    for sigma in scheduler.timesteps:
        scheduler.step(-sample, sigma, sample)
    with pytest.raises(ValueError, match="step was called after the last of the 13 timesteps"):
        scheduler.step(-sample, scheduler.timesteps[-1], sample)


def test_non_finite_sample_stops_with_the_level_and_advice():
    scheduler = _scheduler()
    sample = torch.zeros(2, 2)
    scores = [torch.zeros(2, 2)] * 3 + [torch.full((2, 2), float("nan"))]  # NaN appears on level 2
    with pytest.raises(FloatingPointError, match=r"noise level 2/4 \(sigma=.*\).*smaller step_lr \(now 0.001"):
        for sigma, score in zip(scheduler.timesteps, scores + [torch.zeros(2, 2)] * 20):
            sample = scheduler.step(score, sigma, sample).prev_sample


def test_too_large_step_lr_diverges_with_a_clear_error():
    # A real divergence: a Gaussian score -x/sigma^2 with steps far beyond 2 * sigma^2.
    scheduler = NCSNScheduler(sigma_max=1.0, sigma_min=0.1, num_noise_levels=3, steps_per_level=200, step_lr=10.0)
    sample = torch.ones(4, 2)
    with pytest.raises(FloatingPointError, match=r"noise level 1/3 \(sigma=1\).*smaller step_lr"):
        for sigma in scheduler.timesteps:
            sample = scheduler.step(-sample / sigma**2, sigma, sample).prev_sample
