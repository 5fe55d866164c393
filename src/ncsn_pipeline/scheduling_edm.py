"""EDM's stochastic sampler: Heun steps with "churn" (noise added and removed at each level), on a score model.

Karras, Aittala, Aila & Laine (2022), "Elucidating the Design Space of Diffusion-Based Generative Models"
(https://arxiv.org/abs/2206.00364), Algorithm 2, in the VE form ``x_sigma = x_0 + sigma z`` where the ODE's
slope is ``(x - D(x, sigma)) / sigma = -sigma s(x, sigma)`` with Tweedie's denoiser ``D = x + sigma**2 s``.
"""

from __future__ import annotations

import math
from typing import List, Optional, Tuple, Union

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from .checks import check_noise_level_count, check_number
from .noise_schedules import karras_noise_levels
from .sampling import standard_normal
from .scheduling_utils import ContinuousLevelsMixin, ScoreSchedulerMixin, ScoreSchedulerOutput


class EDMStochasticScheduler(ContinuousLevelsMixin, ScoreSchedulerMixin, SchedulerMixin, ConfigMixin):
    r"""Karras et al.'s stochastic sampler (EDM, Algorithm 2): Heun's method with churn.

    On Karras levels ``sigma_0 = sigma_max > ... > sigma_{N-1} = sigma_min``, ``sigma_N = 0``, at every level:

    1. Churn: ``gamma_i = min(S_churn / N, sqrt(2) - 1)`` where ``S_tmin <= sigma_i <= S_tmax`` (else 0);
       raise the noise to ``sigma_hat = (1 + gamma_i) sigma_i`` with fresh noise,
       ``x_hat = x_i + sqrt(sigma_hat**2 - sigma_i**2) S_noise z``.
    2. Euler: ``d = -sigma_hat s(x_hat, sigma_hat)``, ``x_{i+1} = x_hat + (sigma_{i+1} - sigma_hat) d``.
    3. Heun's correction (not on the last step, to 0): ``d' = -sigma_{i+1} s(x_{i+1}, sigma_{i+1})``,
       ``x_{i+1} = x_hat + (sigma_{i+1} - sigma_hat) (d + d') / 2``.

    ``2N - 1`` model calls. The churn of level ``i + 1`` is added at the end of the step that reaches it, so that
    the model is called at ``sigma_hat``: ``timesteps`` lists ``sigma_hat_0, sigma_1, sigma_hat_1, ...``. The
    first level's churn is part of the initial noise: ``N(0, sigma_0**2)`` plus independent churn noise is
    ``N(0, init_noise_sigma**2)`` with ``init_noise_sigma**2 = sigma_0**2 + S_noise**2 (sigma_hat_0**2 -
    sigma_0**2)``. The added noise lets the sampler correct errors of earlier steps, of the score and of the start,
    which the deterministic ODE cannot. Without churn (``S_churn = 0``) this is Heun's method on the
    probability-flow ODE, `ProbabilityFlowHeunScheduler`.

    Args:
        sigma_max (`float`, defaults to 50.0): Largest noise level ``sigma_0``.
        sigma_min (`float`, defaults to 0.01): Smallest noise level.
        num_noise_levels (`int`, defaults to 18): ``N`` (``2N - 1`` calls; ``num_inference_steps`` overrides it).
        rho (`float`, defaults to 7.0): Spacing of the levels (see `karras_noise_levels`).
        s_churn (`float`, defaults to 40.0): Total churn ``S_churn`` (0 = Heun on the ODE).
        s_tmin (`float`, defaults to 0.05): Churn only at levels ``>= s_tmin``.
        s_tmax (`float`, defaults to 50.0): ... and ``<= s_tmax``.
        s_noise (`float`, defaults to 1.003): Scale of the churn noise (slightly above 1 offsets the denoiser's
            tendency to remove too much noise).
        num_train_noise_levels (`int`, defaults to 232): Geometric levels a model for this sampler is trained on.

    The churn defaults are the paper's ImageNet-64 settings (Table 5); the benchmark in
    ``benchmarks/sampler_quality.py`` compares other choices.

    Example:
        >>> import torch
        >>> from ncsn_pipeline import GaussianMixtureScore, NCSNPipeline
        >>> scheduler = EDMStochasticScheduler(sigma_max=100.0, sigma_min=0.01, num_noise_levels=18)
        >>> pipe = NCSNPipeline(unet=GaussianMixtureScore.ncsn_toy(), scheduler=scheduler)
        >>> pipe.set_progress_bar_config(disable=True)
        >>> points = pipe(batch_size=2000, generator=torch.Generator().manual_seed(0), output_type="pt").images
        >>> scheduler.num_model_calls, round((points.sum(dim=1) > 0).float().mean().item(), 1)
        (35, 0.8)
    """

    order = 2
    sampler_name = "EDM stochastic sampler (Heun with churn)"

    @register_to_config
    def __init__(
        self,
        sigma_max: float = 50.0,
        sigma_min: float = 0.01,
        num_noise_levels: int = 18,
        rho: float = 7.0,
        s_churn: float = 40.0,
        s_tmin: float = 0.05,
        s_tmax: float = 50.0,
        s_noise: float = 1.003,
        num_train_noise_levels: int = 232,
    ):
        self._check_levels(sigma_max, sigma_min, rho, num_noise_levels, num_train_noise_levels)
        check_number("s_churn", s_churn, 0.0, 1e6)
        check_number("s_tmin", s_tmin, 0.0, math.inf)
        check_number("s_tmax", s_tmax, s_tmin, math.inf)
        check_number("s_noise", s_noise, 0.0, 2.0)
        self.set_timesteps()

    def _churn_settings(self) -> Tuple[float, float, float, float]:
        """``(S_churn, S_tmin, S_tmax, S_noise)`` of the run (the config's)."""
        config = self.config
        return config.s_churn, config.s_tmin, config.s_tmax, config.s_noise

    @property
    def init_noise_sigma(self) -> float:
        """The spread of ``x_hat_0``: the prior ``N(0, sigma_0**2 I)`` plus the first level's churn noise, which is
        scaled by ``S_noise`` like every other churn: ``sqrt(sigma_0**2 + S_noise**2 (sigma_hat_0**2 - sigma_0**2))``
        (``sigma_hat_0`` itself when ``S_noise = 1``)."""
        sigma, churned = float(self.sigmas[0]), float(self.churned_sigmas[0])
        s_noise = self._churn_settings()[3]
        if s_noise == 1.0 or churned == sigma:
            return churned  # exactly, with no round-off from the square root
        return math.sqrt(sigma**2 + s_noise**2 * (churned**2 - sigma**2))

    def set_timesteps(
        self, num_inference_steps: Optional[int] = None, device: Union[str, torch.device, None] = None
    ) -> None:
        """Prepare a run over ``num_inference_steps`` levels (default: the config's), ``2N - 1`` model calls."""
        levels = self.config.num_noise_levels if num_inference_steps is None else num_inference_steps
        levels = check_noise_level_count("num_inference_steps", levels)
        config = self.config
        self.num_inference_steps = levels
        self.sigmas = karras_noise_levels(config.sigma_max, config.sigma_min, levels, config.rho)
        s_churn, s_tmin, s_tmax, _ = self._churn_settings()
        in_range = (self.sigmas >= s_tmin) & (self.sigmas <= s_tmax)
        # gamma in float64, as the levels: a float32 gamma moves sigma_hat (and every sample) by ~1e-7 relative.
        gamma = in_range.to(self.sigmas.dtype) * min(s_churn / levels, math.sqrt(2.0) - 1)
        self.churned_sigmas = self.sigmas * (1 + gamma)
        # Euler call at sigma_hat_i, Heun call at sigma_{i+1}; the last level has only its Euler call (to 0).
        pairs = torch.stack([self.churned_sigmas[:-1], self.sigmas[1:]], dim=1).flatten()
        self.timesteps = torch.cat([pairs, self.churned_sigmas[-1:]]).to(device=device, dtype=torch.float32)
        self._level_start_indices = list(range(0, len(self.timesteps), 2))
        self._euler_start: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
        self._reset_run()

    def can_begin_at(self, index: int) -> bool:
        """Only at an Euler step: a Heun correction needs the Euler step before it."""
        return index in self._level_start_indices

    @property
    def description(self) -> str:
        """One line describing the configured run, e.g. for model cards and the demo."""
        config = self.config
        return (
            f"EDM stochastic sampler (Heun with churn), churn {config.s_churn:g} for sigma in [{config.s_tmin:g}, "
            f"{config.s_tmax:g}], s_noise {config.s_noise:g}, {self.num_inference_steps} Karras noise levels "
            f"{config.sigma_max:.4g} -> {config.sigma_min:.4g} ({self.num_model_calls} model calls)"
        )

    def step(
        self,
        model_output: torch.Tensor,
        timestep: Union[float, torch.Tensor],
        sample: torch.Tensor,
        generator: Optional[Union[torch.Generator, List[torch.Generator]]] = None,
        return_dict: bool = True,
    ) -> Union[ScoreSchedulerOutput, Tuple[torch.Tensor, torch.Tensor]]:
        """An Euler step from ``sigma_hat_i`` or Heun's correction at ``sigma_{i+1}`` (then the next churn).

        Args:
            model_output (`torch.Tensor`): The score ``s(x, sigma)`` at ``sample``.
            timestep (`float` or `torch.Tensor`): The current entry of ``timesteps``.
            sample (`torch.Tensor`): The current sample.
            generator (`torch.Generator` or list, *optional*): For the churn noise.
            return_dict (`bool`, defaults to `True`): Return a `ScoreSchedulerOutput` instead of a tuple.

        Returns:
            `ScoreSchedulerOutput` or `tuple`: ``prev_sample`` (with the next level's churn) and
            ``prev_sample_mean`` (without it).
        """
        index = self._next_step_index(model_output, timestep, sample)
        level, position = divmod(index, 2)
        churned = float(self.churned_sigmas[level])
        next_sigma = float(self.sigmas[level + 1]) if level + 1 < len(self.sigmas) else 0.0
        if position == 0:
            # 2. Euler step from x_hat at sigma_hat with the slope -sigma_hat * s.
            derivative = -churned * model_output
            prev_sample = prev_sample_mean = sample + (next_sigma - churned) * derivative
            self._euler_start = (sample, derivative)
        else:
            # 3. Heun's correction with the slope at sigma_{i+1}, then 1. the churn of level i + 1.
            start, derivative = self._euler_start
            prev_sample_mean = start + (next_sigma - churned) * 0.5 * (derivative + -next_sigma * model_output)
            self._euler_start = None
            next_churned = float(self.churned_sigmas[level + 1])
            prev_sample = prev_sample_mean
            if next_churned > next_sigma:
                noise = standard_normal(sample.shape, generator, sample.device, sample.dtype)
                s_noise = self._churn_settings()[3]
                prev_sample = prev_sample_mean + math.sqrt(next_churned**2 - next_sigma**2) * s_noise * noise
        level_done = position == 1 or index == len(self.timesteps) - 1
        where = f"the step from sigma={churned:.4g}" if level_done else None
        return self._end_step(prev_sample, prev_sample_mean, return_dict, where, "Use more noise levels.")
