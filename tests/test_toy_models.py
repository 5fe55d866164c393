"""`GaussianMixtureScore` (exact scores) and `ToyScoreModel` (2-D MLP)."""

import json

import numpy as np
import pytest
import torch

from ncsn_pipeline import GaussianMixtureScore, ToyScoreModel


def _image_mixture() -> GaussianMixtureScore:
    means = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return GaussianMixtureScore(weights=[0.5, 0.3, 0.2], means=means.tolist(), stds=[0.1, 0.2, 0.3])


@pytest.mark.parametrize("model_factory", [GaussianMixtureScore.ncsn_toy, _image_mixture])
@pytest.mark.parametrize("sigma", [0.05, 1.0, torch.tensor([0.3, 2.0, 7.0, 0.01])])
def test_score_is_the_gradient_of_the_perturbed_log_density(model_factory, sigma):
    model = model_factory()
    shape = (4, *model.sample_shape)
    sample = (3 * torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))).requires_grad_()
    (gradient,) = torch.autograd.grad(model.log_prob(sample, sigma).sum(), sample)
    score = model(sample.detach(), sigma).sample
    torch.testing.assert_close(score, gradient, rtol=1e-9, atol=1e-12)


def test_single_gaussian_score_has_the_closed_form():
    model = GaussianMixtureScore(weights=[1.0], means=[[1.0, -2.0]], stds=[0.5])
    x = torch.tensor([[0.0, 0.0], [3.0, 1.0]], dtype=torch.float64)
    expected = -(x - torch.tensor([1.0, -2.0], dtype=torch.float64)) / (0.25 + 4.0)
    torch.testing.assert_close(model(x, 2.0).sample, expected)


def test_log_prob_integrates_to_one_in_two_dimensions():
    model = GaussianMixtureScore.ncsn_toy()
    grid = torch.linspace(-15, 15, 601, dtype=torch.float64)
    points = torch.cartesian_prod(grid, grid)
    cell = (grid[1] - grid[0]) ** 2
    total = (model.log_prob(points, 0.5).exp().sum() * cell).item()
    assert total == pytest.approx(1.0, abs=1e-6)


def test_config_is_plain_json_whatever_the_input_type(tmp_path):
    model = GaussianMixtureScore(
        weights=np.array([0.25, 0.75]), means=torch.tensor([[0.0, 1.0], [2.0, 3.0]]), stds=np.float64(0.5)
    )
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["weights"] == [0.25, 0.75] and config["stds"] == [0.5, 0.5]
    loaded = GaussianMixtureScore.from_pretrained(tmp_path)
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(loaded(x, 0.3).sample, model(x, 0.3).sample)
    assert loaded.sample_shape == (2,)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(weights=[0.5, 0.6], means=[[0.0], [1.0]], stds=1.0), r"sum to 1, got \[0.5, 0.6\]"),
        (dict(weights=[1.2, -0.2], means=[[0.0], [1.0]], stds=1.0), "positive and sum to 1"),
        (dict(weights=[0.5, 0.5], means=[[0.0]], stds=1.0), r"one array per weight \(2 weights\), got shape \(1, 1\)"),
        (dict(weights=[1.0], means=[[float("nan")]], stds=1.0), "means must be finite"),
        (dict(weights=[0.5, 0.5], means=[[0.0], [1.0]], stds=[1.0, 0.0]), r"stds must be 2 positive finite numbers"),
        (dict(weights=[0.5, 0.5], means=[[0.0], [1.0]], stds=[1.0]), r"stds must be 2 positive"),
        # Issue 21, item 11: these ended in torch's own messages, which named no argument.
        (dict(weights=[0.5, 0.5], means=[[0.0], [1.0, 2.0]], stds=1.0), r"means must be numbers \(a rectangular list"),
        (dict(weights="half", means=[[0.0], [1.0]], stds=1.0), r"weights must be numbers .*, got 'half'"),
        (dict(weights=[0.5, 0.5], means=[[0.0], [1.0]], stds=["a", "b"]), r"stds must be numbers"),
    ],
)
def test_bad_mixture_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixtureScore(**kwargs)


def test_bad_mixture_inputs():
    model = GaussianMixtureScore.ncsn_toy()
    with pytest.raises(ValueError, match=r"shape \(batch, 2\), got \(3, 3\)"):
        model(torch.zeros(3, 3), 1.0)
    with pytest.raises(ValueError, match=r"positive and finite, got \[0.0, 0.0, 0.0\]"):
        model(torch.zeros(3, 2), 0.0)
    with pytest.raises(ValueError, match=r"scalar or of shape \(3,\), got shape \(2,\)"):
        model(torch.zeros(3, 2), torch.ones(2))


def test_toy_model_contract_and_round_trip(tmp_path):
    model = ToyScoreModel(data_dim=2, hidden_size=16, num_layers=2)
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
    sigma = torch.linspace(0.1, 3.0, 6)
    output = model(x, sigma)
    assert output.sample.shape == (6, 2)
    assert model(x, sigma, return_dict=False)[0].shape == (6, 2)
    # The network's raw output is divided by sigma, so the score at sigma scales like 1/sigma.
    raw = model.net(torch.cat([x, sigma.log()[:, None]], dim=1))
    torch.testing.assert_close(output.sample * sigma[:, None], raw)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").exists()
    assert torch.equal(ToyScoreModel.from_pretrained(tmp_path)(x, sigma).sample, output.sample)


def test_toy_model_errors():
    model = ToyScoreModel(data_dim=2, hidden_size=8)
    with pytest.raises(ValueError, match=r"shape \(batch, 2\), got \(4, 3\)"):
        model(torch.zeros(4, 3), 1.0)
    with pytest.raises(ValueError, match="must be positive and finite"):
        model(torch.zeros(4, 2), float("nan"))
    with pytest.raises(ValueError, match="hidden_size must be a whole number from 1 to 65536, got 0"):
        ToyScoreModel(hidden_size=0)


def test_gaussian_score_is_the_exact_score_of_the_perturbed_gaussian():
    from ncsn_pipeline import GaussianScore

    covariance = torch.tensor([[2.0, 0.6, 0.0], [0.6, 1.0, 0.3], [0.0, 0.3, 0.5]], dtype=torch.float64)
    mean = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    model = GaussianScore(mean.tolist(), covariance.tolist(), shape=(3, 1, 1))
    points = torch.randn(4, 3, 1, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sigma = torch.tensor([0.1, 0.5, 1.0, 3.0], dtype=torch.float64)
    expected = torch.stack(
        [-torch.linalg.solve(covariance + s**2 * torch.eye(3, dtype=torch.float64), p.flatten() - mean)
         for p, s in zip(points, sigma)]
    )
    torch.testing.assert_close(model(points, sigma).sample.flatten(1), expected)
    unknown, conditional_mean, conditional_covariance = model.conditional([1], [0.0])
    assert unknown.tolist() == [0, 2]
    torch.testing.assert_close(conditional_mean, torch.tensor([1.0 + 0.6 * 2.0, 0.5 + 0.3 * 2.0], dtype=torch.float64))
    torch.testing.assert_close(conditional_covariance[0, 0], torch.tensor(2.0 - 0.36, dtype=torch.float64))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(mean=[0.0, 0.0], covariance=[[1.0, 0.0]]), r"covariance must be a finite 2 x 2 matrix"),
        (dict(mean=[0.0, 0.0], covariance=[[1.0, 0.5], [0.4, 1.0]]), "covariance must be symmetric"),
        (dict(mean=[0.0, 0.0], covariance=[[1.0, 2.0], [2.0, 1.0]]), "positive definite; its smallest eigenvalue"),
        (dict(mean=[0.0, float("nan")], covariance=[[1.0, 0.0], [0.0, 1.0]]), "mean must be a non-empty list"),
        (dict(mean=[0.0, 0.0], covariance=[[1.0, 0.0], [0.0, 1.0]], shape=(3,)), r"shape \(3,\) holds 3 values"),
        (dict(mean=[0.0, 0.0], covariance=[[1.0], [0.0, 1.0]]), r"covariance must be numbers \(a rectangular list"),
    ],
)
def test_gaussian_score_refuses_bad_definitions(kwargs, message):
    from ncsn_pipeline import GaussianScore

    with pytest.raises(ValueError, match=message):
        GaussianScore(**kwargs)
