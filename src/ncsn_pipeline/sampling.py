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

from .checks import check_integer, check_positive

Generator = Optional[Union[torch.Generator, List[torch.Generator]]]


def standard_normal(
    shape: Tuple[int, ...], generator: Generator = None, device=None, dtype: Optional[torch.dtype] = None
) -> torch.Tensor:
    """Standard normal noise, the same draws as diffusers' ``randn_tensor``; a single generator on the target device
    (or none) skips its checks, which cost more per step than the draw of a small batch.

    >>> standard_normal((2,), torch.Generator().manual_seed(0)).shape
    torch.Size([2])
    """
    if generator is None:
        return torch.randn(shape, device=device, dtype=dtype)
    if isinstance(generator, torch.Generator):
        target = device.type if isinstance(device, torch.device) else torch.device(device or "cpu").type
        if generator.device.type == target:
            return torch.randn(shape, generator=generator, device=device, dtype=dtype)
    return randn_tensor(shape, generator=generator, device=device, dtype=dtype)


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
    mean = torch.add(sample, score, alpha=step_size)  # fused multiply-add: no temporary for step_size * score
    return torch.add(mean, noise, alpha=math.sqrt(2.0 * step_size)), mean


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


def raise_if_not_finite(
    sample: torch.Tensor, where: Union[str, Callable[[], str]], advice: Union[str, Callable[[], str]]
) -> None:
    """Stop sampling with a clear message when ``sample`` holds NaN or infinite values.

    Args:
        sample (`torch.Tensor`): The sample to check.
        where (`str` or `Callable[[], str]`): Which step produced it (for example "noise level 3/10 (sigma=0.5)");
            a function is called only when the check fails (formatting costs time at every step).
        advice (`str` or `Callable[[], str]`): What the user should change (likewise).

    Raises:
        FloatingPointError: If any entry of ``sample`` is NaN or infinite.
    """
    # One reduction instead of an elementwise test: a NaN or an infinity anywhere makes the sum non-finite.
    if not math.isfinite(sample.sum().item()):
        where, advice = (text() if callable(text) else text for text in (where, advice))
        raise FloatingPointError(f"Sampling diverged: non-finite values after {where}. {advice}")


def langevin_dynamics(
    score_model: Callable,
    sample: torch.Tensor,
    sigma: float,
    step_size: float,
    num_steps: int,
    generator: Generator = None,
    callback: Optional[Callable[[int], None]] = None,
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
        callback (`Callable[[int], None]`, *optional*): Called after every update with the number of updates
            done (progress reporting; raising in it stops the run).

    Returns:
        `torch.Tensor`: The samples after ``num_steps`` updates.

    Example:
        >>> from ncsn_pipeline import GaussianMixtureScore
        >>> model = GaussianMixtureScore(weights=[1.0], means=[[0.0, 0.0]], stds=[1.0])
        >>> x = langevin_dynamics(model, torch.zeros(4, 2), sigma=0.1, step_size=0.1, num_steps=10)
        >>> x.shape
        torch.Size([4, 2])
    """
    step_size = check_positive("step_size", step_size)
    num_steps = check_integer("num_steps", num_steps)
    sigma_batch = torch.full((sample.shape[0],), float(sigma), device=sample.device, dtype=sample.dtype)
    for done in range(1, num_steps + 1):
        score = score_model(sample, sigma_batch).sample
        noise = standard_normal(sample.shape, generator, sample.device, sample.dtype)
        sample, _ = langevin_step(sample, score, step_size, noise)
        if callback is not None:
            callback(done)
    raise_if_not_finite(sample, f"{num_steps} Langevin steps at sigma={sigma}", "Use a smaller step_size.")
    return sample


def plain_and_annealed(
    pipeline,
    batch_size: int,
    seed: int,
    num_inference_steps: Optional[int] = None,
    callback_on_step_end=None,
    callback_on_plain_step: Optional[Callable[[int], None]] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Plain Langevin dynamics at the smallest noise level next to the pipeline's own sampler (NCSN's Figure 3).

    Both start from the very same points (the pipeline's first draw with ``seed``) and evaluate the score
    equally often; plain Langevin takes the sampler's own Langevin step at ``sigma_min``
    (``scheduler.langevin_step_size``). On separated modes only the annealed sampler recovers the weights.

    Args:
        pipeline (`NCSNPipeline`): The model and its sampler.
        batch_size (`int`): Samples per method.
        seed (`int`): Seed of the shared start and of each method's noise.
        num_inference_steps (`int`, *optional*): Noise levels of the annealed run.
        callback_on_step_end (`Callable`, *optional*): Passed to the pipeline's call.
        callback_on_plain_step (`Callable[[int], None]`, *optional*): Passed to `langevin_dynamics` as its
            ``callback`` (called after every plain Langevin update).

    Returns:
        `Tuple[torch.Tensor, torch.Tensor]`: ``(plain, annealed)`` samples, each ``(batch_size, *sample_shape)``.

    Example:
        >>> from ncsn_pipeline.pretrained import load_pretrained
        >>> pipe = load_pretrained("ncsn-toy")
        >>> pipe.set_progress_bar_config(disable=True)
        >>> plain, annealed = plain_and_annealed(pipe, batch_size=500, seed=0)
        >>> [round(w, 1) for w in pipe.unet.mode_weights(annealed)]
        [0.2, 0.8]
    """
    annealed = pipeline(
        batch_size=batch_size,
        generator=torch.Generator().manual_seed(seed),
        num_inference_steps=num_inference_steps,
        output_type="pt",
        callback_on_step_end=callback_on_step_end,
    ).images
    scheduler = pipeline.scheduler
    sigma_min = float(scheduler.timesteps[-1])
    generator = torch.Generator().manual_seed(seed)
    start = randn_tensor(annealed.shape, generator=generator, dtype=annealed.dtype) * scheduler.init_noise_sigma
    with torch.inference_mode():
        plain = langevin_dynamics(
            pipeline.unet,
            start.to(pipeline.device),
            sigma_min,
            scheduler.langevin_step_size(sigma_min),
            scheduler.num_model_calls,
            generator=generator,
            callback=callback_on_plain_step,
        )
    return plain, annealed
