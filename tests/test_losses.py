"""Score-matching losses: minimised by the true score, consistent with each other."""

import pytest
import torch

from ncsn_pipeline import GaussianMixtureScore, ToyScoreModel
from ncsn_pipeline.losses import denoising_score_matching_loss, sliced_score_matching_loss


def _data(num: int = 4096, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    clean = torch.randn(num, 2, generator=generator, dtype=torch.float64) * 0.5 + torch.tensor([1.0, -1.0])
    sigma = torch.rand(num, generator=generator, dtype=torch.float64) * 1.5 + 0.5
    noise = torch.randn(num, 2, generator=generator, dtype=torch.float64)
    projections = torch.randn(num, 2, generator=generator, dtype=torch.float64)
    return clean, sigma, noise, projections


def _exact(scale: float = 1.0) -> GaussianMixtureScore:
    # The data above is N((1, -1), 0.25 I): its sigma-perturbed score is exact in this model.
    return GaussianMixtureScore(weights=[1.0], means=[[1.0, -1.0]], stds=[0.5 * scale])


def test_dsm_is_smallest_at_the_true_score():
    clean, sigma, noise, _ = _data()
    true_loss = denoising_score_matching_loss(_exact(), clean, sigma, noise)
    for wrong in (0.5, 2.0):
        assert denoising_score_matching_loss(_exact(wrong), clean, sigma, noise) > true_loss
    # At the optimum the weighted DSM loss is E[1/2 ||z - sigma^2/(s^2+sigma^2) z'||^2]-like, not 0:
    # its value for a Gaussian is D/2 * E[s^2 / (s^2 + sigma^2)] (Vincent 2011). 4096 samples: ~1% error.
    expected = (0.25 / (0.25 + sigma**2)).mean().item()  # D/2 = 1
    assert true_loss.item() == pytest.approx(expected, rel=0.05)
    assert true_loss.dtype == torch.float32


def test_ssm_is_smallest_at_the_true_score_and_matches_dsm_up_to_a_constant():
    clean, sigma, noise, projections = _data()
    ssm = {
        scale: sliced_score_matching_loss(_exact(scale), clean, sigma, noise, projections).item()
        for scale in (0.5, 1.0, 2.0)
    }
    dsm = {scale: denoising_score_matching_loss(_exact(scale), clean, sigma, noise).item() for scale in (0.5, 1.0, 2.0)}
    assert ssm[1.0] < ssm[0.5] and ssm[1.0] < ssm[2.0]
    # Both estimate the same Fisher divergence up to a model-independent constant: the differences agree.
    assert ssm[2.0] - ssm[1.0] == pytest.approx(dsm[2.0] - dsm[1.0], rel=0.15)


def test_losses_give_gradients_to_every_parameter():
    model = ToyScoreModel(hidden_size=8, num_layers=2)
    clean, sigma, noise, projections = (t.float()[:64] for t in _data())
    for loss in (
        denoising_score_matching_loss(model, clean, sigma, noise),
        sliced_score_matching_loss(model, clean, sigma, noise, projections),
    ):
        model.zero_grad()
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
