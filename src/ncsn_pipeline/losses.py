"""Score-matching losses for noise-conditional score networks, in the papers' symbols.

Both losses take a score model following the package contract (``model(x, sigma).sample``),
clean data ``x``, one noise level ``sigma`` per example and the Gaussian noise ``z`` (drawn by the
caller, so that training randomness stays under the caller's generator), and return the batch
mean as a float32 scalar whatever precision the model ran in.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch


def _per_example(sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape ``(batch,)`` noise levels to broadcast over ``like``'s other dimensions."""
    return sigma.reshape(-1, *([1] * (like.ndim - 1)))


def denoising_score_matching_loss(
    model: Callable,
    clean: torch.Tensor,
    sigma: torch.Tensor,
    noise: torch.Tensor,
    weight: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Denoising score matching with weighting ``lambda(sigma) = sigma**2`` (NCSN, Song & Ermon 2019, eq. 5-6).

    1. Perturb: ``x_noisy = x + sigma * z``.
    2. The perturbation kernel's score is ``-(x_noisy - x) / sigma**2 = -z / sigma``.
    3. ``lambda(sigma) * 1/2 ||s(x_noisy, sigma) + z / sigma||**2 = 1/2 ||sigma * s(x_noisy, sigma) + z||**2``,
       summed over dimensions, times ``weight`` (if given), averaged over the batch.

    Args:
        model (`Callable`): Score model, ``model(x_noisy, sigma).sample``.
        clean (`torch.Tensor`): Clean data ``x``, shape ``(batch, ...)``.
        sigma (`torch.Tensor`): One noise level per example, shape ``(batch,)``.
        noise (`torch.Tensor`): Standard normal ``z``, same shape as ``clean``.
        weight (`torch.Tensor`, *optional*): A further weight per example, shape ``(batch,)``, e.g.
            `edm_loss_weight` (default: 1, NCSN's loss).

    Returns:
        `torch.Tensor`: The loss, a float32 scalar.

    Example:
        >>> from ncsn_pipeline import GaussianMixtureScore
        >>> exact = GaussianMixtureScore(weights=[1.0], means=[[0.0]], stds=[1e-3])  # data: a point at 0
        >>> x, z = torch.zeros(4, 1), torch.randn(4, 1)
        >>> round(denoising_score_matching_loss(exact, x, torch.full((4,), 2.0), z).item(), 4)  # exact score: ~0
        0.0
    """
    noisy = clean + _per_example(sigma, clean) * noise
    score = model(noisy, sigma).sample
    # fp32 here: at sigma = 0.01 the target z/sigma squared and summed over an image overflows fp16.
    residual = _per_example(sigma, clean).float() * score.float() + noise.float()
    per_example = 0.5 * residual.pow(2).flatten(1).sum(dim=1)
    if weight is not None:
        per_example = weight.float() * per_example
    return per_example.mean()


def edm_loss_weight(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """The weight that turns `denoising_score_matching_loss` into EDM's loss (Karras et al. 2022, eq. 8 and Table 1).

    With the denoiser ``D = x_noisy + sigma**2 s``, the residual of the loss above is ``sigma s + z = (D - x) / sigma``,
    so NCSN's loss is ``1/2 ||D - x||**2 / sigma**2``. EDM weighs ``||D - x||**2`` by ``(sigma**2 + sigma_data**2) /
    (sigma sigma_data)**2`` (a unit-variance target for the preconditioned network at every sigma), which is NCSN's
    loss times ``(sigma**2 + sigma_data**2) / sigma_data**2``.

    Example:
        >>> edm_loss_weight(torch.tensor([0.0, 0.5]), sigma_data=0.5).tolist()
        [1.0, 2.0]
    """
    return (sigma.float() ** 2 + sigma_data**2) / sigma_data**2


def log_normal_noise_levels(
    count: int, mean: float, std: float, generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """``count`` noise levels with ``log(sigma) ~ N(mean, std**2)`` (EDM's training distribution, Karras et al. 2022,
    section 5: ``P_mean = -1.2``, ``P_std = 1.2`` for data with ``sigma_data = 0.5``)."""
    return torch.exp(mean + std * torch.randn(count, generator=generator))


def sliced_score_matching_loss(
    model: Callable,
    clean: torch.Tensor,
    sigma: torch.Tensor,
    noise: torch.Tensor,
    projections: torch.Tensor,
) -> torch.Tensor:
    """Sliced score matching on noise-perturbed data (Song, Garg, Shi & Ermon 2019; NCSN section 4.2).

    1. Perturb: ``x_noisy = x + sigma * z`` (the model learns the score of the perturbed data).
    2. With a random projection ``v``: ``1/2 (v^T s)**2 + v^T grad_x (v^T s)``, which equals the Fisher
       divergence to the perturbed data's score up to a constant, without knowing that score.
    3. Weight by ``lambda(sigma) = sigma**2`` and average over the batch (and projections).

    Needs a second backward pass through the model (the Jacobian-vector product in step 2), so it
    costs about twice as much as denoising score matching.

    Args:
        model (`Callable`): Score model, ``model(x_noisy, sigma).sample``.
        clean (`torch.Tensor`): Clean data ``x``, shape ``(batch, ...)``.
        sigma (`torch.Tensor`): One noise level per example, shape ``(batch,)``.
        noise (`torch.Tensor`): Standard normal ``z``, same shape as ``clean``.
        projections (`torch.Tensor`): Random directions ``v`` (e.g. standard normal), same shape as ``clean``.

    Returns:
        `torch.Tensor`: The loss, a float32 scalar.
    """
    noisy = (clean + _per_example(sigma, clean) * noise).detach().requires_grad_(True)
    score = model(noisy, sigma).sample.float()
    projected = (score * projections.float()).flatten(1).sum(dim=1)  # v^T s, per example
    (gradient,) = torch.autograd.grad(projected.sum(), noisy, create_graph=True)
    divergence_term = (projections.float() * gradient.float()).flatten(1).sum(dim=1)  # v^T grad(v^T s)
    per_example = 0.5 * projected.pow(2) + divergence_term
    return (sigma.float().pow(2) * per_example).mean()
