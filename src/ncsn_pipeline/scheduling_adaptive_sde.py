"""Adaptive-step sampling of the reverse VE SDE: the number of model calls follows from a tolerance.

Jolicoeur-Martineau, Li, Piché-Taillefer, Kachman & Mitliagkas (2021), "Gotta Go Fast When Generating Data with
Score-Based Models" (https://arxiv.org/abs/2105.14080), Algorithm 1: an Euler-Maruyama step and a stochastic
improved-Euler (Heun) step with the same noise give two solutions of different order; their difference
estimates the local error, which decides whether the step is accepted and how long the next one is. Written in
``sigma`` form for the VE SDE ``dx = sqrt(d sigma^2 / dt) dw``, whose reverse step from ``sigma`` to
``sigma' < sigma`` moves by ``(sigma^2 - sigma'^2) s(x, sigma)`` plus noise of variance ``sigma^2 - sigma'^2``.
"""

from __future__ import annotations

import math
from typing import Iterator, List, Optional, Tuple, Union

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import logging

from .checks import check_bool, check_integer, check_noise_level_count, check_number, check_positive
from .sampling import raise_if_not_finite, standard_normal
from .scheduling_utils import ContinuousLevelsMixin, ScoreSchedulerMixin, ScoreSchedulerOutput

logger = logging.get_logger(__name__)

# When no more than this many steps fit in what is left of ``max_model_calls`` and the controller's steps would not
# reach sigma_min, the rest of the range is split evenly among them (see `AdaptiveSDEScheduler`).
BUDGET_FALLBACK_STEPS = 4


class AdaptiveSDEScheduler(ContinuousLevelsMixin, ScoreSchedulerMixin, SchedulerMixin, ConfigMixin):
    r"""Gotta Go Fast: error-controlled steps on the reverse SDE, so a tolerance (not a level count) sets the cost.

    The position is ``u`` in ``[0, 1]`` with ``sigma(u) = sigma_min (sigma_max / sigma_min)**u`` (geometric, as
    NCSN's levels); a step of length ``h`` goes from ``sigma = sigma(u)`` to ``sigma' = sigma(u - h)``, with
    ``delta = sigma**2 - sigma'**2`` and one noise draw ``z`` (Algorithm 1 of the paper):

    1. Euler-Maruyama (call at ``x, sigma``): ``x' = x + delta s(x, sigma) + sqrt(delta) z``.
    2. Stochastic improved Euler (call at ``x', sigma'``):
       ``x'' = x + delta (s(x, sigma) + s(x', sigma')) / 2 + sqrt(delta) z``.
    3. Error: ``E = rms((x' - x'') / tol)`` over the whole batch, with the elementwise scale
       ``tol = max(abs_tol, rel_tol max(|x'|, |x'_prev|))`` (``x'_prev``: the last accepted step's ``x'``).
    4. Accept if ``E <= 1`` (keep ``x''``, the higher-order solution); in either case the next step is
       ``h <- min(u, safety h E**(-exponent))``. A rejected step is retried from the same ``x`` with fresh
       noise; its score at ``x`` is reused, so a retry costs one call.
    5. At ``sigma_min``, the denoising step ``x + sigma_min**2 s(x, sigma_min)`` (NCSNv2's; ``final_denoise``).

    ``timesteps`` is the record of the run: after ``set_timesteps`` it holds the first call (``sigma_max``), and
    each ``step`` appends the level of the call that follows, so a loop over `iter_timesteps` (as `NCSNPipeline`
    runs; ``step`` refuses to run outside it, since a plain ``for t in scheduler.timesteps`` loop would stop after
    one call) sees each level as it is decided and ``num_model_calls`` is the number of calls the last run made;
    ``level_start_indices`` grows by the calls at newly reached levels (after accepted steps). A run
    never takes more than ``max_model_calls``: when only `BUDGET_FALLBACK_STEPS` steps fit in what is left and
    the controller's steps would not reach ``sigma_min``, each takes an equal share of the remaining range and is
    accepted whatever its error, with a warning (loosen the tolerance or raise the budget). The batch is solved as
    one system (one step size): in a batched model call every sample waits for the slowest anyway, and the cost
    stays the same for any batch size.

    Args:
        sigma_max (`float`, defaults to 50.0): Largest noise level (also ``init_noise_sigma``).
        sigma_min (`float`, defaults to 0.01): Smallest noise level.
        num_noise_levels (`int`, defaults to 100): The first step spans ``1 / num_noise_levels`` of ``u`` (the
            paper's initial step 0.01); later steps follow from the tolerances (``num_inference_steps`` overrides
            it).
        rel_tol (`float`, defaults to 0.05): Relative tolerance ``rel_tol`` (the paper's fast setting; 0.01-0.02
            is slower and closer to the exact SDE).
        abs_tol (`float`, defaults to 0.0078): Absolute tolerance, in data units: the paper's value for data in
            ``[-1, 1]``, where it is one 8-bit step (``2 / 255``). For data in ``[0, 1]`` (NCSN's images) it is two
            8-bit steps; halve it there for the same precision.
        safety (`float`, defaults to 0.9): ``safety`` of step 4.
        exponent (`float`, defaults to 0.9): ``exponent`` of step 4 (the paper's ``r``).
        max_model_calls (`int`, defaults to 1000): The most calls a run may take.
        final_denoise (`bool`, defaults to `True`): End with the denoising step (one more call).
        num_train_noise_levels (`int`, defaults to 232): Geometric levels a model for this sampler is trained on.

    Example:
        >>> import torch
        >>> from ncsn_pipeline import GaussianMixtureScore, NCSNPipeline
        >>> scheduler = AdaptiveSDEScheduler(sigma_max=20.0, sigma_min=0.01, rel_tol=0.05)
        >>> pipe = NCSNPipeline(unet=GaussianMixtureScore.ncsn_toy(), scheduler=scheduler)
        >>> pipe.set_progress_bar_config(disable=True)
        >>> points = pipe(batch_size=2000, generator=torch.Generator().manual_seed(0), output_type="pt").images
        >>> scheduler.num_model_calls < 200, round((points.sum(dim=1) > 0).float().mean().item(), 1)
        (True, 0.8)
    """

    order = 2
    adaptive = True
    sampler_name = "adaptive-step SDE solver (Gotta Go Fast)"

    @register_to_config
    def __init__(
        self,
        sigma_max: float = 50.0,
        sigma_min: float = 0.01,
        num_noise_levels: int = 100,
        rel_tol: float = 0.05,
        abs_tol: float = 0.0078,
        safety: float = 0.9,
        exponent: float = 0.9,
        max_model_calls: int = 1000,
        final_denoise: bool = True,
        num_train_noise_levels: int = 232,
    ):
        self._check_levels(sigma_max, sigma_min, None, num_noise_levels, num_train_noise_levels)
        check_positive("rel_tol", rel_tol)
        check_positive("abs_tol", abs_tol)
        check_number("safety", safety, 0.1, 1.0)
        check_number("exponent", exponent, 0.1, 2.0)
        check_bool("final_denoise", final_denoise)
        # A run needs an Euler-Maruyama call, an improved-Euler call and (optionally) the denoising call.
        check_integer("max_model_calls", max_model_calls, low=3 + int(final_denoise), high=100_000)
        self.set_timesteps()

    def set_timesteps(
        self, num_inference_steps: Optional[int] = None, device: Union[str, torch.device, None] = None
    ) -> None:
        """Prepare a run whose first step spans ``1 / num_inference_steps`` of the log-noise range (default: the
        config's ``num_noise_levels``); ``timesteps`` then holds the first call's level, ``sigma_max``."""
        levels = self.config.num_noise_levels if num_inference_steps is None else num_inference_steps
        self.num_inference_steps = check_noise_level_count("num_inference_steps", levels)
        self.timesteps = torch.tensor([float(self.config.sigma_max)], device=device, dtype=torch.float32)
        self._level_start_indices = [0]
        self._reset_run()

    def _reset_run(self) -> None:
        super()._reset_run()
        self._position = 1.0  # u of the current (accepted) sample
        self._step_length = 1.0 / self.num_inference_steps  # h of the next trial
        self._phase = "euler"  # what the next call is for: "euler", "heun", "denoise", "done"
        self._trial: Optional[Tuple[torch.Tensor, ...]] = None
        self._last_euler: Optional[torch.Tensor] = None  # x' of the last accepted step
        self.accepted_steps = 0
        self.rejected_steps = 0
        self._warned = False
        self._iterating = False  # set by `iter_timesteps`, the only loop that sees the levels decided during a run

    def can_begin_at(self, index: int) -> bool:
        """Only at the first call: each later level is decided by the steps before it (`set_begin_sigma` moves the
        first call to any level)."""
        return index == 0

    def set_begin_index(self, begin_index: int = 0) -> None:
        """Start a fresh run at the first call, ``sigma_max`` (the only index known before a run)."""
        super().set_begin_index(begin_index)  # checks the index
        self.set_begin_sigma(self.config.sigma_max)

    def set_begin_sigma(self, sigma: float) -> float:
        """Start the next run exactly at ``sigma``, any level in ``[sigma_min, sigma_max]`` (SDEdit): the position
        becomes ``u = log(sigma / sigma_min) / log(sigma_max / sigma_min)`` and the first step spans ``1 /
        num_inference_steps`` of the whole range, or what is left of it. The sample the run begins with must be at
        noise level ``sigma``; a run begun at ``sigma_min`` is the denoising step alone.

        >>> scheduler = AdaptiveSDEScheduler(sigma_max=10.0, sigma_min=0.1)
        >>> scheduler.set_begin_sigma(1.0), scheduler.timesteps.tolist()
        (1.0, [1.0])
        """
        sigma = self._checked_begin_sigma(sigma)
        sigma_min = float(self.config.sigma_min)
        if sigma < sigma_min * (1 - 1e-6) or (sigma <= sigma_min and not self.config.final_denoise):
            raise ValueError(
                f"sigma must be a noise level in {'[' if self.config.final_denoise else '('}{sigma_min:.6g}, "
                f"{self.init_noise_sigma:.6g}] for {type(self).__name__} (its sigma_min to sigma_max), got {sigma!r}."
            )
        sigma = max(sigma, sigma_min)
        self.set_timesteps(self.num_inference_steps, device=self.timesteps.device)
        self._position = math.log(sigma / sigma_min) / math.log(self.config.sigma_max / sigma_min)
        self._step_length = min(self._position, 1.0 / self.num_inference_steps)
        self.timesteps = torch.tensor([sigma], device=self.timesteps.device, dtype=self.timesteps.dtype)
        if self._position == 0.0:
            self._phase = "denoise"
        self._begin_index = 0
        return sigma

    @property
    def max_model_calls(self) -> int:
        """The most calls a run may take (``config.max_model_calls``); the last run's own count is
        ``num_model_calls``."""
        return int(self.config.max_model_calls)

    @property
    def description(self) -> str:
        """One line describing the configured sampler, e.g. for model cards and the demo (the calls of a run follow
        from the tolerances: ``num_model_calls`` after the run, ``accepted_steps`` and ``rejected_steps``)."""
        config = self.config
        return (
            f"adaptive-step SDE solver (Gotta Go Fast), rel_tol {config.rel_tol:g}, abs_tol {config.abs_tol:g}, "
            f"sigma {config.sigma_max:.4g} -> {config.sigma_min:.4g}"
            f"{', final denoising step' if config.final_denoise else ''} (at most {self.max_model_calls} model calls)"
        )

    def iter_timesteps(self) -> Iterator[torch.Tensor]:
        """The level of each call as it is decided: loop over this (not ``timesteps``) and call ``step`` each time."""
        self._iterating = True
        index = 0
        while index < self.timesteps.shape[0]:
            yield self.timesteps[index]
            index += 1

    # ---------------------------------------------------------------------------- the steps
    def _sigma(self, position: float) -> float:
        return self.config.sigma_min * (self.config.sigma_max / self.config.sigma_min) ** position

    def _append_level(self, sigma: float, starts_level: bool) -> None:
        if starts_level:  # a call at a newly reached level (not a trial point)
            self._level_start_indices.append(self.timesteps.shape[0])
        level = torch.tensor([sigma], device=self.timesteps.device, dtype=self.timesteps.dtype)
        self.timesteps = torch.cat([self.timesteps, level])

    def _start_trial(
        self, sample: torch.Tensor, score: torch.Tensor, index: int, generator
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Step 1 from ``sample`` (whose score at ``sigma(u)`` is known); the budget may force the last step."""
        # The budget: this trial's improved-Euler call, two calls per later step, the denoising call. When only a
        # few steps are left in it and the controller's steps would not reach sigma_min, each takes an equal share
        # of the rest and is accepted whatever its error (a retry would overrun the budget).
        calls_left = self.max_model_calls - (index + 1)  # after the current call
        steps_left = 1 + (calls_left - 1 - int(self.config.final_denoise)) // 2
        least = self._position / max(steps_left, 1)
        forced = steps_left <= 1 or (steps_left <= BUDGET_FALLBACK_STEPS and self._step_length < least)
        target = max(self._position - (max(self._step_length, least) if forced else self._step_length), 0.0)
        sigma, next_sigma = self._sigma(self._position), self._sigma(target)
        delta = sigma**2 - next_sigma**2
        noise = standard_normal(sample.shape, generator, sample.device, sample.dtype)
        euler_mean = sample + delta * score
        euler = euler_mean + math.sqrt(delta) * noise
        raise_if_not_finite(euler, f"the step from sigma={sigma:.4g}", "Use a smaller rel_tol or abs_tol.")
        self._trial = (sample, score, noise, delta, euler, target, forced)
        self._append_level(next_sigma, starts_level=False)
        self._phase = "heun"
        return euler, euler_mean

    def _finish_trial(self, score: torch.Tensor, index: int, generator) -> Tuple[torch.Tensor, torch.Tensor]:
        """Steps 2-4: the improved-Euler solution, the error, accept or reject, the next step."""
        start, start_score, noise, delta, euler, target, forced = self._trial
        heun_mean = start + (0.5 * delta) * (start_score + score)
        heun = heun_mean + math.sqrt(delta) * noise
        raise_if_not_finite(heun, f"the step to sigma={self._sigma(target):.4g}", "Use a smaller rel_tol or abs_tol.")
        reference = euler.abs() if self._last_euler is None else torch.maximum(euler.abs(), self._last_euler.abs())
        scale = torch.clamp(self.config.rel_tol * reference, min=self.config.abs_tol)
        error = float(((euler - heun) / scale).square().mean().sqrt())
        accepted = error <= 1.0 or forced
        if forced and error > 1.0 and not self._warned:
            self._warned = True
            logger.warning(
                f"AdaptiveSDEScheduler reached its budget of max_model_calls={self.max_model_calls}: steps from "
                f"sigma={self._sigma(self._position):.4g} down are as long as the budget needs and accepted whatever "
                f"their error ({error:.3g} x the tolerance here). Raise max_model_calls or loosen rel_tol / abs_tol."
            )
        if accepted:
            self.accepted_steps += 1
            self._position, self._last_euler = target, euler
        else:
            self.rejected_steps += 1
        growth = self.config.safety * max(error, 1e-10) ** -self.config.exponent
        self._step_length = min(self._position, self._step_length * growth)
        if self._position == 0.0:  # reached sigma_min
            self._trial = None
            if self.config.final_denoise:
                self._append_level(float(self.config.sigma_min), starts_level=True)
                self._phase = "denoise"
            else:
                self._phase = "done"
            return heun, heun_mean
        if accepted:
            self._trial = None
            self._append_level(self._sigma(self._position), starts_level=True)
            self._phase = "euler"
            return heun, heun_mean
        # Rejected: retry from the same start with the shorter step; the score there is still known.
        return self._start_trial(start, start_score, index, generator)

    def step(
        self,
        model_output: torch.Tensor,
        timestep: Union[float, torch.Tensor],
        sample: torch.Tensor,
        generator: Optional[Union[torch.Generator, List[torch.Generator]]] = None,
        return_dict: bool = True,
    ) -> Union[ScoreSchedulerOutput, Tuple[torch.Tensor, torch.Tensor]]:
        """Use the score at the last decided level; the returned sample is where the next call evaluates it.

        Args:
            model_output (`torch.Tensor`): The score ``s(x, sigma)`` at ``sample``.
            timestep (`float` or `torch.Tensor`): The current entry of ``timesteps`` (of `iter_timesteps`).
            sample (`torch.Tensor`): The current sample.
            generator (`torch.Generator` or list, *optional*): For the noise.
            return_dict (`bool`, defaults to `True`): Return a `ScoreSchedulerOutput` instead of a tuple.

        Returns:
            `ScoreSchedulerOutput` or `tuple`: ``prev_sample`` (after an Euler-Maruyama trial: the trial point; after
            an improved-Euler call: the accepted sample, or a new trial's point if the step was rejected) and
            ``prev_sample_mean`` (the same without this step's noise).
        """
        if not self._iterating:
            # A plain diffusers loop (`for t in scheduler.timesteps`) sees only the first level and would stop after
            # one call with a half-made step: refuse it rather than return noise.
            raise ValueError(
                "AdaptiveSDEScheduler decides each noise level during the run, so `scheduler.timesteps` holds only the "
                "levels decided so far: drive it with `for t in scheduler.iter_timesteps(): ...step(...)` (as "
                "NCSNPipeline does), after `set_timesteps`."
            )
        index = self._next_step_index(model_output, timestep, sample)
        if self._phase == "euler":
            prev_sample, prev_sample_mean = self._start_trial(sample, model_output, index, generator)
        elif self._phase == "heun":
            prev_sample, prev_sample_mean = self._finish_trial(model_output, index, generator)
        else:  # 5. the denoising step at sigma_min
            prev_sample = prev_sample_mean = sample + self.config.sigma_min**2 * model_output
            self._phase = "done"
            return self._end_step(
                prev_sample, prev_sample_mean, return_dict, "the denoising step", "Use a smaller rel_tol or abs_tol."
            )
        # The trial and improved-Euler solutions were checked as they were formed.
        return self._end_step(prev_sample, prev_sample_mean, return_dict)
