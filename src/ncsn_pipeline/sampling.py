"""Langevin-dynamics building blocks shared by the schedulers, as small pure functions.

Every function works on the score contract of this package: a score model is called as
``score_model(sample, sigma).sample`` and returns ``s(x, sigma) ~ grad_x log p_sigma(x)``.

Step-size convention (used everywhere in this package): the update is the one of the NCSN
reference code, ``x <- x + alpha * score + sqrt(2 * alpha) * z``. The paper's Algorithm 1 writes
``x + (alpha / 2) * score + sqrt(alpha) * z``; for the same ``step_lr`` our step is twice the paper's,
so settings copied from the released configs (which were tuned with the code) carry over as-is.
"""

from __future__ import annotations

import math
from typing import Callable, List, Optional, Tuple, Union

import torch
from diffusers.utils.torch_utils import randn_tensor

Generator = Optional[Union[torch.Generator, List[torch.Generator]]]


def langevin_step(
    sample: torch.Tensor, score: torch.Tensor, step_size: float, noise: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor]:
    """One Langevin update ``x <- x + alpha * s(x) + sqrt(2 * alpha) * z`` (NCSN, Algorithm 1, code convention).

    Args:
        sample (`torch.Tensor`): Current sample ``x``.
        score (`torch.Tensor`): Score ``s(x)`` at ``sample``.
        step_size (`float`): ``alpha`` (> 0).
        noise (`torch.Tensor`): Standard normal noise ``z``, same shape as ``sample``.

    Returns:
        `Tuple[torch.Tensor, torch.Tensor]`: The new sample and its noise-free mean ``x + alpha * s(x)``.

    Example:
        >>> x = torch.zeros(2)
        >>> langevin_step(x, score=-x, step_size=0.5, noise=torch.ones(2))[0]
        tensor([1., 1.])
    """
    mean = sample + step_size * score
    return mean + math.sqrt(2.0 * step_size) * noise, mean


def denoise_step(sample: torch.Tensor, score: torch.Tensor, sigma: float) -> torch.Tensor:
    """Tweedie's denoising step ``x <- x + sigma**2 * s(x, sigma)`` (NCSNv2, section 3.5 / Appendix C.2).

    For ``x = x_0 + sigma * z`` this is the posterior mean ``E[x_0 | x]`` when the score is exact;
    NCSNv2 applies it once after the last noise level to remove the residual noise.

    Args:
        sample (`torch.Tensor`): Noisy sample at level ``sigma``.
        score (`torch.Tensor`): Score ``s(x, sigma)``.
        sigma (`float`): The noise level.

    Returns:
        `torch.Tensor`: The denoised sample.
    """
    return sample + sigma**2 * score


def add_noise_per_example(clean: torch.Tensor, noise: torch.Tensor, sigma: Union[float, torch.Tensor]) -> torch.Tensor:
    """Perturb data with Gaussian noise: ``x + sigma * z`` (NCSN eq. 5's kernel; the VE SDE's transition).

    Args:
        clean (`torch.Tensor`): Clean data ``x``, shape ``(batch, ...)``.
        noise (`torch.Tensor`): Standard normal ``z``, same shape.
        sigma (`float` or `torch.Tensor`): The noise level, a scalar or one per example ``(batch,)``.

    Returns:
        `torch.Tensor`: The noisy samples.
    """
    sigma = torch.as_tensor(sigma, device=clean.device, dtype=clean.dtype)
    if sigma.ndim == 1:
        if sigma.shape[0] != clean.shape[0]:
            raise ValueError(f"timesteps has {sigma.shape[0]} noise levels for a batch of {clean.shape[0]}.")
        sigma = sigma.reshape(-1, *([1] * (clean.ndim - 1)))
    elif sigma.ndim != 0:
        raise ValueError(f"timesteps must be a scalar or of shape (batch,), got shape {tuple(sigma.shape)}.")
    return clean + sigma * noise


def raise_if_not_finite(sample: torch.Tensor, where: str, advice: str) -> None:
    """Stop sampling with a clear message when ``sample`` holds NaN or infinite values.

    Args:
        sample (`torch.Tensor`): The sample to check.
        where (`str`): Which step produced it (for example "noise level 3/10 (sigma=0.5)").
        advice (`str`): What the user should change.

    Raises:
        FloatingPointError: If any entry of ``sample`` is NaN or infinite.
    """
    if not torch.isfinite(sample).all():
        raise FloatingPointError(f"Sampling diverged: non-finite values after {where}. {advice}")


def langevin_dynamics(
    score_model: Callable,
    sample: torch.Tensor,
    sigma: float,
    step_size: float,
    num_steps: int,
    generator: Generator = None,
) -> torch.Tensor:
    """Plain (non-annealed) Langevin dynamics at one fixed noise level.

    This is the sampler NCSN improves on (Song & Ermon 2019, section 3.2): with a single small
    ``sigma`` it cannot move mass between separated modes, so the mixture weights it returns depend
    on where it started rather than on the data. Kept for comparisons and teaching.

    Args:
        score_model (`Callable`): Called as ``score_model(sample, sigma_batch).sample``.
        sample (`torch.Tensor`): Starting points, shape ``(batch, ...)``.
        sigma (`float`): The fixed noise level given to the model.
        step_size (`float`): ``alpha`` of every update (code convention, see module docstring).
        num_steps (`int`): Number of updates (= model calls).
        generator (`torch.Generator` or list, *optional*): For reproducible noise.

    Returns:
        `torch.Tensor`: The samples after ``num_steps`` updates.

    Example:
        >>> from ncsn_pipeline import GaussianMixtureScore
        >>> model = GaussianMixtureScore(weights=[1.0], means=[[0.0, 0.0]], stds=[1.0])
        >>> x = langevin_dynamics(model, torch.zeros(4, 2), sigma=0.1, step_size=0.1, num_steps=10)
        >>> x.shape
        torch.Size([4, 2])
    """
    if not (math.isfinite(step_size) and step_size > 0):
        raise ValueError(f"step_size must be a positive finite number, got {step_size!r}.")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}.")
    sigma_batch = torch.full((sample.shape[0],), float(sigma), device=sample.device, dtype=sample.dtype)
    for _ in range(num_steps):
        score = score_model(sample, sigma_batch).sample
        noise = randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)
        sample, _ = langevin_step(sample, score, step_size, noise)
    raise_if_not_finite(sample, f"{num_steps} Langevin steps at sigma={sigma}", "Use a smaller step_size.")
    return sample
