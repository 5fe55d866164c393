"""Classifier-free guidance (`ncsn_pipeline.guidance`): a class-conditional model that also knows the "no class" label,
``guidance_scale = w``, ``s(x | y) + (w - 1) (s(x | y) - s(x))`` from one batched network call.

The exact reference is a labelled 1-D mixture 0.5 N(-1, 1) + 0.5 N(1, 1) (`GaussianMixtureScore` with
``unconditional_class``): its guided score has a closed form, and annealed Langevin dynamics, which samples each
level's target before moving on, ends at the tilted density ``q_w(x) ∝ p(x | y)^w p(x)^(1 - w)`` (at ``sigma_min``),
whose mean and spread follow by quadrature.
"""

import math

import numpy as np
import pytest
import torch

from ncsn_pipeline import GaussianMixtureScore, NCSNPipeline, NCSNScheduler, NCSNScoreModel, score_schedulers
from ncsn_pipeline.guidance import prepare_conditioning

MIXTURE = dict(weights=[0.5, 0.5], means=[[-1.0], [1.0]], stds=[1.0, 1.0], class_conditional=True)


def _model():
    return GaussianMixtureScore(**MIXTURE, unconditional_class=True)


def _closed_form_scores(x, sigma):
    """(s(x | y=1), s(x)) of the perturbed mixture, written out."""
    variance = 1 + sigma**2
    conditional = -(x - 1) / variance
    upper = 0.5 * torch.exp(-((x - 1) ** 2) / (2 * variance))
    lower = 0.5 * torch.exp(-((x + 1) ** 2) / (2 * variance))
    marginal = (upper * (1 - x) + lower * (-1 - x)) / (variance * (upper + lower))
    return conditional, marginal


@pytest.mark.parametrize("scale", [0.0, 1.0, 2.5, 7.0])
def test_the_guided_score_is_the_closed_form_combination(scale):
    x = torch.linspace(-4, 4, 9, dtype=torch.float64)[:, None]
    sigma = torch.full((9,), 0.7, dtype=torch.float64)
    conditioning = prepare_conditioning(_model(), 9, torch.device("cpu"), class_labels=1, guidance_scale=scale)
    conditional, marginal = _closed_form_scores(x, 0.7)
    expected = conditional + (scale - 1) * (conditional - marginal)
    torch.testing.assert_close(conditioning.score(_model(), x, sigma), expected, rtol=1e-12, atol=1e-12)


def _tilted_moments(scale, sigma):
    """Mean and standard deviation of q ∝ p_sigma(x | 1)^w p_sigma(x)^(1 - w), by quadrature on a fine grid."""
    x = np.linspace(-15, 15, 300_001)
    variance = 1 + sigma**2

    def log_normal(mean):
        return -0.5 * (x - mean) ** 2 / variance

    log_marginal = np.logaddexp(log_normal(-1), log_normal(1)) + math.log(0.5)
    log_q = scale * log_normal(1) + (1 - scale) * log_marginal
    q = np.exp(log_q - log_q.max())
    q /= q.sum()
    mean = float((q * x).sum())
    return mean, float(np.sqrt((q * (x - mean) ** 2).sum()))


@pytest.mark.parametrize(
    "scale", [1.0, 3.0, pytest.param(2.0, marks=pytest.mark.slow), pytest.param(5.0, marks=pytest.mark.slow)]
)
def test_annealed_langevin_with_guidance_samples_the_tilted_density(scale):
    """4000 samples: standard errors 0.016 (mean) and 0.011 (std); tolerances 0.06 and 0.045, while a scale off by one
    moves the mean by 0.15-0.3 and a guided score with the sign of (w - 1) flipped moves it the other way."""
    scheduler = NCSNScheduler(
        sigma_max=5.0, sigma_min=0.05, num_noise_levels=20, steps_per_level=100, step_lr=0.002, final_denoise=False
    )
    pipe = NCSNPipeline(_model(), scheduler)
    pipe.set_progress_bar_config(disable=True)
    samples = pipe(batch_size=4000, class_labels=1, guidance_scale=scale, generator=torch.Generator().manual_seed(0),
                   output_type="pt").images.double().flatten()  # fmt: skip
    mean, std = _tilted_moments(scale, 0.05)
    assert abs(float(samples.mean()) - mean) < 0.06 and abs(float(samples.std()) - std) < 0.045, (
        scale, float(samples.mean()), float(samples.std()), mean, std,
    )  # fmt: skip


def test_without_labels_a_model_with_the_no_class_label_samples_the_whole_data():
    scheduler = NCSNScheduler(
        sigma_max=5.0, sigma_min=0.05, num_noise_levels=20, steps_per_level=100, step_lr=0.002, final_denoise=False
    )
    pipe = NCSNPipeline(_model(), scheduler)
    pipe.set_progress_bar_config(disable=True)
    samples = pipe(batch_size=4000, generator=torch.Generator().manual_seed(0), output_type="pt").images.double()
    assert abs(float(samples.mean())) < 0.08 and abs(float(samples.std()) - math.sqrt(2)) < 0.06  # the mixture
    scale_zero = pipe(batch_size=4000, class_labels=1, guidance_scale=0.0, generator=torch.Generator().manual_seed(0),
                      output_type="pt").images.double()  # fmt: skip
    torch.testing.assert_close(scale_zero, samples)  # w = 0: the unconditional model, whatever the class


@pytest.mark.parametrize(
    "model, arguments, message",
    [
        (GaussianMixtureScore(**MIXTURE), {"class_labels": 1, "guidance_scale": 2.0},
         "needs a classifier .* or a class-conditional model that also learned the 'no class' label"),
        (_model(), {"guidance_scale": 2.0}, r"Classifier-free guidance needs class_labels: .* in \[0, 1\]"),
        (_model(), {"class_labels": 1, "guidance_scale": -1.0}, "guidance_scale must be a finite number from 0"),
        (_model(), {"class_labels": 2, "guidance_scale": 2.0}, r"class_labels must lie in \[0, 1\]"),
        (GaussianMixtureScore(**MIXTURE), {}, "This model is class-conditional"),
    ],
)  # fmt: skip
def test_bad_guidance_is_refused_before_any_network_call(model, arguments, message):
    pipe = NCSNPipeline(model, NCSNScheduler(sigma_max=5.0, num_noise_levels=3, steps_per_level=1))
    model.forward = lambda *args, **kwargs: pytest.fail("the network was called")
    with pytest.raises(ValueError, match=message):
        pipe(batch_size=2, output_type="pt", **arguments)


def test_unconditional_class_needs_classes():
    with pytest.raises(ValueError, match="unconditional_class=True needs num_class_embeds"):
        NCSNScoreModel(in_channels=1, sample_size=8, ngf=8, unconditional_class=True)
    with pytest.raises(ValueError, match="unconditional_class=True needs class_conditional=True"):
        GaussianMixtureScore(weights=[1.0], means=[[0.0]], unconditional_class=True)


@pytest.mark.parametrize("name", sorted(score_schedulers()))
def test_every_sampler_makes_one_call_on_the_doubled_batch_per_step(name):
    """The guided run costs the model calls of an unguided one, each on 2 x the batch (conditional and "no class")."""
    torch.manual_seed(0)
    model = NCSNScoreModel(in_channels=1, sample_size=8, ngf=8, num_class_embeds=3, unconditional_class=True)
    scheduler = score_schedulers()[name].from_config(dict(sigma_max=3.0, sigma_min=0.01, num_noise_levels=4))
    pipe = NCSNPipeline(model, scheduler, data_range=(0, 1))
    pipe.set_progress_bar_config(disable=True)
    batches = []
    hook = model.register_forward_hook(lambda module, args, kwargs_output: batches.append(args[0].shape[0]))
    try:
        out = pipe(batch_size=3, class_labels=[0, 1, 2], guidance_scale=2.0, generator=torch.Generator().manual_seed(0),
                   output_type="pt").images  # fmt: skip
    finally:
        hook.remove()
    assert out.shape == (3, 1, 8, 8) and torch.isfinite(out).all()
    assert batches == [6] * pipe.scheduler.num_model_calls


def test_the_model_card_says_how_to_guide_a_model_with_the_no_class_label(tmp_path):
    from ncsn_pipeline.hub import render_model_card

    torch.manual_seed(0)
    for unconditional_class in (True, False):
        model = NCSNScoreModel(in_channels=1, sample_size=8, ngf=4, num_class_embeds=3,
                               unconditional_class=unconditional_class)  # fmt: skip
        folder = tmp_path / str(unconditional_class)
        NCSNPipeline(model, NCSNScheduler(sigma_max=3.0, num_noise_levels=4), data_range=(0, 1)).save_pretrained(folder)
        card = str(render_model_card(folder, repo_id="someone/guided"))
        assert ("classifier-free" in card and "guidance_scale=2.0" in card) == unconditional_class
