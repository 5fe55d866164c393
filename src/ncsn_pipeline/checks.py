"""The package's argument checks, in one place: each raises a `ValueError` naming the value and what is accepted.

Schedulers, models, noise schedules, the pipeline, the training data, the command lines (through
``ncsn_pipeline.arguments``) and the web demo all validate with these functions, so a rule and its
message are written once. The module uses only the standard library (and torch, imported where used): it is
inlined into the self-contained code files of exported pipelines.

Example:

>>> check_positive("sigma_max", 50)
50.0
>>> check_integer("num_noise_levels", 0, low=2)
Traceback (most recent call last):
...
ValueError: num_noise_levels must be an integer >= 2, got 0.
>>> check_integer("batch size", 3.0, low=1, high=64, whole_floats=True)
3
>>> check_number("step size scale", float("nan"), low=0.05, high=2)
Traceback (most recent call last):
...
ValueError: step size scale must be a finite number from 0.05 to 2, got nan.
"""

from __future__ import annotations

import math
import numbers
import os
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

if TYPE_CHECKING:
    import torch

# Sizes beyond any published model (NCSNv2 FFHQ: 2,311 levels; score SDE: 2,000 steps; NCSN++ at 1024 px) are
# refused when a config is read, so that a small hostile config file cannot make the package allocate gigabytes.
MAX_NOISE_LEVELS = 100_000
MAX_STEPS_PER_LEVEL = 10_000
MAX_MODEL_CALLS = 10_000_000


def _is_real(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Real)


def check_positive(name: str, value: Any) -> float:
    """Return ``value`` as a float if it is a finite number > 0 (not a bool), else raise `ValueError`."""
    if not _is_real(value) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}.")
    return float(value)


def check_number(name: str, value: Any, low: float, high: float) -> float:
    """Return ``value`` as a float if it is a finite number in ``[low, high]``, else raise `ValueError`."""
    if not _is_real(value) or not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{name} must be a finite number from {low:g} to {high:g}, got {value!r}.")
    return float(value)


def check_integer(
    name: str, value: Any, low: int = 1, high: Optional[int] = None, whole_floats: bool = False
) -> int:
    """Return ``value`` as an int if it is an integer in ``[low, high]`` (``high=None``: no upper bound).

    Args:
        name (`str`): What the value is, for the message.
        value: The value to check. Booleans are refused.
        low (`int`, defaults to 1): The smallest accepted value.
        high (`int`, *optional*): The largest accepted value.
        whole_floats (`bool`, defaults to `False`): Also accept floats with no fractional part, such as
            ``3.0`` (what a browser slider sends).

    Raises:
        ValueError: Naming ``name``, the accepted range and the value.
    """
    if high is None:
        message = f"{name} must be an integer >= {low}, got {value!r}."
    else:
        message = f"{name} must be a whole number from {low} to {high}, got {value!r}."
    if isinstance(value, bool):
        raise ValueError(message)
    if isinstance(value, numbers.Integral):
        number = int(value)
    elif whole_floats and _is_real(value) and math.isfinite(value) and value == math.floor(value):
        number = int(value)
    else:
        raise ValueError(message)
    if number < low or (high is not None and number > high):
        raise ValueError(message)
    return number


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise `ValueError` listing them."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"Unknown {name} {value!r}; choose one of {list(choices)}.")
    return value


def check_fields(
    settings: Any,
    integers_from: Optional[Dict[str, int]] = None,
    positive: Sequence[str] = (),
    choices: Optional[Dict[str, Sequence[Any]]] = None,
    optional: Sequence[str] = (),
) -> None:
    """Check the fields of a settings object (a dataclass such as ``TrainingConfig``) by kind: each name in
    ``integers_from`` a whole number from its bound (`check_integer`), each in ``positive`` a finite number above 0
    (`check_positive`), each in ``choices`` one of its values; a name in ``optional`` may also be `None`.

    Raises:
        ValueError: Naming the first bad field, its value and what would be accepted.

    Example:
        >>> from types import SimpleNamespace
        >>> check_fields(SimpleNamespace(steps=0), integers_from={"steps": 1})
        Traceback (most recent call last):
        ValueError: steps must be an integer >= 1, got 0.
    """
    for name, low in (integers_from or {}).items():
        value = getattr(settings, name)
        if value is not None or name not in optional:
            check_integer(name, value, low)
    for name in positive:
        value = getattr(settings, name)
        if value is not None or name not in optional:
            check_positive(name, value)
    for name, accepted in (choices or {}).items():
        value = getattr(settings, name)
        if isinstance(value, bool) or value not in accepted:  # True == 1 would pass `in`
            raise ValueError(f"{name} must be one of {list(accepted)}, got {value!r}.")


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is ``True`` or ``False``, else raise `ValueError`."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}.")
    return value


def check_data_range(value: Any) -> List[float]:
    """Return ``[low, high]`` if ``value`` is a list or tuple of two finite numbers with ``low < high``."""
    pair = list(value) if isinstance(value, (list, tuple)) else []
    if len(pair) != 2 or not all(_is_real(item) and math.isfinite(item) for item in pair) or pair[0] >= pair[1]:
        raise ValueError(f"data_range must be two finite numbers (low, high) with low < high, got {value!r}.")
    return [float(pair[0]), float(pair[1])]


def check_noise_level_count(name: str, value: Any) -> int:
    """A number of noise levels: an integer from 2 to `MAX_NOISE_LEVELS`."""
    return check_integer(name, value, low=2, high=MAX_NOISE_LEVELS)


def check_step_count(name: str, value: Any, low: int = 1) -> int:
    """A number of steps per noise level: an integer from ``low`` to `MAX_STEPS_PER_LEVEL`."""
    return check_integer(name, value, low=low, high=MAX_STEPS_PER_LEVEL)


def check_model_calls(calls: int, what: str) -> int:
    """Refuse a sampling run of more than `MAX_MODEL_CALLS` model calls (``what`` says how they add up)."""
    if calls > MAX_MODEL_CALLS:
        raise ValueError(f"{what} = {calls:,} model calls, more than the limit of {MAX_MODEL_CALLS:,}.")
    return calls


def check_noise_range(sigma_min: float, sigma_max: float) -> None:
    """Require ``0 < sigma_min < sigma_max`` (both already checked positive)."""
    if sigma_min >= sigma_max:
        raise ValueError(
            f"sigma_min ({sigma_min}) must be smaller than sigma_max ({sigma_max}); noise levels "
            "decrease from sigma_max to sigma_min."
        )


def _memory_bytes(device: torch.device) -> Optional[int]:
    """The memory of ``device``: the machine's physical memory for the CPU, the accelerator's own for CUDA; `None`
    where it cannot be read."""
    import torch

    try:
        if device.type == "cuda":
            return int(torch.cuda.get_device_properties(device).total_memory)
        if device.type == "cpu":
            return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError, RuntimeError):  # no sysconf (Windows), no such device
        pass
    return None


TRAINING_COPIES = 5  # float32 copies of the parameters during training: weights, gradients, Adam's 2 moments, EMA


def check_training_memory(num_parameters: int, device: torch.device, what: str) -> None:
    """Refuse a network whose training state alone (`TRAINING_COPIES` float32 copies of its parameters, before any
    activation) needs more memory than ``device`` has: counted on PyTorch's meta device, before anything is
    allocated, so an oversized configuration gets this message, not an allocator error."""
    available = _memory_bytes(device)
    needed = TRAINING_COPIES * 4 * num_parameters
    if available is not None and needed > available:
        raise ValueError(
            f"{what} has {num_parameters:,} parameters: training keeps {TRAINING_COPIES} float32 copies of them "
            f"(weights, gradients, Adam's two moments, the EMA), {needed / 2**30:.1f} GiB before any activation, more "
            f"than the {available / 2**30:.1f} GiB of memory of {device}. Use fewer or narrower blocks "
            "(--block_out_channels, --layers_per_block, --ngf)."
        )


def check_sample_memory(
    batch_size: int, sample_shape: Sequence[int], dtype: torch.dtype, device: torch.device, name: str = "batch_size"
):
    """Refuse a batch whose samples alone need more memory than ``device`` has (a sampling run holds several such
    tensors), before anything is allocated: a mistyped ``batch_size`` gets this message, not an allocator error.
    ``name`` says what set the batch (``"batch_size"``, or ``"2 images x num_images_per_prompt"``)."""
    import torch

    available = _memory_bytes(device)
    needed = batch_size * math.prod(sample_shape) * torch.empty(0, dtype=dtype).element_size()
    if available is not None and needed > available:
        raise ValueError(
            f"{name}={batch_size} needs {needed / 2**30:.1f} GiB for its samples alone, more than the "
            f"{available / 2**30:.1f} GiB of memory of {device}; use a smaller batch (or several calls)."
        )
