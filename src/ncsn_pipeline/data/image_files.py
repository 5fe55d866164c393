"""Image files for training: finding and checking them, and turning any image into the model's input format."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image, ImageOps

from ..checks import check_integer

logger = logging.getLogger(__name__)

# File name endings searched for in `train_data_dir` (compared case-insensitively).
IMAGE_EXTENSIONS: Tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")

# Pillow >= 9.1 moved the filters to `Image.Resampling`; setup.py allows Pillow 9.0.
_BICUBIC = getattr(Image, "Resampling", Image).BICUBIC
_EXIF_ORIENTATION = 0x0112
_ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")

# --------------------------------------------------------------------------------------------------
# Image conversion, shared by image folders and Hugging Face data sets


def check_resolution(resolution: Any) -> int:
    """The score network halves the image size in its down-sampling blocks, so it needs an even size >= 4."""
    message = f"resolution must be an even integer >= 4 (the score network needs it), got {resolution!r}."
    try:
        value = check_integer("resolution", resolution, low=4)
    except ValueError:
        raise ValueError(message) from None
    if value % 2:
        raise ValueError(message)
    return value


def check_channels(channels: Any) -> Optional[int]:
    if channels is None:
        return None
    if isinstance(channels, bool) or channels not in (1, 3):
        raise ValueError(f"channels must be None (infer), 1 (greyscale) or 3 (RGB), got {channels!r}.")
    return int(channels)


def is_greyscale(image: Image.Image) -> bool:
    """Whether ``image`` is greyscale by its mode (palette images: by their palette)."""
    mode = image.mode
    if mode in ("1", "L", "LA", "La", "F") or mode.startswith("I"):
        return True
    if mode in ("P", "PA"):
        palette = image.getpalette()  # flat [r, g, b, r, g, b, ...]
        return palette is None or all(palette[i] == palette[i + 1] == palette[i + 2] for i in range(0, len(palette), 3))
    return False  # RGB and other colour modes count as colour even if their pixels happen to be grey


def _to_8bit(image: Image.Image, channels: int) -> Image.Image:
    """Convert any Pillow mode to 8-bit ``"L"`` (``channels=1``) or ``"RGB"`` (``channels=3``)."""
    if image.mode.startswith("I"):
        # 16-bit ("I;16", "I;16B", ...; also "I", as old Pillow opened 16-bit PNGs): scale 0..65535 to 0..255.
        # Pillow's own conversion would clip everything above 255 to white instead.
        levels = np.rint(np.asarray(image, dtype=np.float64) / 257.0)
        image = Image.fromarray(np.clip(levels, 0, 255).astype(np.uint8))
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        # Composite over black (premultiply): fully transparent pixels often hold arbitrary colours.
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint32)
        rgb = (rgba[..., :3] * rgba[..., 3:] + 127) // 255
        image = Image.fromarray(rgb.astype(np.uint8))
    target = "L" if channels == 1 else "RGB"
    return image if image.mode == target else image.convert(target)


def oriented_8bit(image: Image.Image, channels: int) -> Image.Image:
    """Steps 1 and 2 of `prepare_image`: ``image`` turned by its EXIF orientation and converted to 8-bit ``"L"``
    (``channels=1``) or ``"RGB"`` (16-bit scaled, transparency composited over black)."""
    if image.getexif().get(_EXIF_ORIENTATION, 1) != 1:
        image = ImageOps.exif_transpose(image)
    return _to_8bit(image, channels)


def read_image_file(path: Union[str, os.PathLike], channels: int) -> Image.Image:
    """Read one image file as `prepare_image` sees it (`oriented_8bit`), at its own size: what ``ncsn-sample
    --image`` reads, so that a 16-bit, transparent or rotated photo means the same there as in training.

    Raises:
        ValueError: naming the file, for one Pillow cannot read, or one that declares more than Pillow's
            ``Image.MAX_IMAGE_PIXELS`` pixels (a decompression bomb: refused from its header, before decoding).
    """
    check_channels(channels)
    name = os.fspath(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # Pillow only warns below twice the limit
            with Image.open(name) as image:
                image.load()
                return oriented_8bit(image, channels).copy()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValueError(
            f"{name} declares more than {Image.MAX_IMAGE_PIXELS:,} pixels, the most Pillow decodes (a decompression "
            "bomb, or an image too large to use): resize it first."
        ) from None
    except (OSError, SyntaxError, ValueError) as error:  # Pillow signals unreadable files with several types
        raise ValueError(f"Cannot read image file {name}: {error}") from error


def prepare_image(image: Image.Image, *, resolution: int, channels: int, center_crop: bool = False) -> torch.Tensor:
    """Turn a Pillow image of any size and mode into a square ``torch.uint8`` training image.

    Steps, all deterministic:

    1. Apply the EXIF orientation tag (photos from cameras), if any.
    2. Convert to 8-bit ``"L"`` (``channels=1``) or ``"RGB"`` (``channels=3``): 16-bit greyscale
       (``"I;16"``, ``"I"``) is scaled by ``1/257``; images with transparency (``"RGBA"``, ``"LA"``,
       ``"P"`` with a transparent colour, ...) are composited over black; colour becomes grey with
       Pillow's ITU-R 601-2 luma; greyscale becomes RGB by copying the channel. Animated images give
       their first frame.
    3. Resize with antialiased bicubic filtering. ``center_crop=True``: the centred square of side
       ``min(width, height)`` (offsets rounded down) is resized to ``resolution x resolution`` -- the
       same as resizing the shorter side to ``resolution`` and cropping the centre, without the
       intermediate rounding. ``center_crop=False``: the whole image is resized to
       ``resolution x resolution``, squashing non-square images (no random crop).

    Args:
        image (`PIL.Image.Image`): The image.
        resolution (`int`): Output height and width (even, >= 4).
        channels (`int`): 1 or 3.
        center_crop (`bool`, defaults to `False`): Crop the centred square instead of squashing.

    Returns:
        `torch.Tensor`: ``torch.uint8`` tensor of shape ``(channels, resolution, resolution)``.

    Raises:
        ValueError: For a bad ``resolution`` or ``channels``, or a mode Pillow cannot convert (e.g. ``"LAB"``).

    Example:
        >>> prepare_image(Image.new("RGBA", (40, 30), (255, 0, 0, 255)), resolution=8, channels=3)[:, 0, 0]
        tensor([255,   0,   0], dtype=torch.uint8)
    """
    resolution = check_resolution(resolution)
    if check_channels(channels) is None:
        raise ValueError("channels must be 1 or 3 here; infer it first (see load_training_data).")
    image = oriented_8bit(image, channels)
    width, height = image.size
    box = None
    if center_crop:
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        box = (left, top, left + side, top + side)
    image = image.resize((resolution, resolution), _BICUBIC, box=box)
    array = np.array(image, dtype=np.uint8)  # a writable copy, so torch shares no read-only memory
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array))


def describe_geometry(channels: int, resolution: int, center_crop: bool) -> str:
    how = "centre-cropped" if center_crop else "resized to a square without cropping"
    return f"{channels}x{resolution}x{resolution} ({how})"


# --------------------------------------------------------------------------------------------------
# Image folders


def find_image_files(root: str) -> List[str]:
    """All image files under ``root``, recursively, in a fixed order.

    Files count as images by their ending (`IMAGE_EXTENSIONS`, any case). Hidden files and folders
    (names starting with ``"."``, e.g. ``.ipynb_checkpoints`` or macOS ``._photo.png``) are skipped, and so is
    anything that is not a regular file (a FIFO named ``x.png`` would block the first read forever), with a
    warning. Symbolic links are followed only where they stay inside ``root`` (each real folder once); a link that
    leads out of it (to ``/``, say) is skipped with a warning, so the data is what the folder holds.

    Args:
        root (`str`): The folder.

    Returns:
        `List[str]`: Paths (``root`` joined with the relative path), sorted by their relative path.
    """
    found = []
    visited = set()
    real_root = os.path.realpath(root)

    def inside(path: str) -> bool:
        real = os.path.realpath(path)
        return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)

    for folder, subfolders, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in visited:  # a link loop, or two links to the same folder
            subfolders[:] = []
            continue
        visited.add(real)
        kept = []
        for name in subfolders:
            if name.startswith("."):
                continue
            if not inside(os.path.join(folder, name)):
                logger.warning(f"Skipping {os.path.join(folder, name)}: a link that leads out of {root}.")
                continue
            kept.append(name)
        subfolders[:] = kept
        for name in files:
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
                continue
            path = os.path.join(folder, name)
            if not inside(path):
                logger.warning(f"Skipping {path}: a link that leads out of {root}.")
                continue
            if not os.path.isfile(path):  # a FIFO, socket, device or broken link
                logger.warning(f"Skipping {path}: not a regular file.")
                continue
            found.append(path)
    # Sort by relative path: os.walk's order depends on the file system.
    return sorted(found, key=lambda path: Path(os.path.relpath(path, root)).parts)


def verify_image_files(paths: Sequence[str]) -> None:
    """Raise a ``ValueError`` naming the first file Pillow cannot identify or whose structure is damaged."""
    for path in paths:
        try:
            with Image.open(path) as image:
                image.verify()  # reads the file's structure (PNG: checks every chunk's CRC) without decoding
            if image.format == "JPEG":  # verify() does not read JPEG data: decode it, at 1/8 scale (cheap)
                with Image.open(path) as image:
                    image.draft(image.mode, (image.width // 8 + 1, image.height // 8 + 1))
                    image.load()
        except Exception as error:  # Pillow signals damage with many types: OSError, SyntaxError, struct.error ...
            raise ValueError(f"Cannot read image file {path}: {error}. Remove or replace it.") from error
