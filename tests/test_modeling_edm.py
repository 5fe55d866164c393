"""EDMScoreModel: diffusers' UNet2DModel with EDM preconditioning, returning the score every sampler consumes."""

import pytest
import torch

from ncsn_pipeline import EDMScoreModel, NCSNPipeline, NCSNScheduler
from ncsn_pipeline.losses import denoising_score_matching_loss, edm_loss_weight
from ncsn_pipeline.modeling_edm import edm_preconditioning


def _tiny(**kwargs) -> EDMScoreModel:
    torch.manual_seed(0)
    config = {"in_channels": 1, "sample_size": 8, "block_out_channels": (8, 16), "norm_num_groups": 4, **kwargs}
    return EDMScoreModel(**config).eval()


def _noisy(batch=2, channels=1, side=8, seed=0):
    return torch.randn(batch, channels, side, side, generator=torch.Generator().manual_seed(seed))


def _zero_output_layer(model: EDMScoreModel) -> None:
    with torch.no_grad():
        model.unet.conv_out.weight.zero_()
        model.unet.conv_out.bias.zero_()


def test_preconditioning_gives_unit_variance_inputs_and_targets():
    sigma, sigma_data = torch.tensor([0.01, 0.3, 2.0, 80.0], dtype=torch.float64), 0.35
    c_in, c_skip, c_out = edm_preconditioning(sigma, sigma_data)
    # Var(c_in (x + sigma z)) = 1 and Var((x - c_skip (x + sigma z)) / c_out) = 1 for Var(x) = sigma_data^2.
    torch.testing.assert_close(c_in**2 * (sigma_data**2 + sigma**2), torch.ones_like(sigma))
    target_variance = ((1 - c_skip) ** 2 * sigma_data**2 + c_skip**2 * sigma**2) / c_out**2
    torch.testing.assert_close(target_variance, torch.ones_like(sigma))


def test_with_a_silent_network_the_score_is_the_exact_score_of_gaussian_data():
    """D = c_skip x when F = 0, so s = (c_skip - 1) x / sigma^2 = -x / (sigma^2 + sigma_data^2): the exact score of
    N(0, sigma_data^2 I) perturbed by sigma. A wrong c_skip, a missing sigma**2 or a lost undoing of UNet2DModel's
    division by sigma would all change it."""
    model = _tiny(sigma_data=0.7).double()  # float64: (D - x) / sigma^2 cancels digits at small sigma
    _zero_output_layer(model)
    x, sigma = _noisy(batch=3).double(), torch.tensor([0.05, 1.0, 30.0], dtype=torch.float64)
    with torch.no_grad():
        score = model(x, sigma).sample
    torch.testing.assert_close(score, -x / (sigma**2 + 0.49)[:, None, None, None], rtol=1e-10, atol=1e-12)


def test_score_is_tweedie_of_the_denoiser_and_each_example_gets_its_own_sigma():
    model = _tiny()
    x, sigma = _noisy(batch=3), torch.tensor([0.1, 0.5, 4.0])
    with torch.no_grad():
        score = model(x, sigma).sample
        denoised = model.denoise(x, sigma)
        torch.testing.assert_close(score, (denoised - x) / sigma[:, None, None, None] ** 2)
        for index in range(3):
            alone = model(x[index : index + 1], sigma[index]).sample
            torch.testing.assert_close(alone, score[index : index + 1], rtol=1e-4, atol=1e-5)


def test_the_weighted_dsm_loss_is_edms_loss():
    """NCSN's loss times edm_loss_weight equals EDM's lambda(sigma) ||D(x + sigma z) - x||^2 / 2 (eq. 8)."""
    model = _tiny(sigma_data=0.5)
    clean, noise = torch.rand(4, 1, 8, 8), _noisy(batch=4, seed=1)
    sigma = torch.tensor([0.02, 0.4, 1.5, 10.0])
    with torch.no_grad():
        ours = denoising_score_matching_loss(model, clean, sigma, noise, edm_loss_weight(sigma, 0.5))
        denoised = model.denoise(clean + sigma[:, None, None, None] * noise, sigma)
        weight = (sigma**2 + 0.25) / (sigma * 0.5) ** 2
        edm = (0.5 * weight * (denoised - clean).pow(2).flatten(1).sum(1)).mean()
    torch.testing.assert_close(ours, edm, rtol=1e-4, atol=0)


def test_dtype_shape_and_return_dict():
    model = _tiny()
    x = _noisy().double()
    with torch.no_grad():
        (score,) = model(x, 0.5, return_dict=False)
    assert score.shape == x.shape and score.dtype == torch.float64
    assert model.sample_shape == (1, 8, 8)


def test_class_labels_are_used_and_checked():
    model = _tiny(num_class_embeds=3)
    with torch.no_grad():  # a fresh class embedding is random, so two classes give two scores
        model.unet.class_embedding.weight.normal_()
    x = _noisy()
    with torch.no_grad():
        a = model(x, 0.5, class_labels=torch.tensor([0, 0])).sample
        b = model(x, 0.5, class_labels=torch.tensor([2, 2])).sample
    assert not torch.allclose(a, b)
    assert model.num_classes == 3 and _tiny().num_classes is None
    with pytest.raises(ValueError, match="class-conditional"):
        model(x, 0.5)
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        model(x, 0.5, class_labels=torch.tensor([0, 3]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sample_size": 7}, "sample_size must be a multiple of 2"),
        ({"sample_size": 28, "block_out_channels": (8, 16, 16, 16)}, "sample_size must be a multiple of 8"),
        ({"block_out_channels": (8, 10)}, "multiple of norm_num_groups=4"),
        ({"block_out_channels": ()}, "1 to 6 entries"),
        ({"block_out_channels": "8,16"}, "sequence of integers"),
        ({"sigma_data": 0.0}, "sigma_data"),
        ({"layers_per_block": 0}, "layers_per_block"),
    ],
)
def test_bad_configs_are_refused_with_the_value(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        _tiny(**kwargs)


@pytest.mark.parametrize(
    ("sample", "timestep", "match"),
    [
        (torch.randn(2, 1, 7, 8), 0.5, "must be even"),
        (torch.randn(2, 3, 8, 8), 0.5, "channels"),
        (torch.randn(2, 1, 8, 8), 0.0, "finite and > 0"),
        (torch.randn(2, 1, 8, 8), torch.tensor([1.0, 2.0, 3.0]), "shape"),
    ],
)
def test_bad_inputs_are_refused(sample, timestep, match):
    with pytest.raises(ValueError, match=match):
        _tiny()(sample, timestep)


def test_round_trip_gradients_and_a_pipeline_that_samples(tmp_path):
    model = _tiny(num_class_embeds=2).train()
    model(_noisy(), torch.tensor([0.3, 3.0]), class_labels=torch.tensor([0, 1])).sample.square().mean().backward()
    trained = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    silent = [name for name, p in trained if p.grad is None or not p.grad.abs().sum() > 0]
    assert silent == [] and len(trained) == len(list(model.parameters())) - 1  # the fixed Fourier frequencies
    model.eval()
    pipe = NCSNPipeline(unet=model, scheduler=NCSNScheduler(sigma_max=5.0, num_noise_levels=4), data_range=(0, 1))
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = NCSNPipeline.from_pretrained(tmp_path / "pipe")
    assert type(loaded.unet) is EDMScoreModel
    run = {"batch_size": 2, "class_labels": [0, 1], "output_type": "pt", "num_inference_steps": 4}
    first = pipe(generator=torch.Generator().manual_seed(0), **run).images
    again = loaded(generator=torch.Generator().manual_seed(0), **run).images
    torch.testing.assert_close(first, again, rtol=0, atol=0)
