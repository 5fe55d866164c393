"""Image inputs of the pipelines: every form a user may pass, turned into one float ``NCHW`` batch.

In the spirit of diffusers' ``VaeImageProcessor.preprocess``: the pipelines that take images (inpainting, colorization
and later ones) read them through `preprocess_images` only, so each input form is accepted, and each mistake
refused, in the same way everywhere.

Accepted forms, single or batched, and lists of them:

* PIL images (values 0-255, divided by 255);
* numpy arrays ``HW``, ``HWC`` or ``NHWC`` with values in [0, 1];
* tensors ``HW``, ``CHW`` or ``NCHW`` with values in [0, 1].

>>> import numpy as np
>>> preprocess_images(np.zeros((8, 8, 3)), "image").shape
torch.Size([1, 3, 8, 8])
>>> preprocess_images([torch.ones(8, 8), torch.zeros(8, 8)], "mask_image").shape
torch.Size([2, 1, 8, 8])
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import PIL.Image
import torch

ImageInput = Union[
    PIL.Image.Image, np.ndarray, torch.Tensor, List[PIL.Image.Image], List[np.ndarray], List[torch.Tensor]
]

# PIL modes that hold one grey channel (kept grey when no mode is asked for).
GREY_MODES = ("1", "L", "I", "F", "I;16")


def _check_real(tensor: torch.Tensor, name: str) -> None:
    """Refuse a complex tensor (converting it would drop the imaginary part without a word)."""
    if tensor.is_complex():
        raise ValueError(f"{name} must hold real numbers, got a {tensor.dtype} tensor.")


def _not_empty(tensor: torch.Tensor, name: str) -> torch.Tensor:
    if tensor.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(tensor.shape)} as N, C, H, W); give at least one image.")
    return tensor


def preprocess_images(
    value: ImageInput,
    name: str,
    pil_mode: Optional[str] = None,
    per_item: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
) -> torch.Tensor:
    """``value`` as a float64 ``(N, C, H, W)`` tensor on the CPU (values as given: see the module docstring).

    Args:
        value: The images, in any form of the module docstring.
        name (`str`): The argument's name, for error messages (``"image"``, ``"mask_image"`` ...).
        pil_mode (`str`, *optional*): The mode PIL images are converted to (``"RGB"``, ``"L"``); by default grey
            images stay grey and all others become RGB.
        per_item (`Callable`, *optional*): Applied to each item's ``(n, C, H, W)`` tensor before a list is joined
            (colorization takes each item's channel mean, so a list may mix grey and RGB images).

    Raises:
        ValueError: naming ``name``, for an empty list, another type, or an array of another layout.
    """
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"{name} is an empty list.")
        parts = [preprocess_images(item, name, pil_mode, per_item) for item in value]
        if len({part.shape[1:] for part in parts}) > 1:
            raise ValueError(f"{name}: the items of the list differ in shape ({[tuple(p.shape[1:]) for p in parts]}).")
        return torch.cat(parts)
    if isinstance(value, PIL.Image.Image):
        mode = pil_mode or ("L" if value.mode in GREY_MODES else "RGB")
        value = np.asarray(value.convert(mode), dtype=np.float64) / 255.0
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "buif":  # object, complex, string ... arrays would fail deep inside, or lose data
            raise ValueError(f"{name} as a numpy array must hold real numbers, got dtype {value.dtype}.")
        tensor = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float64))
        layouts = {
            2: lambda t: t[None, None],
            3: lambda t: t.permute(2, 0, 1)[None],
            4: lambda t: t.permute(0, 3, 1, 2),
        }
        if tensor.ndim not in layouts:
            raise ValueError(f"{name} as a numpy array must be HW, HWC or NHWC, got shape {value.shape}.")
        tensor = _not_empty(layouts[tensor.ndim](tensor), name)
        return tensor if per_item is None else per_item(tensor)
    if isinstance(value, torch.Tensor):
        _check_real(value, name)
        tensor = value.detach().to(torch.float64).cpu()
        layouts = {2: lambda t: t[None, None], 3: lambda t: t[None], 4: lambda t: t}
        if tensor.ndim not in layouts:
            raise ValueError(f"{name} as a tensor must be HW, CHW or NCHW, got shape {tuple(value.shape)}.")
        tensor = _not_empty(layouts[tensor.ndim](tensor), name)
        return tensor if per_item is None else per_item(tensor)
    raise ValueError(
        f"{name} must be a PIL image, a numpy array, a tensor or a list of them, got {type(value).__name__}."
    )


def check_unit_range(images: torch.Tensor, name: str) -> None:
    """Refuse values outside [0, 1] (PIL images: 0-255) and non-finite ones, naming ``name`` and the range found."""
    if not torch.isfinite(images).all():
        raise ValueError(f"{name} must be finite.")
    low, high = float(images.min()), float(images.max())
    if low < -1e-6 or high > 1 + 1e-6:
        raise ValueError(f"{name} values must lie in [0, 1] (PIL images: 0-255), got {low:.3g} to {high:.3g}.")


def broadcast_batch(tensor: torch.Tensor, name: str, count: int) -> torch.Tensor:
    """``tensor`` with ``count`` items: it must hold 1 (shared by the batch) or ``count``."""
    if len(tensor) not in (1, count):
        raise ValueError(f"{name} holds {len(tensor)} items for a batch of {count}; give 1 or {count}.")
    return tensor.expand(count, *tensor.shape[1:])


def images_to_data(
    image: ImageInput, sample_shape: Sequence[int], data_range: Optional[Sequence[float]], name: str = "image"
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The data a pipeline starts from: ``(data, pixels)``, both float64 ``(N, *sample_shape)`` on the CPU.

    For an image pipeline (``data_range = (low, high)``) ``image`` takes every form of the module docstring, grey
    images become RGB for a 3-channel model, and ``data = low + (high - low) * pixels`` (``pixels`` in [0, 1]); for raw
    data (``data_range=None``) ``image`` is a finite tensor of samples and ``pixels`` is `None`.

    >>> data, pixels = images_to_data(np.full((8, 8), 0.5), (3, 8, 8), (-1.0, 1.0))
    >>> data.shape, float(data.max()), float(pixels.max())
    (torch.Size([1, 3, 8, 8]), 0.0, 0.5)
    """
    shape = tuple(sample_shape)
    if data_range is None:  # raw (non-image) data: tensors in the data space itself
        if not isinstance(image, torch.Tensor):
            kind = type(image).__name__
            raise ValueError(f"For non-image data (data_range=None), {name} must be a tensor, got {kind}.")
        _check_real(image, name)
        size = int(np.prod(shape))
        if image.numel() == 0 or image.numel() % size != 0:
            raise ValueError(f"{name} must hold samples of shape {shape}, got shape {tuple(image.shape)}.")
        data = image.detach().to(torch.float64).cpu().reshape(-1, *shape)
        if not torch.isfinite(data).all():
            raise ValueError(f"{name} must be finite.")
        return data, None
    channels = shape[0]
    pixels = preprocess_images(image, name, "RGB" if channels == 3 else "L")
    if pixels.shape[1] == 1 and channels == 3:
        pixels = pixels.expand(-1, 3, -1, -1)
    if tuple(pixels.shape[1:]) != shape:
        raise ValueError(
            f"{name} must be {shape[1]} x {shape[2]} with {channels} channel(s) for this model, got "
            f"{tuple(pixels.shape[1:])} (channels, height, width)."
        )
    check_unit_range(pixels, name)
    low, high = data_range
    return low + (high - low) * pixels, pixels
