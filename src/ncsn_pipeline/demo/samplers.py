"""The demo's sampler controls, mapped onto any score sampler through the sampler contract.

The generic controls (noise levels, Langevin steps per level, step-size scale) reach a sampler through the
attributes every score sampler declares (``langevin_steps_key``, ``step_size_key``); a sampler added to the
package's exports appears here without any change.

>>> from ncsn_pipeline import NCSNScheduler
>>> run = prepare_run("NCSNScheduler", NCSNScheduler.from_preset("ncsn-toy").config, 4, 3, 0.5)
>>> run.num_model_calls, run.config.step_lr
(12, 0.05)
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

from ..checks import check_choice, check_integer, check_number
from ..scheduling_utils import score_schedulers
from .limits import NOISE_LEVELS_RANGE, SEED_RANGE, STEP_SCALE_RANGE, STEPS_PER_LEVEL_RANGE

SAMPLERS: Dict[str, type] = score_schedulers()


def sampler_choices() -> List[Tuple[str, str]]:
    """``(label, class name)`` pairs for a dropdown of every sampler the package exports."""
    return [(sampler_class.sampler_name or name, name) for name, sampler_class in SAMPLERS.items()]


def check_sampler_controls(
    sampler: Any, noise_levels: Any, steps_per_level: Any, step_scale: Any, seed: Any
) -> Tuple[str, int, int, float, int]:
    """Check the sampler controls both tabs share (raw values from the browser); return them typed.

    Raises:
        ValueError: Naming the control, its accepted range and the value.
    """
    return (
        check_choice("sampler", sampler, list(SAMPLERS)),
        check_integer("noise levels", noise_levels, *NOISE_LEVELS_RANGE, whole_floats=True),
        check_integer("steps per level", steps_per_level, *STEPS_PER_LEVEL_RANGE, whole_floats=True),
        check_number("step size scale", step_scale, *STEP_SCALE_RANGE),
        check_integer("seed", seed, *SEED_RANGE, whole_floats=True),
    )


def prepare_run(
    sampler: str,
    base_config: Any,
    noise_levels: int,
    steps_per_level: int,
    step_scale: float,
    max_calls: Optional[int] = None,
):
    """A fresh ``SAMPLERS[sampler]`` set up from a model's tuned config and the request's controls, timesteps set.

    Each request gets its own scheduler (schedulers keep per-run state), so concurrent runs never share one.
    ``steps_per_level`` sets the sampler's Langevin steps per level and ``step_scale`` multiplies its step-size
    option, where the sampler has them. An adaptive sampler's run is capped at ``max_calls`` network calls (its
    ``max_model_calls``), where given.
    """
    sampler_class = SAMPLERS[sampler]
    tuned = sampler_class.from_scheduler_config(base_config).config  # the model's settings, the sampler's defaults
    options: Dict[str, Any] = {}
    if sampler_class.step_size_key:
        options[sampler_class.step_size_key] = float(tuned[sampler_class.step_size_key]) * step_scale
    if sampler_class.langevin_steps_key:
        options[sampler_class.langevin_steps_key] = steps_per_level
    if sampler_class.adaptive and max_calls is not None:
        options["max_model_calls"] = min(int(tuned["max_model_calls"]), max_calls)
    scheduler = sampler_class.from_scheduler_config(base_config, **options)
    scheduler.set_timesteps(noise_levels)
    return scheduler


def suggested_controls(base_config: Any, sampler: str, max_calls: int) -> Dict[str, int]:
    """Noise levels and Langevin steps per level to show for a model and sampler: the model's tuned values, or the
    sampler's defaults, within the demo's ranges and at most ``max_calls`` network calls (fewer steps first)."""
    sampler_class = SAMPLERS[sampler]
    tuned = sampler_class.from_scheduler_config(base_config)
    steps = int(tuned.config[sampler_class.langevin_steps_key]) if sampler_class.langevin_steps_key else 1
    levels = min(max(tuned.num_inference_steps, NOISE_LEVELS_RANGE[0]), NOISE_LEVELS_RANGE[1])
    steps = min(max(steps, STEPS_PER_LEVEL_RANGE[0]), STEPS_PER_LEVEL_RANGE[1])
    while prepare_run(sampler, base_config, levels, steps, 1.0, max_calls).max_model_calls > max_calls:
        if steps > STEPS_PER_LEVEL_RANGE[0]:
            steps -= 1
        elif levels > NOISE_LEVELS_RANGE[0]:
            levels -= 1
        else:
            break
    return {"noise_levels": levels, "steps_per_level": steps}


class CountedCalls:
    """Counts a network's calls during one request (a forward hook, removed on exit) and reports each to
    ``progress`` (which also stops a run whose client left, or that passed its deadline)."""

    def __init__(self, network: Any, total: int, progress: Optional[Callable[..., Any]] = None):
        self.network, self.total, self.progress, self.calls = network, total, progress, 0

    def _count(self, module, inputs, output) -> None:
        self.calls += 1
        if self.progress is not None:
            fraction = min(self.calls / max(self.total, 1), 1.0)
            self.progress(fraction, desc=f"network call {self.calls} of at most {self.total}")

    def __enter__(self) -> CountedCalls:
        self._hook = self.network.register_forward_hook(self._count)
        return self

    def __exit__(self, *exc_info) -> None:
        self._hook.remove()
