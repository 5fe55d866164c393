"""Gradio web demo: sample images with annealed Langevin dynamics and explore score fields in 2-D.

Two tabs, wired by `build_demo` (launch with ``python app.py`` at the repository root):

* **Images**: a bundled or built-in image model (or one passed with ``--model``), a sampler from
  `SAMPLERS` and its step controls; returns an upscaled image grid, the number of network calls and
  the time taken, and optionally a GIF of the samples at the end of every noise level.
* **2-D playground**: the score field ``s(x, sigma)`` of a 2-D distribution at a chosen noise level
  over its perturbed density, and plain Langevin dynamics (at ``sigma_min``) next to annealed
  Langevin dynamics, both from the same start with the same number of score evaluations, with the
  mode weights each recovers (NCSN's central point, Song & Ermon 2019, section 3.2).

The work happens in plain functions (`generate_images`, `run_playground`) that check every input
themselves and raise `DemoInputError` with a readable message; the Gradio callbacks only turn those
errors into ``gr.Error``. The checks therefore hold whatever Gradio's components do or do not
validate (the events are registered with ``preprocess=False``: callbacks see the raw values).
Gradio is imported only inside `build_demo` and `launch_demo`, so the package works without the
``demo`` extra.

Example:

>>> check_int("batch size", 16, 1, MAX_BATCH_SIZE)
16
>>> check_int("batch size", 2.5, 1, MAX_BATCH_SIZE)
Traceback (most recent call last):
...
ncsn_pipeline.demo.DemoInputError: batch size must be a whole number from 1 to 64, got 2.5.
>>> check_float("step size scale", float("nan"), *STEP_SCALE_RANGE)
Traceback (most recent call last):
...
ncsn_pipeline.demo.DemoInputError: step size scale must be a finite number from 0.05 to 2, got nan.
>>> SAMPLERS["NCSNScheduler"].__name__  # every scheduler the package exports
'NCSNScheduler'
"""

from __future__ import annotations

import html
import inspect
import math
import numbers
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import PIL.Image
import PIL.ImageDraw
import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

from .builtin import builtin_pipeline
from .cli_sample import mode_weights
from .modeling_toy import GaussianMixtureScore
from .pipeline_ncsn import NCSNPipeline
from .pretrained import load_pretrained
from .sampling import langevin_dynamics

# --------------------------------------------------------------------------------------------------
# Limits: every callback checks its inputs against these, whatever the UI components allow.
# --------------------------------------------------------------------------------------------------
MAX_BATCH_SIZE = 64
NOISE_LEVELS_RANGE = (2, 100)  # number of noise levels L of a run
STEPS_PER_LEVEL_RANGE = (1, 200)  # network calls per noise level (Langevin steps T for NCSN)
STEP_SCALE_RANGE = (0.05, 2.0)  # multiplies the tuned step size (see SamplerSettings)
SEED_RANGE = (0, 2**31 - 1)
POINTS_RANGE = (10, 2000)  # 2-D points per sampler in the playground
FIELD_SIGMA_RANGE = (0.01, 50.0)  # noise level of the plotted score field
# Cap on the work of one request, in (network calls x samples). Images: ~20 s for the bundled digits
# model on one CPU core; playground: both samplers together, ~5 s for the bundled MLP.
MAX_IMAGE_WORK = 8192
MAX_PLAYGROUND_WORK = 4_000_000

# The queue: at most QUEUE_MAX_SIZE requests wait, CONCURRENCY_LIMIT sampling requests run at once
# (both tabs share one concurrency group: they compete for the same CPU).
QUEUE_MAX_SIZE = 8
CONCURRENCY_LIMIT = 1
SAMPLING_CONCURRENCY_ID = "sampling"

# Presentation.
TILE_SIZE = 96  # px per sample in the result grid (nearest-neighbour upscaling)
FRAME_TILE_SIZE = 48  # px per sample in the animation
GRID_BORDER = 2
MAX_ANIMATION_FRAMES = 40
FRAME_DURATION_MS = 180
FIELD_GRID_POINTS = 21  # arrows per axis of the score field
DENSITY_GRID_POINTS = 160
ANIMATION_MAX_AGE_S = 1800  # animations older than this are deleted from the demo's temporary folder

DEFAULT_IMAGE_MODEL = "ncsn-digits"
DEFAULT_PLAYGROUND_MODEL = "two-gaussians"
DEFAULT_SEED = 0
DEFAULT_BATCH_SIZE = 16
DEFAULT_POINTS = 1000


class DemoInputError(ValueError):
    """An input of the demo is missing, malformed or outside its accepted range; the message says which."""


class DemoModelError(ValueError):
    """A model given to the demo (``--model``) cannot be loaded or is not usable by any tab."""


# --------------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------------
def _format_number(value: float) -> str:
    return f"{value:g}"


def check_int(name: str, value: Any, low: int, high: int) -> int:
    """Return ``value`` as an ``int`` if it is a whole number in ``[low, high]``, else raise `DemoInputError`.

    Whole floats such as ``3.0`` (what a browser slider may send) are accepted; booleans, strings, NaN,
    infinities and fractions are not.
    """
    message = f"{name} must be a whole number from {low} to {high}, got {value!r}."
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise DemoInputError(message)
    if not math.isfinite(value) or value != math.floor(value) or not low <= value <= high:
        raise DemoInputError(message)
    return int(value)


def check_float(name: str, value: Any, low: float, high: float) -> float:
    """Return ``value`` as a ``float`` if it is a finite number in ``[low, high]``, else raise `DemoInputError`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        valid = False
    else:
        valid = low <= value <= high
    if not valid:
        raise DemoInputError(
            f"{name} must be a finite number from {_format_number(low)} to {_format_number(high)}, got {value!r}."
        )
    return float(value)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise `DemoInputError` listing them."""
    if not isinstance(value, str) or value not in choices:
        raise DemoInputError(f"Unknown {name} {value!r}; choose one of {list(choices)}.")
    return value


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is ``True`` or ``False``, else raise `DemoInputError`."""
    if not isinstance(value, bool):
        raise DemoInputError(f"{name} must be true or false, got {value!r}.")
    return value


def check_work(calls: int, samples: int, limit: int, what: str) -> int:
    """Refuse a request whose ``calls x samples`` exceeds ``limit``; return the product.

    >>> check_work(111, 16, MAX_IMAGE_WORK, "batch size")
    1776
    """
    work = calls * samples
    if work > limit:
        raise DemoInputError(
            f"Too much work: {calls} network calls x {samples} ({what}) = {work}, the limit is {limit}. "
            f"Use fewer noise levels, fewer steps per level or a smaller {what}."
        )
    return work


# --------------------------------------------------------------------------------------------------
# Samplers: every scheduler the package exports, found once at import.
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SamplerSettings:
    """How the demo's generic controls map onto one scheduler class.

    Args:
        label: Shown in the dropdown.
        step_size_key: Config value scaled by the "step size" control, as ``value * scale**step_size_power``
            (``None``: the control does not apply).
        step_size_power: ``1`` for a step size itself (``step_lr``); ``0.5`` for a signal-to-noise ratio
            (the corrector's step grows like ``snr**2``).
        corrector_key: For samplers whose level costs ``corrector steps + 1`` calls: the config key set to
            ``steps per level - 1``. ``None``: ``steps per level`` goes to ``set_timesteps(steps_per_level=...)``
            when the scheduler takes it, and does not apply otherwise.
        noise_levels: Noise levels to suggest when the sampler is picked (``None``: the model's own).
        steps_per_level: Steps per level to suggest (``None``: the model's own).
    """

    label: str
    step_size_key: Optional[str] = None
    step_size_power: float = 1.0
    corrector_key: Optional[str] = None
    noise_levels: Optional[int] = None
    steps_per_level: Optional[int] = None


# Known samplers; one the package exports but this table does not list still appears, under its class name.
SAMPLER_SETTINGS: Dict[str, SamplerSettings] = {
    "NCSNScheduler": SamplerSettings("Annealed Langevin dynamics (NCSN)", step_size_key="step_lr"),
    "VEPredictorCorrectorScheduler": SamplerSettings(
        "Predictor-corrector, VE SDE (score SDE)",
        step_size_key="snr",
        step_size_power=0.5,
        corrector_key="num_corrector_steps",
        noise_levels=100,
        steps_per_level=2,
    ),
    # Deterministic: no step size, two calls per level; the seed only fixes the starting noise.
    "ProbabilityFlowHeunScheduler": SamplerSettings("Probability-flow ODE, Heun (deterministic)", noise_levels=35),
}


def discover_samplers() -> Dict[str, type]:
    """The scheduler classes exported by ``ncsn_pipeline`` (its ``__all__``), by class name.

    A sampler added to the package's exports shows up in the demo without any change here.
    """
    import ncsn_pipeline

    found = {}
    for name in ncsn_pipeline.__all__:
        candidate = getattr(ncsn_pipeline, name)
        if isinstance(candidate, type) and issubclass(candidate, SchedulerMixin):
            found[candidate.__name__] = candidate
    return dict(sorted(found.items()))


SAMPLERS: Dict[str, type] = discover_samplers()
DEFAULT_SAMPLER = "NCSNScheduler"


def sampler_settings(sampler: str) -> SamplerSettings:
    """The `SamplerSettings` of a sampler of `SAMPLERS` (a bare default for one the table does not know)."""
    return SAMPLER_SETTINGS.get(sampler, SamplerSettings(label=sampler))


def sampler_choices() -> List[Tuple[str, str]]:
    """``(label, name)`` pairs for a dropdown of `SAMPLERS`."""
    return [(sampler_settings(name).label, name) for name in SAMPLERS]


@dataclass
class PreparedRun:
    """A fresh scheduler set up for one request, and what to pass to the pipeline."""

    scheduler: SchedulerMixin
    calls: int  # network calls of the run
    pipeline_kwargs: Dict[str, int]


def _takes_steps_per_level(scheduler_class: type) -> bool:
    return "steps_per_level" in inspect.signature(scheduler_class.set_timesteps).parameters


def prepare_run(sampler: str, base_config: Any, noise_levels: int, steps_per_level: int, step_scale: float):
    """Build ``SAMPLERS[sampler]`` from the model's tuned config with the request's settings; count its calls.

    Each request gets its own scheduler (schedulers keep per-run state), so concurrent runs never share one.
    Only the config values the sampler accepts are passed on.

    >>> from ncsn_pipeline import NCSNScheduler
    >>> run = prepare_run("NCSNScheduler", NCSNScheduler.from_preset("ncsn-toy").config, 4, 3, 0.5)
    >>> run.calls, run.scheduler.config.step_lr, run.pipeline_kwargs
    (12, 0.05, {'num_inference_steps': 4, 'steps_per_level': 3})
    """
    scheduler_class = SAMPLERS[sampler]
    settings = sampler_settings(sampler)
    accepted = inspect.signature(scheduler_class.__init__).parameters
    config = {key: value for key, value in dict(base_config).items() if key in accepted}
    if settings.step_size_key and settings.step_size_key in accepted:
        tuned = config.get(settings.step_size_key, accepted[settings.step_size_key].default)
        config[settings.step_size_key] = float(tuned) * step_scale**settings.step_size_power
    if settings.corrector_key and settings.corrector_key in accepted:
        config[settings.corrector_key] = steps_per_level - 1
    pipeline_kwargs = {"num_inference_steps": noise_levels}
    if _takes_steps_per_level(scheduler_class):
        pipeline_kwargs["steps_per_level"] = steps_per_level
    scheduler = scheduler_class.from_config(config)
    scheduler.set_timesteps(**pipeline_kwargs)
    return PreparedRun(scheduler=scheduler, calls=len(scheduler.timesteps), pipeline_kwargs=pipeline_kwargs)


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------
@dataclass
class DemoModel:
    """A pipeline offered by one of the tabs.

    Args:
        label: Shown in the dropdown.
        pipeline: The loaded pipeline (its unet is shared by all requests; its scheduler only
            provides the tuned configuration).
        reference: For 2-D models, a Gaussian mixture whose modes define the recovered mode weights
            (the exact model itself, or the training distribution of a learned one).
        exact: Whether the score is exact (then the perturbed density can be drawn).
    """

    label: str
    pipeline: NCSNPipeline
    reference: Optional[GaussianMixtureScore] = None
    exact: bool = False


def three_gaussians() -> GaussianMixtureScore:
    """A 3-mode 2-D mixture with unequal weights 0.5 / 0.3 / 0.2, sampled with the ``ncsn-toy`` preset."""
    return GaussianMixtureScore(
        weights=[0.5, 0.3, 0.2], means=[[-6.0, -4.0], [6.0, -4.0], [0.0, 6.0]], stds=[1.0, 1.0, 1.0]
    )


def _exact_2d(model: GaussianMixtureScore, label: str) -> DemoModel:
    pipe = builtin_pipeline("ncsn-toy")  # the NCSN toy preset (sigma 20 -> 1, 10 levels x 100 steps)
    pipe = NCSNPipeline(unet=model, scheduler=pipe.scheduler)
    return DemoModel(label=label, pipeline=pipe, reference=model, exact=True)


def load_user_pipeline(name_or_path: str) -> NCSNPipeline:
    """Load ``--model``: a local pipeline folder or a Hub repository id (cached copy when offline).

    Raises:
        DemoModelError: with the reason and what to pass instead.
    """
    try:
        return NCSNPipeline.from_pretrained(name_or_path)
    except Exception as error:  # any failure (missing folder, offline Hub, broken weights) becomes one message
        raise DemoModelError(
            f"Could not load --model {name_or_path!r}: {error}\nPass a folder saved with "
            "NCSNPipeline.save_pretrained, or a Hub repository id 'user/name' (without network access it must "
            "already be in the Hugging Face cache)."
        ) from error


@dataclass
class DemoModels:
    """The models of both tabs, loaded once at start-up (by `DemoModels.load`)."""

    images: Dict[str, DemoModel] = field(default_factory=dict)
    points: Dict[str, DemoModel] = field(default_factory=dict)

    @classmethod
    def load(cls, extra_model: Optional[str] = None) -> DemoModels:
        """Bundled and built-in models, plus ``extra_model`` (``--model``) in the tab that fits its data."""
        models = cls()
        models.images["ncsn-digits"] = DemoModel("digits (bundled NCSNv2, trained)", load_pretrained("ncsn-digits"))
        models.images["glyph-mixture"] = DemoModel(
            "glyph-mixture (built-in, exact score)", builtin_pipeline("glyph-mixture")
        )
        models.points["two-gaussians"] = _exact_2d(
            GaussianMixtureScore.ncsn_toy(), "two Gaussians 0.2 / 0.8 (NCSN toy, exact score)"
        )
        models.points["three-gaussians"] = _exact_2d(three_gaussians(), "three Gaussians 0.5 / 0.3 / 0.2 (exact score)")
        models.points["ncsn-two-gaussians"] = DemoModel(
            "two Gaussians (bundled MLP, learned score)",
            load_pretrained("ncsn-two-gaussians"),
            reference=GaussianMixtureScore.ncsn_toy(),  # its training distribution
        )
        if extra_model:
            models.add_user_model(extra_model)
        for model in [*models.images.values(), *models.points.values()]:
            model.pipeline.set_progress_bar_config(disable=True)
        return models

    def add_user_model(self, name_or_path: str) -> str:
        """Load ``name_or_path`` and add it to the image tab or the playground; return the tab's name."""
        pipe = load_user_pipeline(name_or_path)
        label = f"{name_or_path} (--model)"
        if pipe.config.data_range is not None:
            channels = pipe.sample_shape[0]
            if channels not in (1, 3):
                raise DemoModelError(f"--model {name_or_path!r} has {channels} channels; the demo shows 1 or 3.")
            self.images[name_or_path] = DemoModel(label, pipe)
            return "images"
        if tuple(pipe.sample_shape) == (2,):
            exact = isinstance(pipe.unet, GaussianMixtureScore)
            self.points[name_or_path] = DemoModel(label, pipe, reference=pipe.unet if exact else None, exact=exact)
            return "playground"
        raise DemoModelError(
            f"--model {name_or_path!r} samples data of shape {pipe.sample_shape} without a data_range: the demo "
            "shows images (pipelines with a data_range) and 2-D points."
        )

    def defaults(self, tab: str, key: str, sampler: str = DEFAULT_SAMPLER) -> Dict[str, int]:
        """Noise levels and steps per level to suggest for a model and sampler, within the demo's ranges.

        The sampler's suggestion (`SamplerSettings`) when it has one, else the model's tuned schedule.
        """
        config = (self.images if tab == "images" else self.points)[key].pipeline.scheduler.config
        settings = sampler_settings(sampler)
        levels = settings.noise_levels or int(config.get("num_noise_levels", 10))
        steps = settings.steps_per_level or int(config.get("steps_per_level", 1))
        return {
            "noise_levels": min(max(levels, NOISE_LEVELS_RANGE[0]), NOISE_LEVELS_RANGE[1]),
            "steps_per_level": min(max(steps, STEPS_PER_LEVEL_RANGE[0]), STEPS_PER_LEVEL_RANGE[1]),
        }


# --------------------------------------------------------------------------------------------------
# Load gauge: how many sampling requests run right now (tests read it).
# --------------------------------------------------------------------------------------------------
class RunGauge:
    """Thread-safe count of running requests and its peak; use as a context manager around a request."""

    def __init__(self):
        self._lock = threading.Lock()
        self.current = 0
        self.peak = 0

    def __enter__(self) -> RunGauge:
        with self._lock:
            self.current += 1
            self.peak = max(self.peak, self.current)
        return self

    def __exit__(self, *exc_info) -> None:
        with self._lock:
            self.current -= 1

    def reset_peak(self) -> None:
        """Forget the peak (start a new measurement)."""
        with self._lock:
            self.peak = self.current


ACTIVE_RUNS = RunGauge()


# --------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------
def samples_to_pil(sample: torch.Tensor, data_range: Sequence[float]) -> List[PIL.Image.Image]:
    """Map a batch ``(N, C, H, W)`` in ``data_range`` to PIL images (``L`` for 1 channel, ``RGB`` for 3)."""
    low, high = data_range
    scaled = ((sample.detach().float().cpu().clamp(low, high) - low) / (high - low) * 255).round().to(torch.uint8)
    arrays = scaled.permute(0, 2, 3, 1).numpy()
    if arrays.shape[-1] == 1:
        return [PIL.Image.fromarray(array[..., 0], mode="L") for array in arrays]
    return [PIL.Image.fromarray(array, mode="RGB") for array in arrays]


def image_grid(images: Sequence[PIL.Image.Image], tile: int = TILE_SIZE, border: int = GRID_BORDER) -> PIL.Image.Image:
    """A near-square grid of ``images``, each upscaled (nearest neighbour) to ``tile`` px in a grey frame.

    >>> grid = image_grid([PIL.Image.new("L", (8, 8))] * 5, tile=16, border=1)
    >>> grid.size, grid.mode
    ((54, 36), 'RGB')
    """
    columns = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    side = max(tile, images[0].width)
    cell = side + 2 * border
    grid = PIL.Image.new("RGB", (columns * cell, rows * cell), (128, 128, 128))
    for index in range(rows * columns):
        row, column = divmod(index, columns)
        if index < len(images):
            tile_image = images[index].convert("RGB").resize((side, side), resample=PIL.Image.NEAREST)
        else:
            tile_image = PIL.Image.new("RGB", (side, side), (255, 255, 255))
        grid.paste(tile_image, (column * cell + border, row * cell + border))
    return grid


def _caption(image: PIL.Image.Image, text: str, height: int = 16) -> PIL.Image.Image:
    framed = PIL.Image.new("RGB", (image.width, image.height + height), (255, 255, 255))
    framed.paste(image, (0, height))
    PIL.ImageDraw.Draw(framed).text((4, 2), text, fill=(0, 0, 0))
    return framed


def _animation_folder() -> Path:
    """The demo's temporary folder for GIFs (created once per process; old files are pruned)."""
    global _ANIMATION_DIR
    if _ANIMATION_DIR is None:
        _ANIMATION_DIR = tempfile.TemporaryDirectory(prefix="ncsn-demo-")
    folder = Path(_ANIMATION_DIR.name)
    for old in folder.glob("*.gif"):
        try:
            if time.time() - old.stat().st_mtime > ANIMATION_MAX_AGE_S:
                old.unlink()
        except OSError:
            pass  # another request removed it first
    return folder


_ANIMATION_DIR: Optional[tempfile.TemporaryDirectory] = None


def write_animation(frames: Sequence[Tuple[str, List[PIL.Image.Image]]]) -> str:
    """Write ``(caption, images)`` frames as a looping GIF and return its path.

    At most `MAX_ANIMATION_FRAMES` frames are kept (evenly spaced, always the last one).
    """
    if len(frames) > MAX_ANIMATION_FRAMES:
        stride = math.ceil(len(frames) / MAX_ANIMATION_FRAMES)
        frames = [*frames[:-1:stride], frames[-1]]
    pictures = [_caption(image_grid(images, tile=FRAME_TILE_SIZE, border=1), text) for text, images in frames]
    durations = [FRAME_DURATION_MS] * (len(pictures) - 1) + [FRAME_DURATION_MS * 8]  # rest on the result
    path = _animation_folder() / f"trajectory-{uuid.uuid4().hex}.gif"
    pictures[0].save(path, format="GIF", save_all=True, append_images=pictures[1:], duration=durations, loop=0)
    return str(path)


@dataclass
class GenerationResult:
    """What the Images tab shows."""

    grid: PIL.Image.Image
    animation_path: Optional[str]
    summary: str
    calls: int
    seconds: float


ProgressFn = Optional[Callable[..., Any]]


def generate_images(
    models: DemoModels,
    model: Any,
    sampler: Any,
    noise_levels: Any,
    steps_per_level: Any,
    step_scale: Any,
    seed: Any,
    batch_size: Any,
    animate: Any,
    progress: ProgressFn = None,
) -> GenerationResult:
    """Check the inputs, sample a batch of images and return the grid, the optional GIF and a summary.

    Raises:
        DemoInputError: for an input outside its accepted range or a request above `MAX_IMAGE_WORK`.
        FloatingPointError: when sampling diverges (the message suggests a smaller step size).
    """
    # 1. Inputs.
    model = check_choice("model", model, list(models.images))
    sampler = check_choice("sampler", sampler, list(SAMPLERS))
    noise_levels = check_int("noise levels", noise_levels, *NOISE_LEVELS_RANGE)
    steps_per_level = check_int("steps per level", steps_per_level, *STEPS_PER_LEVEL_RANGE)
    step_scale = check_float("step size scale", step_scale, *STEP_SCALE_RANGE)
    seed = check_int("seed", seed, *SEED_RANGE)
    batch_size = check_int("batch size", batch_size, 1, MAX_BATCH_SIZE)
    animate = check_bool("animation", animate)

    # 2. A per-request pipeline around the shared network, and the work it will do.
    entry = models.images[model]
    run = prepare_run(sampler, entry.pipeline.scheduler.config, noise_levels, steps_per_level, step_scale)
    check_work(run.calls, batch_size, MAX_IMAGE_WORK, "batch size")
    pipe = NCSNPipeline(unet=entry.pipeline.unet, scheduler=run.scheduler, data_range=entry.pipeline.config.data_range)
    pipe.set_progress_bar_config(disable=True)

    # 3. Sample, reporting progress after every call and keeping the sample at the end of every level.
    frames: List[Tuple[str, List[PIL.Image.Image]]] = []

    def on_step_end(_pipe, index, sigma, callback_kwargs):
        timesteps = _pipe.scheduler.timesteps
        level_ends = index == len(timesteps) - 1 or float(timesteps[index + 1]) != float(sigma)
        if progress is not None:
            desc = f"network call {index + 1}/{len(timesteps)}, sigma={float(sigma):.3g}"
            progress((index + 1) / len(timesteps), desc=desc)
        if animate and level_ends:
            caption = f"sigma={float(sigma):.3g}  call {index + 1}/{len(timesteps)}"
            frames.append((caption, samples_to_pil(callback_kwargs["sample"], pipe.config.data_range)))
        return callback_kwargs

    started = time.perf_counter()
    images = pipe(
        batch_size=batch_size,
        generator=torch.Generator().manual_seed(seed),
        output_type="pil",
        callback_on_step_end=on_step_end,
        **run.pipeline_kwargs,
    ).images
    seconds = time.perf_counter() - started

    # 4. Results.
    animation_path = write_animation(frames) if animate and frames else None
    summary = (
        f"{batch_size} samples of {entry.label} with {sampler_settings(sampler).label}: "
        f"{run.calls} network calls (each on the whole batch) in {seconds:.2f} s; seed {seed}."
    )
    return GenerationResult(image_grid(images), animation_path, summary, run.calls, seconds)


# --------------------------------------------------------------------------------------------------
# 2-D playground
# --------------------------------------------------------------------------------------------------
@dataclass
class PlaygroundResult:
    """What the playground shows."""

    field_figure: Any
    samples_figure: Any
    weights: Dict[str, Any]
    summary: str


def _extent(reference: Optional[GaussianMixtureScore]) -> float:
    """Half-width of the square plotted around the origin."""
    if reference is None:
        return 10.0
    stds = reference.mode_variances.sqrt().max().item()
    return float(reference.mode_means.abs().max().item() + 4 * stds)


def _grid(extent: float, points: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    axis = torch.linspace(-extent, extent, points)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    return xx, yy, torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)


def _draw_density(axis, reference: GaussianMixtureScore, sigma: float, extent: float) -> None:
    """Shade ``log p_sigma`` of an exact mixture (levels down to 14 nats below the maximum)."""
    xx, yy, points = _grid(extent, DENSITY_GRID_POINTS)
    log_density = reference.log_prob(points, sigma).reshape(xx.shape)
    top = log_density.max().item()
    axis.contourf(xx, yy, log_density.clamp(min=top - 14).numpy(), levels=14, cmap="Blues")


def _arrow_colours():
    """Matplotlib's ``plasma`` without its palest end, so that arrows stay visible on white and on blue."""
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    return ListedColormap(colormaps["plasma"](torch.linspace(0.0, 0.8, 256).numpy()), name="plasma_dark")


def score_field_figure(entry: DemoModel, sigma: float):
    """The score field ``s(x, sigma)`` as arrows (direction; colour = magnitude) over the perturbed density."""
    from matplotlib.figure import Figure

    extent = _extent(entry.reference)
    xx, yy, points = _grid(extent, FIELD_GRID_POINTS)
    with torch.inference_mode():
        score = entry.pipeline.unet(points.to(entry.pipeline.unet.dtype), torch.tensor(sigma)).sample.double()
    magnitude = score.norm(dim=1).clamp(min=1e-12)
    direction = score / magnitude[:, None]

    figure = Figure(figsize=(5.6, 5.0), dpi=100)
    axis = figure.add_subplot()
    colours = _arrow_colours()
    if entry.exact:
        _draw_density(axis, entry.reference, sigma, extent)
        what = "exact score over log p_sigma (shaded)"
    else:
        what = "learned score (density unknown)"
    arrows = axis.quiver(
        xx.numpy(),
        yy.numpy(),
        direction[:, 0].reshape(xx.shape).numpy(),
        direction[:, 1].reshape(xx.shape).numpy(),
        magnitude.log10().reshape(xx.shape).numpy(),
        cmap=colours,
        angles="xy",
        pivot="mid",
    )
    figure.colorbar(arrows, ax=axis, label="log10 |s(x, sigma)|", shrink=0.8)
    axis.set_title(f"{entry.label}\n{what}, sigma={sigma:g}", fontsize=9)
    axis.set_aspect("equal")
    axis.set_xlim(-extent, extent)
    axis.set_ylim(-extent, extent)
    figure.tight_layout()
    return figure


def samples_figure(entry: DemoModel, panels: Sequence[Tuple[str, torch.Tensor]]):
    """Scatter plots of the samplers' points side by side, over the data density when it is known."""
    from matplotlib.figure import Figure

    extent = _extent(entry.reference)
    figure = Figure(figsize=(10, 5), dpi=100)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for axis, (title, points) in zip(axes, panels):
        if entry.exact:
            _draw_density(axis, entry.reference, FIELD_SIGMA_RANGE[0], extent)
        points = points.detach().double().cpu()
        axis.scatter(points[:, 0].numpy(), points[:, 1].numpy(), s=3, alpha=0.5, color="tab:red")
        if entry.reference is not None:
            means = entry.reference.mode_means.double()
            axis.scatter(means[:, 0].numpy(), means[:, 1].numpy(), marker="x", s=60, color="black")
        axis.set_title(title, fontsize=9)
        axis.set_aspect("equal")
        axis.set_xlim(-extent, extent)
        axis.set_ylim(-extent, extent)
    figure.tight_layout()
    return figure


def plain_langevin_settings(scheduler: SchedulerMixin, base_config: Any, step_scale: float) -> Tuple[float, float]:
    """``(sigma, step size)`` of the plain Langevin baseline: the run's smallest noise level, Langevin step there.

    The step is the annealed-Langevin one at ``sigma_min`` (``step_lr``, scaled like the sampler's step)
    whichever sampler runs; for a model tuned without ``step_lr``, the step a corrector with
    signal-to-noise ratio ``snr`` takes there, ``2 (snr sigma_min)**2``.
    """
    sigma_min = float(scheduler.timesteps[-1])
    if "step_lr" in base_config:
        return sigma_min, float(base_config["step_lr"]) * step_scale
    snr = float(base_config.get("snr", 0.16)) * step_scale**0.5
    return sigma_min, 2 * (snr * sigma_min) ** 2


def _rounded(weights: Sequence[float]) -> List[float]:
    return [round(float(weight), 3) for weight in weights]


def run_playground(
    models: DemoModels,
    model: Any,
    sampler: Any,
    noise_levels: Any,
    steps_per_level: Any,
    step_scale: Any,
    field_sigma: Any,
    seed: Any,
    num_points: Any,
    progress: ProgressFn = None,
) -> PlaygroundResult:
    """Check the inputs, draw the score field and run plain vs annealed Langevin dynamics from the same start.

    Raises:
        DemoInputError: for an input outside its accepted range or a request above `MAX_PLAYGROUND_WORK`.
        FloatingPointError: when sampling diverges.
    """
    # 1. Inputs.
    model = check_choice("distribution", model, list(models.points))
    sampler = check_choice("sampler", sampler, list(SAMPLERS))
    noise_levels = check_int("noise levels", noise_levels, *NOISE_LEVELS_RANGE)
    steps_per_level = check_int("steps per level", steps_per_level, *STEPS_PER_LEVEL_RANGE)
    step_scale = check_float("step size scale", step_scale, *STEP_SCALE_RANGE)
    field_sigma = check_float("score-field sigma", field_sigma, *FIELD_SIGMA_RANGE)
    seed = check_int("seed", seed, *SEED_RANGE)
    num_points = check_int("number of points", num_points, *POINTS_RANGE)

    # 2. Plan: annealed Langevin, and plain Langevin with the same number of calls.
    entry = models.points[model]
    base_config = entry.pipeline.scheduler.config
    run = prepare_run(sampler, base_config, noise_levels, steps_per_level, step_scale)
    calls, label = run.calls, sampler_settings(sampler).label
    check_work(2 * calls, num_points, MAX_PLAYGROUND_WORK, "number of points")
    sigma_min, step_size = plain_langevin_settings(run.scheduler, base_config, step_scale)
    pipe = NCSNPipeline(unet=entry.pipeline.unet, scheduler=run.scheduler, data_range=None)
    pipe.set_progress_bar_config(disable=True)

    def on_step_end(_pipe, index, sigma, callback_kwargs):
        if progress is not None:
            progress(0.5 * (index + 1) / calls, desc=f"{label}: call {index + 1}/{calls}")
        return callback_kwargs

    # 3. The annealed sampler from N(0, sigma_max^2 I).
    started = time.perf_counter()
    annealed = pipe(
        batch_size=num_points,
        generator=torch.Generator().manual_seed(seed),
        output_type="pt",
        callback_on_step_end=on_step_end,
        **run.pipeline_kwargs,
    ).images

    # 4. Plain Langevin at sigma_min from the very same points (the pipeline's first draw of this seed).
    if progress is not None:
        progress(0.5, desc=f"plain Langevin at sigma={sigma_min:g}")
    generator = torch.Generator().manual_seed(seed)
    start = randn_tensor(annealed.shape, generator=generator, dtype=annealed.dtype) * run.scheduler.init_noise_sigma
    with torch.inference_mode():
        plain = langevin_dynamics(pipe.unet, start, sigma_min, step_size, calls, generator=generator)
    seconds = time.perf_counter() - started

    # 5. Mode weights and figures.
    plain_title = f"plain Langevin at sigma={sigma_min:g}\n{calls} calls"
    annealed_title = f"{label}\n{noise_levels} noise levels, {calls} calls"
    weights: Dict[str, Any] = {}
    summary = (
        f"{num_points} points per sampler, same start (seed {seed}), {calls} score evaluations each, "
        f"{seconds:.2f} s in total."
    )
    if entry.reference is not None:
        weights = {
            "modes": entry.reference.mode_means.tolist(),
            "true": _rounded(entry.reference.config.weights),
            "plain": _rounded(mode_weights(plain, entry.reference)),
            "annealed": _rounded(mode_weights(annealed, entry.reference)),
        }
        plain_title += f", mode weights {weights['plain']}"
        annealed_title += f", mode weights {weights['annealed']}"
        summary = (
            f"True mode weights {weights['true']}; plain Langevin recovers {weights['plain']}, {label} "
            f"{weights['annealed']}. " + summary
        )
    return PlaygroundResult(
        field_figure=score_field_figure(entry, field_sigma),
        samples_figure=samples_figure(entry, [(plain_title, plain), (annealed_title, annealed)]),
        weights=weights,
        summary=summary,
    )


# --------------------------------------------------------------------------------------------------
# Gradio
# --------------------------------------------------------------------------------------------------
CSS = """
#result-grid img, #trajectory img { image-rendering: pixelated; }
"""

LIMITS_TEXT = (
    f"Limits: batch size 1-{MAX_BATCH_SIZE}, noise levels {NOISE_LEVELS_RANGE[0]}-{NOISE_LEVELS_RANGE[1]}, "
    f"steps per level {STEPS_PER_LEVEL_RANGE[0]}-{STEPS_PER_LEVEL_RANGE[1]}, network calls x batch size "
    f"<= {MAX_IMAGE_WORK}. Requests wait in a queue of {QUEUE_MAX_SIZE}; {CONCURRENCY_LIMIT} runs at a time."
)


def _import_gradio():
    try:
        import gradio as gr
    except ImportError as error:
        raise ImportError("The web demo needs Gradio: pip install 'ncsn-pipeline[demo]'") from error
    return gr


def _theme(gr):
    """Gradio's default theme (its fonts are served by Gradio itself: nothing is fetched from the internet)."""
    return gr.themes.Default(primary_hue="indigo")


def _user_error(gr, error: Exception, title: str):
    """A ``gr.Error`` showing ``error``'s message (HTML-escaped: Gradio renders the message as HTML)."""
    return gr.Error(html.escape(str(error), quote=False), title=title, print_exception=False)


def build_demo(
    extra_model: Optional[str] = None,
    *,
    models: Optional[DemoModels] = None,
    max_queue_size: int = QUEUE_MAX_SIZE,
    concurrency_limit: int = CONCURRENCY_LIMIT,
):
    """Build the Gradio app (``gr.Blocks``) with its queue configured; launch it with `launch_demo`.

    Args:
        extra_model: ``--model``: a pipeline folder or Hub repository id added to the tab that fits it.
        models: Already loaded models (tests reuse them); loaded here by default.
        max_queue_size: Requests that may wait; more are refused with "Queue is full".
        concurrency_limit: Sampling requests (both tabs together) that may run at once.

    Every event is queued and ``api_open=False``: the direct ``/run/...`` and ``/api/...`` routes refuse
    queued events, so every request goes through the bounded queue.
    """
    gr = _import_gradio()
    models = models or DemoModels.load(extra_model)
    tracker = gr.Progress()  # Gradio injects a live progress bar into callbacks with such a default

    def on_generate(
        model, sampler, noise_levels, steps_per_level, step_scale, seed, batch_size, animate, progress=tracker
    ):
        with ACTIVE_RUNS:
            try:
                result = generate_images(
                    models,
                    model,
                    sampler,
                    noise_levels,
                    steps_per_level,
                    step_scale,
                    seed,
                    batch_size,
                    animate,
                    progress=progress,
                )
            except (ValueError, FloatingPointError) as error:
                raise _user_error(gr, error, "Cannot generate") from None
        return result.grid, result.animation_path, result.summary

    def on_playground(
        model, sampler, noise_levels, steps_per_level, step_scale, field_sigma, seed, num_points, progress=tracker
    ):
        with ACTIVE_RUNS:
            try:
                result = run_playground(
                    models,
                    model,
                    sampler,
                    noise_levels,
                    steps_per_level,
                    step_scale,
                    field_sigma,
                    seed,
                    num_points,
                    progress=progress,
                )
            except (ValueError, FloatingPointError) as error:
                raise _user_error(gr, error, "Cannot run the playground") from None
        return result.field_figure, result.samples_figure, result.weights, result.summary

    def suggested_steps(tab: str):
        """A UI-only callback: put the suggested noise levels and steps for the chosen model and sampler."""
        table = models.images if tab == "images" else models.points

        def update(model, sampler):
            known = isinstance(model, str) and isinstance(sampler, str) and model in table and sampler in SAMPLERS
            if not known:  # leave the controls as they are; Generate explains what is wrong
                return gr.update(), gr.update()
            tuned = models.defaults(tab, model, sampler)
            return gr.update(value=tuned["noise_levels"]), gr.update(value=tuned["steps_per_level"])

        return update

    def sampler_controls(prefix: str, tab: str, model: str):
        tuned = models.defaults(tab, model)
        sampler = gr.Dropdown(sampler_choices(), value=DEFAULT_SAMPLER, label="Sampler", elem_id=f"{prefix}-sampler")
        levels = gr.Slider(
            *NOISE_LEVELS_RANGE, value=tuned["noise_levels"], step=1, label="Noise levels L", elem_id=f"{prefix}-levels"
        )
        steps = gr.Slider(
            *STEPS_PER_LEVEL_RANGE,
            value=tuned["steps_per_level"],
            step=1,
            label="Steps (network calls) per noise level",
            elem_id=f"{prefix}-steps",
        )
        scale = gr.Slider(
            *STEP_SCALE_RANGE,
            value=1.0,
            step=0.05,
            label="Step size (x the tuned step_lr, or snr for predictor-corrector)",
            elem_id=f"{prefix}-scale",
        )
        seed = gr.Number(
            value=DEFAULT_SEED,
            minimum=SEED_RANGE[0],
            maximum=SEED_RANGE[1],
            step=1,
            label="Seed",
            elem_id=f"{prefix}-seed",
        )
        return sampler, levels, steps, scale, seed

    # Every event: queued, raw inputs (checked by our own functions), one shared group for sampling.
    sampling = dict(
        queue=True, preprocess=False, concurrency_id=SAMPLING_CONCURRENCY_ID, concurrency_limit=concurrency_limit
    )
    ui_only = dict(queue=True, preprocess=False, api_visibility="private", concurrency_id="ui", concurrency_limit=4)

    with gr.Blocks(title="NCSN: annealed Langevin dynamics", analytics_enabled=False) as demo:
        gr.Markdown(
            "# Noise-conditional score networks\n"
            "Sample with **annealed Langevin dynamics** (Song & Ermon 2019) and see why annealing matters."
        )
        with gr.Tabs():
            with gr.Tab("Images", id="images"):
                with gr.Row():
                    with gr.Column(scale=1, min_width=300):
                        image_model = gr.Dropdown(
                            [(entry.label, key) for key, entry in models.images.items()],
                            value=DEFAULT_IMAGE_MODEL,
                            label="Model",
                            elem_id="image-model",
                        )
                        sampler, levels, steps, scale, seed = sampler_controls("image", "images", DEFAULT_IMAGE_MODEL)
                        batch = gr.Slider(
                            1,
                            MAX_BATCH_SIZE,
                            value=DEFAULT_BATCH_SIZE,
                            step=1,
                            label="Batch size",
                            elem_id="image-batch",
                        )
                        animate = gr.Checkbox(value=True, label="Animate the trajectory (one frame per noise level)")
                        generate = gr.Button("Generate", variant="primary", elem_id="generate")
                        gr.Markdown(LIMITS_TEXT)
                    with gr.Column(scale=2):
                        grid = gr.Image(
                            label="Samples",
                            height=420,
                            type="pil",
                            format="png",
                            elem_id="result-grid",
                            interactive=False,
                        )
                        info = gr.Textbox(label="Run", interactive=False, elem_id="run-info")
                        trajectory = gr.Image(
                            label="Trajectory across noise levels (GIF)",
                            height=320,
                            type="filepath",
                            interactive=False,
                            elem_id="trajectory",
                        )
                generate.click(
                    on_generate,
                    [image_model, sampler, levels, steps, scale, seed, batch, animate],
                    [grid, trajectory, info],
                    api_name="generate",
                    **sampling,
                )
                gr.on(
                    [image_model.change, sampler.change],
                    suggested_steps("images"),
                    [image_model, sampler],
                    [levels, steps],
                    **ui_only,
                )

            with gr.Tab("2-D playground", id="playground"):
                with gr.Row():
                    with gr.Column(scale=1, min_width=300):
                        point_model = gr.Dropdown(
                            [(entry.label, key) for key, entry in models.points.items()],
                            value=DEFAULT_PLAYGROUND_MODEL,
                            label="Distribution",
                            elem_id="point-model",
                        )
                        p_sampler, p_levels, p_steps, p_scale, p_seed = sampler_controls(
                            "point", "points", DEFAULT_PLAYGROUND_MODEL
                        )
                        sigma = gr.Slider(
                            0.1, 20.0, value=1.0, step=0.1, label="sigma of the score field", elem_id="field-sigma"
                        )
                        points = gr.Slider(
                            *POINTS_RANGE,
                            value=DEFAULT_POINTS,
                            step=10,
                            label="Points per sampler",
                            elem_id="point-count",
                        )
                        run = gr.Button("Run both samplers", variant="primary", elem_id="run-playground")
                        gr.Markdown(
                            "Plain Langevin runs at the smallest noise level, annealed Langevin through all levels; "
                            "both start from the same points and evaluate the score equally often. "
                            f"Limit: 2 x network calls x points <= {MAX_PLAYGROUND_WORK:,}."
                        )
                    with gr.Column(scale=2):
                        field_plot = gr.Plot(label="Score field", format="png", elem_id="score-field")
                        summary = gr.Markdown(elem_id="playground-summary")
                        weights = gr.JSON(label="Mode weights", max_height=240, elem_id="mode-weights")
                samples_plot = gr.Plot(label="Plain vs annealed Langevin", format="png", elem_id="samplers")
                run.click(
                    on_playground,
                    [point_model, p_sampler, p_levels, p_steps, p_scale, sigma, p_seed, points],
                    [field_plot, samples_plot, weights, summary],
                    api_name="playground",
                    **sampling,
                )
                gr.on(
                    [point_model.change, p_sampler.change],
                    suggested_steps("points"),
                    [point_model, p_sampler],
                    [p_levels, p_steps],
                    **ui_only,
                )

    demo.queue(max_size=max_queue_size, default_concurrency_limit=1, api_open=False)
    demo.ncsn_models = models  # for tests and introspection
    return demo


def launch_demo(
    demo,
    host: str = "127.0.0.1",
    port: Optional[int] = 7860,
    share: bool = False,
    prevent_thread_lock: bool = False,
    quiet: bool = False,
):
    """Launch ``demo`` with the demo's settings: offline theme, no MCP server, monitoring or run history."""
    gr = _import_gradio()
    return demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        prevent_thread_lock=prevent_thread_lock,
        quiet=quiet,
        show_error=True,
        theme=_theme(gr),
        css=CSS,
        mcp_server=False,
        enable_monitoring=False,
        run_history=False,
        ssr_mode=False,
        max_file_size="1mb",  # the demo takes no uploads; keep the upload route cheap
        footer_links=["api", "gradio"],
    )
