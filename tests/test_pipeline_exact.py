"""Annealed Langevin dynamics through `NCSNPipeline`, checked against exact scores.

With `GaussianMixtureScore` the score is exact, so any error in the sampler (step size, noise
scale, annealing order, denoising step) shows up as wrong mode weights or wrong spread. Plain
Langevin dynamics at one small noise level, from the same starting points with the same number of
score evaluations, must fail to recover the weights (NCSN, Song & Ermon 2019, section 3.2).
"""

import pytest
import torch

from ncsn_pipeline import GaussianMixtureScore, NCSNPipeline, NCSNScheduler
from ncsn_pipeline.pretrained import load_pretrained
from ncsn_pipeline.pretrained.builtin import GLYPH_STD, GLYPH_WEIGHTS
from ncsn_pipeline.sampling import langevin_dynamics

NUM_SAMPLES = 4000


def _annealed_and_plain(pipe: NCSNPipeline, seed: int = 0):
    """ALD samples from the pipeline, and plain Langevin at sigma_min from the same start and budget."""
    pipe.set_progress_bar_config(disable=True)
    annealed = pipe(batch_size=NUM_SAMPLES, generator=torch.Generator().manual_seed(seed), output_type="pt").images
    scheduler = pipe.scheduler
    generator = torch.Generator().manual_seed(seed)
    start = torch.randn((NUM_SAMPLES, *pipe.sample_shape), generator=generator, dtype=pipe.unet.dtype)
    start = start * scheduler.init_noise_sigma
    plain = langevin_dynamics(
        pipe.unet,
        start,
        sigma=float(scheduler.sigmas[-1]),
        step_size=float(scheduler.step_sizes[-1]),
        num_steps=len(scheduler.timesteps),
        generator=generator,
    )
    return annealed, plain


def _within_mode_variance(samples: torch.Tensor, model: GaussianMixtureScore) -> float:
    """Mean squared distance to the nearest mode's mean, per dimension."""
    flat = samples.reshape(samples.shape[0], -1).double()
    nearest = torch.cdist(flat, model.mode_means).argmin(dim=1)
    return ((flat - model.mode_means[nearest]) ** 2).mean().item()


@pytest.mark.parametrize("final_denoise", [False, True])
def test_ncsn_toy_recovers_the_mode_weights_and_spread(final_denoise):
    model = GaussianMixtureScore.ncsn_toy()  # 0.2 N((-5,-5), I) + 0.8 N((5,5), I)
    scheduler = NCSNScheduler.from_preset("ncsn-toy", final_denoise=final_denoise)  # sigma 20 -> 1, T=100, eps=0.1
    annealed, plain = _annealed_and_plain(NCSNPipeline(model, scheduler))

    # Weight of the (5, 5) mode. Binomial standard error with 4000 samples: sqrt(0.8 * 0.2 / 4000) = 0.0063.
    # ALD with a finite number of steps has a small bias of its own (measured -0.011 with 20000 samples),
    # so 0.035 = bias + 4 standard errors.
    assert model.mode_weights(annealed)[1] == pytest.approx(0.8, abs=0.035)
    # Plain Langevin at sigma = 1 cannot cross between the modes: each chain stays in the basin it starts in,
    # and the symmetric start splits them about 50/50 whatever the weights are.
    assert abs(model.mode_weights(plain)[1] - 0.8) > 0.2

    # Spread: the last level samples N(mu, v I) with v = s^2 + sigma_L^2 = 2, and a Langevin chain with step
    # a = 0.1 on a Gaussian has stationary variance v / (1 - a / (2v)). The denoising step x + sigma^2 s
    # shrinks deviations by s^2 / (s^2 + sigma^2) = 1/2, so their variance by 1/4. The pooled estimate has a
    # relative standard error of sqrt(2 / 8000) = 1.6%; 7% allows 4 of them plus the finite-T bias.
    variance = 2.0 / (1 - 0.1 / (2 * 2.0))
    expected = variance / 4 if final_denoise else variance
    assert _within_mode_variance(annealed, model) == pytest.approx(expected, rel=0.07)
    # The means are right too: within 5 standard errors of the per-mode mean.
    for sign, weight in ((-1, 0.2), (1, 0.8)):
        in_mode = annealed[(annealed.sum(dim=1) > 0) == (sign > 0)]
        standard_error = (expected / (weight * NUM_SAMPLES)) ** 0.5
        torch.testing.assert_close(
            in_mode.mean(dim=0), torch.full((2,), 5.0 * sign, dtype=in_mode.dtype), atol=5 * standard_error, rtol=0
        )


def test_image_shaped_mixture_recovers_five_unequal_weights():
    pipe = load_pretrained("glyph-mixture")  # 5 glyphs (1x8x8), weights 0.35/0.25/0.2/0.12/0.08, s = 0.1
    raw = NCSNPipeline(pipe.unet, pipe.scheduler)  # no data_range: raw, unclipped samples for exact statistics
    annealed, plain = _annealed_and_plain(raw)
    weights = torch.tensor(GLYPH_WEIGHTS, dtype=torch.float64)

    # Total variation between recovered and true weights. With 4000 samples the multinomial noise alone gives
    # E[TV] = 0.012 (sd ~0.005); 0.04 allows that plus the sampler's own bias (measured TV 0.020).
    annealed_tv = 0.5 * (torch.tensor(pipe.unet.mode_weights(annealed)) - weights).abs().sum().item()
    plain_tv = 0.5 * (torch.tensor(pipe.unet.mode_weights(plain)) - weights).abs().sum().item()
    assert annealed_tv < 0.04
    assert plain_tv > 0.15  # measured 0.29: chains stay in the basin of their starting point

    # Spread after the final denoising step: s^4 / (s^2 + sigma_L^2) per pixel (see the toy test). 256000
    # squared deviations make the sampling error negligible (0.3%); 10% covers the measured ~5% excess of
    # ALD with T = 20 steps per level, which does not fully equilibrate at each level.
    sigma_min = pipe.scheduler.config.sigma_min
    expected = GLYPH_STD**4 / (GLYPH_STD**2 + sigma_min**2)
    assert _within_mode_variance(annealed, pipe.unet) == pytest.approx(expected, rel=0.10)
