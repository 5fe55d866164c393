"""The built-in 2-D toy distributions of the training script (`sample_toy`), offline and exactly reproducible."""

from __future__ import annotations

import math
from typing import Optional

import torch

from ..checks import check_integer
from .names import TOY_DATASETS

# The formulas documented in `sample_toy`, one line each for `TrainingData.description`.
_TOY_FORMULAS = {
    "two-gaussians": "0.2 N((-5, -5), I) + 0.8 N((5, 5), I)",
    "two-moons": "two interleaved half circles, noise std 0.1, scaled by 2 to about [-3, 3] x [-1.5, 1.5]",
    "swiss-roll": "spiral (t cos t, t sin t) / 5 for t in [1.5 pi, 4.5 pi], noise std 0.2",
    "checkerboard": "uniform on the 8 black squares of a 4x4 board on [-4, 4]^2",
}



def sample_toy(name: str, num_samples: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    r"""Draw i.i.d. points from one of the 2-D toy distributions (a pure function of ``generator``).

    The distributions (``N`` a normal, ``U`` a uniform, ``eps ~ N(0, I)`` independent noise):

    * ``"two-gaussians"``: NCSN's toy (Song & Ermon 2019, section 3.2),
      ``0.2 N((-5, -5), I) + 0.8 N((5, 5), I)``: mode ``(5, 5)`` with probability exactly 0.8.
    * ``"two-moons"``: scikit-learn's ``make_moons`` scaled up. With ``m ~ Bernoulli(1/2)`` and
      ``t ~ U(0, pi)`` the clean point is ``(cos t, sin t)`` (upper moon) or ``(1 - cos t, 0.5 - sin t)``
      (lower moon); the sample is ``2 * (point + 0.1 eps - (0.5, 0.25))``, inside about
      ``[-3, 3] x [-1.5, 1.5]``.
    * ``"swiss-roll"``: the 2-D swiss roll of FFJORD (Grathwohl et al. 2019): ``t = 1.5 pi (1 + 2u)``
      with ``u ~ U(0, 1)``, sample ``(t cos t + eps_1, t sin t + eps_2) / 5``, inside about
      ``[-3, 3]^2``.
    * ``"checkerboard"``: uniform on the black squares of a 4x4 board covering ``[-4, 4]^2``
      (squares of side 2). Numbering columns ``i`` and rows ``j`` 0..3 from ``(-4, -4)``, the black
      squares are those with ``i + j`` even (8 of 16, including the lower-left one); a sample is
      ``(-4 + 2 (i + u_1), -4 + 2 (j + u_2))`` with the square drawn uniformly and ``u ~ U(0, 1)^2``.

    Args:
        name (`str`): One of `TOY_DATASETS`.
        num_samples (`int`): Number of points (>= 1).
        generator (`torch.Generator`, *optional*): Source of randomness; the points are created on its
            device. ``None`` uses torch's global generator (on the CPU).

    Returns:
        `torch.Tensor`: float32 tensor of shape ``(num_samples, 2)``.

    Raises:
        ValueError: If ``name`` is not a toy name or ``num_samples < 1``.

    Example:
        >>> points = sample_toy("two-gaussians", 4, torch.Generator().manual_seed(0))
        >>> points.shape, points.dtype
        (torch.Size([4, 2]), torch.float32)
        >>> torch.equal(points, sample_toy("two-gaussians", 4, torch.Generator().manual_seed(0)))
        True
    """
    if name not in TOY_DATASETS:
        raise ValueError(f"Unknown toy data set {name!r}; choose one of {', '.join(TOY_DATASETS)}.")
    num_samples = check_integer("num_samples", num_samples)
    options = dict(generator=generator, device=generator.device if generator is not None else None)

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, **options)

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, **options)

    if name == "two-gaussians":
        upper = uniform(num_samples) < 0.8  # the (5, 5) mode carries weight 0.8
        means = torch.where(upper, 5.0, -5.0)[:, None].expand(num_samples, 2)
        return means + normal(num_samples, 2)
    if name == "two-moons":
        upper = uniform(num_samples) < 0.5
        angle = math.pi * uniform(num_samples)
        upper_moon = torch.stack([angle.cos(), angle.sin()], dim=1)
        lower_moon = torch.stack([1.0 - angle.cos(), 0.5 - angle.sin()], dim=1)
        points = torch.where(upper[:, None], upper_moon, lower_moon) + 0.1 * normal(num_samples, 2)
        return 2.0 * (points - points.new_tensor([0.5, 0.25]))
    if name == "swiss-roll":
        angle = 1.5 * math.pi * (1.0 + 2.0 * uniform(num_samples))
        spiral = torch.stack([angle * angle.cos(), angle * angle.sin()], dim=1)
        return (spiral + normal(num_samples, 2)) / 5.0
    # checkerboard: a column, then a row of the same parity, so that i + j is even.
    column = torch.randint(0, 4, (num_samples,), **options)
    row = 2 * torch.randint(0, 2, (num_samples,), **options) + column % 2
    corner = torch.stack([column, row], dim=1).float()
    return -4.0 + 2.0 * (corner + uniform(num_samples, 2))
