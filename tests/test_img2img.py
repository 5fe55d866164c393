"""SDEdit image-to-image (`NCSNImg2ImgPipeline`) against closed forms, every sampler, and its inputs.

With exact scores the output law of an edit has a closed form on a Gaussian and a 1-D mixture, for the two kinds of
sampler that solve an equation: a reverse-SDE solver draws from the posterior of the clean data given the perturbed
input, ``x_0 ~ p(x_0 | x' + sigma z)``, and a probability-flow (ODE) solver maps the perturbed input by the transport
of ``p_sigma`` onto the data (in 1-D the monotone map ``F_0^{-1}(F_sigma(x))``). Samplers that also run Langevin
dynamics at each level (annealed Langevin, the predictor-corrector's corrector, EDM's churn) mix toward the data's
marginal on top, so their edits keep less of the input: they are checked to lie between the posterior and the
marginal (measured on the mixture at strength 0.65: posterior 0.19, annealed Langevin 0.44, predictor-corrector 0.25,
EDM 0.17, marginal 0.7).
"""

import math

import numpy as np
import PIL.Image
import pytest
import torch

from ncsn_pipeline import (
    GaussianMixtureScore,
    GaussianScore,
    NCSNImg2ImgPipeline,
    NCSNScheduler,
    NCSNScoreModel,
    score_schedulers,
)
from ncsn_pipeline.editing import strength_to_sigma

SAMPLERS = score_schedulers()
SETTINGS = dict(sigma_max=20.0, sigma_min=0.01, num_noise_levels=50)
# How each sampler's edit follows from the exact score (a new sampler must say which).
REVERSE_SDE, ODE, MIXING = "reverse SDE", "probability-flow ODE", "Langevin mixing"
KIND = {
    "AdaptiveSDEScheduler": REVERSE_SDE,
    "DPMSolverPlusPlusScheduler": REVERSE_SDE,  # the default 3M-SDE (eta 1); "2m" is the ODE, below
    "ProbabilityFlowHeunScheduler": ODE,
    "IPNDMScoreScheduler": ODE,
    "UniPCScheduler": ODE,
    "EDMStochasticScheduler": MIXING,
    "NCSNScheduler": MIXING,
    "VEPredictorCorrectorScheduler": MIXING,
}
VARIANTS = [(name, {}) for name in SAMPLERS] + [("DPMSolverPlusPlusScheduler", {"algorithm": "2m"})]
COUNT = 4000
STRENGTHS = (0.3, 0.55, 0.75)


def _edit(model, name, options, start, strength, count=COUNT, seed=0):
    """``count`` edits of the 1-D point ``start`` and the noise level the edit began at."""
    scheduler = SAMPLERS[name].from_config(SETTINGS, **options)
    pipe = NCSNImg2ImgPipeline(model, scheduler)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        torch.tensor([[start]]),
        strength=strength,
        num_images_per_prompt=count,
        generator=torch.Generator().manual_seed(seed),
        output_type="pt",
    ).images
    planned = SAMPLERS[name].from_config(SETTINGS, **options)
    planned.set_timesteps()
    sigma = planned.set_begin_sigma(strength_to_sigma(strength, SETTINGS["sigma_min"], SETTINGS["sigma_max"]))
    return out.double().flatten(), sigma


def _kind(name, options):
    return ODE if options.get("algorithm") == "2m" else KIND[name]


@pytest.mark.parametrize("name, options", VARIANTS, ids=[f"{n}{o.get('algorithm', '')}" for n, o in VARIANTS])
def test_an_edit_of_a_gaussian_follows_the_closed_form_of_its_sampler(name, options):
    """Data N(0, 1), input 2. Posterior of the data given x' = 2 + sigma z: mean a x', variance a sigma^2 with
    a = 1 / (1 + sigma^2), so the output has mean 2a and variance a^2 sigma^2 + a sigma^2; the ODE maps x' to
    x' / sqrt(1 + sigma^2): mean 2 / sqrt(1 + sigma^2), variance sigma^2 / (1 + sigma^2).

    Tolerances: 4.5 standard errors at 4000 samples (mean: sqrt(var / 4000) <= 0.016; variance: var sqrt(2 / 4000)
    <= 0.023) plus 0.03 for the samplers' discretisation at 50 levels, while the two closed forms differ by 0.27
    (means) and 0.2 (variances) at strength 0.55."""
    for strength in STRENGTHS:
        edits, sigma = _edit(GaussianScore([0.0], [[1.0]]), name, options, 2.0, strength)
        a = 1 / (1 + sigma**2)
        posterior = (2 * a, a**2 * sigma**2 + a * sigma**2)
        transport = (2 / math.sqrt(1 + sigma**2), sigma**2 / (1 + sigma**2))
        found = (float(edits.mean()), float(edits.var()))
        kind = _kind(name, options)
        if kind == MIXING:  # from the posterior toward the marginal N(0, 1)
            assert -0.1 < found[0] < posterior[0] + 0.1, (strength, found, posterior, transport)
            continue
        expected = posterior if kind == REVERSE_SDE else transport
        assert abs(found[0] - expected[0]) < 0.1, (strength, sigma, found, expected)
        assert abs(found[1] - expected[1]) < 0.03 + 0.11 * expected[1], (strength, sigma, found, expected)


MIXTURE = dict(weights=[0.3, 0.7], means=[[-2.0], [2.0]], stds=[0.5, 0.5])


def _mixture_cdf(x, sigma):
    spread = math.sqrt(0.25 + sigma**2)
    modes = zip(MIXTURE["weights"], MIXTURE["means"])
    return sum(weight * 0.5 * math.erfc(-(x - mean[0]) / (spread * math.sqrt(2))) for weight, mean in modes)


def _upper_mode_weight(start, sigma):
    """(posterior, transport) probability that an edit of ``start`` at ``sigma`` lands in the mode at +2."""
    # Posterior: the weight of the +2 mode given x' (its component likelihoods at variance 0.25 + sigma^2),
    # averaged over x' = start + sigma z with Gauss-Hermite quadrature (exact for this smooth integrand to ~1e-10).
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    x = start + sigma * nodes
    variance = 0.25 + sigma**2
    low, high = (w * np.exp(-((x - m[0]) ** 2) / (2 * variance)) for w, m in zip(MIXTURE["weights"], MIXTURE["means"]))
    posterior = float(np.sum(weights * high / (low + high)) / np.sum(weights))
    # Transport: F_0^{-1}(F_sigma(x')) > 0 exactly when x' > t = F_sigma^{-1}(F_0(0)) (bisection).
    target, lower, upper = _mixture_cdf(0.0, 0.0), -50.0, 50.0
    for _ in range(200):
        middle = 0.5 * (lower + upper)
        lower, upper = (middle, upper) if _mixture_cdf(middle, sigma) < target else (lower, middle)
    transport = 0.5 * math.erfc((lower - start) / (sigma * math.sqrt(2)))
    return posterior, transport


@pytest.mark.parametrize("name, options", VARIANTS, ids=[f"{n}{o.get('algorithm', '')}" for n, o in VARIANTS])
def test_an_edit_on_a_two_mode_mixture_lands_in_each_mode_as_the_closed_form_says(name, options):
    """Data 0.3 N(-2, 0.5^2) + 0.7 N(2, 0.5^2), input -2 (the smaller mode): the stronger the edit, the more often it
    lands in the other mode (posterior 0.18 / 0.35 / 0.59 at strengths 0.65 / 0.7 / 0.8; transport 0.12 / 0.25 /
    0.47; the marginal 0.7). Tolerance on the weight of the +2 mode: 0.035, 4.5 standard errors at 4000 samples
    (sqrt(0.25 / 4000) = 0.008); the two closed forms differ by 0.07-0.12, and an edit begun at the wrong level by
    more."""
    for strength in (0.65, 0.7, 0.8):
        edits, sigma = _edit(GaussianMixtureScore(**MIXTURE), name, options, -2.0, strength)
        found = float((edits > 0).double().mean())
        posterior, transport = _upper_mode_weight(-2.0, sigma)
        kind = _kind(name, options)
        if kind == MIXING:  # from the posterior toward the marginal's 0.7
            assert posterior - 0.035 < found < 0.7 + 0.035, (strength, sigma, found, posterior)
            continue
        expected = posterior if kind == REVERSE_SDE else transport
        assert abs(found - expected) < 0.035, (strength, sigma, found, posterior, transport)


def _image_pipe(channels=1):
    torch.manual_seed(0)
    model = NCSNScoreModel(in_channels=channels, sample_size=8, ngf=8)
    scheduler = NCSNScheduler(sigma_max=3.0, sigma_min=0.01, num_noise_levels=10, steps_per_level=1, step_lr=1e-5)
    pipe = NCSNImg2ImgPipeline(unet=model, scheduler=scheduler, data_range=(0, 1))
    pipe.set_progress_bar_config(disable=True)
    return pipe


GREY = np.linspace(0, 1, 64).reshape(8, 8)
GREY_8BIT = np.round(GREY * 255) / 255  # what a PIL image can hold


@pytest.mark.parametrize(
    "image",
    [
        PIL.Image.fromarray((GREY_8BIT * 255).round().astype(np.uint8)),
        GREY_8BIT,  # HW
        GREY_8BIT[:, :, None],  # HWC
        GREY_8BIT[None, :, :, None],  # NHWC
        torch.from_numpy(GREY_8BIT),  # HW
        torch.from_numpy(GREY_8BIT)[None],  # CHW
        [torch.from_numpy(GREY_8BIT)[None, None]],  # a list of NCHW
    ],
    ids=["pil", "np-hw", "np-hwc", "np-nhwc", "pt-hw", "pt-chw", "list"],
)
def test_every_input_form_gives_the_same_edit(image):
    pipe = _image_pipe()
    reference = torch.from_numpy(GREY_8BIT)[None, None].float()
    expected = pipe(reference, strength=0.5, generator=torch.Generator().manual_seed(0), output_type="pt").images
    found = pipe(image, strength=0.5, generator=torch.Generator().manual_seed(0), output_type="pt").images
    torch.testing.assert_close(found, expected, atol=1e-6, rtol=0)


def test_strength_zero_returns_the_input_itself_without_a_network_call():
    pipe = _image_pipe()
    pipe.unet.forward = lambda *args, **kwargs: pytest.fail("strength 0 called the network")
    image = PIL.Image.fromarray((GREY_8BIT * 255).round().astype(np.uint8))
    out = pipe(image, strength=0.0, num_images_per_prompt=2, output_type="np").images
    assert out.shape == (2, 8, 8, 1) and np.array_equal(out[..., 0], np.stack([GREY_8BIT] * 2).astype(np.float32))
    again = pipe(image, strength=0.0, output_type="pil").images[0]
    assert np.array_equal(np.asarray(again), np.asarray(image))  # byte for byte


def test_strength_sets_where_the_run_begins():
    """Strength 1 begins at sigma_max (every call of the run); 0.5 at the level nearest sqrt(sigma_min sigma_max),
    which on NCSN's geometric levels is half-way through them, as diffusers' img2img runs half of its steps."""
    pipe = _image_pipe()
    for strength, first_call in ((1.0, 0), (0.5, 5), (0.25, 7)):
        seen = []

        def record(pipeline, index, sigma, tensors, seen=seen):
            seen.append((index, float(sigma)))
            return tensors

        pipe(GREY, strength=strength, callback_on_step_end=record)
        scheduler = pipe.scheduler
        assert [index for index, _ in seen] == list(range(first_call, scheduler.num_model_calls)), strength
        assert seen[0][1] == pytest.approx(float(scheduler.timesteps[first_call]))


def test_each_image_is_repeated_num_images_per_prompt_times_in_a_row():
    pipe = _image_pipe()
    images = [torch.zeros(8, 8), torch.ones(8, 8)]
    out = pipe(images, strength=0.2, num_images_per_prompt=3, generator=torch.Generator().manual_seed(0),
               output_type="pt").images  # fmt: skip
    assert out.shape == (6, 1, 8, 8)
    means = out.mean(dim=(1, 2, 3))
    assert (means[:3] < 0.3).all() and (means[3:] > 0.7).all()  # a light edit stays near its own input
    assert not torch.equal(out[0], out[1])  # the repeats are different draws


def test_a_grey_input_is_edited_by_a_colour_model_and_class_labels_condition_the_edit():
    pipe = _image_pipe(channels=3)
    assert pipe(GREY, strength=0.3, output_type="pt").images.shape == (1, 3, 8, 8)
    means = torch.zeros(2, 1, 2, 2)
    means[1] = 1.0
    model = GaussianMixtureScore(weights=[0.5, 0.5], means=means.tolist(), stds=[0.05, 0.05], class_conditional=True)
    scheduler = SAMPLERS["DPMSolverPlusPlusScheduler"].from_config(SETTINGS)
    pipe = NCSNImg2ImgPipeline(model, scheduler, data_range=(-1, 2))
    pipe.set_progress_bar_config(disable=True)
    # A strong edit of a class-0 image (data 0 = pixel 1/3) asked to be class 1 ends at data 1 (pixel 2/3).
    out = pipe(torch.full((2, 2), 1 / 3), strength=0.9, num_images_per_prompt=4, class_labels=1,
               generator=torch.Generator().manual_seed(0), output_type="pt").images  # fmt: skip
    assert (out - 2 / 3).abs().max() < 0.1


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"strength": 1.5}, "strength must be a finite number from 0 to 1, got 1.5"),
        ({"strength": -0.1}, "strength must be a finite number from 0 to 1, got -0.1"),
        ({"strength": "0.5"}, "strength must be a finite number from 0 to 1, got '0.5'"),
        ({"strength": True}, "strength must be a finite number from 0 to 1, got True"),
        ({"num_images_per_prompt": 0}, "num_images_per_prompt must be"),
        ({"image": torch.zeros(1, 1, 9, 9)}, r"image must be 8 x 8 with 1 channel\(s\) for this model"),
        ({"image": torch.full((8, 8), 2.0)}, r"image values must lie in \[0, 1\]"),
        ({"image": "picture.png"}, "image must be a PIL image, a numpy array, a tensor or a list of them, got str"),
        ({"class_labels": 3}, "class_labels"),
        ({"image": torch.zeros(0, 1, 8, 8)}, r"image is empty \(shape \(0, 1, 8, 8\)"),
        ({"image": np.zeros((0, 8, 8, 1))}, r"image is empty \(shape \(0, 1, 8, 8\)"),
        ({"image": np.full((8, 8), None, dtype=object)}, "numpy array must hold real numbers, got dtype object"),
        ({"image": np.zeros((8, 8), dtype=np.complex64)}, "must hold real numbers, got dtype complex64"),
        ({"image": torch.zeros(8, 8, dtype=torch.complex64)}, "must hold real numbers, got a torch.complex64 tensor"),
    ],
)
def test_bad_input_is_refused_before_any_network_call(overrides, message):
    pipe = _image_pipe()
    pipe.unet.forward = lambda *args, **kwargs: pytest.fail("the network was called")
    inputs = {"image": GREY, "strength": 0.5, **overrides}
    with pytest.raises(ValueError, match=message):
        pipe(**inputs)


def test_raw_data_must_be_a_tensor_of_the_models_samples():
    pipe = NCSNImg2ImgPipeline(GaussianScore([0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]]), SAMPLERS["NCSNScheduler"]())
    with pytest.raises(ValueError, match=r"image must hold samples of shape \(2,\), got shape \(3,\)"):
        pipe(torch.zeros(3))
    with pytest.raises(ValueError, match="image must be a tensor, got list"):
        pipe([0.0, 0.0])
    with pytest.raises(ValueError, match="image must hold real numbers, got a torch.complex64 tensor"):
        pipe(torch.zeros(2, dtype=torch.complex64))
