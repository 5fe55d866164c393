"""`VEPredictorCorrectorScheduler` (score-SDE PC sampling): exact-score statistics and conformance."""

import pytest
import torch

from ncsn_pipeline import GaussianMixtureScore, NCSNPipeline, NCSNScheduler, VEPredictorCorrectorScheduler


def _pipe(**config) -> NCSNPipeline:
    scheduler = VEPredictorCorrectorScheduler(**{"sigma_max": 20.0, "sigma_min": 0.01, **config})
    pipe = NCSNPipeline(unet=GaussianMixtureScore.ncsn_toy(), scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_pc_sampling_recovers_the_ncsn_toy_with_the_exact_score():
    points = _pipe(num_noise_levels=500, num_corrector_steps=1)(
        batch_size=4000, generator=torch.Generator().manual_seed(0), output_type="pt"
    ).images
    # 4000 samples: binomial standard error 0.0063; 0.03 = the measured discretisation bias at N = 200 (0.016)
    # plus 2 standard errors. Down to sigma_min = 0.01 and without noise after the last step, each mode is the
    # data's N(mu, I): the pooled per-axis variance (~3200 x 2 values, 2.5% standard error) within 10%.
    assert GaussianMixtureScore.ncsn_toy().mode_weights(points)[1] == pytest.approx(0.8, abs=0.03)
    upper = points[points.sum(dim=1) > 0]
    assert upper.var(dim=0).mean().item() == pytest.approx(1.0, rel=0.10)
    torch.testing.assert_close(upper.mean(dim=0), torch.full((2,), 5.0, dtype=upper.dtype), atol=0.1, rtol=0)


def test_timesteps_and_model_calls():
    scheduler = VEPredictorCorrectorScheduler(sigma_max=2.0, sigma_min=0.1, num_noise_levels=5, num_corrector_steps=2)
    assert len(scheduler.timesteps) == 5 * 3
    torch.testing.assert_close(scheduler.timesteps[::3], scheduler.sigmas.float())
    scheduler.set_timesteps(num_inference_steps=7)
    assert len(scheduler.timesteps) == 21 and scheduler.init_noise_sigma == 2.0


def test_predictor_step_follows_reverse_diffusion_and_ends_without_noise():
    scheduler = VEPredictorCorrectorScheduler(sigma_max=2.0, sigma_min=0.5, num_noise_levels=2, num_corrector_steps=0)
    sample = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    score = -sample
    first = scheduler.step(score, scheduler.timesteps[0], sample, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(first.prev_sample, sample + (4.0 - 0.25) * score + (4.0 - 0.25) ** 0.5 * noise)
    last = scheduler.step(score, scheduler.timesteps[1], sample, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(last.prev_sample, sample + 0.25 * score)  # to sigma = 0: the mean, no noise


def test_config_round_trips_and_switching_from_ncsn(tmp_path):
    scheduler = VEPredictorCorrectorScheduler(num_noise_levels=10, snr=0.2)
    scheduler.save_config(tmp_path)
    loaded = VEPredictorCorrectorScheduler.from_pretrained(tmp_path)
    assert {k: v for k, v in loaded.config.items() if not k.startswith("_")} == {
        k: v for k, v in scheduler.config.items() if not k.startswith("_")
    }
    switched = VEPredictorCorrectorScheduler.from_config(NCSNScheduler.from_preset("ncsn-toy").config)
    assert (switched.config.sigma_max, switched.config.sigma_min, switched.config.num_noise_levels) == (20.0, 1.0, 10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_shape_and_determinism(dtype):
    def run(seed):
        scheduler = VEPredictorCorrectorScheduler(sigma_max=2.0, sigma_min=0.1, num_noise_levels=3)
        generator = torch.Generator().manual_seed(seed)
        x = torch.ones(2, 1, 4, 4, dtype=dtype)
        for sigma in scheduler.timesteps:
            x = scheduler.step(-x, sigma, x, generator=generator).prev_sample
        return x

    assert run(0).dtype == dtype and run(0).shape == (2, 1, 4, 4)
    assert torch.equal(run(0), run(0)) and not torch.equal(run(0), run(1))


@pytest.mark.parametrize(
    ("config", "match"),
    [
        (dict(sigma_min=60.0), r"sigma_min \(60.0\) must be smaller than sigma_max \(50.0\)"),
        (dict(num_noise_levels=1), "num_noise_levels must be a whole number from 2 to 100000, got 1"),
        (dict(num_corrector_steps=-1), "num_corrector_steps must be a whole number from 0 to 10000, got -1"),
        (dict(snr=float("nan")), "snr must be a positive finite number, got nan"),
    ],
)
def test_bad_config(config, match):
    with pytest.raises(ValueError, match=match):
        VEPredictorCorrectorScheduler(**config)
