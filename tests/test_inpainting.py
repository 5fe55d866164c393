"""`NCSNInpaintPipeline` and `NCSNColorizePipeline`: the filled pixels against the closed-form Gaussian conditional,
every input form, every sampler, known pixels kept exactly, clear errors.

The closed-form tests use exact scores of correlated Gaussians, so every deviation is the method's (or sampling
noise): with ``n`` samples a conditional mean has standard error ``sqrt(var / n)`` and a (co)variance about
``var * sqrt(2 / n)``; the tolerances below are about four of those plus the small bias of resampled replacement
that ``benchmarks/inpainting_bias.py`` measures (<= 0.01 for the settings used here).
"""

import numpy as np
import PIL.Image
import pytest
import torch

from ncsn_pipeline import DPMSolverPlusPlusScheduler, GaussianScore, VEPredictorCorrectorScheduler, score_schedulers
from ncsn_pipeline.inpainting import COLOR_BASIS, NCSNColorizePipeline, NCSNInpaintPipeline, to_color_basis
from ncsn_pipeline.pretrained import load_pretrained
from ncsn_pipeline.scheduling_utils import restartable_samplers

DIGITS = load_pretrained("ncsn-digits")


def _pipe(scheduler=None):
    pipe = NCSNInpaintPipeline(DIGITS.unet, scheduler or DIGITS.scheduler, data_range=(0, 1))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _digit_and_mask():
    image = torch.linspace(0, 1, 64).reshape(1, 8, 8)
    mask = torch.zeros(1, 8, 8)
    mask[:, 2:6, 2:6] = 1  # repaint the centre
    return image, mask


@pytest.mark.parametrize("name", sorted(score_schedulers()))
def test_every_sampler_keeps_the_known_pixels_exactly(name):
    scheduler = score_schedulers()[name].from_config(DIGITS.scheduler.config, num_noise_levels=6)
    image, mask = _digit_and_mask()
    filled = _pipe(scheduler)(image, mask, batch_size=3, generator=torch.Generator().manual_seed(0), output_type="pt")
    filled = filled.images
    assert filled.shape == (3, 1, 8, 8) and torch.isfinite(filled).all()
    keep = mask == 0
    assert torch.equal(filled[:, keep], image[keep].expand(3, -1))  # bit for bit
    assert not torch.equal(filled[0][~keep], filled[1][~keep])  # the repainted part is sampled


def test_pil_numpy_tensor_and_list_inputs_agree():
    image, mask = _digit_and_mask()
    pil_image = PIL.Image.fromarray((image[0].numpy() * 255).round().astype(np.uint8))
    pil_mask = PIL.Image.fromarray((mask[0].numpy() * 255).astype(np.uint8))  # white = repaint
    as_pixels = torch.from_numpy(np.asarray(pil_image, dtype=np.float64) / 255).float()[None]
    outputs = []
    for image_input, mask_input in (
        (pil_image, pil_mask),
        (as_pixels[0].numpy(), mask[0].numpy()),  # HW arrays in [0, 1]
        (as_pixels, mask),  # CHW tensors
        ([pil_image, pil_image], [pil_mask]),  # a list of images, one mask for both
    ):
        result = _pipe()(image_input, mask_input, generator=torch.Generator().manual_seed(0), output_type="np")
        outputs.append(result.images)
    for output in outputs[1:3]:
        np.testing.assert_allclose(output, outputs[0], atol=1e-6)
    assert outputs[3].shape == (2, 8, 8, 1)
    pil = _pipe()(pil_image, pil_mask, generator=torch.Generator().manual_seed(0)).images[0]
    assert np.array_equal(np.asarray(pil)[mask[0].numpy() == 0], np.asarray(pil_image)[mask[0].numpy() == 0])


def test_raw_data_inpainting_keeps_the_known_coordinates():
    model = GaussianScore([1.0, -1.0, 0.5], [[1.0, 0.8, 0.5], [0.8, 1.0, 0.6], [0.5, 0.6, 1.0]])
    scheduler = score_schedulers()["DPMSolverPlusPlusScheduler"](sigma_max=20.0, num_noise_levels=20)
    pipe = NCSNInpaintPipeline(model, scheduler)
    pipe.set_progress_bar_config(disable=True)
    known = torch.tensor([2.0, 0.0, -1.0])
    mask = torch.tensor([0.0, 1.0, 0.0])
    points = pipe(known, mask, batch_size=500, generator=torch.Generator().manual_seed(0), output_type="pt").images
    assert torch.equal(points[:, [0, 2]], known[[0, 2]].expand(500, -1))
    assert points[:, 1].std() > 0.1


@pytest.mark.parametrize(
    "image, mask, message",
    [
        (torch.zeros(1, 4, 4), torch.zeros(1, 4, 4), r"image must be 8 x 8 with 1 channel\(s\) for this model, got"),
        (torch.full((1, 8, 8), 2.0), torch.zeros(1, 8, 8), r"image values must lie in \[0, 1\]"),
        (torch.zeros(1, 8, 8), torch.zeros(1, 5, 5), "mask_image must be 8 x 8"),
        ("digit.png", torch.zeros(1, 8, 8), "image must be a PIL image, a numpy array, a tensor or a list"),
        (torch.zeros(2, 1, 8, 8), torch.zeros(3, 1, 8, 8), "image holds 2 items for a batch of 3"),
    ],
)
def test_bad_inputs_are_refused_with_a_message(image, mask, message):
    with pytest.raises(ValueError, match=message):
        _pipe()(image, mask, output_type="np")


def _random_gaussian(dimension, seed):
    generator = torch.Generator().manual_seed(seed)
    factor = 0.6 * torch.randn(dimension, dimension, generator=generator, dtype=torch.float64)
    mean = torch.randn(dimension, generator=generator, dtype=torch.float64)
    return mean, factor @ factor.T + 0.2 * torch.eye(dimension, dtype=torch.float64)


def _resampling_sampler():
    # Predictor-corrector with RePaint's resampling: the settings the closed-form tests (and the benchmark) use.
    return VEPredictorCorrectorScheduler(sigma_max=20.0, sigma_min=0.01, num_noise_levels=50)


def _check_moments(samples, mean, covariance):
    count = len(samples)
    variance_scale = float(covariance.diagonal().max())
    mean_tolerance = 4 * (variance_scale / count) ** 0.5 + 0.02
    covariance_tolerance = 4 * variance_scale * (2 / count) ** 0.5 + 0.02
    assert torch.allclose(samples.mean(0), mean, atol=mean_tolerance), (samples.mean(0), mean)
    assert torch.allclose(torch.cov(samples.T), covariance, atol=covariance_tolerance), (
        torch.cov(samples.T),
        covariance,
    )


def _default_resampling_sampler():
    # The default sampler (DPM-Solver++ 3M-SDE), which restarts at any level with lower-order steps.
    return DPMSolverPlusPlusScheduler(sigma_max=20.0, sigma_min=0.01, num_noise_levels=50, algorithm="3m-sde")


@pytest.mark.parametrize("dimension, known_index, seed", [(4, [0, 3], 0), (5, [2], 1), (6, [0, 1, 4], 2)])
def test_resampled_inpainting_follows_the_gaussian_conditional(dimension, known_index, seed):
    mean, covariance = _random_gaussian(dimension, seed)
    known = mean + torch.linspace(-1.0, 1.5, dimension, dtype=torch.float64)  # off the mean, so the gain matters
    mask = torch.ones(dimension)
    mask[known_index] = 0
    pipe = NCSNInpaintPipeline(GaussianScore(mean.tolist(), covariance.tolist()), _resampling_sampler())
    pipe.set_progress_bar_config(disable=True)
    samples = pipe(
        known.float(),
        mask,
        batch_size=3000,
        jump_length=10,
        jump_n_sample=10,
        generator=torch.Generator().manual_seed(seed),
        output_type="pt",
    ).images.double()
    unknown, conditional_mean, conditional_covariance = pipe.unet.conditional(known_index, known[known_index])
    assert torch.equal(samples[:, known_index], known.float()[known_index].double().expand(3000, -1))
    _check_moments(samples[:, unknown], conditional_mean, conditional_covariance)


@pytest.mark.parametrize("sampler, reduction", [(_resampling_sampler, 3), (_default_resampling_sampler, 2)])
def test_resampling_measurably_reduces_the_bias_of_plain_replacement(sampler, reduction):
    """With the predictor-corrector sampler, whose Langevin corrector harmonises too, resampling removes most of the
    bias; the default sampler (DPM-Solver++, restarting each window with lower-order steps) removes about as much as
    the samplers without a corrector (``benchmarks/inpainting_bias.py``)."""
    mean, covariance = _random_gaussian(4, 0)
    known, mask = mean + 1.5, torch.tensor([0.0, 1.0, 1.0, 0.0])
    pipe = NCSNInpaintPipeline(GaussianScore(mean.tolist(), covariance.tolist()), sampler())
    unknown, conditional_mean, _ = pipe.unet.conditional([0, 3], known[[0, 3]])
    pipe.set_progress_bar_config(disable=True)
    errors = []
    for jump_n_sample in (1, 10):
        samples = pipe(
            known.float(),
            mask,
            batch_size=2000,
            jump_length=10,
            jump_n_sample=jump_n_sample,
            generator=torch.Generator().manual_seed(0),
            output_type="pt",
        ).images.double()
        errors.append(float((samples[:, unknown].mean(0) - conditional_mean).abs().max()))
    # Plain replacement is pulled toward the unconditional mean (by ~0.1-0.5 here); resampling removes much of it.
    assert errors[0] > 0.08 and errors[1] < errors[0] / reduction, errors


def _color_transform(pixels):
    """The colour basis applied to every pixel of a flattened ``(3, *pixels)`` sample, as a matrix."""
    return torch.kron(COLOR_BASIS, torch.eye(pixels, dtype=torch.float64))


def test_colorization_follows_the_gaussian_conditional_in_the_colour_basis():
    mean, covariance = _random_gaussian(6, 3)  # an RGB image of 1 x 2 pixels whose channels and pixels correlate
    grey = torch.tensor([[0.4, -0.3]], dtype=torch.float64)  # channel means, in the data space
    pipe = NCSNColorizePipeline(
        GaussianScore(mean.tolist(), covariance.tolist(), shape=(3, 1, 2)), _resampling_sampler()
    )
    pipe.set_progress_bar_config(disable=True)
    samples = pipe(
        grey.float(),
        batch_size=3000,
        jump_length=10,
        jump_n_sample=10,
        generator=torch.Generator().manual_seed(3),
        output_type="pt",
    ).images.double()
    assert samples.shape == (3000, 3, 1, 2)
    torch.testing.assert_close(samples.mean(dim=1), grey.expand(3000, 1, 2), atol=1e-5, rtol=0)  # grey kept
    transform = _color_transform(2)
    in_basis = GaussianScore((transform @ mean).tolist(), (transform @ covariance @ transform.T).tolist())
    unknown, conditional_mean, conditional_covariance = in_basis.conditional([0, 1], 3**0.5 * grey.flatten())
    coordinates = samples.flatten(1) @ transform.T
    _check_moments(coordinates[:, unknown], conditional_mean, conditional_covariance)


def test_the_colour_basis_is_orthonormal_with_grey_first():
    torch.testing.assert_close(COLOR_BASIS @ COLOR_BASIS.T, torch.eye(3, dtype=torch.float64))
    rgb = torch.tensor([[[[0.2]], [[0.5]], [[0.8]]]], dtype=torch.float64)
    assert to_color_basis(rgb)[0, 0, 0, 0].item() == pytest.approx(3**0.5 * 0.5)


def _color_pipe(scheduler=None):
    mean = torch.full((12,), 0.5, dtype=torch.float64)
    covariance = 0.02 * (torch.eye(12, dtype=torch.float64) + 0.5)  # colours and pixels all correlated
    model = GaussianScore(mean.tolist(), covariance.tolist(), shape=(3, 2, 2))
    scheduler = scheduler or VEPredictorCorrectorScheduler(sigma_max=5.0, sigma_min=0.01, num_noise_levels=10)
    pipe = NCSNColorizePipeline(model, scheduler, data_range=(0, 1))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("name", sorted(score_schedulers()))
def test_every_sampler_colorizes_and_keeps_the_grey(name):
    scheduler = score_schedulers()[name](sigma_max=5.0, sigma_min=0.01, num_noise_levels=10)
    grey = torch.tensor([[0.3, 0.5], [0.6, 0.45]])
    colour = _color_pipe(scheduler)(grey, batch_size=4, generator=torch.Generator().manual_seed(0), output_type="pt")
    colour = colour.images
    assert colour.shape == (4, 3, 2, 2) and torch.isfinite(colour).all()
    if not (colour == 0).any() and not (colour == 1).any():  # nothing clipped to the pixel range
        torch.testing.assert_close(colour.mean(dim=1), grey.expand(4, 2, 2), atol=1e-5, rtol=0)
    assert not torch.equal(colour[0], colour[1])


def test_colorization_input_forms_agree():
    grey = np.array([[0.2, 0.4], [0.6, 0.8]])
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    pil = PIL.Image.fromarray((grey * 255).round().astype(np.uint8))
    quantized = np.asarray(pil, dtype=np.float64) / 255
    outputs = [
        _color_pipe()(form, generator=torch.Generator().manual_seed(0), output_type="np").images
        for form in (
            pil,
            quantized,
            quantized[:, :, None],
            torch.from_numpy(quantized)[None].float(),
            PIL.Image.fromarray((np.repeat(quantized[:, :, None], 3, 2) * 255).round().astype(np.uint8)),
        )
    ]
    for output in outputs[1:]:
        np.testing.assert_allclose(output, outputs[0], atol=1e-5)
    batch = _color_pipe()([pil, rgb], generator=torch.Generator().manual_seed(0), output_type="pil").images
    assert len(batch) == 2 and batch[0].mode == "RGB" and batch[0].size == (2, 2)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda pipe: pipe(torch.zeros(3, 3)), "image must be 2 x 2 for this model, got 3 x 3"),
        (lambda pipe: pipe(torch.zeros(2, 2, 2)), r"image must have 1 \(grey\) or 3 \(RGB\) channels, got 2"),
        (lambda pipe: pipe(torch.full((2, 2), 1.5)), r"image values must lie in \[0, 1\]"),
        (lambda pipe: pipe(torch.zeros(2, 2), jump_n_sample=0), "jump_n_sample"),
        (lambda pipe: pipe(torch.zeros(2, 2), output_type="jpg"), "output_type"),
    ],
)
def test_bad_colorization_inputs_are_refused_with_a_message(call, message):
    with pytest.raises(ValueError, match=message):
        call(_color_pipe())


def test_colorization_needs_a_colour_model():
    with pytest.raises(
        ValueError, match=r"Colorization needs a model of 3-channel \(RGB\) samples; this one's shape is \(1, 8, 8\)"
    ):
        NCSNColorizePipeline(DIGITS.unet, DIGITS.scheduler, data_range=(0, 1))(torch.zeros(8, 8))


@pytest.mark.parametrize("name", sorted(set(score_schedulers()) - set(restartable_samplers())))
def test_resampling_is_refused_for_samplers_that_cannot_restart(name):
    scheduler = score_schedulers()[name].from_config(DIGITS.scheduler.config, num_noise_levels=6)
    image, mask = _digit_and_mask()
    with pytest.raises(ValueError, match=f"jump_n_sample=3 needs a sampler that can restart.*{name}"):
        _pipe(scheduler)(image, mask, jump_n_sample=3, output_type="np")


@pytest.mark.parametrize("option, value", [("jump_length", 0), ("jump_n_sample", 1.5), ("jump_n_sample", True)])
def test_bad_resampling_settings_are_refused(option, value):
    image, mask = _digit_and_mask()
    with pytest.raises(ValueError, match=option):
        _pipe()(image, mask, output_type="np", **{option: value})


@pytest.mark.parametrize("name", restartable_samplers())
def test_resampling_runs_every_restartable_sampler_and_keeps_the_known_pixels(name):
    scheduler = score_schedulers()[name].from_config(DIGITS.scheduler.config, num_noise_levels=6)
    image, mask = _digit_and_mask()
    calls = []
    pipe = _pipe(scheduler)
    original = pipe.unet.forward
    pipe.unet.forward = lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs)
    filled = pipe(
        image,
        mask,
        batch_size=2,
        jump_length=2,
        jump_n_sample=3,
        generator=torch.Generator().manual_seed(0),
        output_type="pt",
    ).images
    pipe.unet.forward = original
    assert len(calls) == 3 * scheduler.num_model_calls  # every window sampled three times
    keep = mask == 0
    assert torch.equal(filled[:, keep], image[keep].expand(2, -1)) and torch.isfinite(filled).all()
