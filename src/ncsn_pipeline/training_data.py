"""Training data for noise-conditional score models: image folders, Hugging Face data sets and built-ins.

`load_training_data` turns one data source into a `TrainingData`: a torch ``Dataset`` whose items are

* images: ``torch.uint8`` tensors of shape ``(C, H, W)`` holding integer grey levels
  ``0 .. num_levels - 1`` (256 for 8-bit files, 17 for scikit-learn's digits), or
* 2-D toy points: ``torch.float32`` tensors of shape ``(2,)``.

Items are deterministic: ``dataset[i]`` is always the same tensor. Random flips and uniform
dequantisation are the training loop's job, done with its own generator so that a resumed run
draws exactly what the interrupted one would have.

Sources (pass exactly one):

* ``dataset_name`` set to a built-in name (`BUILTIN_DATASETS`): ``"digits"`` (scikit-learn's
  handwritten digits, bundled with scikit-learn) or a 2-D toy (`TOY_DATASETS`). A built-in name
  wins over a local folder of the same name; write ``"./digits"`` to load such a folder instead.
* ``dataset_name`` set to anything else: a Hugging Face Hub id or a local path understood by
  ``datasets.load_dataset`` (or a folder written by ``Dataset.save_to_disk``); split ``"train"``.
* ``train_data_dir``: a folder of image files, searched recursively.

Built-in data need no download:

Example:

>>> from ncsn_pipeline.training_data import load_training_data
>>> data = load_training_data(dataset_name="digits", resolution=16)
>>> data.description
'scikit-learn digits (train split, 1,438 images), 1x16x16'
>>> item = data.dataset[0]
>>> item.shape, item.dtype, data.num_levels
(torch.Size([1, 16, 16]), torch.uint8, 17)
>>> toy = load_training_data(dataset_name="two-gaussians", num_toy_samples=1000, seed=0)
>>> toy.sample_shape, toy.num_levels, toy.is_image
((2,), None, False)

"""

from __future__ import annotations

import difflib
import math
import numbers
import operator
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, ImageOps

from .digits import DIGITS_NUM_LEVELS, load_digits_split

TOY_DATASETS: Tuple[str, ...] = ("two-gaussians", "two-moons", "swiss-roll", "checkerboard")
BUILTIN_DATASETS: Tuple[str, ...] = ("digits", *TOY_DATASETS)

# File name endings searched for in `train_data_dir` (compared case-insensitively).
IMAGE_EXTENSIONS: Tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")

# How many images `channels=None` looks at to decide between greyscale and colour.
CHANNEL_INFERENCE_IMAGES = 100

# The formulas documented in `sample_toy`, one line each for `TrainingData.description`.
_TOY_FORMULAS = {
    "two-gaussians": "0.2 N((-5, -5), I) + 0.8 N((5, 5), I)",
    "two-moons": "two interleaved half circles, noise std 0.1, scaled by 2 to about [-3, 3] x [-1.5, 1.5]",
    "swiss-roll": "spiral (t cos t, t sin t) / 5 for t in [1.5 pi, 4.5 pi], noise std 0.2",
    "checkerboard": "uniform on the 8 black squares of a 4x4 board on [-4, 4]^2",
}

# Pillow >= 9.1 moved the filters to `Image.Resampling`; setup.py allows Pillow 9.0.
_BICUBIC = getattr(Image, "Resampling", Image).BICUBIC
_EXIF_ORIENTATION = 0x0112
_ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")


class DatasetUnavailableError(ValueError):
    """A Hugging Face data set could not be loaded: the Hub is offline or unreachable, or no such data set exists."""


@dataclass
class TrainingData:
    """One training data source, ready for a ``DataLoader``.

    Args:
        dataset (`torch.utils.data.Dataset`): ``dataset[i]`` is a tensor, identical on every call: a
            ``torch.uint8`` image of shape `sample_shape` with values ``0 .. num_levels - 1``, or a
            ``torch.float32`` toy point of shape ``(2,)``. ``len(dataset)`` is the number of examples.
        sample_shape (`Tuple[int, ...]`): ``(C, H, W)`` for images, ``(2,)`` for toys.
        num_levels (`int`, *optional*): Images: number of integer grey levels (256 for 8-bit files, 17
            for digits), for dequantisation. Toys: ``None``.
        is_image (`bool`): Whether the items are images.
        description (`str`): One line for logs and model cards, e.g.
            ``"scikit-learn digits (train split, 1,438 images), 1x16x16"``.
    """

    dataset: torch.utils.data.Dataset
    sample_shape: Tuple[int, ...]
    num_levels: Optional[int]
    is_image: bool
    description: str


# --------------------------------------------------------------------------------------------------
# Argument checks


def _check_count(name: str, value: Any, minimum: int = 1) -> int:
    """Return ``value`` as an int >= ``minimum``, or raise a ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _check_resolution(resolution: Any) -> int:
    """The score network halves the image size in its down-sampling blocks, so it needs an even size >= 4."""
    if isinstance(resolution, bool) or not isinstance(resolution, numbers.Integral) or resolution < 4:
        raise ValueError(f"resolution must be an even integer >= 4, got {resolution!r}.")
    if resolution % 2:
        raise ValueError(f"resolution must be an even integer >= 4 (the score network needs it), got {resolution}.")
    return int(resolution)


def _check_channels(channels: Any) -> Optional[int]:
    if channels is None:
        return None
    if isinstance(channels, bool) or channels not in (1, 3):
        raise ValueError(f"channels must be None (infer), 1 (greyscale) or 3 (RGB), got {channels!r}.")
    return int(channels)


def _check_index(index: Any, length: int) -> int:
    """Return ``index`` as an int in ``[0, length)`` (negative counts from the end), else ``IndexError``."""
    index = operator.index(index)
    if not -length <= index < length:
        raise IndexError(f"index {index} out of range for a data set of {length} items.")
    return index % length


# --------------------------------------------------------------------------------------------------
# 2-D toy distributions


def sample_toy(name: str, num_samples: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    r"""Draw i.i.d. points from one of the 2-D toy distributions (a pure function of ``generator``).

    The distributions (``N`` a normal, ``U`` a uniform, ``eps ~ N(0, I)`` independent noise):

    * ``"two-gaussians"``: NCSN's toy (Song & Ermon 2019, section 3.2),
      ``0.2 N((-5, -5), I) + 0.8 N((5, 5), I)``: mode ``(5, 5)`` with probability exactly 0.8.
    * ``"two-moons"``: scikit-learn's ``make_moons`` scaled up. With ``m ~ Bernoulli(1/2)`` and
      ``t ~ U(0, pi)`` the clean point is ``(cos t, sin t)`` (upper moon) or ``(1 - cos t, 0.5 - sin t)``
      (lower moon); the sample is ``2 * (point + 0.1 eps - (0.5, 0.25))``, inside about
      ``[-3, 3] x [-1.5, 1.5]``.
    * ``"swiss-roll"``: the 2-D swiss roll of FFJORD (Grathwohl et al. 2019): ``t = 1.5 pi (1 + 2u)``
      with ``u ~ U(0, 1)``, sample ``(t cos t + eps_1, t sin t + eps_2) / 5``, inside about
      ``[-3, 3]^2``.
    * ``"checkerboard"``: uniform on the black squares of a 4x4 board covering ``[-4, 4]^2``
      (squares of side 2). Numbering columns ``i`` and rows ``j`` 0..3 from ``(-4, -4)``, the black
      squares are those with ``i + j`` even (8 of 16, including the lower-left one); a sample is
      ``(-4 + 2 (i + u_1), -4 + 2 (j + u_2))`` with the square drawn uniformly and ``u ~ U(0, 1)^2``.

    Args:
        name (`str`): One of `TOY_DATASETS`.
        num_samples (`int`): Number of points (>= 1).
        generator (`torch.Generator`, *optional*): Source of randomness; the points are created on its
            device. ``None`` uses torch's global generator (on the CPU).

    Returns:
        `torch.Tensor`: float32 tensor of shape ``(num_samples, 2)``.

    Raises:
        ValueError: If ``name`` is not a toy name or ``num_samples < 1``.

    Example:
        >>> points = sample_toy("two-gaussians", 4, torch.Generator().manual_seed(0))
        >>> points.shape, points.dtype
        (torch.Size([4, 2]), torch.float32)
        >>> torch.equal(points, sample_toy("two-gaussians", 4, torch.Generator().manual_seed(0)))
        True
    """
    if name not in TOY_DATASETS:
        raise ValueError(f"Unknown toy data set {name!r}; choose one of {', '.join(TOY_DATASETS)}.")
    num_samples = _check_count("num_samples", num_samples)
    options = dict(generator=generator, device=generator.device if generator is not None else None)

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, **options)

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, **options)

    if name == "two-gaussians":
        upper = uniform(num_samples) < 0.8  # the (5, 5) mode carries weight 0.8
        means = torch.where(upper, 5.0, -5.0)[:, None].expand(num_samples, 2)
        return means + normal(num_samples, 2)
    if name == "two-moons":
        upper = uniform(num_samples) < 0.5
        angle = math.pi * uniform(num_samples)
        upper_moon = torch.stack([angle.cos(), angle.sin()], dim=1)
        lower_moon = torch.stack([1.0 - angle.cos(), 0.5 - angle.sin()], dim=1)
        points = torch.where(upper[:, None], upper_moon, lower_moon) + 0.1 * normal(num_samples, 2)
        return 2.0 * (points - points.new_tensor([0.5, 0.25]))
    if name == "swiss-roll":
        angle = 1.5 * math.pi * (1.0 + 2.0 * uniform(num_samples))
        spiral = torch.stack([angle * angle.cos(), angle * angle.sin()], dim=1)
        return (spiral + normal(num_samples, 2)) / 5.0
    # checkerboard: a column, then a row of the same parity, so that i + j is even.
    column = torch.randint(0, 4, (num_samples,), **options)
    row = 2 * torch.randint(0, 2, (num_samples,), **options) + column % 2
    corner = torch.stack([column, row], dim=1).float()
    return -4.0 + 2.0 * (corner + uniform(num_samples, 2))


class _Rows(torch.utils.data.Dataset):
    """The rows of a tensor as data set items (copies, so that callers may modify them in place)."""

    def __init__(self, data: torch.Tensor):
        self.data = data

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.data[_check_index(index, len(self))].clone()


# --------------------------------------------------------------------------------------------------
# scikit-learn digits


class _UpsampledImages(torch.utils.data.Dataset):
    """uint8 images enlarged by an integer factor (nearest neighbour), one item at a time to keep memory small."""

    def __init__(self, images: torch.Tensor, factor: int, channels: int):
        self.images = images
        self.factor = factor
        self.channels = channels

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        image = self.images[_check_index(index, len(self))]
        # Every pixel becomes a factor x factor block: no interpolation, so the grey levels stay exact.
        image = image.repeat_interleave(self.factor, dim=-2).repeat_interleave(self.factor, dim=-1)
        return image.expand(self.channels, -1, -1).contiguous()


def _load_digits(resolution: int, channels: Optional[int], max_train_samples: Optional[int]) -> TrainingData:
    if resolution % 8:
        raise ValueError(
            f"The digits are 8x8 and are enlarged by whole pixel blocks to keep their {DIGITS_NUM_LEVELS} grey "
            f"levels, so resolution must be a multiple of 8 (8, 16, 32, 64, ...), got {resolution}."
        )
    channels = 1 if channels is None else channels
    images, _ = load_digits_split("train")
    if max_train_samples is not None:
        images = images[:max_train_samples]
    dataset = _UpsampledImages(images, resolution // 8, channels)
    return TrainingData(
        dataset=dataset,
        sample_shape=(channels, resolution, resolution),
        num_levels=DIGITS_NUM_LEVELS,
        is_image=True,
        description=f"scikit-learn digits (train split, {len(dataset):,} images), {channels}x{resolution}x{resolution}",
    )


# --------------------------------------------------------------------------------------------------
# Image conversion, shared by image folders and Hugging Face data sets


def _is_greyscale(image: Image.Image) -> bool:
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
    resolution = _check_resolution(resolution)
    if _check_channels(channels) is None:
        raise ValueError("channels must be 1 or 3 here; infer it first (see load_training_data).")
    if image.getexif().get(_EXIF_ORIENTATION, 1) != 1:
        image = ImageOps.exif_transpose(image)
    image = _to_8bit(image, channels)
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


def _describe_geometry(channels: int, resolution: int, center_crop: bool) -> str:
    how = "centre-cropped" if center_crop else "resized to a square without cropping"
    return f"{channels}x{resolution}x{resolution} ({how})"


# --------------------------------------------------------------------------------------------------
# Image folders


def find_image_files(root: str) -> List[str]:
    """All image files under ``root``, recursively, in a fixed order.

    Files count as images by their ending (`IMAGE_EXTENSIONS`, any case). Hidden files and folders
    (names starting with ``"."``, e.g. ``.ipynb_checkpoints`` or macOS ``._photo.png``) are skipped.
    Symbolic links to folders are followed, each real folder once.

    Args:
        root (`str`): The folder.

    Returns:
        `List[str]`: Paths (``root`` joined with the relative path), sorted by their relative path.
    """
    found = []
    visited = set()
    for folder, subfolders, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in visited:  # a link loop, or two links to the same folder
            subfolders[:] = []
            continue
        visited.add(real)
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        found.extend(
            os.path.join(folder, name)
            for name in files
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
        )
    # Sort by relative path: os.walk's order depends on the file system.
    return sorted(found, key=lambda path: Path(os.path.relpath(path, root)).parts)


def _verify_image_files(paths: Sequence[str]) -> None:
    """Raise a ``ValueError`` naming the first file Pillow cannot identify or whose structure is damaged."""
    for path in paths:
        try:
            with Image.open(path) as image:
                image.verify()  # reads the file's structure (PNG: checks every chunk's CRC) without decoding
        except Exception as error:  # Pillow signals damage with many types: OSError, SyntaxError, struct.error ...
            raise ValueError(f"Cannot read image file {path}: {error}. Remove or replace it.") from error


def _infer_channels(images: Any) -> int:
    """1 if every image yielded by ``images`` is greyscale, else 3."""
    return 1 if all(_is_greyscale(image) for image in images) else 3


def _open_first_images(paths: Sequence[str]):
    for path in paths[:CHANNEL_INFERENCE_IMAGES]:
        with Image.open(path) as image:
            yield image


class _ImageFolderDataset(torch.utils.data.Dataset):
    """Image files decoded and converted on every access (see `prepare_image`)."""

    def __init__(self, paths: Sequence[str], resolution: int, channels: int, center_crop: bool):
        self.paths = list(paths)
        self.resolution = resolution
        self.channels = channels
        self.center_crop = center_crop

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        path = self.paths[_check_index(index, len(self))]
        try:
            with Image.open(path) as image:
                return prepare_image(
                    image, resolution=self.resolution, channels=self.channels, center_crop=self.center_crop
                )
        except (OSError, ValueError) as error:  # e.g. a JPEG truncated after its header passed `verify`
            raise ValueError(f"Cannot decode image file {path}: {error}") from error


def _load_image_folder(
    train_data_dir: str,
    resolution: int,
    channels: Optional[int],
    center_crop: bool,
    max_train_samples: Optional[int],
) -> TrainingData:
    root = os.path.expanduser(str(train_data_dir))
    if not os.path.isdir(root):
        problem = "is not a folder" if os.path.exists(root) else "does not exist"
        raise ValueError(f"train_data_dir {train_data_dir!r} {problem}; pass a folder of image files.")
    paths = find_image_files(root)
    if not paths:
        raise ValueError(
            f"No images found in {train_data_dir!r} or its subfolders (looked for {', '.join(IMAGE_EXTENSIONS)})."
        )
    if max_train_samples is not None:
        paths = paths[:max_train_samples]
    # Check every file now: a damaged file should stop the run before training, not hours into it.
    _verify_image_files(paths)
    if channels is None:
        channels = _infer_channels(_open_first_images(paths))
    dataset = _ImageFolderDataset(paths, resolution, channels, center_crop)
    return TrainingData(
        dataset=dataset,
        sample_shape=(channels, resolution, resolution),
        num_levels=256,
        is_image=True,
        description=f"image folder {train_data_dir} ({len(paths):,} images), "
        + _describe_geometry(channels, resolution, center_crop),
    )


# --------------------------------------------------------------------------------------------------
# Hugging Face data sets


def _unreachable_errors() -> Tuple[type, ...]:
    """Exception types that mean "could not fetch the data set".

    Everything ``datasets`` and ``huggingface_hub`` raise for this is an ``OSError``: ``ConnectionError``
    (including ``OfflineModeIsEnabled``), ``FileNotFoundError`` (including ``DatasetNotFoundError`` and
    ``LocalEntryNotFoundError``) and ``HfHubHTTPError``. Raw transport errors of the HTTP client are not.
    """
    errors: List[type] = [OSError]
    for module_name in ("httpx", "httpx2"):
        try:
            errors.append(__import__(module_name).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def _load_hf_dataset(dataset_name: str, dataset_config_name: Optional[str], cache_dir: Optional[str]):
    try:
        import datasets
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("Hugging Face data sets need `datasets`: pip install 'ncsn-pipeline[train]'.") from error
    local = Path(dataset_name).expanduser()
    if local.is_dir() and ((local / "state.json").is_file() or (local / "dataset_dict.json").is_file()):
        # Written by save_to_disk, which load_dataset refuses to read.
        if dataset_config_name is not None:
            raise ValueError(
                f"dataset_config_name={dataset_config_name!r} does not apply to {dataset_name!r}, "
                "a data set saved with save_to_disk."
            )
        loaded = datasets.load_from_disk(str(local))
        if isinstance(loaded, datasets.DatasetDict):
            if "train" not in loaded:
                raise ValueError(f"{dataset_name!r} has no 'train' split; it has {sorted(loaded)}.")
            loaded = loaded["train"]
        return loaded
    try:
        return datasets.load_dataset(dataset_name, dataset_config_name, cache_dir=cache_dir, split="train")
    except _unreachable_errors() as error:
        suggestion = ""
        close = difflib.get_close_matches(dataset_name, BUILTIN_DATASETS, n=1)
        if close:
            suggestion = f" (did you mean the built-in {close[0]!r}?)"
        raise DatasetUnavailableError(
            f"Could not load the data set {dataset_name!r}{suggestion}: it is not a local data set and could not be "
            f"fetched from the Hugging Face Hub (offline, unreachable, or no such data set). "
            f"To train offline, pass --train_data_dir with a local image folder, or a built-in data set name "
            f"as --dataset_name ({', '.join(BUILTIN_DATASETS)}). Cause: {type(error).__name__}: {error}"
        ) from error


class _HFImageDataset(torch.utils.data.Dataset):
    """The images of one column of a Hugging Face ``datasets.Dataset``, converted on every access."""

    def __init__(self, hf_dataset: Any, image_column: str, resolution: int, channels: int, center_crop: bool):
        self.hf_dataset = hf_dataset
        self.image_column = image_column
        self.resolution = resolution
        self.channels = channels
        self.center_crop = center_crop

    def __len__(self) -> int:
        return len(self.hf_dataset)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = self.hf_dataset[_check_index(index, len(self))][self.image_column]
        return prepare_image(image, resolution=self.resolution, channels=self.channels, center_crop=self.center_crop)


def _load_hf_images(
    dataset_name: str,
    dataset_config_name: Optional[str],
    image_column: str,
    cache_dir: Optional[str],
    resolution: int,
    channels: Optional[int],
    center_crop: bool,
    max_train_samples: Optional[int],
) -> TrainingData:
    hf_dataset = _load_hf_dataset(dataset_name, dataset_config_name, cache_dir)
    if image_column not in hf_dataset.column_names:
        raise ValueError(
            f"image_column {image_column!r} is not a column of {dataset_name!r}; its columns are "
            f"{hf_dataset.column_names}."
        )
    hf_dataset = hf_dataset.select_columns([image_column])  # decode only the images, not labels or captions
    if max_train_samples is not None and max_train_samples < len(hf_dataset):
        hf_dataset = hf_dataset.select(range(max_train_samples))
    if len(hf_dataset) == 0:
        raise ValueError(f"The 'train' split of {dataset_name!r} is empty.")
    first = hf_dataset[0][image_column]
    if not isinstance(first, Image.Image):
        raise ValueError(
            f"Column {image_column!r} of {dataset_name!r} holds {type(first).__name__} values, not images; "
            "pass the image column as --image_column."
        )
    if channels is None:
        count = min(CHANNEL_INFERENCE_IMAGES, len(hf_dataset))
        channels = _infer_channels(hf_dataset[i][image_column] for i in range(count))
    dataset = _HFImageDataset(hf_dataset, image_column, resolution, channels, center_crop)
    config = f", config {dataset_config_name!r}" if dataset_config_name else ""
    return TrainingData(
        dataset=dataset,
        sample_shape=(channels, resolution, resolution),
        num_levels=256,
        is_image=True,
        description=f"Hugging Face data set {dataset_name}{config} (train split, column {image_column!r}, "
        f"{len(dataset):,} images), " + _describe_geometry(channels, resolution, center_crop),
    )


# --------------------------------------------------------------------------------------------------
# Entry point


def load_training_data(
    *,
    dataset_name: Optional[str] = None,
    dataset_config_name: Optional[str] = None,
    train_data_dir: Optional[str] = None,
    image_column: str = "image",
    cache_dir: Optional[str] = None,
    resolution: int = 32,
    channels: Optional[int] = None,
    center_crop: bool = False,
    max_train_samples: Optional[int] = None,
    num_toy_samples: int = 20000,
    seed: int = 0,
) -> TrainingData:
    """Load the training data of exactly one source (see the module docstring).

    * A built-in name in ``dataset_name`` (`BUILTIN_DATASETS`, checked before anything else):
      ``"digits"`` loads the training split of `ncsn_pipeline.digits.load_digits_split` (1,438 images,
      ``num_levels=17``), enlarged by whole-pixel blocks (nearest neighbour) to ``resolution``, which
      must be a multiple of 8; ``channels`` may be 1 or 3 (the grey image copied into R, G and B).
      A toy name draws a fixed set of ``num_toy_samples`` points with `sample_toy` and
      ``torch.Generator().manual_seed(seed)``; ``resolution``, ``channels`` and ``center_crop`` are
      ignored.
    * Any other ``dataset_name``: ``datasets.load_dataset(dataset_name, dataset_config_name,
      cache_dir=cache_dir, split="train")`` (or ``datasets.load_from_disk`` for a folder written by
      ``save_to_disk``), images from ``image_column``, converted lazily with `prepare_image`.
    * ``train_data_dir``: every file found by `find_image_files`, converted lazily with `prepare_image`.
      All files are checked with Pillow's ``verify`` up front (this reads each file once).

    Image files and Hugging Face images have ``num_levels=256``. ``channels=None`` infers 1 if the
    first (up to 100) images are all greyscale by their mode, else 3.

    Args:
        dataset_name (`str`, *optional*): A built-in name, a Hub id or a local path for ``datasets``.
        dataset_config_name (`str`, *optional*): The ``datasets`` configuration; only with a Hub/local data set.
        train_data_dir (`str`, *optional*): A folder of image files, searched recursively.
        image_column (`str`, defaults to ``"image"``): The column holding the images (Hugging Face data sets).
        cache_dir (`str`, *optional*): Where ``datasets`` caches downloads and prepared data.
        resolution (`int`, defaults to 32): Image height and width: even, >= 4.
        channels (`int`, *optional*): 1 (greyscale) or 3 (RGB); ``None`` infers it.
        center_crop (`bool`, defaults to `False`): Crop the centred square of each image before resizing;
            otherwise non-square images are squashed to a square. Never random.
        max_train_samples (`int`, *optional*): Keep only the first ``max_train_samples`` examples (no
            shuffle: the order of the split, of the sorted file paths, or of the toy draws).
        num_toy_samples (`int`, defaults to 20000): Number of toy points (>= 2).
        seed (`int`, defaults to 0): Seed of the toy points.

    Returns:
        `TrainingData`: The data set with its shape, number of grey levels and description.

    Raises:
        ValueError: For zero or two sources; bad ``resolution`` (odd, < 4, or for digits not a multiple
            of 8), ``channels``, ``max_train_samples`` or ``num_toy_samples``; a folder that does not
            exist, holds no images, or holds a damaged image (named); a missing ``image_column``.
        DatasetUnavailableError: (a ``ValueError``) If a Hugging Face data set cannot be loaded, e.g.
            because the Hub is offline; the message suggests ``--train_data_dir`` or a built-in name.
    """
    if (dataset_name is None) == (train_data_dir is None):
        raise ValueError(
            "Pass exactly one data source: dataset_name (a built-in name, a Hugging Face Hub id or a local "
            f"data set path) or train_data_dir (an image folder); got dataset_name={dataset_name!r}, "
            f"train_data_dir={train_data_dir!r}."
        )
    if dataset_name is not None and (not isinstance(dataset_name, str) or not dataset_name.strip()):
        raise ValueError(f"dataset_name must be a non-empty string, got {dataset_name!r}.")
    if train_data_dir is not None and (not isinstance(train_data_dir, (str, os.PathLike)) or not str(train_data_dir)):
        raise ValueError(f"train_data_dir must be a folder path, got {train_data_dir!r}.")
    if max_train_samples is not None:
        max_train_samples = _check_count("max_train_samples", max_train_samples)
    if dataset_config_name is not None and (train_data_dir is not None or dataset_name in BUILTIN_DATASETS):
        source = train_data_dir if train_data_dir is not None else dataset_name
        raise ValueError(
            f"dataset_config_name={dataset_config_name!r} only applies to Hugging Face data sets, not to {source!r}."
        )

    if dataset_name in TOY_DATASETS:
        num_toy_samples = _check_count("num_toy_samples", num_toy_samples, minimum=2)
        if max_train_samples is not None:
            num_toy_samples = min(num_toy_samples, max_train_samples)
        points = sample_toy(dataset_name, num_toy_samples, torch.Generator().manual_seed(int(seed)))
        return TrainingData(
            dataset=_Rows(points),
            sample_shape=(2,),
            num_levels=None,
            is_image=False,
            description=f"{dataset_name} toy data ({num_toy_samples:,} points, seed {seed}): "
            f"{_TOY_FORMULAS[dataset_name]}, 2-D",
        )

    resolution = _check_resolution(resolution)
    channels = _check_channels(channels)
    if dataset_name == "digits":
        return _load_digits(resolution, channels, max_train_samples)
    if train_data_dir is not None:
        return _load_image_folder(train_data_dir, resolution, channels, center_crop, max_train_samples)
    if not isinstance(image_column, str) or not image_column:
        raise ValueError(f"image_column must be a non-empty column name, got {image_column!r}.")
    return _load_hf_images(
        dataset_name,
        dataset_config_name,
        image_column,
        cache_dir,
        resolution,
        channels,
        center_crop,
        max_train_samples,
    )
