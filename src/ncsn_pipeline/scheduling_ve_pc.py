"""Predictor-corrector sampling of the variance-exploding SDE (score SDE) as a diffusers scheduler.

Song, Sohl-Dickstein, Kingma, Kumar, Ermon & Poole (2021), "Score-Based Generative Modeling through
Stochastic Differential Equations" (https://arxiv.org/abs/2011.13456), Algorithm 2 (PC sampling, VE SDE)
with the reverse-diffusion predictor (eq. 46-47) and the Langevin corrector (Algorithm 4). NCSN's noise
levels are the VE SDE's discretisation, so every NCSN score model can be sampled with it.
"""

from __future__ import annotations

import math
from typing import List, Optional, Tuple, Union

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from .checks import check_model_calls, check_noise_level_count, check_noise_range, check_positive, check_step_count
from .noise_schedules import geometric_noise_levels
from .sampling import standard_normal
from .scheduling_utils import ScoreSchedulerMixin, ScoreSchedulerOutput


class VEPredictorCorrectorScheduler(ScoreSchedulerMixin, SchedulerMixin, ConfigMixin):
    r"""Predictor-corrector (PC) sampler for the variance-exploding SDE, driven by ``s(x, sigma)``.

    With geometric levels ``sigma_1 = sigma_max > ... > sigma_N = sigma_min`` and ``sigma_{N+1} = 0``, at
    every level ``i`` (Song et al. 2021, Algorithm 2):

    1. Corrector, ``num_corrector_steps`` times (Algorithm 4): with ``z ~ N(0, I)`` and the score ``s`` at
       ``sigma_i``, ``eps = 2 (snr * ||z|| / ||s||)**2`` (norms averaged over the batch),
       ``x <- x + eps s + sqrt(2 eps) z``.
    2. Predictor, reverse diffusion (eq. 47): ``x_mean = x + (sigma_i**2 - sigma_{i+1}**2) s(x, sigma_i)``,
       ``x <- x_mean + sqrt(sigma_i**2 - sigma_{i+1}**2) z``.

    The last predictor step returns ``x_mean`` (no noise is added after the last level). ``timesteps`` holds the
    noise level of every model call: each level repeated ``num_corrector_steps + 1`` times. As in the reference
    code the corrector's step size is shared by the batch, so a sample depends (slightly) on its batch mates.

    Args:
        sigma_max (`float`, defaults to 50.0): Largest noise level (also ``init_noise_sigma``).
        sigma_min (`float`, defaults to 0.01): Smallest noise level, ``0 < sigma_min < sigma_max``.
        num_noise_levels (`int`, defaults to 1000): ``N``, levels of the discretisation (``num_inference_steps``
            in ``set_timesteps`` overrides it for a run).
        num_corrector_steps (`int`, defaults to 1): Langevin corrector steps per level (0 = predictor only).
        snr (`float`, defaults to 0.16): The corrector's signal-to-noise ratio ``r`` (0.16 for CIFAR-10 in the paper).

    Example:
        >>> import torch
        >>> from ncsn_pipeline import GaussianMixtureScore, NCSNPipeline
        >>> scheduler = VEPredictorCorrectorScheduler(sigma_max=20.0, sigma_min=0.01, num_noise_levels=200)
        >>> pipe = NCSNPipeline(unet=GaussianMixtureScore.ncsn_toy(), scheduler=scheduler)
        >>> pipe.set_progress_bar_config(disable=True)
        >>> points = pipe(batch_size=2000, generator=torch.Generator().manual_seed(0), output_type="pt").images
        >>> round((points.sum(dim=1) > 0).float().mean().item(), 1)  # weight of the (5, 5) mode
        0.8
    """

    order = 1
    sampler_name = "predictor-corrector, VE SDE (score SDE)"
    langevin_steps_key = "num_corrector_steps"
    step_size_key = "snr"

    @register_to_config
    def __init__(
        self,
        sigma_max: float = 50.0,
        sigma_min: float = 0.01,
        num_noise_levels: int = 1000,
        num_corrector_steps: int = 1,
        snr: float = 0.16,
    ):
        sigma_max = check_positive("sigma_max", sigma_max)
        check_noise_range(check_positive("sigma_min", sigma_min), sigma_max)
        check_noise_level_count("num_noise_levels", num_noise_levels)
        check_step_count("num_corrector_steps", num_corrector_steps, low=0)
        check_positive("snr", snr)
        self.set_timesteps()

    @property
    def noise_levels(self) -> torch.Tensor:
        """The config's ``num_noise_levels`` levels (float64, decreasing), the levels a model for it is trained on."""
        return geometric_noise_levels(self.config.sigma_max, self.config.sigma_min, self.config.num_noise_levels)

    @property
    def description(self) -> str:
        """One line describing the configured run, e.g. for model cards and the demo."""
        corrector = self.config.num_corrector_steps
        return (
            f"predictor-corrector sampling of the VE SDE, {self.num_inference_steps} noise levels "
            f"{self.config.sigma_max:.4g} -> {self.config.sigma_min:.4g}, reverse-diffusion predictor + "
            f"{corrector} Langevin corrector step{'' if corrector == 1 else 's'} (snr {self.config.snr:g}) per level "
            f"({self.num_model_calls} model calls)"
        )

    def langevin_step_size(self, sigma: float) -> float:
        """The corrector's step at ``sigma`` for a score of the typical norm ``||z|| / sigma``: ``2 (snr sigma)**2``."""
        return 2 * (self.config.snr * sigma) ** 2

    def set_timesteps(
        self, num_inference_steps: Optional[int] = None, device: Union[str, torch.device, None] = None
    ) -> None:
        """Prepare a run with ``num_inference_steps`` levels (default: the config's); ``N * (M + 1)`` model calls."""
        levels = self.config.num_noise_levels if num_inference_steps is None else num_inference_steps
        levels = check_noise_level_count("num_inference_steps", levels)
        calls_per_level = self.config.num_corrector_steps + 1
        check_model_calls(levels * calls_per_level, f"{levels} noise levels x {calls_per_level} calls")
        self.num_inference_steps = levels
        self.sigmas = geometric_noise_levels(self.config.sigma_max, self.config.sigma_min, levels)
        self.timesteps = self.sigmas.repeat_interleave(calls_per_level).to(device=device, dtype=torch.float32)
        self._level_start_indices = list(range(0, levels * calls_per_level, calls_per_level))
        self._reset_run()

    def step(
        self,
        model_output: torch.Tensor,
        timestep: Union[float, torch.Tensor],
        sample: torch.Tensor,
        generator: Optional[Union[torch.Generator, List[torch.Generator]]] = None,
        return_dict: bool = True,
    ) -> Union[ScoreSchedulerOutput, Tuple[torch.Tensor, torch.Tensor]]:
        """One corrector or predictor step from the model's score at ``timestep`` (the current noise level).

        Args:
            model_output (`torch.Tensor`): The score ``s(x, sigma)`` at ``sample``.
            timestep (`float` or `torch.Tensor`): The current entry of ``timesteps``.
            sample (`torch.Tensor`): The current sample.
            generator (`torch.Generator` or list, *optional*): Random generator(s) for the noise.
            return_dict (`bool`, defaults to `True`): Return an `ScoreSchedulerOutput` instead of a tuple.

        Returns:
            `ScoreSchedulerOutput` or `tuple`: ``prev_sample`` and ``prev_sample_mean``.
        """
        index = self._next_step_index(model_output, timestep, sample)
        calls_per_level = self.config.num_corrector_steps + 1
        level, position = divmod(index, calls_per_level)
        noise = standard_normal(sample.shape, generator, sample.device, sample.dtype)
        if position < self.config.num_corrector_steps:
            # 1. Langevin corrector; its step comes from the target signal-to-noise ratio, with the norms
            # averaged over the batch as in the reference code (a per-example ratio blows up wherever the
            # score of one sample happens to be near zero, e.g. at a mode's centre in low dimensions).
            score_norm = model_output.float().reshape(len(sample), -1).norm(dim=1).mean().clamp_min(1e-12)
            noise_norm = noise.float().reshape(len(sample), -1).norm(dim=1).mean()
            step_size = 2 * (self.config.snr * noise_norm / score_norm).item() ** 2
            prev_sample_mean = sample + step_size * model_output
            prev_sample = prev_sample_mean + math.sqrt(2 * step_size) * noise
            where = None  # checked once per level, after its predictor step
        else:
            # 2. Reverse-diffusion predictor from sigma_i to the next level (0 after the last one).
            sigma = float(self.sigmas[level])
            next_sigma = float(self.sigmas[level + 1]) if level + 1 < len(self.sigmas) else 0.0
            variance = sigma**2 - next_sigma**2
            prev_sample_mean = sample + variance * model_output
            last = level == len(self.sigmas) - 1
            prev_sample = prev_sample_mean if last else prev_sample_mean + math.sqrt(variance) * noise
            where = f"noise level {level + 1}/{len(self.sigmas)} (sigma={sigma:.4g})"
        advice = f"Lower snr (now {self.config.snr}) or use more noise levels."
        return self._end_step(prev_sample, prev_sample_mean, return_dict, where, advice)

    def __len__(self) -> int:
        return self.config.num_noise_levels
