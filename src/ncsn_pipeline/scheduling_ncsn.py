"""Annealed Langevin dynamics as a diffusers scheduler.

Song & Ermon (2019), "Generative Modeling by Estimating Gradients of the Data Distribution"
(NCSN, https://arxiv.org/abs/1907.05600), Algorithm 1, with the final denoising step and the
data-driven settings of Song & Ermon (2020), "Improved Techniques for Training Score-Based
Generative Models" (NCSNv2, https://arxiv.org/abs/2006.09011).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple, Union

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import logging

from .checks import (
    check_bool,
    check_model_calls,
    check_noise_level_count,
    check_noise_range,
    check_positive,
    check_step_count,
)
from .noise_schedules import annealed_step_sizes, geometric_noise_levels, ncsnv2_noise_schedule, step_lr_for
from .sampling import denoise_step, langevin_step, standard_normal
from .scheduling_utils import ScoreSchedulerMixin, ScoreSchedulerOutput

logger = logging.get_logger(__name__)

# Settings of the reference implementations (sigma_max, sigma_min, L, T, step_lr, final denoise).
# NCSN v1: Song & Ermon 2019, section 5 (MNIST, CIFAR-10, CelebA 32x32).
# NCSNv2: the released configs of ermongroup/ncsnv2 (Song & Ermon 2020, Appendix).
# "ncsn-toy": the two-Gaussian toy of NCSN section 3.2 / Figure 3 (sigma 20 -> 1, T = 100, eps = 0.1).
NCSN_PRESETS: Dict[str, Dict[str, Union[float, int, bool]]] = {
    "ncsn-v1": dict(
        sigma_max=1.0, sigma_min=0.01, num_noise_levels=10, steps_per_level=100, step_lr=2e-5, final_denoise=False
    ),
    "ncsnv2-cifar10": dict(
        sigma_max=50.0, sigma_min=0.01, num_noise_levels=232, steps_per_level=5, step_lr=6.2e-6, final_denoise=True
    ),
    "ncsnv2-celeba": dict(
        sigma_max=90.0, sigma_min=0.01, num_noise_levels=500, steps_per_level=5, step_lr=3.3e-6, final_denoise=True
    ),
    "ncsnv2-lsun-bedroom": dict(
        sigma_max=190.0, sigma_min=0.01, num_noise_levels=1086, steps_per_level=3, step_lr=1.8e-6, final_denoise=True
    ),
    "ncsnv2-ffhq": dict(
        sigma_max=348.0, sigma_min=0.01, num_noise_levels=2311, steps_per_level=3, step_lr=9e-7, final_denoise=True
    ),
    "ncsn-toy": dict(
        sigma_max=20.0, sigma_min=1.0, num_noise_levels=10, steps_per_level=100, step_lr=0.1, final_denoise=False
    ),
}


# The shared output class of every score sampler, under its former name.
NCSNSchedulerOutput = ScoreSchedulerOutput


class NCSNScheduler(ScoreSchedulerMixin, SchedulerMixin, ConfigMixin):
    r"""Annealed Langevin dynamics (ALD) over geometric noise levels, for noise-conditional score models.

    The sampler of NCSN (Song & Ermon 2019, Algorithm 1) as the reference code runs it. With noise
    levels ``sigma_1 = sigma_max > ... > sigma_L = sigma_min`` (geometric):

    1. ``alpha_i = step_lr * sigma_i**2 / sigma_L**2`` (the step size of level ``i``).
    2. ``T`` times per level: ``x <- x + alpha_i * s(x, sigma_i) + sqrt(2 * alpha_i) * z``, ``z ~ N(0, I)``.
    3. Optionally (NCSNv2) once at the end: ``x <- x + sigma_L**2 * s(x, sigma_L)`` (Tweedie denoising).

    **Step-size convention.** Step 2 is the reference code's update; the paper's Algorithm 1 writes
    ``x + (alpha_i / 2) s + sqrt(alpha_i) z``, so for the same ``step_lr`` this step is twice as
    long as the paper's formula. The released ``step_lr`` values were tuned with the code, so they
    are used here unchanged (see `NCSN_PRESETS`).

    ``timesteps`` holds the noise level ``sigma`` of every model call (each level repeated ``T``
    times, plus ``sigma_L`` once more for the denoising step); pass it to the model as-is. Sampling
    starts from ``N(0, sigma_max**2 I)`` (``init_noise_sigma = sigma_max``).

    This class inherits from [`SchedulerMixin`] and [`ConfigMixin`]: `save_pretrained`,
    `from_pretrained` and `from_config` work as for every diffusers scheduler.

    Args:
        sigma_max (`float`, defaults to 50.0): Largest noise level ``sigma_1``. NCSNv2 sets it to the
            largest pairwise distance between training examples.
        sigma_min (`float`, defaults to 0.01): Smallest noise level ``sigma_L``; ``0 < sigma_min < sigma_max``.
        num_noise_levels (`int`, defaults to 232): ``L``, the number of noise levels the model was
            trained on (``set_timesteps`` may sample with another number).
        steps_per_level (`int`, defaults to 5): ``T``, Langevin steps per noise level.
        step_lr (`float`, defaults to 6.2e-6): ``epsilon``, the step size at the smallest level. `None` chooses
            it by NCSNv2's technique 4 for these levels and ``steps_per_level`` (`step_lr_for`), as
            ``from_config`` does for the config of a sampler without a ``step_lr``.
        final_denoise (`bool`, defaults to `True`): Add NCSNv2's final denoising step (one more model call).

    The defaults are NCSNv2's CIFAR-10 settings; `from_preset` gives the others, `from_data` computes
    them for your data.

    Example:
        >>> import torch
        >>> from ncsn_pipeline import GaussianMixtureScore, NCSNScheduler
        >>> model = GaussianMixtureScore(weights=[0.2, 0.8], means=[[-5.0, -5.0], [5.0, 5.0]], stds=[1.0, 1.0])
        >>> scheduler = NCSNScheduler.from_preset("ncsn-toy")
        >>> scheduler.set_timesteps()
        >>> generator = torch.Generator().manual_seed(0)
        >>> x = torch.randn(1000, 2, generator=generator) * scheduler.init_noise_sigma
        >>> for sigma in scheduler.timesteps:
        ...     score = model(x, sigma).sample
        ...     x = scheduler.step(score, sigma, x, generator=generator).prev_sample
        >>> round((x.sum(dim=1) > 0).float().mean().item(), 1)  # weight of the (5, 5) mode
        0.8
    """

    order = 1
    sampler_name = "annealed Langevin dynamics (NCSN)"
    langevin_steps_key = "steps_per_level"
    step_size_key = "step_lr"
    # Another sampler's config has no step_lr: choose it by NCSNv2's technique 4 for its levels and steps.
    chosen_when_missing = {"step_lr": None}

    @register_to_config
    def __init__(
        self,
        sigma_max: float = 50.0,
        sigma_min: float = 0.01,
        num_noise_levels: int = 232,
        steps_per_level: int = 5,
        step_lr: Optional[float] = 6.2e-6,
        final_denoise: bool = True,
    ):
        sigma_max = check_positive("sigma_max", sigma_max)
        check_noise_range(check_positive("sigma_min", sigma_min), sigma_max)
        check_noise_level_count("num_noise_levels", num_noise_levels)
        check_step_count("steps_per_level", steps_per_level)
        if step_lr is None:  # NCSNv2's technique 4 for these levels; the config keeps the value chosen
            gamma = (sigma_max / sigma_min) ** (1 / (num_noise_levels - 1))
            step_lr = step_lr_for(gamma, sigma_min, steps_per_level)
            self.register_to_config(step_lr=step_lr)
        step_lr = check_positive("step_lr", step_lr)
        check_bool("final_denoise", final_denoise)
        if step_lr >= 2 * sigma_min**2:
            # Not an error: a model trained on spread-out data may tolerate it, and sampling stops
            # with a clear message if it does diverge.
            logger.warning(
                f"step_lr={step_lr} is at least 2 * sigma_min**2 = {2 * sigma_min**2}: Langevin steps this "
                "long are unstable near sharp modes. NCSNv2's technique gives a value below sigma_min**2."
            )
        self.set_timesteps()

    @property
    def noise_levels(self) -> torch.Tensor:
        """The ``num_noise_levels`` training noise levels from the config (float64, decreasing).

        Training draws one of these per example so that the model is trained on exactly the levels the
        saved scheduler uses.
        """
        return geometric_noise_levels(self.config.sigma_max, self.config.sigma_min, self.config.num_noise_levels)

    @property
    def description(self) -> str:
        """One line describing the configured run, e.g. for model cards and the demo."""
        return (
            f"annealed Langevin dynamics, {self.num_inference_steps} noise levels {self.config.sigma_max:.4g} -> "
            f"{self.config.sigma_min:.4g} x {self.config.steps_per_level} steps, step_lr {self.config.step_lr:.3g}"
            + (", final denoising step" if self.config.final_denoise else "")
            + f" ({self.num_model_calls} model calls)"
        )

    def langevin_step_size(self, sigma: float) -> float:
        """``alpha = step_lr * sigma**2 / sigma_min**2``, the step of this sampler at level ``sigma`` (step 1)."""
        return self.config.step_lr * sigma**2 / self.config.sigma_min**2

    def set_timesteps(
        self, num_inference_steps: Optional[int] = None, device: Union[str, torch.device, None] = None
    ) -> None:
        """Prepare the noise levels of a sampling run.

        Args:
            num_inference_steps (`int`, *optional*): Number of noise levels ``L`` to anneal through,
                geometric between ``sigma_max`` and ``sigma_min`` (defaults to ``num_noise_levels``).
                The number of model calls is ``L * T`` (+ 1 with ``final_denoise``), ``T`` being the
                config's ``steps_per_level``.
            device (`str` or `torch.device`, *optional*): Where ``timesteps`` should live.
        """
        num_levels = self.config.num_noise_levels if num_inference_steps is None else num_inference_steps
        num_levels = check_noise_level_count("num_inference_steps", num_levels)
        steps_per_level = self.config.steps_per_level
        check_model_calls(num_levels * steps_per_level, f"{num_levels} noise levels x {steps_per_level} steps")
        self.num_inference_steps = num_levels
        # sigmas and step sizes stay on the CPU in float64: `step` reads them as Python floats, which
        # avoids a device sync per step and keeps the sample's dtype.
        self.sigmas = geometric_noise_levels(self.config.sigma_max, self.config.sigma_min, num_levels)
        self.step_sizes = annealed_step_sizes(self.sigmas, self.config.step_lr)
        self._step_size_list = self.step_sizes.tolist()  # read once per call: Python floats, no tensor indexing
        timesteps = self.sigmas.repeat_interleave(steps_per_level)
        self._level_start_indices = list(range(0, num_levels * steps_per_level, steps_per_level))
        if self.config.final_denoise:  # one more call at sigma_min, part of the last level (any call may begin a run)
            timesteps = torch.cat([timesteps, self.sigmas[-1:]])
        self.timesteps = timesteps.to(device=device, dtype=torch.float32)
        self._reset_run()

    def step(
        self,
        model_output: torch.Tensor,
        timestep: Union[float, torch.Tensor],
        sample: torch.Tensor,
        generator: Optional[Union[torch.Generator, List[torch.Generator]]] = None,
        return_dict: bool = True,
    ) -> Union[ScoreSchedulerOutput, Tuple[torch.Tensor, torch.Tensor]]:
        """One annealed-Langevin update (or the final denoising step) from the model's score.

        Args:
            model_output (`torch.Tensor`): The score ``s(x, sigma)`` at ``sample``.
            timestep (`float` or `torch.Tensor`): The current entry of ``timesteps`` (the noise level).
            sample (`torch.Tensor`): The current sample ``x``.
            generator (`torch.Generator` or list, *optional*): Random generator(s) for the Langevin noise.
            return_dict (`bool`, defaults to `True`): Return a `ScoreSchedulerOutput` instead of a tuple.

        Returns:
            `ScoreSchedulerOutput` or `tuple`: ``prev_sample`` and ``prev_sample_mean``.

        Raises:
            FloatingPointError: When the sample becomes NaN or infinite; the message names the noise
                level and suggests a smaller ``step_lr``.
        """
        index = self._next_step_index(model_output, timestep, sample)
        steps_per_level = self.config.steps_per_level

        if index < self.num_inference_steps * steps_per_level:
            # 1.-2. Langevin step at level i with alpha_i = step_lr * sigma_i^2 / sigma_L^2.
            level = index // steps_per_level
            noise = standard_normal(sample.shape, generator, sample.device, sample.dtype)
            prev_sample, prev_sample_mean = langevin_step(sample, model_output, self._step_size_list[level], noise)
            level_done = (index + 1) % steps_per_level == 0
        else:
            # 3. Final denoising step x + sigma_L^2 * s(x, sigma_L) (NCSNv2), no noise added.
            level = self.num_inference_steps - 1
            prev_sample = prev_sample_mean = denoise_step(sample, model_output, float(self.sigmas[-1]))
            level_done = True

        # Checking once per level (not per step) keeps GPU syncs rare; NaN persists until then.
        where = (
            (lambda: f"noise level {level + 1}/{self.num_inference_steps} (sigma={float(self.sigmas[level]):.4g})")
            if level_done
            else None
        )
        return self._end_step(prev_sample, prev_sample_mean, return_dict, where, self._divergence_advice)

    def _divergence_advice(self) -> str:
        return (
            f"The Langevin steps are too long for this model: use a smaller step_lr (now {self.config.step_lr:g}, "
            f"try {self.config.step_lr / 2:g})."
        )

    @classmethod
    def from_preset(cls, name: str, **overrides) -> NCSNScheduler:
        """Build a scheduler with the settings of a reference model (see `NCSN_PRESETS`).

        Args:
            name (`str`): One of ``"ncsn-v1"``, ``"ncsnv2-cifar10"``, ``"ncsnv2-celeba"``,
                ``"ncsnv2-lsun-bedroom"``, ``"ncsnv2-ffhq"``, ``"ncsn-toy"``.
            **overrides: Config values to change.

        Returns:
            `NCSNScheduler`
        """
        if name not in NCSN_PRESETS:
            raise ValueError(f"Unknown preset {name!r}; choose one of {sorted(NCSN_PRESETS)}.")
        return cls(**{**NCSN_PRESETS[name], **overrides})

    @classmethod
    def from_data(
        cls,
        data: torch.Tensor,
        sigma_min: float = 0.01,
        steps_per_level: int = 5,
        final_denoise: bool = True,
        sigma_max: Optional[float] = None,
        prior_tolerance: Optional[float] = None,
    ) -> NCSNScheduler:
        """Compute ``sigma_max``, ``num_noise_levels`` and ``step_lr`` from training data (NCSNv2 Techniques 1, 2, 4).

        Args:
            data (`torch.Tensor`): Training examples ``(N, ...)`` in the model's data range.
            sigma_min (`float`, defaults to 0.01): Smallest noise level.
            steps_per_level (`int`, defaults to 5): ``T``.
            final_denoise (`bool`, defaults to `True`): Add the final denoising step.
            sigma_max (`float`, *optional*): Override Technique 1's largest pairwise distance.
            prior_tolerance (`float`, *optional*): Raise Technique 1's ``sigma_max`` where needed so that the prior
                ``N(0, sigma_max**2 I)`` is within this total variation of ``p_sigma_max`` for a Gaussian fit of the
                data (`noise_schedules.sigma_max_for_prior`; 0.01 is a good value for data far from the origin).

        Returns:
            `NCSNScheduler`
        """
        schedule = ncsnv2_noise_schedule(
            data, sigma_max=sigma_max, sigma_min=sigma_min, steps_per_level=steps_per_level,
            prior_tolerance=prior_tolerance,
        )  # fmt: skip
        return cls(**schedule.to_dict(), final_denoise=final_denoise)

    def __len__(self) -> int:
        return self.config.num_noise_levels
