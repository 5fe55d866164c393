"""The demo's Inpainting tab: hide part of a held-out image and let a score model fill it in.

The image comes from the held-out set of the model's data (`HELD_OUT_SETS`: scikit-learn's held-out digits, or the
Fashion-MNIST test images shipped with the package; never seen in training), resized to the model's image size and
channels; the mask is one of `MASKS` (white = repaint, diffusers' convention). Sampling is `NCSNInpaintPipeline` with
the chosen sampler and, optionally, RePaint's resampling.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import PIL.Image
import torch
import torch.nn.functional as F

from ..checks import check_choice, check_integer
from ..data.digits import DIGITS_NUM_LEVELS, load_digits_split
from ..data.fashion_mnist_files import FASHION_MNIST_CLASSES, FASHION_MNIST_NUM_LEVELS, load_held_out_slice
from ..images import image_grid, samples_to_pil
from ..inpainting import NCSNInpaintPipeline
from .cost import check_request_time, max_image_calls
from .limits import (
    ANY_CLASS,
    DEFAULT_GUIDANCE_SCALE,
    GRID_BORDER,
    MAX_BATCH_SIZE,
    MAX_IMAGE_CALLS,
    MAX_IMAGE_WORK,
    RESAMPLING_JUMP_LENGTH,
    RESAMPLING_RANGE,
    TILE_SIZE,
    check_work,
)
from .models import DemoModels
from .samplers import CountedCalls, check_sampler_controls, prepare_run


def _half(side: int, rows: bool, first: bool) -> torch.Tensor:
    mask = torch.zeros(side, side)
    part = slice(0, side // 2) if first else slice(side // 2, side)
    if rows:
        mask[part, :] = 1
    else:
        mask[:, part] = 1
    return mask


def _centre(side: int) -> torch.Tensor:
    mask = torch.zeros(side, side)
    mask[side // 4 : side - side // 4, side // 4 : side - side // 4] = 1
    return mask


def _random_pixels(side: int) -> torch.Tensor:
    return (torch.rand(side, side, generator=torch.Generator().manual_seed(0)) < 0.5).float()


# name -> (side -> mask of 1 = repaint)
MASKS: Dict[str, Callable[[int], torch.Tensor]] = {
    "right half": lambda side: _half(side, rows=False, first=False),
    "left half": lambda side: _half(side, rows=False, first=True),
    "top half": lambda side: _half(side, rows=True, first=True),
    "bottom half": lambda side: _half(side, rows=True, first=False),
    "centre square": _centre,
    "random half of the pixels": _random_pixels,
}
# source -> (what the tab calls it, loader of (uint8 images (N, 1, H, W), labels), grey levels, class names)
HELD_OUT_SETS = {
    "digits": ("held-out digit", lambda: load_digits_split("held_out"), DIGITS_NUM_LEVELS, None),
    "fashion-mnist": (
        "held-out Fashion-MNIST test image",
        load_held_out_slice,
        FASHION_MNIST_NUM_LEVELS,
        FASHION_MNIST_CLASSES,
    ),
}


@dataclass
class InpaintingResult:
    """What the Inpainting tab shows: the grid (original, masked, fills), a summary, calls and seconds."""

    grid: PIL.Image.Image
    summary: str
    model_calls: int
    seconds: float


@functools.cache
def held_out_images(source: str) -> torch.Tensor:
    """Every image of a held-out set (`HELD_OUT_SETS`) in [0, 1], ``(N, 1, H, W)``, grey levels at their bin centres
    (where the models' dequantised training data is centred)."""
    source = check_choice("held-out set", source, list(HELD_OUT_SETS))
    _, load, num_levels, _ = HELD_OUT_SETS[source]
    images, _ = load()
    return (images.float() + 0.5) / num_levels


def held_out_count(source: str) -> int:
    """How many images the held-out set ``source`` has."""
    return held_out_images(source).shape[0]


def held_out_image(source: str, index: int, channels: int, side: int) -> torch.Tensor:
    """Image ``index`` of the held-out set ``source`` in [0, 1], resized to ``(channels, side, side)``."""
    images = held_out_images(source)
    image = images[check_integer("held-out image", index, 0, images.shape[0] - 1, whole_floats=True)]
    native = image.shape[-1]
    mode = "nearest" if side >= native else "area"  # whole pixel blocks up, averages down
    image = F.interpolate(image[None], size=(side, side), mode=mode)[0]
    return image.expand(channels, -1, -1).clone()


def held_out_label(source: str, index: int) -> str:
    """What image ``index`` of ``source`` shows, for the summary (its class name, or its digit)."""
    _, load, _, class_names = HELD_OUT_SETS[source]
    label = int(load()[1][index])
    return class_names[label] if class_names is not None else str(label)


def class_for_held_out_image(entry: Any, class_name: str, source: str, image_index: int) -> str:
    """The class a run on held-out image ``image_index`` asks for: the one chosen, or, for "any" on a
    class-conditional model, the image's own class: repainting or editing keeps what the image is (the classes in
    turn would repaint half an ankle boot as a T-shirt, a trouser, ...)."""
    own_class = held_out_label(source, image_index)
    if class_name == ANY_CLASS and entry.class_conditional and own_class in (entry.class_names or []):
        return own_class
    return class_name


def check_held_out_choice(models: DemoModels, model: Any, image_index: Any) -> Tuple[str, str, str, int]:
    """The image tabs' model and held-out image, checked: ``(model, held-out set, what an image of it is called,
    image index)``."""
    model = check_choice("model", model, list(models.images))
    source = models.images[model].held_out
    what = HELD_OUT_SETS[source][0]
    return model, source, what, check_integer(what, image_index, 0, held_out_count(source) - 1, whole_floats=True)


def inpaint_image(
    models: DemoModels,
    model: Any,
    image_index: Any,
    mask_name: Any,
    sampler: Any,
    noise_levels: Any,
    steps_per_level: Any,
    step_scale: Any,
    seed: Any,
    batch_size: Any,
    jump_n_sample: Any,
    class_name: Any = ANY_CLASS,
    guidance_scale: Any = DEFAULT_GUIDANCE_SCALE,
    progress: Optional[Callable[..., Any]] = None,
) -> InpaintingResult:
    """Check the inputs, fill the masked part of the model's held-out image ``image_index`` ``batch_size`` times and
    return the grid.

    Raises:
        ValueError: for an input outside its accepted range, a request above the demo's limits (calls, work, or
            predicted time on this machine), or resampling with a sampler that cannot restart.
        FloatingPointError: when sampling diverges.
    """
    # 1. Inputs.
    model, source, what, image_index = check_held_out_choice(models, model, image_index)
    mask_name = check_choice("mask", mask_name, list(MASKS))
    sampler, noise_levels, steps_per_level, step_scale, seed = check_sampler_controls(
        sampler, noise_levels, steps_per_level, step_scale, seed
    )
    batch_size = check_integer("batch size", batch_size, 1, MAX_BATCH_SIZE, whole_floats=True)
    jump_n_sample = check_integer("resampling", jump_n_sample, *RESAMPLING_RANGE, whole_floats=True)

    # 2. The image, the mask and a per-request pipeline around the shared network.
    entry = models.images[model]
    class_name = class_for_held_out_image(entry, class_name, source, image_index)
    class_arguments = entry.class_arguments(class_name, guidance_scale, batch_size)
    channels, side, _ = entry.pipeline.sample_shape
    image = held_out_image(source, image_index, channels, side)
    mask = MASKS[mask_name](side)[None]
    cost = entry.call_cost(guided="classifier" in class_arguments)
    network_batch = entry.network_batch(class_arguments, batch_size)  # doubled by classifier-free guidance
    max_calls = max_image_calls(cost, network_batch)
    scheduler = prepare_run(  # an adaptive sampler's cap: each level's calls are made jump_n_sample times
        sampler, entry.pipeline.scheduler.config, noise_levels, steps_per_level, step_scale,
        max(max_calls // jump_n_sample, 1),
    )  # fmt: skip
    total = scheduler.max_model_calls * jump_n_sample
    check_work(total, network_batch, MAX_IMAGE_CALLS, MAX_IMAGE_WORK, "batch size")
    check_request_time(cost, total, network_batch)
    pipe = NCSNInpaintPipeline(entry.pipeline.unet, scheduler, data_range=entry.pipeline.config.data_range)
    pipe.set_progress_bar_config(disable=True)

    # 3. Sample (each network call reported through a forward hook, which also stops a run whose client left).
    started = time.perf_counter()
    with CountedCalls(entry.pipeline.unet, total, progress) as counted:
        filled = pipe(
            image, mask, batch_size=batch_size, generator=torch.Generator().manual_seed(seed),
            num_inference_steps=noise_levels, jump_length=RESAMPLING_JUMP_LENGTH, jump_n_sample=jump_n_sample,
            output_type="pil", **class_arguments,
        ).images  # fmt: skip
    seconds, calls = time.perf_counter() - started, counted.calls

    # 4. The original, the masked input (repainted part grey) and the fills.
    shown_mask = mask.expand(channels, -1, -1)
    masked = torch.where(shown_mask > 0.5, torch.full_like(image, 0.5), image)
    tiles: List[PIL.Image.Image] = samples_to_pil(torch.stack([image, masked]), (0.0, 1.0)) + list(filled)
    resampling = f", RePaint resampling x{jump_n_sample}" if jump_n_sample > 1 else ""
    summary = (
        f"{what[0].upper()}{what[1:]} {image_index} ({held_out_label(source, image_index)}), {mask_name} repainted "
        f"by {entry.label}{f' as class {class_name}' if 'class_labels' in class_arguments else ''} with "
        f"{scheduler.description}"
        f"{resampling}: {calls} network calls on the batch of {batch_size}, {seconds:.2f} s; seed {seed}. "
        "First tile: the original; second: what the model sees (grey = repainted); then the fills."
    )
    return InpaintingResult(image_grid(tiles, tile=TILE_SIZE, border=GRID_BORDER), summary, calls, seconds)
