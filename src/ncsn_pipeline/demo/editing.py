"""The demo's Editing tab: SDEdit a held-out image with a score model.

The image comes from the held-out set of the model's data (as on the Inpainting tab, `HELD_OUT_SETS`); it is noised
to the level the strength sets and sampled back with `NCSNImg2ImgPipeline` and the chosen sampler, optionally toward
a class (a class-conditional model keeps the image's own class when none is chosen). The grid shows the original,
what the sampler starts from (the original plus that much noise) and the edits.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, List, Optional

import PIL.Image
import torch

from ..checks import check_integer, check_number
from ..editing import NCSNImg2ImgPipeline, strength_to_sigma
from ..images import image_grid, samples_to_pil
from ..sampling import standard_normal
from .cost import check_request_time, max_image_calls
from .inpainting import check_held_out_choice, class_for_held_out_image, held_out_image, held_out_label
from .limits import (
    ANY_CLASS,
    DEFAULT_AUTOGUIDANCE_SCALE,
    DEFAULT_GUIDANCE_SCALE,
    GRID_BORDER,
    MAX_BATCH_SIZE,
    MAX_IMAGE_CALLS,
    MAX_IMAGE_WORK,
    TILE_SIZE,
    check_work,
)
from .models import DemoModels
from .samplers import CountedCalls, check_sampler_controls, prepare_run


@dataclass
class EditingResult:
    """What the Editing tab shows: the grid (original, noised start, edits), a summary, calls and seconds."""

    grid: PIL.Image.Image
    summary: str
    model_calls: int
    seconds: float


def edit_image(
    models: DemoModels,
    model: Any,
    image_index: Any,
    strength: Any,
    sampler: Any,
    noise_levels: Any,
    steps_per_level: Any,
    step_scale: Any,
    seed: Any,
    batch_size: Any,
    class_name: Any = ANY_CLASS,
    guidance_scale: Any = DEFAULT_GUIDANCE_SCALE,
    autoguidance_scale: Any = DEFAULT_AUTOGUIDANCE_SCALE,
    progress: Optional[Callable[..., Any]] = None,
) -> EditingResult:
    """Check the inputs, edit the model's held-out image ``image_index`` ``batch_size`` times at ``strength`` and
    return the grid.

    Raises:
        ValueError: for an input outside its accepted range, or a request above the demo's limits (calls, work, or
            predicted time on this machine).
        FloatingPointError: when sampling diverges.
    """
    # 1. Inputs.
    model, source, what, image_index = check_held_out_choice(models, model, image_index)
    strength = check_number("strength", strength, 0.0, 1.0)
    sampler, noise_levels, steps_per_level, step_scale, seed = check_sampler_controls(
        sampler, noise_levels, steps_per_level, step_scale, seed
    )
    batch_size = check_integer("batch size", batch_size, 1, MAX_BATCH_SIZE, whole_floats=True)

    # 2. The image, where the run begins and what it costs (the calls below the starting level only).
    entry = models.images[model]
    own_class = held_out_label(source, image_index)
    class_name = class_for_held_out_image(entry, class_name, source, image_index)
    class_arguments = entry.class_arguments(class_name, guidance_scale, batch_size)
    guide_arguments = entry.guide_arguments(autoguidance_scale)
    if guide_arguments and "classifier" in class_arguments:
        raise ValueError(
            f"autoguidance (scale {float(autoguidance_scale):g}) and classifier guidance toward class {class_name!r} "
            "cannot be combined: set the autoguidance scale to 1 or the class to 'any'."
        )
    channels, side, _ = entry.pipeline.sample_shape
    image = held_out_image(source, image_index, channels, side)
    cost = entry.call_cost(guided="classifier" in class_arguments, autoguided=bool(guide_arguments))
    network_batch = entry.network_batch(class_arguments, batch_size)  # doubled by classifier-free guidance
    scheduler = prepare_run(
        sampler, entry.pipeline.scheduler.config, noise_levels, steps_per_level, step_scale,
        max_image_calls(cost, network_batch),
    )  # fmt: skip
    config = scheduler.config
    start_sigma = 0.0
    if strength > 0:
        start_sigma = scheduler.set_begin_sigma(strength_to_sigma(strength, config.sigma_min, config.sigma_max))
    total = 0 if strength == 0 else scheduler.max_model_calls - (scheduler.begin_index or 0)
    check_work(total, network_batch, MAX_IMAGE_CALLS, MAX_IMAGE_WORK, "batch size")
    check_request_time(cost, total, network_batch)
    pipe = NCSNImg2ImgPipeline(entry.pipeline.unet, scheduler, data_range=entry.pipeline.config.data_range)
    pipe.set_progress_bar_config(disable=True)

    # 3. Edit (each network call reported through a forward hook, which also stops a run whose client left; the
    #    pipeline plans the run again from the same levels, so it begins where the cost was counted).
    started = time.perf_counter()
    with CountedCalls(entry.pipeline.unet, total, progress) as counted:
        edits = pipe(
            image, strength=strength, num_images_per_prompt=batch_size, generator=torch.Generator().manual_seed(seed),
            num_inference_steps=noise_levels, output_type="pil", **class_arguments, **guide_arguments,
        ).images  # fmt: skip
    seconds, calls = time.perf_counter() - started, counted.calls

    # 4. The original, the noised start (what the sampler sees first) and the edits.
    data_low, data_high = entry.pipeline.config.data_range
    noise = standard_normal(image.shape, torch.Generator().manual_seed(seed), dtype=image.dtype)
    noised = image + start_sigma / (data_high - data_low) * noise  # the same noise level, in pixel units
    tiles: List[PIL.Image.Image] = samples_to_pil(torch.stack([image, noised]), (0.0, 1.0)) + list(edits)
    toward = f" as class {class_name}" if "class_labels" in class_arguments else ""
    if "guidance_scale" in class_arguments and entry.classifier_free:
        toward += f" (classifier-free guidance at scale {float(guidance_scale):g}, each call on a doubled batch)"
    if guide_arguments:
        toward += f", autoguided by its guide (w {float(autoguidance_scale):g}: as many calls of the guide)"
    summary = (
        f"{what[0].upper()}{what[1:]} {image_index} ({own_class}) edited by {entry.label}{toward} "
        f"at strength {strength:g} (noised to sigma {start_sigma:.3g}) with {scheduler.description}: {calls} network "
        f"calls on the batch of {batch_size}, {seconds:.2f} s; seed {seed}. First tile: the original; second: it "
        "noised to the starting level (one draw); then the edits."
    )
    return EditingResult(image_grid(tiles, tile=TILE_SIZE, border=GRID_BORDER), summary, calls, seconds)
