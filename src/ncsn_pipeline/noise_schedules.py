"""Noise schedules for noise-conditional score networks, as small pure functions.

Two papers set the schedule:

* Song & Ermon (2019), "Generative Modeling by Estimating Gradients of the Data Distribution"
  (NCSN, arXiv:1907.05600): a geometric sequence of noise levels
  ``sigma_1 > sigma_2 > ... > sigma_L`` (section 4.2) and the annealed Langevin step size
  ``alpha_i = step_lr * sigma_i**2 / sigma_L**2`` (Algorithm 1).
* Song & Ermon (2020), "Improved Techniques for Training Score-Based Generative Models"
  (NCSNv2, arXiv:2006.09011): how to *compute* ``sigma_max``, the number of levels ``L`` and
  ``step_lr`` from the data instead of guessing them (Techniques 1, 2 and 4).

Everything here is a plain function of numbers (or of a data tensor), so it can be used to
build a scheduler config, to draw training noise levels, or on its own:

Example:

>>> from ncsn_pipeline.noise_schedules import ncsnv2_noise_schedule
>>> schedule = ncsnv2_noise_schedule(data_dim=3 * 32 * 32, sigma_max=50.0, steps_per_level=5)
>>> schedule.num_noise_levels, round(schedule.step_lr, 7)
(232, 6.2e-06)

"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Dict, Optional

import torch

from .checks import check_integer, check_positive

# The overlap (Technique 2 below) that the released NCSNv2 configurations correspond to.
# The paper's text asks for "about 0.5", which gives L = 219 for CIFAR-10 instead of the released
# 232. Measured on the four released configurations (CIFAR-10, CelebA 64, LSUN bedroom, FFHQ),
# their ratios give an overlap of 0.5665-0.5670; 0.5667 reproduces all four published L exactly.
NCSNV2_RELEASED_OVERLAP = 0.5667


def geometric_noise_levels(sigma_max: float, sigma_min: float, num_levels: int) -> torch.Tensor:
    """Geometric noise levels from ``sigma_max`` down to ``sigma_min`` (NCSN section 4.2).

    Args:
        sigma_max (`float`): The largest noise level ``sigma_1``.
        sigma_min (`float`): The smallest noise level ``sigma_L``; must be below ``sigma_max``
            unless ``num_levels == 1``.
        num_levels (`int`): ``L``, the number of levels (>= 1). With one level the result is
            ``[sigma_min]``, the single noise level of plain Langevin dynamics.

    Returns:
        `torch.Tensor`: float64 tensor of shape ``(num_levels,)``, decreasing, with
        ``sigma_i / sigma_{i+1}`` constant.

    Example:
        >>> geometric_noise_levels(1.0, 0.01, 3)
        tensor([1.0000, 0.1000, 0.0100], dtype=torch.float64)
    """
    sigma_max = check_positive("sigma_max", sigma_max)
    sigma_min = check_positive("sigma_min", sigma_min)
    num_levels = check_integer("num_levels", num_levels)
    if num_levels == 1:
        return torch.tensor([sigma_min], dtype=torch.float64)
    if sigma_min >= sigma_max:
        raise ValueError(
            f"sigma_min ({sigma_min}) must be smaller than sigma_max ({sigma_max}) for a sequence "
            f"of {num_levels} noise levels."
        )
    log_sigmas = torch.linspace(math.log(sigma_max), math.log(sigma_min), num_levels, dtype=torch.float64)
    return log_sigmas.exp()


def karras_noise_levels(sigma_max: float, sigma_min: float, num_levels: int, rho: float = 7.0) -> torch.Tensor:
    """Noise levels spaced for ODE solvers (Karras et al. 2022, "Elucidating the Design Space...", eq. 5).

    ``sigma_i = (sigma_max**(1/rho) + i / (N - 1) * (sigma_min**(1/rho) - sigma_max**(1/rho)))**rho``: denser near
    ``sigma_min``, where the probability-flow ODE bends most.

    Args:
        sigma_max (`float`): First (largest) level.
        sigma_min (`float`): Last (smallest) level, below ``sigma_max``.
        num_levels (`int`): ``N >= 2``.
        rho (`float`, defaults to 7.0): Spacing exponent (``rho = 1`` is uniform; large ``rho`` tends to geometric).

    Returns:
        `torch.Tensor`: float64 tensor of shape ``(num_levels,)``, decreasing.

    Example:
        >>> karras_noise_levels(80.0, 0.002, 3)
        tensor([8.0000e+01, 2.5152e+00, 2.0000e-03], dtype=torch.float64)
    """
    sigma_max = check_positive("sigma_max", sigma_max)
    sigma_min = check_positive("sigma_min", sigma_min)
    rho = check_positive("rho", rho)
    if check_integer("num_levels", num_levels) < 2 or sigma_min >= sigma_max:
        raise ValueError(f"Need num_levels >= 2 and sigma_min < sigma_max, got {num_levels}, {sigma_min}, {sigma_max}.")
    ramp = torch.linspace(0, 1, num_levels, dtype=torch.float64)
    low, high = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (high + ramp * (low - high)) ** rho


def annealed_step_sizes(noise_levels: torch.Tensor, step_lr: float) -> torch.Tensor:
    """Langevin step size for every noise level: ``alpha_i = step_lr * sigma_i**2 / sigma_L**2``.

    This is NCSN's Algorithm 1 (Song & Ermon 2019, eq. in section 4.3): the step shrinks with the
    noise level so that the "signal-to-noise ratio" of each update stays the same. ``sigma_L`` is
    the last (smallest) entry of ``noise_levels``, so the last level's step size is ``step_lr``.

    Args:
        noise_levels (`torch.Tensor`): Decreasing noise levels ``sigma_1 ... sigma_L``.
        step_lr (`float`): ``epsilon`` in the paper, the step size at the smallest level.

    Returns:
        `torch.Tensor`: Step sizes ``alpha_i``, same shape and dtype as ``noise_levels``.
    """
    step_lr = check_positive("step_lr", step_lr)
    return step_lr * (noise_levels / noise_levels[-1]) ** 2


def _checked_examples(data: torch.Tensor, purpose: str) -> torch.Tensor:
    """``data`` (N >= 2 examples) flattened to (N, D) float64; non-tensors, too few examples and non-finite values
    are refused with a message that names ``purpose``."""
    if not isinstance(data, torch.Tensor) or data.ndim < 2 or data.shape[0] < 2:
        shape = tuple(data.shape) if isinstance(data, torch.Tensor) else type(data).__name__
        raise ValueError(f"data must be a tensor of shape (N >= 2, ...), got {shape}.")
    flat = data.reshape(data.shape[0], -1).to(torch.float64)
    if not torch.isfinite(flat).all():
        raise ValueError(f"data contains NaN or infinite values; clean it before {purpose}.")
    return flat


def max_pairwise_distance(data: torch.Tensor, chunk_size: int = 1024) -> float:
    """Largest Euclidean distance between two training examples (NCSNv2 Technique 1).

    NCSNv2 sets ``sigma_max`` to this value so that the largest noise level can carry the sampler
    from any data point to any other. Computed exactly, in chunks of ``chunk_size`` rows so that
    memory stays ``O(chunk_size * N)``; the cost is ``O(N**2 * D)``, so pass a random subset for
    very large data sets (the result is then a lower bound).

    Args:
        data (`torch.Tensor`): Training examples, shape ``(N, ...)`` with ``N >= 2``; every example
            is flattened.
        chunk_size (`int`, defaults to 1024): Rows compared at once.

    Returns:
        `float`: The maximum pairwise distance.

    Example:
        >>> max_pairwise_distance(torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0]]))
        5.0
    """
    flat = _checked_examples(data, "computing sigma_max")
    chunk_size = check_integer("chunk_size", chunk_size)
    largest = 0.0
    for start in range(0, flat.shape[0], chunk_size):
        distances = torch.cdist(flat[start : start + chunk_size], flat)
        largest = max(largest, distances.max().item())
    return largest


def gaussian_fit(data: torch.Tensor, max_examples: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and the covariance eigenvalues of ``data`` (N, ...), flattened, in float64.

    The eigenvalues come from the smaller of the covariance (D x D) and the Gram matrix (N x N) of the centred
    data, which share their non-zero eigenvalues; above ``max_examples`` examples a fixed-seed random subset is used
    (the fit then carries that subset's sampling error).

    >>> mean, eigenvalues = gaussian_fit(torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]]))
    >>> mean.tolist(), [round(value, 6) for value in eigenvalues.tolist()]
    ([1.0, 1.0], [1.0, 1.0])
    """
    flat = _checked_examples(data, "fitting a Gaussian")
    mean = flat.mean(dim=0)
    if flat.shape[0] > max_examples:
        chosen = torch.randperm(flat.shape[0], generator=torch.Generator().manual_seed(0))[:max_examples]
        flat = flat[chosen]
    centred = (flat - mean) / math.sqrt(flat.shape[0])  # biased covariance: the data's own, not an estimate's
    small = centred @ centred.T if centred.shape[0] <= centred.shape[1] else centred.T @ centred
    return mean, torch.linalg.eigvalsh(small).clamp(min=0.0)


def prior_mismatch(mean: torch.Tensor, eigenvalues: torch.Tensor, sigma: float) -> float:
    """A bound on the total variation between ``p_sigma`` and the sampler's prior ``N(0, sigma**2 I)``, for data
    fitted by ``N(mean, Sigma)`` (eigenvalues ``lambda_i`` of ``Sigma``).

    For the fit, ``p_sigma = N(mean, Sigma + sigma**2 I)`` and, in closed form, with ``v = sigma**2``,
    ``KL(p_sigma || prior) = (sum_i lambda_i / v + |mean|**2 / v - sum_i log(1 + lambda_i / v)) / 2``; Pinsker's
    inequality gives ``TV <= sqrt(KL / 2)``. An exact-score ODE sampler carries this mismatch through to its samples
    unchanged (it is a bijection) and an SDE sampler no more than that, so it bounds, for instance, the error in the
    share of samples each mode receives that the start alone causes. It falls like
    ``|mean| / (2 sigma)``: data far from the origin needs a larger ``sigma_max`` than its spread asks for.

    >>> round(prior_mismatch(torch.tensor([3.0, 3.0]), torch.tensor([1.0, 33.0]), 63.6), 4)
    0.0335
    """
    variance = float(sigma) ** 2
    eigenvalues = eigenvalues.to(torch.float64)
    kl = 0.5 * (
        float((eigenvalues / variance).sum())
        + float(mean.to(torch.float64).pow(2).sum()) / variance
        - float(torch.log1p(eigenvalues / variance).sum())
    )
    return math.sqrt(max(kl, 0.0) / 2)


def sigma_max_for_prior(data: torch.Tensor, tolerance: float = 0.01) -> float:
    """The smallest ``sigma_max`` whose `prior_mismatch` for a Gaussian fit of ``data`` is at most ``tolerance``.

    NCSNv2's Technique 1 (`max_pairwise_distance`) lets the largest level connect any two examples but ignores where
    the data sits: for data far from the origin, sampling from ``N(0, sigma_max**2 I)`` starts away from
    ``p_sigma_max`` and the deterministic samplers keep that error (``benchmarks/calls_to_floor.py``). This rule
    bounds it instead; use the larger of the two.

    Args:
        data (`torch.Tensor`): Training examples ``(N, ...)`` in the model's data range.
        tolerance (`float`, defaults to 0.01): The largest total variation allowed between ``p_sigma_max`` of the
            Gaussian fit and the prior, in ``(0, 1)``.

    Returns:
        `float`: ``sigma_max``.

    >>> round(sigma_max_for_prior(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]), tolerance=0.01), 2)
    5.92
    """
    tolerance = check_positive("tolerance", tolerance)
    if tolerance >= 1:
        raise ValueError(f"tolerance is a total variation and must lie in (0, 1), got {tolerance}.")
    mean, eigenvalues = gaussian_fit(data)
    low, high = 1e-6, 1.0
    while prior_mismatch(mean, eigenvalues, high) > tolerance:  # the bound falls to 0 as sigma grows
        low, high = high, high * 2
    for _ in range(60):  # bisection in log sigma: the bound decreases with sigma
        middle = math.sqrt(low * high)
        low, high = (low, middle) if prior_mismatch(mean, eigenvalues, middle) <= tolerance else (middle, high)
    return high


def _standard_normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def noise_level_overlap(gamma: float, data_dim: int) -> float:
    """Overlap between neighbouring noise levels, ``Phi(sqrt(2D)(g-1) + 3g) - Phi(sqrt(2D)(g-1) - 3g)``.

    NCSNv2 Technique 2 (Song & Ermon 2020, section 3.2): for ``x ~ N(0, sigma**2 I)`` in ``D``
    dimensions the norm ``||x||`` is close to ``N(sqrt(D) sigma, sigma**2 / 2)``; this is the
    probability that a sample at level ``sigma_i`` falls within three standard deviations of the
    norm typical of level ``sigma_{i-1} = gamma * sigma_i``. Large overlap means the sampler
    started at one level is already well placed for the next.

    Args:
        gamma (`float`): Ratio ``sigma_{i-1} / sigma_i`` (> 1).
        data_dim (`int`): ``D``, the number of dimensions of one example.

    Returns:
        `float`: The overlap, in ``[0, 1]``.
    """
    shift = math.sqrt(2.0 * data_dim) * (gamma - 1.0)
    return _standard_normal_cdf(shift + 3.0 * gamma) - _standard_normal_cdf(shift - 3.0 * gamma)


def ratio_for_overlap(data_dim: int, target_overlap: float = NCSNV2_RELEASED_OVERLAP) -> float:
    """Solve Technique 2 for the geometric ratio ``gamma`` that gives ``target_overlap``.

    Args:
        data_dim (`int`): ``D``, the number of dimensions of one example (>= 5: the technique relies
            on a large-``D`` approximation and has no solution below that).
        target_overlap (`float`, defaults to `NCSNV2_RELEASED_OVERLAP`): Desired overlap in
            ``(0, 0.99)``.

    Returns:
        `float`: ``gamma > 1`` with ``noise_level_overlap(gamma, data_dim) == target_overlap``
        (to 1e-12).
    """
    data_dim = check_integer("data_dim", data_dim)
    if data_dim < 5:
        raise ValueError(
            f"data_dim={data_dim}: NCSNv2's noise-level technique needs data_dim >= 5 (it uses a "
            "high-dimensional approximation); choose num_noise_levels yourself for low-dimensional data."
        )
    if not 0.0 < float(target_overlap) < 0.99:
        raise ValueError(f"target_overlap must lie in (0, 0.99), got {target_overlap!r}.")
    # The overlap is ~0.997 at gamma = 1 and falls to 0 as gamma grows (D >= 5): bracket, then bisect.
    low, high = 1.0, 1.0 + 1e-6
    while noise_level_overlap(high, data_dim) > target_overlap:
        low, high = high, 1.0 + 2.0 * (high - 1.0)
    for _ in range(200):
        middle = 0.5 * (low + high)
        if noise_level_overlap(middle, data_dim) > target_overlap:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


def num_noise_levels_for(
    sigma_max: float, sigma_min: float, data_dim: int, target_overlap: float = NCSNV2_RELEASED_OVERLAP
) -> int:
    """Number of geometric noise levels ``L`` between ``sigma_max`` and ``sigma_min`` (NCSNv2 Technique 2).

    ``L = round(log(sigma_max / sigma_min) / log(gamma)) + 1`` with ``gamma`` from
    `ratio_for_overlap`. With the default overlap this reproduces the released NCSNv2 settings:
    232 levels for CIFAR-10 (D = 3072, 50 -> 0.01) and 500 for CelebA 64 (D = 12288, 90 -> 0.01).

    Args:
        sigma_max (`float`): Largest noise level.
        sigma_min (`float`): Smallest noise level, below ``sigma_max``.
        data_dim (`int`): ``D``, dimensions of one example.
        target_overlap (`float`): See `ratio_for_overlap`.

    Returns:
        `int`: ``L >= 2``.
    """
    sigma_max = check_positive("sigma_max", sigma_max)
    sigma_min = check_positive("sigma_min", sigma_min)
    if sigma_min >= sigma_max:
        raise ValueError(f"sigma_min ({sigma_min}) must be smaller than sigma_max ({sigma_max}).")
    gamma = ratio_for_overlap(data_dim, target_overlap)
    return max(2, round(math.log(sigma_max / sigma_min) / math.log(gamma)) + 1)


def langevin_variance_ratio(step_lr: float, gamma: float, sigma_min: float, steps_per_level: int) -> float:
    """NCSNv2 Technique 4's objective ``(1 - e/s**2)**(2T) (gamma**2 - c) + c``.

    Here ``c = 2e / (s**2 - s**2 (1 - e/s**2)**2)`` is the stationary variance ratio of the chain.

    For data that is a single point, annealed Langevin dynamics with step ``alpha_i = e sigma_i**2 / s**2``
    (``s = sigma_L``, ``e = step_lr``) run for ``T`` steps at level ``sigma_i`` after ending level
    ``sigma_{i-1} = gamma sigma_i`` leaves samples whose variance is this ratio times ``sigma_i**2``
    (Song & Ermon 2020, Proposition 3). A ratio of 1 means every level ends at exactly its target.

    Args:
        step_lr (`float`): ``epsilon``, in ``(0, sigma_min**2)``.
        gamma (`float`): Ratio of neighbouring noise levels.
        sigma_min (`float`): The smallest level ``sigma_L``.
        steps_per_level (`int`): ``T``.

    Returns:
        `float`: The variance ratio.
    """
    contraction = 1.0 - step_lr / sigma_min**2
    stationary = 2.0 * step_lr / (sigma_min**2 - sigma_min**2 * contraction**2)
    return contraction ** (2 * steps_per_level) * (gamma**2 - stationary) + stationary


def step_lr_for(gamma: float, sigma_min: float, steps_per_level: int) -> float:
    """Choose ``step_lr`` by NCSNv2 Technique 4: bring `langevin_variance_ratio` as close to 1 as possible.

    The ratio never reaches exactly 1 for realistic settings; its minimum over ``step_lr`` is what
    the released configurations use (this reproduces their 6.2e-6 for CIFAR-10, 3.3e-6 for CelebA 64,
    1.8e-6 for LSUN bedroom and 9e-7 for FFHQ to the published digits).

    Args:
        gamma (`float`): Ratio of neighbouring noise levels (> 1).
        sigma_min (`float`): The smallest level ``sigma_L``.
        steps_per_level (`int`): ``T``, Langevin steps per level.

    Returns:
        `float`: ``step_lr`` in ``(0, sigma_min**2)``.
    """
    gamma = check_positive("gamma", gamma)
    if gamma <= 1.0:
        raise ValueError(f"gamma must be > 1, got {gamma!r}.")
    sigma_min = check_positive("sigma_min", sigma_min)
    steps_per_level = check_integer("steps_per_level", steps_per_level)

    def distance_to_one(log_step_lr: float) -> float:
        ratio = langevin_variance_ratio(math.exp(log_step_lr), gamma, sigma_min, steps_per_level)
        return abs(ratio - 1.0)

    # Golden-section search over log(step_lr) in (sigma_min**2 * 1e-10, sigma_min**2).
    low, high = math.log(sigma_min**2 * 1e-10), math.log(sigma_min**2 * (1.0 - 1e-9))
    inverse_golden = (math.sqrt(5.0) - 1.0) / 2.0
    for _ in range(200):
        left = high - inverse_golden * (high - low)
        right = low + inverse_golden * (high - low)
        if distance_to_one(left) < distance_to_one(right):
            high = right
        else:
            low = left
    return math.exp(0.5 * (low + high))


@dataclass
class NoiseSchedule:
    """An annealed-Langevin noise schedule: what `NCSNScheduler` needs besides ``final_denoise``.

    Attributes:
        sigma_max (`float`): Largest noise level.
        sigma_min (`float`): Smallest noise level.
        num_noise_levels (`int`): ``L``.
        steps_per_level (`int`): ``T``.
        step_lr (`float`): ``epsilon``.
    """

    sigma_max: float
    sigma_min: float
    num_noise_levels: int
    steps_per_level: int
    step_lr: float

    def to_dict(self) -> Dict[str, float]:
        """The schedule as keyword arguments for `NCSNScheduler`."""
        return asdict(self)


def ncsnv2_noise_schedule(
    data: Optional[torch.Tensor] = None,
    *,
    data_dim: Optional[int] = None,
    sigma_max: Optional[float] = None,
    sigma_min: float = 0.01,
    steps_per_level: int = 5,
    target_overlap: float = NCSNV2_RELEASED_OVERLAP,
    prior_tolerance: Optional[float] = None,
) -> NoiseSchedule:
    """Compute ``sigma_max``, ``L`` and ``step_lr`` from data with NCSNv2's Techniques 1, 2 and 4.

    Args:
        data (`torch.Tensor`, *optional*): Training examples ``(N, ...)`` in the range the model is
            trained on. Gives ``data_dim`` and, unless passed, ``sigma_max`` (largest pairwise
            distance, Technique 1).
        data_dim (`int`, *optional*): Dimensions of one example; needed when ``data`` is not given.
        sigma_max (`float`, *optional*): Overrides Technique 1 (required without ``data``).
        sigma_min (`float`, defaults to 0.01): Smallest level; NCSNv2 uses 0.01 for [0, 1] images.
        steps_per_level (`int`, defaults to 5): ``T``; the step size depends on it.
        target_overlap (`float`): Technique 2's overlap, see `ratio_for_overlap`.
        prior_tolerance (`float`, *optional*): With ``data`` and no ``sigma_max``: raise Technique 1's ``sigma_max``
            to `sigma_max_for_prior` at this tolerance where that is larger (data far from the origin).

    Returns:
        `NoiseSchedule`: The computed schedule.

    Example:
        >>> schedule = ncsnv2_noise_schedule(data_dim=3 * 64 * 64, sigma_max=90.0, steps_per_level=5)
        >>> schedule.num_noise_levels, round(schedule.step_lr, 7)
        (500, 3.3e-06)
    """
    if data is not None:
        flat_dim = int(data[0].numel()) if isinstance(data, torch.Tensor) and data.ndim >= 2 else None
        if data_dim is not None and flat_dim is not None and data_dim != flat_dim:
            raise ValueError(f"data_dim={data_dim} does not match the data's {flat_dim} dimensions per example.")
        if sigma_max is None:
            sigma_max = max_pairwise_distance(data)
            if prior_tolerance is not None:
                sigma_max = max(sigma_max, sigma_max_for_prior(data, prior_tolerance))
        data_dim = flat_dim
    if data_dim is None or sigma_max is None:
        raise ValueError("Pass either `data`, or both `data_dim` and `sigma_max`.")
    num_levels = num_noise_levels_for(sigma_max, sigma_min, data_dim, target_overlap)
    gamma = (float(sigma_max) / float(sigma_min)) ** (1.0 / (num_levels - 1))
    return NoiseSchedule(
        sigma_max=float(sigma_max),
        sigma_min=float(sigma_min),
        num_noise_levels=num_levels,
        steps_per_level=check_integer("steps_per_level", steps_per_level),
        step_lr=step_lr_for(gamma, sigma_min, steps_per_level),
    )
