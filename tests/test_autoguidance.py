"""Autoguidance (`ncsn_pipeline.guidance`, Karras et al. 2024): ``guidance_model`` (a weaker model of the same data)
and ``guidance_scale = w`` give the score ``s_good + (w - 1) (s_good - s_bad)``, one call of each model per step.

Exact references: the "good" model is N(1, 1) and the "bad" one N(1, 1.5^2) (a too-broad model of the same data),
both as `GaussianMixtureScore`. Perturbed by sigma they are N(1, 1 + sigma^2) and N(1, 2.25 + sigma^2), so the
guided score is that of the Gaussian tilted density p_good^w p_bad^(1 - w), with precision
w / (1 + sigma^2) + (1 - w) / (2.25 + sigma^2): guidance narrows the samples toward where the good model is surer.
"""

import math

import pytest
import torch

from ncsn_pipeline import (
    GaussianMixtureScore,
    NCSNImg2ImgPipeline,
    NCSNInpaintPipeline,
    NCSNPipeline,
    NCSNScheduler,
    NCSNScoreModel,
    score_schedulers,
)
from ncsn_pipeline.guidance import prepare_conditioning


def _gaussian(std, **extra):
    return GaussianMixtureScore(weights=[1.0], means=[[1.0]], stds=[std], **extra)


def _tilted_std(scale, sigma):
    precision = scale / (1 + sigma**2) + (1 - scale) / (2.25 + sigma**2)
    return 1 / math.sqrt(precision)


@pytest.mark.parametrize("scale", [0.0, 1.0, 2.0, 3.5])
def test_the_guided_score_is_the_closed_form_combination(scale):
    good, bad = _gaussian(1.0), _gaussian(1.5)
    x = torch.linspace(-4, 4, 9, dtype=torch.float64)[:, None]
    sigma = torch.full((9,), 0.7, dtype=torch.float64)
    conditioning = prepare_conditioning(good, 9, torch.device("cpu"), guidance_scale=scale, guidance_model=bad)
    s_good, s_bad = -(x - 1) / (1 + 0.49), -(x - 1) / (2.25 + 0.49)
    expected = s_good + (scale - 1) * (s_good - s_bad)
    torch.testing.assert_close(conditioning.score(good, x, sigma), expected, rtol=1e-12, atol=1e-12)
    # It is the score of the tilted Gaussian: -(x - 1) / tilted variance.
    torch.testing.assert_close(expected, -(x - 1) / _tilted_std(scale, 0.7) ** 2, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "scale", [2.0, pytest.param(1.0, marks=pytest.mark.slow), pytest.param(3.0, marks=pytest.mark.slow)]
)
def test_annealed_langevin_with_autoguidance_samples_the_tilted_density(scale):
    """4000 samples at sigma_min = 0.05: the standard error of the std is ~0.011 x std; tolerance 0.04. The tilted
    stds (0.951 at w = 2, 0.907 at w = 3) are 5-9 % below the good model's 1.0, and a guide of the wrong sign would
    widen them."""
    scheduler = NCSNScheduler(
        sigma_max=5.0, sigma_min=0.05, num_noise_levels=20, steps_per_level=100, step_lr=0.002, final_denoise=False
    )
    pipe = NCSNPipeline(_gaussian(1.0), scheduler)
    pipe.set_progress_bar_config(disable=True)
    samples = pipe(batch_size=4000, guidance_model=_gaussian(1.5), guidance_scale=scale,
                   generator=torch.Generator().manual_seed(0), output_type="pt").images.double().flatten()  # fmt: skip
    expected = _tilted_std(scale, 0.05)
    assert abs(float(samples.mean()) - 1.0) < 0.05 and abs(float(samples.std()) - expected) < 0.04, (
        scale, float(samples.mean()), float(samples.std()), expected,
    )  # fmt: skip


def test_class_labels_go_to_both_models():
    """A class-conditional good and bad model: each gets the labels (the guided score of class 1 is computed from
    both models' class-1 scores)."""
    mixture = dict(weights=[0.5, 0.5], means=[[-1.0], [1.0]], class_conditional=True)
    good, bad = GaussianMixtureScore(**mixture, stds=[1.0, 1.0]), GaussianMixtureScore(**mixture, stds=[1.5, 1.5])
    x = torch.linspace(-3, 3, 7, dtype=torch.float64)[:, None]
    sigma = torch.full((7,), 0.5, dtype=torch.float64)
    conditioning = prepare_conditioning(good, 7, torch.device("cpu"), class_labels=1, guidance_scale=2.0,
                                        guidance_model=bad)  # fmt: skip
    s_good, s_bad = -(x - 1) / 1.25, -(x - 1) / 2.5
    torch.testing.assert_close(conditioning.score(good, x, sigma), 2 * s_good - s_bad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(score_schedulers()))
def test_every_sampler_calls_each_model_once_per_step(name):
    """Two networks, two calls per step: the good one and the guide once each, on the batch."""
    torch.manual_seed(0)
    good = NCSNScoreModel(in_channels=1, sample_size=8, ngf=8)
    bad = NCSNScoreModel(in_channels=1, sample_size=8, ngf=4)
    scheduler = score_schedulers()[name].from_config(dict(sigma_max=3.0, sigma_min=0.01, num_noise_levels=4))
    pipe = NCSNPipeline(good, scheduler, data_range=(0, 1))
    pipe.set_progress_bar_config(disable=True)
    calls = {"good": 0, "bad": 0}
    hooks = [good.register_forward_hook(lambda *_: calls.__setitem__("good", calls["good"] + 1)),
             bad.register_forward_hook(lambda *_: calls.__setitem__("bad", calls["bad"] + 1))]  # fmt: skip
    try:
        out = pipe(batch_size=3, guidance_model=bad, guidance_scale=2.0, generator=torch.Generator().manual_seed(0),
                   output_type="pt").images  # fmt: skip
    finally:
        for hook in hooks:
            hook.remove()
    assert out.shape == (3, 1, 8, 8) and torch.isfinite(out).all()
    assert calls == {"good": pipe.scheduler.num_model_calls, "bad": pipe.scheduler.num_model_calls}


def test_scale_one_is_the_good_model_alone_with_no_guide_call():
    torch.manual_seed(0)
    good, bad = NCSNScoreModel(in_channels=1, sample_size=8, ngf=8), NCSNScoreModel(in_channels=1, sample_size=8, ngf=4)
    pipe = NCSNPipeline(good, NCSNScheduler(sigma_max=3.0, num_noise_levels=4, steps_per_level=1), data_range=(0, 1))
    pipe.set_progress_bar_config(disable=True)
    bad.forward = lambda *args, **kwargs: pytest.fail("the guide was called at w = 1")
    plain = pipe(batch_size=2, generator=torch.Generator().manual_seed(1), output_type="pt").images
    guided = pipe(batch_size=2, guidance_model=bad, guidance_scale=1.0, generator=torch.Generator().manual_seed(1),
                  output_type="pt").images  # fmt: skip
    assert torch.equal(plain, guided)


def test_the_editing_and_inpainting_pipelines_take_a_guide():
    torch.manual_seed(0)
    good, bad = NCSNScoreModel(in_channels=1, sample_size=8, ngf=8), NCSNScoreModel(in_channels=1, sample_size=8, ngf=4)
    scheduler = NCSNScheduler(sigma_max=3.0, num_noise_levels=4, steps_per_level=1)
    image = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 4:] = 1
    for pipe, arguments in (
        (NCSNImg2ImgPipeline(good, scheduler, data_range=(0, 1)), {"image": image, "strength": 0.6}),
        (NCSNInpaintPipeline(good, scheduler, data_range=(0, 1)), {"image": image, "mask_image": mask}),
    ):
        pipe.set_progress_bar_config(disable=True)
        plain = pipe(**arguments, generator=torch.Generator().manual_seed(2), output_type="pt").images
        guided = pipe(**arguments, guidance_model=bad, guidance_scale=3.0, generator=torch.Generator().manual_seed(2),
                      output_type="pt").images  # fmt: skip
        assert guided.shape == plain.shape and not torch.equal(guided, plain)


@pytest.mark.parametrize(
    "guide, arguments, message",
    [
        ("classes", {}, "guidance_model must be conditioned as the model is: the model has no classes, the guidance "
                        "model 2 classes"),
        ("shape", {}, r"guidance_model samples \(2,\), the model \(1,\)"),
        ("plain", {"guidance_scale": -1.0}, "guidance_scale must be a finite number from 0"),
        ("plain", {"classifier": "x"}, "two uses of guidance_scale: pass one of them"),
        ("function", {}, "guidance_model must be a score model of the same data"),
        ("plain", {"class_labels": 1}, "This model is not class-conditional"),
    ],
)  # fmt: skip
def test_bad_guides_are_refused_before_any_network_call(guide, arguments, message):
    good = _gaussian(1.0)
    guides = {
        "classes": GaussianMixtureScore(weights=[0.5, 0.5], means=[[-1.0], [1.0]], class_conditional=True),
        "shape": GaussianMixtureScore(weights=[1.0], means=[[1.0, 1.0]], stds=[1.0]),
        "plain": _gaussian(1.5),
        "function": lambda x, sigma: x,
    }
    pipe = NCSNPipeline(good, NCSNScheduler(sigma_max=5.0, num_noise_levels=3, steps_per_level=1))
    good.forward = lambda *args, **kwargs: pytest.fail("the network was called")
    with pytest.raises(ValueError, match=message):
        pipe(batch_size=2, output_type="pt", guidance_model=guides[guide], **{"guidance_scale": 2.0, **arguments})


def test_evaluation_sampling_passes_the_guide_to_every_batch():
    """`sample_in_batches` (what ``ncsn-eval`` and the benchmarks sample with) hands ``pipe_kwargs`` to each batch's
    pipeline call: guided batches equal the pipeline's own guided runs from the batches' generators, and differ from the
    model alone."""
    from ncsn_pipeline.evaluation.batches import batch_seed, sample_in_batches

    torch.manual_seed(0)
    good, bad = NCSNScoreModel(in_channels=1, sample_size=8, ngf=8), NCSNScoreModel(in_channels=1, sample_size=8, ngf=4)
    pipe = NCSNPipeline(good, NCSNScheduler(sigma_max=3.0, num_noise_levels=4, steps_per_level=1), data_range=(0, 1))
    pipe.set_progress_bar_config(disable=True)
    guide = {"guidance_model": bad, "guidance_scale": 2.0}
    guided, _, calls, _ = sample_in_batches(pipe, 6, 3, seed=5, pipe_kwargs=guide)
    plain, _, _, _ = sample_in_batches(pipe, 6, 3, seed=5)
    generators = [torch.Generator().manual_seed(batch_seed(5, batch)) for batch in range(2)]  # batch b: (seed, b)
    direct = torch.cat([pipe(batch_size=3, generator=g, output_type="pt", **guide).images for g in generators])
    assert torch.equal(guided, direct) and not torch.allclose(guided, plain) and calls == [5, 5]
