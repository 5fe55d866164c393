"""The sampler contract of ncsn-pipeline: what every scheduler that consumes scores implements.

Every sampler of the package is a diffusers scheduler (``SchedulerMixin, ConfigMixin``) mixed with
`ScoreSchedulerMixin`, and so interchangeable with every other through
``OtherScheduler.from_config(pipe.scheduler.config)``:

1. **Score in, sample out.** ``step(model_output, timestep, sample, generator=None, return_dict=True)`` takes
   the score ``s(x, sigma) ~ grad_x log p_sigma(x)`` at ``sample`` and returns a `ScoreSchedulerOutput`
   (``prev_sample``, ``prev_sample_mean``) or the tuple of both. ``timesteps`` holds the noise level
   ``sigma`` of every model call, in order; pass each one to the model as-is.
2. **One way to plan a run.** ``set_timesteps(num_inference_steps=None, device=None)``: the number of noise
   levels (default: the config's). Everything else a sampler needs (Langevin steps per level, corrector
   steps, snr, rho ...) is its *config*; change it with ``from_config(config, option=value)``
   (`ScoreSchedulerMixin.from_scheduler_config` checks the option names). ``num_model_calls`` is the number
   of model calls of the planned run and ``description`` a one-line summary of the configured sampler
   (model cards, the CLI and the demo print it).
3. **Start mid-schedule.** The first ``step`` of a run starts at its ``timestep``: ``level_start_indices``
   lists where levels begin in ``timesteps``; a timestep value maps to the first level start with that value,
   and a value not in the schedule raises `ValueError`. ``set_begin_index`` sets the start explicitly
   (diffusers' img2img convention), at any call for which ``can_begin_at`` is true (every call, unless a step
   needs the call before it, as Heun's correction does; every level start in any case), and ``set_begin_sigma``
   at the level start nearest a noise level (SDEdit; the adaptive sampler begins exactly there). A run begun at
   ``timesteps[k]`` takes a sample at noise level ``timesteps[k]`` and is the tail of a full run: exactly (same
   sample, same random state) for one-step samplers, in distribution for ``multistep`` samplers, which warm up
   with lower-order steps as diffusers' multistep solvers do, and for the adaptive sampler, which chooses its
   own steps.
4. **Prior and training.** Sampling starts from ``N(0, init_noise_sigma**2 I)`` with ``init_noise_sigma =
   sigma_max``; ``scale_model_input`` is the identity; ``add_noise(x, z, sigma)`` is ``x + sigma z`` for a
   scalar, ``(1,)`` or ``(batch,)`` sigma; ``noise_levels`` are the levels a model for the sampler is trained on.
5. **Checked.** Constructors validate their config with `ncsn_pipeline.checks`; sampling stops with a
   `FloatingPointError` naming the level when the sample becomes NaN or infinite.
6. **Adaptive runs.** A sampler whose calls follow from a tolerance (``adaptive = True``) decides each level
   from the step before: ``timesteps`` starts with the first call's level and each ``step`` appends the next,
   so loops go over ``iter_timesteps()`` (for planned samplers, ``timesteps`` itself). ``max_model_calls``
   bounds a run (for planned samplers it is ``num_model_calls``); after a run ``num_model_calls`` is its count.
7. **Discoverable.** ``compatibles`` lists every score sampler of the package (`score_schedulers`: each sampler
   defined in a ``scheduling_*`` module registers itself), and swaps between them are silent and keep each
   sampler's own level count. `NCSNPipeline` refuses a scheduler without ``consumes_score = True``.
8. **Restartable or not.** Whether a pipeline may jump back and sample a stretch again (RePaint) follows from
   ``can_begin_at`` (`can_restart_at_level_starts`, `restartable_samplers`), never from a list of names: every
   planned sampler can; the adaptive one, which has no planned levels to jump back to, cannot.

Writing a sampler: one ``scheduling_<name>.py`` file with a class mixing `ScoreSchedulerMixin`, ``SchedulerMixin``
and ``ConfigMixin``; ``set_timesteps`` ends with `_reset_run`, ``step`` begins with `_next_step_index` and ends with
`_end_step` (finiteness, the index, the output); then export it from the package.

``tests/test_scheduler_contract.py`` checks all of this for every class `score_schedulers` finds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Union

import torch
from diffusers.utils import BaseOutput

from .checks import check_noise_level_count, check_noise_range, check_positive
from .noise_schedules import geometric_noise_levels, karras_noise_levels
from .sampling import raise_if_not_finite


@dataclass
class ScoreSchedulerOutput(BaseOutput):
    """Output of every score sampler's ``step``.

    Args:
        prev_sample (`torch.Tensor`): The sample after this step; feed it to the next model call.
        prev_sample_mean (`torch.Tensor`): The same step without the noise it injected (equal to
            ``prev_sample`` for deterministic steps).
    """

    prev_sample: torch.Tensor
    prev_sample_mean: torch.Tensor


# diffusers' ScoreSdeVeScheduler config keys -> the score samplers' own (the ones a sampler has are taken).
SCORE_SDE_VE_KEYS = {
    "sigma_min": "sigma_min",
    "sigma_max": "sigma_max",
    "num_train_timesteps": "num_noise_levels",
    "snr": "snr",
    "correct_steps": "num_corrector_steps",
}


# Where a sampler on its training levels that was set up from a sampler on any levels keeps the latter's level count,
# so that a swap back restores it (diffusers carries every config key a class does not take; the "_" keeps it out of
# diffusers' warnings about unexpected keys). Its presence also marks the config as one of training levels.
ANY_LEVELS_COUNT_KEY = "_num_noise_levels_on_any_levels"

# Every score sampler defined in the package's ``scheduling_*`` modules, by class name (filled by
# `ScoreSchedulerMixin.__init_subclass__` as the package imports them).
_SCORE_SAMPLERS: Dict[str, type] = {}
_SAMPLER_MODULES_IMPORTED = False


def _keep_training_levels(config: Dict[str, Any], own_keys) -> Dict[str, Any]:
    """A sampler swap keeps the model's training levels and each sampler's own level count.

    Samplers on their training levels (annealed Langevin, predictor-corrector) count them as ``num_noise_levels``;
    samplers on any levels (they have ``num_train_noise_levels``) count the training levels there and their own
    sampling levels as ``num_noise_levels``. A config is of the second kind when it has ``num_train_noise_levels``
    and no `ANY_LEVELS_COUNT_KEY` (diffusers also carries keys of the samplers a config passed through).
    """
    config_on_any_levels = "num_train_noise_levels" in config and ANY_LEVELS_COUNT_KEY not in config
    if config_on_any_levels == ("num_train_noise_levels" in own_keys):
        return config
    if config_on_any_levels:  # -> a sampler on its training levels: they become its num_noise_levels
        stash = {ANY_LEVELS_COUNT_KEY: config["num_noise_levels"]} if "num_noise_levels" in config else {}
        return {**config, **stash, "num_noise_levels": config["num_train_noise_levels"]}
    if "num_noise_levels" not in config:
        return config
    # -> a sampler on any levels: the config's levels are its training levels; it samples on its own count again
    swapped = {key: value for key, value in config.items() if key != ANY_LEVELS_COUNT_KEY}
    restored = {"num_noise_levels": config[ANY_LEVELS_COUNT_KEY]} if ANY_LEVELS_COUNT_KEY in config else {}
    return {**swapped, "num_train_noise_levels": config["num_noise_levels"], **restored}


def score_schedulers() -> Dict[str, type]:
    """The score samplers of the package, by class name: every `ScoreSchedulerMixin` class defined in one of its
    ``scheduling_*`` modules (the package exports each of them; ``tests/test_scheduler_contract.py`` checks it).

    A new sampler only has to be written in its own ``scheduling_*.py`` file and exported to be offered by the CLI
    and the demo, listed by ``compatibles`` and covered by the contract test.

    >>> sorted(score_schedulers())  # doctest: +NORMALIZE_WHITESPACE
    ['AdaptiveSDEScheduler', 'DPMSolverPlusPlusScheduler', 'EDMStochasticScheduler', 'IPNDMScoreScheduler',
     'NCSNScheduler', 'ProbabilityFlowHeunScheduler', 'UniPCScheduler', 'VEPredictorCorrectorScheduler']
    """
    _import_sampler_modules()
    return dict(sorted(_SCORE_SAMPLERS.items()))


def _import_sampler_modules() -> None:
    """Import every ``scheduling_*`` module of the package (the package imports its names lazily, so a sampler
    registers itself only once its module is imported). In an exported repository's self-contained copy, without
    the package, the samplers are those its file defines."""
    global _SAMPLER_MODULES_IMPORTED
    if _SAMPLER_MODULES_IMPORTED:  # once per process: diffusers asks for `compatibles` on every from_config
        return
    import importlib
    import pkgutil

    try:
        package = importlib.import_module("ncsn_pipeline")
    except ImportError:
        return
    for module in pkgutil.iter_modules(package.__path__):
        if module.name.startswith("scheduling_") and module.name != "scheduling_utils":
            importlib.import_module(f"ncsn_pipeline.{module.name}")
    _SAMPLER_MODULES_IMPORTED = True


def can_restart_at_level_starts(scheduler) -> bool:
    """Whether a run of ``scheduler`` may begin at every one of its level starts (the contract's `can_begin_at`),
    so that a pipeline may jump back and sample a stretch of levels again (RePaint's resampling); the adaptive
    solver, whose levels are decided during a run, cannot."""
    return not scheduler.adaptive and all(scheduler.can_begin_at(index) for index in scheduler.level_start_indices)


def restartable_samplers() -> List[str]:
    """The names of the package's samplers that can restart at their level starts (`can_restart_at_level_starts`,
    judged on each sampler's default settings).

    >>> restartable_samplers()  # doctest: +NORMALIZE_WHITESPACE
    ['DPMSolverPlusPlusScheduler', 'EDMStochasticScheduler', 'IPNDMScoreScheduler', 'NCSNScheduler',
     'ProbabilityFlowHeunScheduler', 'UniPCScheduler', 'VEPredictorCorrectorScheduler']
    """
    return [name for name, sampler in score_schedulers().items() if can_restart_at_level_starts(sampler())]


class ScoreSchedulerMixin:
    """What the score samplers share (see the module docstring for the contract).

    Subclasses set ``timesteps``, ``sigmas``, ``num_inference_steps`` and ``_level_start_indices`` in
    ``set_timesteps`` (then call `_reset_run`), begin each ``step`` with `_next_step_index`, and define
    ``description``. Class attributes describe the sampler to generic front ends:

    * ``sampler_name``: a short human-readable name, e.g. "annealed Langevin dynamics".
    * ``langevin_steps_key``: the config option counting Langevin (corrector) steps per level, if any.
    * ``step_size_key``: the config option that sets the step size, if any.
    """

    consumes_score = True
    adaptive = False
    # Whether a step uses the model outputs of earlier calls (a run begun mid-schedule then warms up with
    # lower-order steps: the tail of a full run in distribution, not call for call).
    multistep = False
    sampler_name: str = ""
    # Options ``from_config`` sets to these values when the source config lacks them (the constructor resolves them,
    # e.g. NCSNScheduler's step_lr=None: NCSNv2's technique 4), rather than to the constructor's defaults.
    chosen_when_missing: Dict[str, Any] = {}
    langevin_steps_key: Optional[str] = None
    step_size_key: Optional[str] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The package's own samplers register themselves (one file each); exported, self-contained copies and
        # users' subclasses live in other modules and stay out of the package's list.
        module = cls.__module__
        if module.startswith("ncsn_pipeline.scheduling_") and module != __name__ and not cls.__name__.startswith("_"):
            _SCORE_SAMPLERS[cls.__name__] = cls

    # ---------------------------------------------------------------------------- the run's position
    @property
    def init_noise_sigma(self) -> float:
        """Standard deviation of the initial noise: ``sigma_max``."""
        return float(self.config.sigma_max)

    @property
    def step_index(self) -> Optional[int]:
        """Index into ``timesteps`` of the next call to ``step`` (``None`` before the first call)."""
        return self._step_index

    @property
    def begin_index(self) -> Optional[int]:
        """Where the next run starts, if set with `set_begin_index` (else the first step's timestep decides)."""
        return self._begin_index

    @property
    def level_start_indices(self) -> List[int]:
        """Indices into ``timesteps`` where a noise level begins (where a run may start, if `can_begin_at`)."""
        return list(self._level_start_indices)

    @property
    def num_model_calls(self) -> int:
        """Model calls of the run planned by the last ``set_timesteps``."""
        return len(self.timesteps)

    @property
    def max_model_calls(self) -> int:
        """The most model calls a run may take: for a planned run, exactly `num_model_calls`."""
        return self.num_model_calls

    def iter_timesteps(self) -> Iterable[torch.Tensor]:
        """The noise level of each model call, in order, for a sampling loop: ``timesteps`` for a planned run (an
        adaptive sampler yields each level once the step before has decided it)."""
        return self.timesteps

    def can_begin_at(self, index: int) -> bool:
        """Whether a run may start at ``timesteps[index]``: any call of the schedule, unless the sampler keeps state
        between calls (then only `level_start_indices`)."""
        return isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(self.timesteps)

    def set_begin_index(self, begin_index: int = 0) -> None:
        """Start the next run at ``timesteps[begin_index]`` (diffusers' img2img convention; see `can_begin_at`)."""
        if not self.can_begin_at(begin_index):
            raise ValueError(
                f"begin_index {begin_index!r} is not where a run of {type(self).__name__} can start: use an index "
                f"from 0 to {len(self.timesteps) - 1} for which `can_begin_at` is true, such as the level starts "
                f"{self._level_start_indices[:6]}{' ...' if len(self._level_start_indices) > 6 else ''}."
            )
        self._reset_run()  # a new run: no step index, no history of an earlier run
        self._begin_index = int(begin_index)

    def set_begin_sigma(self, sigma: float) -> float:
        """Start the next run at the level start nearest ``sigma`` (in ``log sigma``) where a run may begin.

        Call after ``set_timesteps``. The sample the run begins with must be at the returned noise level
        (``timesteps[begin_index]``), for instance clean data plus that much Gaussian noise (SDEdit).

        Args:
            sigma (`float`): A noise level in ``(0, init_noise_sigma]``.

        Returns:
            `float`: The noise level the run begins at.

        >>> from ncsn_pipeline import NCSNScheduler
        >>> scheduler = NCSNScheduler(sigma_max=10.0, sigma_min=0.1, num_noise_levels=3, steps_per_level=2)
        >>> scheduler.set_begin_sigma(1.2), scheduler.begin_index
        (1.0, 2)
        """
        sigma = self._checked_begin_sigma(sigma)
        starts = [start for start in self._level_start_indices if self.can_begin_at(start)]
        levels = self.timesteps.detach().cpu().double()[torch.tensor(starts)]
        distances = (levels.log() - math.log(sigma)).abs()
        begin = starts[int(distances.argmin())]  # the first of equally near ones
        self.set_begin_index(begin)
        return float(self.timesteps[begin])

    def _checked_begin_sigma(self, sigma: Any) -> float:
        """``sigma`` as a float in ``(0, init_noise_sigma]``, or a `ValueError` naming it and the range."""
        top = self.init_noise_sigma
        if isinstance(sigma, torch.Tensor) and sigma.numel() == 1:
            sigma = sigma.item()
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0 < sigma <= top * (1 + 1e-6):
            raise ValueError(f"sigma must be a noise level in (0, {top:.6g}] (init_noise_sigma), got {sigma!r}.")
        return min(float(sigma), top)

    def _reset_run(self) -> None:
        """Forget the position of any earlier run (called at the end of ``set_timesteps``)."""
        self._step_index = None
        self._begin_index = None

    def _init_step_index(self, timestep: Union[float, torch.Tensor]) -> None:
        if self._begin_index is not None:
            self._step_index = self._begin_index
            return
        # The first level start whose noise level is `timestep`: a loop may start mid-schedule (img2img).
        value = float(timestep)
        starts = torch.tensor(self._level_start_indices)
        levels = self.timesteps.detach().cpu().double()[starts]
        matches = torch.isclose(levels, torch.tensor(value, dtype=torch.float64), rtol=1e-5, atol=0.0).nonzero()
        if len(matches) == 0:
            return self._refuse_start_at(value)
        index = int(starts[matches[0, 0]])
        if not self.can_begin_at(index):
            return self._refuse_start_at(value, index)
        self._step_index = index

    def _refuse_start_at(self, value: float, index: Optional[int] = None) -> None:
        """Raise the error for a first ``step`` at ``timestep=value``, which is not where a run can begin."""
        calls = self.timesteps.detach().cpu().double()
        if index is None:  # not a level start: is it another call of the schedule (a Heun correction, a trial)?
            found = torch.isclose(calls, torch.tensor(value, dtype=torch.float64), rtol=1e-5, atol=0.0).nonzero()
            if len(found) == 0:
                raise ValueError(
                    f"timestep {value!r} is not one of this scheduler's noise levels (from {float(calls[0]):.4g} "
                    f"down to {float(calls[-1]):.4g}); pass the values of `scheduler.timesteps` in order after "
                    "`set_timesteps`."
                )
            index = int(found[0, 0])
        starts = [start for start in self._level_start_indices if self.can_begin_at(start)]
        shown = ", ".join(f"{float(calls[start]):.4g}" for start in starts[:6]) + (" ..." if len(starts) > 6 else "")
        raise ValueError(
            f"A run of {type(self).__name__} cannot begin at timestep {value!r} (call {index} of its timesteps): "
            f"it keeps state from earlier steps, so it begins where `can_begin_at` is true, at the level starts "
            f"({shown}). Begin there, or with `set_begin_index`."
        )

    def _next_step_index(
        self, model_output: torch.Tensor, timestep: Union[float, torch.Tensor], sample: torch.Tensor
    ) -> int:
        """Check a ``step`` call's tensors and return the index into ``timesteps`` of the call it is for."""
        if model_output.shape != sample.shape:
            raise ValueError(f"model_output shape {tuple(model_output.shape)} != sample shape {tuple(sample.shape)}.")
        if self._step_index is None:
            self._init_step_index(timestep)
        if self._step_index >= self.timesteps.shape[0]:  # shape, not len(): the cheaper lookup, once per call
            raise ValueError(
                f"step was called after the last of the {len(self.timesteps)} timesteps; call `set_timesteps` "
                "again to start a new run."
            )
        return self._step_index

    def _end_step(
        self,
        prev_sample: torch.Tensor,
        prev_sample_mean: torch.Tensor,
        return_dict: bool,
        where: Union[str, Callable[[], str], None] = None,
        advice: Union[str, Callable[[], str]] = "",
    ):
        """The end of every ``step``: stop on a non-finite sample (when ``where`` names the step; samplers check once
        per level, not per call), move to the next call, and return the contract's output."""
        if where is not None:
            raise_if_not_finite(prev_sample, where, advice)
        self._step_index += 1
        if not return_dict:
            return prev_sample, prev_sample_mean
        return ScoreSchedulerOutput(prev_sample=prev_sample, prev_sample_mean=prev_sample_mean)

    def langevin_step_size(self, sigma: float) -> float:
        """The step size of a Langevin step of this sampler at noise level ``sigma`` (for comparisons such as
        plain Langevin dynamics at ``sigma_min``). This default is a score-SDE corrector's typical step with
        signal-to-noise ratio 0.16, ``2 (0.16 sigma)**2``; samplers with Langevin steps return their own."""
        return 2 * (0.16 * sigma) ** 2

    # ---------------------------------------------------------------------------- inputs and training
    def scale_model_input(
        self, sample: torch.Tensor, timestep: Union[float, torch.Tensor, None] = None
    ) -> torch.Tensor:
        """Return ``sample`` unchanged: score models take the noisy sample as it is."""
        return sample

    def add_noise(
        self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: Union[float, torch.Tensor]
    ) -> torch.Tensor:
        """Perturb clean samples for training: ``x + sigma * z`` (NCSN eq. 5; the VE SDE's transition kernel).

        Args:
            original_samples (`torch.Tensor`): Clean data ``x``, shape ``(batch, ...)``.
            noise (`torch.Tensor`): Standard normal ``z``, same shape.
            timesteps (`float` or `torch.Tensor`): The noise level ``sigma``: a scalar, shape ``(1,)`` (broadcast
                to the batch) or one per example, shape ``(batch,)``.

        Returns:
            `torch.Tensor`: The noisy samples, in the dtype of ``original_samples``.
        """
        if noise.shape != original_samples.shape:
            raise ValueError(
                f"noise shape {tuple(noise.shape)} != original_samples shape {tuple(original_samples.shape)}."
            )
        sigma = torch.as_tensor(timesteps, device=original_samples.device, dtype=original_samples.dtype)
        batch = original_samples.shape[0]
        if sigma.ndim > 1 or (sigma.ndim == 1 and sigma.shape[0] not in (1, batch)):
            raise ValueError(
                f"timesteps must be a scalar or of shape (1,) or ({batch},) for a batch of {batch}, got shape "
                f"{tuple(sigma.shape)}."
            )
        sigma = sigma.reshape(-1, *([1] * (original_samples.ndim - 1))) if sigma.ndim == 1 else sigma
        return original_samples + sigma * noise

    # ---------------------------------------------------------------------------- interchangeability
    @classmethod
    def _get_compatibles(cls) -> List[type]:
        # diffusers resolves `_compatibles` names in its own module only; ours are the package's samplers (an
        # exported, self-contained copy of one sampler knows only itself).
        return list(score_schedulers().values()) or [cls]

    @classmethod
    def from_config(cls, config: Any = None, return_unused_kwargs: bool = False, **kwargs: Any):
        """diffusers' ``from_config``, which also reads diffusers' ``ScoreSdeVeScheduler`` configs.

        Their keys are renamed (`SCORE_SDE_VE_KEYS`: ``num_train_timesteps`` -> ``num_noise_levels`` and, for
        samplers with a corrector, ``snr`` and ``correct_steps`` -> ``num_corrector_steps``); diffusers' own
        ``from_config`` would silently drop them and fall back to the defaults (1000 levels instead of 2000).
        """
        if config is not None and hasattr(config, "config") and not isinstance(config, dict):
            config = config.config  # a scheduler object, as diffusers still accepts
        if isinstance(config, dict) and (
            config.get("_class_name") == "ScoreSdeVeScheduler" or {"num_train_timesteps", "sampling_eps"} <= set(config)
        ):
            renamed = {new: config[old] for old, new in SCORE_SDE_VE_KEYS.items() if old in config}
            config = {"_class_name": cls.__name__, **renamed}
        if isinstance(config, dict):
            config = _keep_training_levels(config, cls._get_init_keys(cls))
            missing = {key: value for key, value in cls.chosen_when_missing.items() if key not in config}
            kwargs = {**missing, **kwargs}
        return super().from_config(config, return_unused_kwargs=return_unused_kwargs, **kwargs)

    @classmethod
    def sampler_options(cls) -> List[str]:
        """The config options of this sampler (what ``from_config(config, **options)`` may set)."""
        return sorted(cls._get_init_keys(cls) - {"self", "kwargs"})

    @classmethod
    def from_scheduler_config(cls, config: Dict[str, Any], **options: Any):
        """This sampler, set up from another score sampler's config (say a pipeline's) and ``options``.

        Shared settings (``sigma_max``, ``sigma_min``, ``num_noise_levels`` ...) carry over; ``options`` must
        be config options of this class (`sampler_options`), or a `ValueError` names the bad one.

        >>> from ncsn_pipeline import NCSNScheduler, VEPredictorCorrectorScheduler
        >>> tuned = NCSNScheduler.from_preset("ncsn-toy").config
        >>> VEPredictorCorrectorScheduler.from_scheduler_config(tuned, num_corrector_steps=2).num_model_calls
        30
        """
        unknown = sorted(set(options) - set(cls.sampler_options()))
        if unknown:
            raise ValueError(f"{cls.__name__} has no option {unknown[0]!r}; its options are {cls.sampler_options()}.")
        return cls.from_config(dict(config), **options)


class ContinuousLevelsMixin:
    """What the samplers that call the model at any level in ``[sigma_min, sigma_max]`` share (probability-flow
    Heun, EDM and DPM-Solver++ on Karras et al.'s levels, the adaptive SDE solver): the model they drive is trained
    on ``num_train_noise_levels`` geometric levels."""

    @staticmethod
    def _check_levels(sigma_max, sigma_min, rho, num_noise_levels, num_train_noise_levels) -> None:
        """Refuse bad level settings (each error names the setting)."""
        sigma_max = check_positive("sigma_max", sigma_max)
        check_noise_range(check_positive("sigma_min", sigma_min), sigma_max)
        if rho is not None:  # the spacing of Karras et al.'s levels
            check_positive("rho", rho)
        check_noise_level_count("num_noise_levels", num_noise_levels)
        check_noise_level_count("num_train_noise_levels", num_train_noise_levels)

    @property
    def noise_levels(self) -> torch.Tensor:
        """Geometric training levels (``num_train_noise_levels`` of them, float64, decreasing)."""
        return geometric_noise_levels(self.config.sigma_max, self.config.sigma_min, self.config.num_train_noise_levels)

    def __len__(self) -> int:
        return self.config.num_train_noise_levels


class TunedLevels:
    """Planning for samplers with one model call per noise level (DPM-Solver++, iPNDM, UniPC): Karras et al.'s levels,
    or the levels chosen for the model at that number of calls (``tuned_noise_levels`` in the config, as written by
    ``ncsn-tune-steps``), so that a saved or pushed pipeline carries them and ``num_inference_steps=N`` uses them.

    ``tuned_noise_levels`` maps a call count (a string: it is JSON) to ``N`` decreasing levels from ``sigma_max``
    down to a positive last level; counts without an entry fall back to the grid.
    """

    def _check_tuned_levels(self, tuned: Any) -> None:
        """Refuse tuned levels that a run could not use (each error names the count and the fix)."""
        if tuned is None:
            return
        if not isinstance(tuned, dict):
            raise ValueError(f"tuned_noise_levels must be a dict {{'N': [N levels]}} or None, got {tuned!r}.")
        top = float(self.config.sigma_max)
        for count, levels in tuned.items():
            where = f"tuned_noise_levels[{count!r}]"
            if not str(count).isdigit() or int(count) < 2:
                raise ValueError(f"{where}: the keys are call counts of 2 or more, as strings, got {count!r}.")
            if not isinstance(levels, (list, tuple)) or len(levels) != int(count):
                raise ValueError(f"{where} must list {int(count)} noise levels, got {levels!r}.")
            values = [float(level) for level in levels]
            if not all(math.isfinite(value) and value > 0 for value in values):
                raise ValueError(f"{where} must hold positive finite noise levels, got {values}.")
            if any(later >= earlier for earlier, later in zip(values, values[1:])):
                raise ValueError(f"{where} must decrease strictly, got {values}.")
            if not math.isclose(values[0], top, rel_tol=1e-6):
                raise ValueError(
                    f"{where} must begin at sigma_max = {top:.6g} (sampling starts from N(0, sigma_max^2 I)), "
                    f"got {values[0]:.6g}."
                )

    def tuned_levels_for(self, count: int) -> Optional[torch.Tensor]:
        """The tuned levels for ``count`` calls (float64, the first exactly ``sigma_max``), or None."""
        levels = (self.config.get("tuned_noise_levels") or {}).get(str(count))
        if levels is None:
            return None
        levels = torch.tensor([float(level) for level in levels], dtype=torch.float64)
        levels[0] = float(self.config.sigma_max)
        return levels

    def set_timesteps(
        self, num_inference_steps: Optional[int] = None, device: Union[str, torch.device, None] = None
    ) -> None:
        """Prepare a run over ``num_inference_steps`` levels (default: the config's), one model call each: the tuned
        levels for that count where the config has them, else Karras et al.'s."""
        self._plan_levels(num_inference_steps, device)
        self._reset_run()

    def _plan_levels(self, num_inference_steps: Optional[int], device: Union[str, torch.device, None]) -> None:
        """Set ``num_inference_steps``, ``sigmas``, ``timesteps`` and the level starts (one call per level)."""
        count = self.config.num_noise_levels if num_inference_steps is None else num_inference_steps
        count = check_noise_level_count("num_inference_steps", count)
        tuned = self.tuned_levels_for(count)
        self._tuned = tuned is not None
        self.num_inference_steps = count
        self.sigmas = tuned if tuned is not None else karras_noise_levels(
            self.config.sigma_max, self.config.sigma_min, count, self.config.rho
        )
        self.timesteps = self.sigmas.to(device=device, dtype=torch.float32)
        self._level_start_indices = list(range(count))

    @property
    def levels_description(self) -> str:
        """The planned levels in words, e.g. "10 Karras noise levels 20.93 -> 0.01 (rho 7)"."""
        first, last = float(self.sigmas[0]), float(self.sigmas[-1])
        if self._tuned:
            return f"{self.num_inference_steps} tuned noise levels {first:.4g} -> {last:.4g}"
        return f"{self.num_inference_steps} Karras noise levels {first:.4g} -> {last:.4g} (rho {self.config.rho:g})"
