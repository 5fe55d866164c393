"""The Images tab: sample a batch with any sampler, show the grid and an animated trajectory across noise levels."""

from __future__ import annotations

import math
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple

import PIL.Image
import PIL.ImageDraw
import torch

from ..checks import check_bool, check_choice, check_integer
from ..images import image_grid, samples_to_pil
from ..pipeline_ncsn import NCSNPipeline
from .cost import check_request_time, max_image_calls
from .limits import (
    ANIMATION_MAX_AGE_S,
    ANY_CLASS,
    DEFAULT_AUTOGUIDANCE_SCALE,
    DEFAULT_GUIDANCE_SCALE,
    FRAME_DURATION_MS,
    FRAME_TILE_SIZE,
    GRID_BORDER,
    MAX_ANIMATION_FRAMES,
    MAX_BATCH_SIZE,
    MAX_IMAGE_CALLS,
    MAX_IMAGE_WORK,
    TILE_SIZE,
    check_work,
)
from .models import DemoModels
from .samplers import check_sampler_controls, prepare_run


def _caption(image: PIL.Image.Image, text: str, height: int = 16) -> PIL.Image.Image:
    framed = PIL.Image.new(image.mode, (image.width, image.height + height), "white")
    framed.paste(image, (0, height))
    PIL.ImageDraw.Draw(framed).text((4, 2), text, fill="black")
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
    # Grey samples make grey frames: GIF stores those without quantising colours (a fifth of the time it takes).
    grey = all(image.mode == "L" for _, images in frames for image in images)
    grids = [image_grid(images, tile=FRAME_TILE_SIZE, border=1) for _, images in frames]
    pictures = [_caption(grid.convert("L") if grey else grid, text) for grid, (text, _) in zip(grids, frames)]
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
    class_name: Any = ANY_CLASS,
    guidance_scale: Any = DEFAULT_GUIDANCE_SCALE,
    autoguidance_scale: Any = DEFAULT_AUTOGUIDANCE_SCALE,
    progress: ProgressFn = None,
) -> GenerationResult:
    """Check the inputs, sample a batch of images and return the grid, the optional GIF and a summary.

    ``autoguidance_scale`` is autoguidance's ``w`` with the guide the model ships (1: the model alone; a model
    without a guide accepts only 1); each step then calls both networks.

    ``progress`` is called after every network call as ``progress(fraction_done, desc=...)``; an exception raised
    in it stops the run there (the web demo stops runs whose client has disconnected that way).

    Raises:
        ValueError: for an input outside its accepted range, a request above `MAX_IMAGE_WORK` or one predicted to
            take longer than `MAX_PREDICTED_SECONDS` on this machine.
        FloatingPointError: when sampling diverges (the message suggests a smaller step size).
    """
    # 1. Inputs.
    model = check_choice("model", model, list(models.images))
    sampler, noise_levels, steps_per_level, step_scale, seed = check_sampler_controls(
        sampler, noise_levels, steps_per_level, step_scale, seed
    )
    batch_size = check_integer("batch size", batch_size, 1, MAX_BATCH_SIZE, whole_floats=True)
    animate = check_bool("animation", animate)

    # 2. A per-request pipeline around the shared network, and the work it will do.
    entry = models.images[model]
    class_arguments = entry.class_arguments(class_name, guidance_scale, batch_size)
    guide_arguments = entry.guide_arguments(autoguidance_scale)
    if guide_arguments and "classifier" in class_arguments:
        raise ValueError(
            f"autoguidance (scale {float(autoguidance_scale):g}) and classifier guidance toward class {class_name!r} "
            "cannot be combined: set the autoguidance scale to 1 or the class to 'any'."
        )
    cost = entry.call_cost(guided="classifier" in class_arguments, autoguided=bool(guide_arguments))
    network_batch = entry.network_batch(class_arguments, batch_size)  # doubled by classifier-free guidance
    max_calls = max_image_calls(cost, network_batch)
    scheduler = prepare_run(  # max_calls: an adaptive sampler's cap
        sampler, entry.pipeline.scheduler.config, noise_levels, steps_per_level, step_scale, max_calls
    )
    check_work(scheduler.max_model_calls, network_batch, MAX_IMAGE_CALLS, MAX_IMAGE_WORK, "batch size")
    check_request_time(cost, scheduler.max_model_calls, network_batch)
    pipe = NCSNPipeline(unet=entry.pipeline.unet, scheduler=scheduler, data_range=entry.pipeline.config.data_range)
    pipe.set_progress_bar_config(disable=True)

    # 3. Sample, reporting progress after every call and keeping the sample at the end of every level.
    frames: List[Tuple[str, List[PIL.Image.Image]]] = []

    def on_step_end(_pipe, index, sigma, callback_kwargs):
        timesteps = _pipe.scheduler.timesteps  # an adaptive sampler's grows during the run
        level_ends = index == len(timesteps) - 1 or index + 1 in _pipe.scheduler.level_start_indices
        total = f"{'at most ' if scheduler.adaptive else ''}{scheduler.max_model_calls}"
        if progress is not None:
            what = "step" if guide_arguments else "network call"  # a guided step calls the model and its guide
            desc = f"{what} {index + 1} of {total}, sigma={float(sigma):.3g}"
            progress((index + 1) / scheduler.max_model_calls, desc=desc)
        if animate and level_ends:
            caption = f"sigma={float(sigma):.3g}  call {index + 1} of {total}"
            frames.append((caption, samples_to_pil(callback_kwargs["sample"], pipe.config.data_range)))
        return callback_kwargs

    started = time.perf_counter()
    images = pipe(
        batch_size=batch_size,
        generator=torch.Generator().manual_seed(seed),
        output_type="pil",
        callback_on_step_end=on_step_end,
        num_inference_steps=noise_levels,
        **class_arguments,
        **guide_arguments,
    ).images
    seconds = time.perf_counter() - started
    # After the run: what it took (an adaptive sampler decides during the run); a guide adds a call to each step.
    calls = scheduler.num_model_calls * (2 if guide_arguments else 1)

    # 4. Results.
    animation_path = write_animation(frames) if animate and frames else None
    conditioning = ""
    if "classifier" in class_arguments:
        conditioning = f" guided toward class {class_name} (classifier guidance, scale {float(guidance_scale):g})"
    elif "class_labels" in class_arguments:
        conditioning = f" of class {class_name}" if class_name != ANY_CLASS else " of each class in turn"
        if "guidance_scale" in class_arguments:
            conditioning += (
                f", classifier-free guidance at scale {float(guidance_scale):g} (each call on the doubled batch of "
                f"{network_batch})"
            )
    if guide_arguments:
        conditioning += (
            f", autoguided by its guide (w {float(autoguidance_scale):g}: {calls} network calls, the model's and the "
            "guide's)"
        )
    summary = (
        f"{batch_size} samples of {entry.label}{conditioning} with {pipe.scheduler.description}: each network call "
        f"on the whole batch, {seconds:.2f} s; seed {seed}."
    )
    grid = image_grid(images, tile=TILE_SIZE, border=GRID_BORDER)
    return GenerationResult(grid, animation_path, summary, calls, seconds)
