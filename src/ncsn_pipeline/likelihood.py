"""Exact likelihoods of score models through the probability-flow ODE, and bits per dimension.

Song et al. (2021), "Score-Based Generative Modeling through Stochastic Differential Equations"
(https://arxiv.org/abs/2011.13456), section 4.3 and Appendix D.2: the probability-flow ODE of the VE SDE,
``dx/dsigma = -sigma s(x, sigma)``, maps ``p_sigma_min`` onto ``p_sigma_max`` one to one, and along a trajectory
the log-density changes by the divergence of its velocity (the instantaneous change of variables of Chen et al.
2018, "Neural Ordinary Differential Equations"). Integrated in ``t = log sigma``, where the velocity is
``v(x, t) = -sigma**2 s(x, sigma)``:

1. ``d x / dt = v(x, t)`` and ``d log p_t(x(t)) / dt = -div v(x(t), t) = sigma**2 div s(x(t), sigma)``.
2. From ``t_0 = log sigma_min`` (the data point) to ``t_1 = log sigma_max``:
   ``log p_sigma_min(x) = log p_sigma_max(x(t_1)) + integral_{t_0}^{t_1} div v dt`` with ``div v = -sigma**2 div s``.
3. ``p_sigma_max`` is replaced by the prior ``N(0, sigma_max**2 I)`` that sampling starts from.

So the estimate is the log-density of the data **perturbed to sigma_min** (not of the clean data), and it is off by
the prior mismatch ``log N(x(t_1); 0, sigma_max**2 I) - log p_sigma_max(x(t_1))``, which vanishes as ``sigma_max``
grows past the data's spread and distance from the origin (for data ``N(mu, s**2 I)`` in ``D`` dimensions its mean
is about ``|mu|**2 / (2 sigma_max**2) + D s**2 / (2 sigma_max**2)`` nats; `gaussian_prior_mismatch`).

The divergence is computed exactly (``D`` vector-Jacobian products, for small data) or by the Hutchinson-Skilling
estimator ``div s ~ mean_k eps_k^T (d s / d x) eps_k`` with Rademacher or Gaussian probes ``eps_k`` drawn once per
example (so the ODE stays deterministic), unbiased, with a variance that more probes reduce.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import torch

from .bounds import MAX_PROBES
from .checks import check_choice, check_integer, check_positive

DIVERGENCES = ("hutchinson", "exact")
PROBES = ("rademacher", "gaussian")


@dataclass
class LogLikelihoodResult:
    """What `log_likelihood` returns; each tensor has one entry per example (float64).

    Args:
        log_likelihood (`torch.Tensor`): ``log p_sigma_min(x)`` in nats: ``prior_log_prob + delta_log_prob``.
        prior_log_prob (`torch.Tensor`): ``log N(x(t_1); 0, sigma_max**2 I)``.
        delta_log_prob (`torch.Tensor`): The integral of the divergence along the trajectory.
        latent (`torch.Tensor`): ``x(t_1)``, the end of the trajectory at ``sigma_max``.
        num_model_calls (`int`): Score evaluations the ODE solver made (each one batched over the examples; the
            Hutchinson estimator with several probes makes one per probe within it).
        bits_per_dim (`torch.Tensor`, *optional*): `bits_per_dim` of the examples, where the data's number of
            levels was given.
    """

    log_likelihood: torch.Tensor
    prior_log_prob: torch.Tensor
    delta_log_prob: torch.Tensor
    latent: torch.Tensor
    num_model_calls: int
    bits_per_dim: Optional[torch.Tensor] = None


def gaussian_log_prob(sample: torch.Tensor, sigma: float) -> torch.Tensor:
    """``log N(x; 0, sigma**2 I)`` per example (float64).

    >>> round(float(gaussian_log_prob(torch.zeros(1, 2), 1.0)[0]), 4)  # -log(2 pi)
    -1.8379
    """
    flat = sample.reshape(sample.shape[0], -1).double()
    dims = flat.shape[1]
    return -0.5 * (flat**2).sum(dim=1) / sigma**2 - dims * math.log(sigma) - 0.5 * dims * math.log(2 * math.pi)


def gaussian_prior_mismatch(mean_norm: float, std: float, dims: int, sigma_max: float) -> float:
    """Expected ``log N(y; 0, sigma_max**2 I) - log p_sigma_max(y)`` for data ``N(mu, std**2 I)`` (``|mu| =
    mean_norm``), ``y ~ p_sigma_max``: the bias of the estimate when the prior replaces ``p_sigma_max`` (nats).

    It is the negative KL divergence ``-KL(p_sigma_max || prior)``: ``-(D/2) (r - 1 - log r) - |mu|**2 / (2
    sigma_max**2)`` with ``r = (std**2 + sigma_max**2) / sigma_max**2``.

    >>> round(gaussian_prior_mismatch(3.0, 1.0, 64, 50.0), 4)  # nats, over all 64 dimensions
    -0.0018
    """
    ratio = (std**2 + sigma_max**2) / sigma_max**2
    return -0.5 * dims * (ratio - 1 - math.log(ratio)) - mean_norm**2 / (2 * sigma_max**2)


def draw_probes(shape: Tuple[int, ...], num_probes: int, probe: str, generator=None, device=None, dtype=None):
    """``num_probes`` probe tensors of ``shape`` for the Hutchinson-Skilling estimator: Rademacher (+-1) or N(0, 1)."""
    check_choice("probe", probe, PROBES)
    draws = torch.randn((num_probes, *shape), generator=generator, device=device, dtype=dtype)
    return draws.sign() if probe == "rademacher" else draws


def score_divergence(
    score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    sample: torch.Tensor,
    sigma: torch.Tensor,
    probes: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The score at ``sample`` and its divergence ``div_x s(x, sigma)`` per example.

    Args:
        score_fn (`Callable`): ``score_fn(x, sigma_batch)`` returns ``s(x, sigma)``, differentiable in ``x``.
        sample (`torch.Tensor`): ``(batch, ...)``.
        sigma (`torch.Tensor`): ``(batch,)`` noise levels.
        probes (`torch.Tensor`, *optional*): ``(num_probes, batch, ...)`` for the Hutchinson-Skilling estimate
            (the mean of ``eps^T J eps`` over the probes); `None` for the exact divergence (one vector-Jacobian
            product per dimension: for small data).

    Returns:
        `Tuple[torch.Tensor, torch.Tensor]`: the score (detached) and the divergence, ``(batch,)``.
    """
    with torch.enable_grad():
        point = sample.detach().requires_grad_(True)
        score = score_fn(point, sigma)
        if probes is not None:
            total = torch.zeros(sample.shape[0], dtype=score.dtype, device=score.device)
            for index, probe in enumerate(probes):
                (vjp,) = torch.autograd.grad(score, point, probe, retain_graph=index < len(probes) - 1)
                total = total + (vjp * probe).reshape(sample.shape[0], -1).sum(dim=1)
            divergence = total / len(probes)
        else:
            flat_score = score.reshape(sample.shape[0], -1)
            dims = flat_score.shape[1]
            divergence = torch.zeros(sample.shape[0], dtype=score.dtype, device=score.device)
            for dim in range(dims):
                (grad,) = torch.autograd.grad(flat_score[:, dim].sum(), point, retain_graph=dim < dims - 1)
                divergence = divergence + grad.reshape(sample.shape[0], -1)[:, dim]
    return score.detach(), divergence.detach()


def log_likelihood(
    score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    samples: torch.Tensor,
    sigma_min: float,
    sigma_max: float,
    divergence: str = "hutchinson",
    num_probes: int = 1,
    probe: str = "rademacher",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    method: str = "dopri5",
    generator: Optional[torch.Generator] = None,
) -> LogLikelihoodResult:
    r"""``log p_sigma_min(x)`` of a score model by the probability-flow ODE (steps 1-3 of the module docstring).

    Args:
        score_fn (`Callable`): ``score_fn(x, sigma_batch)`` returns the score ``s(x, sigma)``; it must be
            differentiable in ``x`` (a model's ``lambda x, s: model(x, s).sample``).
        samples (`torch.Tensor`): Data ``(batch, ...)`` in the model's data space.
        sigma_min (`float`): Where the trajectory starts (the estimate is the density of data perturbed to it).
        sigma_max (`float`): Where it ends and the prior ``N(0, sigma_max**2 I)`` is evaluated.
        divergence (`str`, defaults to ``"hutchinson"``): ``"hutchinson"`` or ``"exact"``.
        num_probes (`int`, defaults to 1): Probes averaged by the Hutchinson-Skilling estimator.
        probe (`str`, defaults to ``"rademacher"``): ``"rademacher"`` or ``"gaussian"``.
        rtol (`float`, defaults to 1e-5), atol (`float`, defaults to 1e-5): Tolerances of the adaptive solver.
        method (`str`, defaults to ``"dopri5"``): A `torchdiffeq` solver (adaptive: ``"dopri5"``, ``"bosh3"``, ...).
        generator (`torch.Generator`, *optional*): For the probes.

    Returns:
        `LogLikelihoodResult`

    Example:
        >>> from ncsn_pipeline import GaussianMixtureScore
        >>> model = GaussianMixtureScore(weights=[1.0], means=[[1.0, -1.0]], stds=[0.5])
        >>> x = torch.tensor([[1.2, -0.7]])
        >>> result = log_likelihood(lambda x, s: model(x, s).sample, x, 0.01, 100.0, divergence="exact")
        >>> round(float(result.log_likelihood[0]), 2), round(float(model.log_prob(x, 0.01)[0]), 2)
        (-0.71, -0.71)
    """
    from torchdiffeq import odeint

    sigma_min, sigma_max = check_positive("sigma_min", sigma_min), check_positive("sigma_max", sigma_max)
    if sigma_min >= sigma_max:
        raise ValueError(f"sigma_min ({sigma_min}) must be smaller than sigma_max ({sigma_max}).")
    check_choice("divergence", divergence, DIVERGENCES)
    num_probes = check_integer("num_probes", num_probes, low=1, high=MAX_PROBES)
    check_positive("rtol", rtol)
    check_positive("atol", atol)
    if not isinstance(samples, torch.Tensor) or samples.ndim < 2 or samples.shape[0] == 0:
        raise ValueError(f"samples must be a tensor of shape (batch, ...) with batch >= 1, got {type(samples)}.")
    if not torch.isfinite(samples).all():
        raise ValueError("samples contain NaN or infinite values.")
    batch = samples.shape[0]
    probes = None
    if divergence == "hutchinson":
        probes = draw_probes(samples.shape, num_probes, probe, generator, samples.device, samples.dtype)
    calls = 0

    def velocity(time: torch.Tensor, state):
        # 1. In t = log sigma: dx/dt = -sigma^2 s, d(delta log p)/dt = div v = -sigma^2 div s.
        nonlocal calls
        point, _ = state
        sigma = torch.exp(time).to(point.dtype)
        score, div = score_divergence(score_fn, point, sigma.expand(batch), probes)
        calls += 1
        return -(sigma**2) * score, -(sigma**2) * div

    times = torch.tensor([math.log(sigma_min), math.log(sigma_max)], dtype=torch.float64, device=samples.device)
    start = (samples.detach(), torch.zeros(batch, dtype=samples.dtype, device=samples.device))
    with torch.no_grad():
        points, deltas = odeint(velocity, start, times.to(samples.dtype), rtol=rtol, atol=atol, method=method)
    latent, delta = points[-1], deltas[-1].double()
    # 2.-3. log p_sigma_min(x) = log prior(x(t_1)) + integral of div v.
    prior = gaussian_log_prob(latent, sigma_max)
    return LogLikelihoodResult(prior + delta, prior, delta, latent, calls)


def bin_width(num_levels: int, data_range: Tuple[float, float] = (0, 1)) -> float:
    """Width of a bin of discrete data with ``num_levels`` values encoded as ``low + (high - low) k / (num_levels -
    1)`` (how ``ncsn-train`` maps images to ``data_range``): ``(high - low) / (num_levels - 1)``, bins centred on
    the encoded values."""
    check_integer("num_levels", num_levels, low=2)
    low, high = data_range
    return (high - low) / (num_levels - 1)


def bits_per_dim(
    log_likelihood_nats: torch.Tensor, num_dims: int, num_levels: int = 256, data_range: Tuple[float, float] = (0, 1)
) -> torch.Tensor:
    """Bits per dimension of discrete data from the log-density of its dequantized version (nats per example).

    With `uniform_dequantize` each value is spread uniformly over its bin of width ``w`` (`bin_width`). The
    probability of a bin is at least ``w**D`` times the mean density over it (Jensen), so ``-log2 P(k) / D <=
    -log p(x) / (D ln 2) - log2 w``: the "offset" ``-log2 w``. It is ``log2 255 = 7.994`` for 8-bit data on ``[0,
    1]`` (``log2 127.5 = 6.994`` on ``[-1, 1]``); score_sde_pytorch adds 8 (7), for bins ``[k / 256, (k + 1) /
    256)``, which do not match training data encoded as ``k / 255``: 0.006 bits per dimension apart.

    >>> round(float(bits_per_dim(torch.tensor([0.0]), num_dims=3072)[0]), 3)  # a flat density of volume 1
    7.994
    """
    return -log_likelihood_nats.double() / (num_dims * math.log(2)) - math.log2(bin_width(num_levels, data_range))


def uniform_dequantize(
    levels: torch.Tensor, num_levels: int = 256, data_range: Tuple[float, float] = (0, 1), generator=None
) -> torch.Tensor:
    """Integer data ``k`` in ``0 .. num_levels - 1`` -> ``low + w (k + u - 1/2)``, ``u ~ U[0, 1)``, ``w`` =
    `bin_width`: uniform noise over the bin centred on the value ``ncsn-train`` encodes ``k`` as, whose density
    bounds the discrete probabilities (`bits_per_dim`).

    >>> x = uniform_dequantize(torch.tensor([[0, 255]]), generator=torch.Generator().manual_seed(0))
    >>> bool((x[0, 0].abs() <= 0.5 / 255) & ((x[0, 1] - 1).abs() <= 0.5 / 255))
    True
    """
    num_levels = check_integer("num_levels", num_levels, low=2)
    if levels.is_floating_point() and not torch.equal(levels, levels.round()):
        raise ValueError("levels must hold integers 0 .. num_levels - 1 (the discrete data, not scaled values).")
    if levels.min() < 0 or levels.max() > num_levels - 1:
        raise ValueError(
            f"levels must lie in 0 .. {num_levels - 1}, got values from {int(levels.min())} to {int(levels.max())}."
        )
    noise = torch.rand(levels.shape, generator=generator, device=levels.device)
    return data_range[0] + bin_width(num_levels, data_range) * (levels.double() + noise.double() - 0.5)


def pipeline_log_likelihood(
    pipe,
    samples: torch.Tensor,
    batch_size: int = 64,
    num_levels: Optional[int] = None,
    sigma_min: Optional[float] = None,
    sigma_max: Optional[float] = None,
    divergence: str = "hutchinson",
    num_probes: int = 1,
    probe: str = "rademacher",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    generator: Optional[torch.Generator] = None,
) -> LogLikelihoodResult:
    r"""`NCSNPipeline.log_likelihood`: the log-density of data under ``pipe``'s model, by the probability-flow ODE.

    The estimate is ``log p_sigma_min(x)``: the density of the data perturbed by ``N(0, sigma_min**2 I)``,
    with the prior ``N(0, sigma_max**2 I)`` standing in for ``p_sigma_max`` (see this module's docstring for
    what both mean and how large the mismatch is).

    Args:
        pipe (`NCSNPipeline`): The pipeline whose score model and noise range (its sampler's) are used.
        samples (`torch.Tensor`): Data ``(N, *sample_shape)`` in the pipeline's data space (for images, the
            ``data_range``, e.g. dequantized pixels from `ncsn_pipeline.likelihood.uniform_dequantize`).
        batch_size (`int`, defaults to 64): Examples per ODE solve.
        num_levels (`int`, *optional*): Levels per dimension of the discrete data (256 for 8-bit images):
            adds ``bits_per_dim`` for data dequantized onto the pipeline's ``data_range``.
        sigma_min (`float`, *optional*), sigma_max (`float`, *optional*): The ends of the trajectory
            (default: the sampler's).
        divergence (`str`, defaults to ``"hutchinson"``): As in `ncsn_pipeline.likelihood.log_likelihood`, as
            are ``num_probes`` (`int`, defaults to 1), ``probe`` (`str`, defaults to ``"rademacher"``),
            ``rtol`` and ``atol`` (`float`) and ``generator`` (`torch.Generator`).

    Returns:
        `LogLikelihoodResult`: per example, float64; ``num_model_calls`` summed over the batches.

    Example:
        >>> import torch
        >>> from ncsn_pipeline import GaussianMixtureScore, NCSNPipeline, NCSNScheduler
        >>> pipe = NCSNPipeline(GaussianMixtureScore.ncsn_toy(), NCSNScheduler.from_preset("ncsn-toy"))
        >>> points = torch.tensor([[5.0, 5.0], [-5.0, -5.0]])
        >>> result = pipe.log_likelihood(points, sigma_max=200.0, divergence="exact")  # sampler's sigma_min: 1
        >>> [round(value, 2) for value in result.log_likelihood.tolist()]  # exact: -2.75, -4.14 (see below)
        [-2.76, -4.11]

        The exact values are ``log w_k - log(4 pi)`` (modes of variance 1 + 1 at sigma_min = 1); the
        differences are the prior mismatch at ``sigma_max = 200``, largest for the rarer mode, whose points the
        flow carries far out (to about (-178, -178)), where ``p_sigma_max`` is not quite ``N(0, 200**2 I)``.
    """
    batch_size = check_integer("batch_size", batch_size)
    # Every setting is checked before the first ODE solve (they were once checked after it).
    if num_levels is not None:
        num_levels = check_integer("num_levels", num_levels, low=2)
    num_probes = check_integer("num_probes", num_probes, high=MAX_PROBES)
    check_choice("divergence", divergence, list(DIVERGENCES))
    check_choice("probe", probe, list(PROBES))
    samples = torch.as_tensor(samples)
    if samples.ndim < 2 or tuple(samples.shape[1:]) != tuple(pipe.sample_shape):
        raise ValueError(
            f"samples must have shape (N, {', '.join(map(str, pipe.sample_shape))}) for this pipeline, got "
            f"{tuple(samples.shape)}."
        )
    if samples.shape[0] == 0 or not samples.is_floating_point() or not bool(torch.isfinite(samples).all()):
        raise ValueError(
            f"samples must be at least one finite floating-point example, got {samples.shape[0]} of dtype "
            f"{samples.dtype} (integer pixels: dequantize them first, ncsn_pipeline.likelihood.uniform_dequantize)."
        )
    if num_levels is not None and pipe.config.data_range is None:
        raise ValueError("num_levels (bits per dimension of discrete data) needs image data with a data_range.")
    config = pipe.scheduler.config
    sigma_min = float(config.sigma_min) if sigma_min is None else sigma_min
    sigma_max = float(config.sigma_max) if sigma_max is None else sigma_max

    def score_fn(x, sigma):
        return pipe.unet(x, sigma).sample

    parts = []
    for start in pipe.progress_bar(range(0, samples.shape[0], batch_size)):
        batch = samples[start : start + batch_size].to(device=pipe.device, dtype=pipe.unet.dtype)
        options = dict(num_probes=num_probes, probe=probe, rtol=rtol, atol=atol, generator=generator)
        parts.append(log_likelihood(score_fn, batch, sigma_min, sigma_max, divergence, **options))
    fields = ("log_likelihood", "prior_log_prob", "delta_log_prob", "latent")
    result = LogLikelihoodResult(
        *(torch.cat([getattr(part, name) for part in parts]) for name in fields),
        num_model_calls=sum(part.num_model_calls for part in parts),
    )
    if num_levels is not None:
        dims = math.prod(pipe.sample_shape)
        result.bits_per_dim = bits_per_dim(result.log_likelihood, dims, num_levels, tuple(pipe.config.data_range))
    return result
