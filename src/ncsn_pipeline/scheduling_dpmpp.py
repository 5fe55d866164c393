"""DPM-Solver++ multistep sampling in sigma form (2M, and the stochastic 2M-SDE and 3M-SDE), on a score model.

Lu, Zhou, Bao, Chen, Li & Zhu (2022), "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic
Models" (https://arxiv.org/abs/2211.01095), Algorithm 2 (multistep second order, data prediction) and its SDE
variant (section 5 / appendix: exact integration of the linear part of the reverse SDE with the data-prediction
model), written for the variance-exploding case ``x_sigma = x_0 + sigma z`` where the time variable is
``lambda = -log sigma``. The data prediction is Tweedie's denoiser ``D(x, sigma) = x + sigma**2 s(x, sigma)``
(NCSNv2's final denoising step), so every score model of the package drives it.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from .checks import check_choice, check_number
from .sampling import standard_normal
from .scheduling_utils import ContinuousLevelsMixin, ScoreSchedulerMixin, ScoreSchedulerOutput, TunedLevels

ALGORITHMS = ("2m", "2m-sde", "3m-sde")


class DPMSolverPlusPlusScheduler(TunedLevels, ContinuousLevelsMixin, ScoreSchedulerMixin, SchedulerMixin, ConfigMixin):
    r"""DPM-Solver++ multistep: one model call per noise level, second (or third) order from earlier calls.

    With Karras et al.'s levels (or the model's tuned levels for that many calls)
    ``sigma_0 = sigma_max > ... > sigma_{N-1} = sigma_min``, ``sigma_N = 0``,
    ``lambda_i = -log sigma_i``, ``h_i = lambda_{i+1} - lambda_i`` and the denoiser ``D_i = x_i + sigma_i**2 s``:

    1. ``"2m"`` (Algorithm 2, deterministic): ``x_{i+1} = (sigma_{i+1} / sigma_i) x_i - expm1(-h_i) D'_i`` with
       ``D'_i = (1 + 1 / (2 r_i)) D_i - 1 / (2 r_i) D_{i-1}``, ``r_i = h_{i-1} / h_i`` (first order at the start).
    2. ``"2m-sde"``: the same data-prediction step for the reverse SDE (with ``eta`` the share of the noise
       renewed): ``x_{i+1} = (sigma_{i+1} / sigma_i) e^{-eta h} x_i + (1 - e^{-(1 + eta) h}) D_i`` plus the
       midpoint correction ``(1 - e^{-(1 + eta) h}) (D_i - D_{i-1}) / (2 r_i)`` and fresh noise
       ``sigma_{i+1} sqrt(1 - e^{-2 eta h}) z``.
    3. ``"3m-sde"``: as 2, with the third-order correction from ``D_i, D_{i-1}, D_{i-2}``.

    The last step (to ``sigma = 0``) returns ``D_{N-1}``, NCSNv2's denoising step. ``N`` model calls in all. A run
    may begin at any level (``set_begin_index``, ``set_begin_sigma``: RePaint, SDEdit): without earlier predictions
    its first step is first order and its second second order (as diffusers' ``lower_order_nums``), so it is the
    tail of a full run in distribution (``benchmarks/begin_anywhere.py``).
    The stochastic variants renew part of the noise at every step, which (unlike the deterministic ODE) lets
    them correct a start that does not match ``p_sigma_max`` and errors of a learned score.

    Args:
        sigma_max (`float`, defaults to 50.0): Largest noise level (also ``init_noise_sigma``).
        sigma_min (`float`, defaults to 0.01): Smallest noise level.
        num_noise_levels (`int`, defaults to 35): ``N``, model calls per sample (``num_inference_steps``
            overrides it).
        rho (`float`, defaults to 7.0): Spacing of the levels (see `karras_noise_levels`).
        algorithm (`str`, defaults to ``"2m-sde"``): ``"2m"``, ``"2m-sde"`` or ``"3m-sde"``.
        eta (`float`, defaults to 1.0): For the SDE variants, how much noise is renewed (0 = the ODE, 1 = the
            reverse SDE).
        s_noise (`float`, defaults to 1.0): Scale of the renewed noise.
        tuned_noise_levels (`dict`, *optional*): Levels chosen for this model, by number of calls
            (``{"10": [sigma_0, ..., sigma_9]}``, written by ``ncsn-tune-steps``); other counts use Karras et al.'s.
        num_train_noise_levels (`int`, defaults to 232): Geometric levels a model for this sampler is trained on
            (`noise_levels`); sampling itself may use any levels in ``[sigma_min, sigma_max]``.

    Example:
        >>> import torch
        >>> from ncsn_pipeline import GaussianMixtureScore, NCSNPipeline
        >>> scheduler = DPMSolverPlusPlusScheduler(sigma_max=20.0, sigma_min=0.01, num_noise_levels=30)
        >>> pipe = NCSNPipeline(unet=GaussianMixtureScore.ncsn_toy(), scheduler=scheduler)
        >>> pipe.set_progress_bar_config(disable=True)
        >>> points = pipe(batch_size=2000, generator=torch.Generator().manual_seed(0), output_type="pt").images
        >>> scheduler.num_model_calls, round((points.sum(dim=1) > 0).float().mean().item(), 1)
        (30, 0.8)
    """

    order = 1
    multistep = True
    sampler_name = "DPM-Solver++ multistep"
    step_size_key = None

    @register_to_config
    def __init__(
        self,
        sigma_max: float = 50.0,
        sigma_min: float = 0.01,
        num_noise_levels: int = 35,
        rho: float = 7.0,
        algorithm: str = "2m-sde",
        eta: float = 1.0,
        s_noise: float = 1.0,
        tuned_noise_levels: Optional[dict] = None,
        num_train_noise_levels: int = 232,
    ):
        self._check_levels(sigma_max, sigma_min, rho, num_noise_levels, num_train_noise_levels)
        check_choice("algorithm", algorithm, list(ALGORITHMS))
        check_number("eta", eta, 0.0, 1.0)
        check_number("s_noise", s_noise, 0.0, 2.0)
        self._check_tuned_levels(tuned_noise_levels)
        self.set_timesteps()

    @property
    def stochastic(self) -> bool:
        """Whether the configured variant draws noise (the SDE variants with ``eta > 0``)."""
        return self.config.algorithm.endswith("sde") and self.config.eta > 0

    def _reset_run(self) -> None:
        super()._reset_run()
        self._denoised: List[torch.Tensor] = []  # D at the previous calls, newest first (at most two)
        self._steps: List[float] = []  # h at the previous steps, newest first

    @property
    def description(self) -> str:
        """One line describing the configured run, e.g. for model cards and the demo."""
        variant = self.config.algorithm.upper()
        noise = f", eta {self.config.eta:g}" if self.config.algorithm.endswith("sde") else ", deterministic"
        return (
            f"DPM-Solver++({variant}), {self.levels_description}{noise} ({self.num_model_calls} model calls)"
        )

    def step(
        self,
        model_output: torch.Tensor,
        timestep: Union[float, torch.Tensor],
        sample: torch.Tensor,
        generator: Optional[Union[torch.Generator, List[torch.Generator]]] = None,
        return_dict: bool = True,
    ) -> Union[ScoreSchedulerOutput, Tuple[torch.Tensor, torch.Tensor]]:
        """One multistep update from the score at ``timestep`` to the next noise level.

        Args:
            model_output (`torch.Tensor`): The score ``s(x, sigma)`` at ``sample``.
            timestep (`float` or `torch.Tensor`): The current entry of ``timesteps``.
            sample (`torch.Tensor`): The current sample.
            generator (`torch.Generator` or list, *optional*): For the SDE variants' noise.
            return_dict (`bool`, defaults to `True`): Return a `ScoreSchedulerOutput` instead of a tuple.

        Returns:
            `ScoreSchedulerOutput` or `tuple`: ``prev_sample`` and ``prev_sample_mean`` (before the new noise).
        """
        index = self._next_step_index(model_output, timestep, sample)
        sigma = float(self.sigmas[index])
        next_sigma = float(self.sigmas[index + 1]) if index + 1 < len(self.sigmas) else 0.0
        denoised = sample + sigma**2 * model_output  # Tweedie: the data prediction D(x, sigma)

        if next_sigma == 0.0:
            # The last step: lambda -> infinity, every variant lands on the data prediction.
            prev_sample = prev_sample_mean = denoised
            h = math.inf
        else:
            h = math.log(sigma / next_sigma)  # lambda_{i+1} - lambda_i
            algorithm = self.config.algorithm
            if algorithm == "2m":
                # 1. Algorithm 2 of DPM-Solver++: a second-order combination of the last two predictions.
                prediction = denoised
                if self._denoised:
                    ratio = self._steps[0] / h
                    prediction = (1 + 1 / (2 * ratio)) * denoised - (1 / (2 * ratio)) * self._denoised[0]
                prev_sample_mean = (next_sigma / sigma) * sample - math.expm1(-h) * prediction
                prev_sample = prev_sample_mean
            else:
                # 2.-3. The SDE variants: exact integration of the linear part, (1 - e^{-(1+eta) h}) on D.
                eta_h = self.config.eta * h
                weight = -math.expm1(-h - eta_h)
                prev_sample_mean = (next_sigma / sigma) * math.exp(-eta_h) * sample + weight * denoised
                if algorithm == "2m-sde" and self._denoised:
                    ratio = self._steps[0] / h
                    prev_sample_mean = prev_sample_mean + 0.5 * weight / ratio * (denoised - self._denoised[0])
                elif algorithm == "3m-sde" and self._denoised:
                    h_eta = h + eta_h
                    phi_2 = math.expm1(-h_eta) / h_eta + 1
                    if len(self._denoised) >= 2:
                        r0, r1 = self._steps[0] / h, self._steps[1] / h
                        d1_0 = (denoised - self._denoised[0]) / r0
                        d1_1 = (self._denoised[0] - self._denoised[1]) / r1
                        d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                        d2 = (d1_0 - d1_1) / (r0 + r1)
                        phi_3 = phi_2 / h_eta - 0.5
                        prev_sample_mean = prev_sample_mean + phi_2 * d1 - phi_3 * d2
                    else:
                        prev_sample_mean = prev_sample_mean + phi_2 * (denoised - self._denoised[0]) / (
                            self._steps[0] / h
                        )
                prev_sample = prev_sample_mean
                if self.stochastic:
                    noise = standard_normal(sample.shape, generator, sample.device, sample.dtype)
                    scale = next_sigma * math.sqrt(-math.expm1(-2 * eta_h)) * self.config.s_noise
                    prev_sample = prev_sample_mean + scale * noise
        self._denoised = [denoised, *self._denoised][:2]
        self._steps = [h, *self._steps][:2]
        return self._end_step(
            prev_sample, prev_sample_mean, return_dict, f"the step from sigma={sigma:.4g}", "Use more noise levels."
        )


# The sampler of new pipelines (training output, converted models, the demo): the best at <= 50 calls in
# benchmarks/sampler_quality.py, and within noise of 111-call annealed Langevin dynamics on the digits evaluation
# (README, "Fast sampling").
DEFAULT_SAMPLER_OPTIONS = {"algorithm": "3m-sde", "num_noise_levels": 50}


def default_sampler(config: Dict[str, Any]) -> DPMSolverPlusPlusScheduler:
    """The default sampler of a new pipeline whose model was trained for the sampler ``config`` (any score sampler's).

    The noise range and the training levels carry over (`ScoreSchedulerMixin.from_config`), and so do the
    settings of the sampler the model came with, which a swap back restores (for instance the tuned annealed
    Langevin settings: ``NCSNScheduler.from_config(pipe.scheduler.config)``).

    >>> from ncsn_pipeline import NCSNScheduler
    >>> sampler = default_sampler(NCSNScheduler.from_preset("ncsnv2-cifar10").config)
    >>> sampler.num_model_calls, sampler.config.num_train_noise_levels
    (50, 232)
    >>> NCSNScheduler.from_config(sampler.config).num_model_calls  # the original sampler, 232 x 5 + 1
    1161
    """
    return DPMSolverPlusPlusScheduler.from_config(dict(config), **DEFAULT_SAMPLER_OPTIONS)
