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
  handwritten digits, bundled with scikit-learn), ``"fashion-mnist"`` (Fashion-MNIST's 60,000 training images,
  from a folder of its IDX files given as ``train_data_dir``, Debian's ``dataset-fashion-mnist``, or the Hub:
  `ncsn_pipeline.data.fashion_mnist`) or a 2-D toy (`TOY_DATASETS`). A built-in name
  wins over a local folder of the same name; write ``"./digits"`` to load such a folder instead.
* ``dataset_name`` set to anything else: a Hugging Face Hub id or a local path understood by
  ``datasets.load_dataset`` (or a folder written by ``Dataset.save_to_disk``); split ``"train"``.
* ``train_data_dir``: a folder of image files, searched recursively.

Built-in data need no download:

Example:

>>> from ncsn_pipeline.training.data import load_training_data
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

import dataclasses
import difflib
import operator
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

import torch
from PIL import Image

from ..checks import check_bool, check_integer
from ..data.digits import DIGITS_NUM_LEVELS, load_digits_split
from ..data.fashion_mnist import (
    DEBIAN_FOLDER,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_NUM_LEVELS,
    HUB_DATASET,
    idx_folder_has_split,
    load_fashion_mnist,
)
from ..data.image_files import (
    IMAGE_EXTENSIONS,
    check_channels,
    check_resolution,
    describe_geometry,
    find_image_files,
    is_greyscale,
    prepare_image,
    verify_image_files,
)
from ..data.names import BUILTIN_DATASETS, FASHION_MNIST, TOY_DATASETS
from ..data.toys import _TOY_FORMULAS, sample_toy
from ..modeling_ncsn import MAX_CLASS_EMBEDS as MAX_CLASSES

# How many images `channels=None` looks at to decide between greyscale and colour.
CHANNEL_INFERENCE_IMAGES = 100


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
        class_names (`List[str]`, *optional*): For labelled (class-conditional) data, the name of each class;
            ``dataset[i]`` is then ``(image, label)`` with ``label`` an int in ``[0, len(class_names))``.
    """

    dataset: torch.utils.data.Dataset
    sample_shape: Tuple[int, ...]
    num_levels: Optional[int]
    is_image: bool
    description: str
    class_names: Optional[List[str]] = None


class _Labelled(torch.utils.data.Dataset):
    """Items of ``dataset`` paired with their class labels: ``(item, label)``."""

    def __init__(self, dataset: torch.utils.data.Dataset, labels: Sequence[int]):
        self.dataset = dataset
        self.labels = torch.as_tensor(list(labels), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return self.dataset[index], self.labels[_check_index(index, len(self))]


def _with_labels(data: TrainingData, labels: Sequence[int], class_names: List[str]) -> TrainingData:
    if len(class_names) < 2:
        raise ValueError(f"Class-conditional training needs at least 2 classes, found {class_names}.")
    return dataclasses.replace(
        data,
        dataset=_Labelled(data.dataset, labels),
        class_names=class_names,
        description=f"{data.description}, {len(class_names)} classes",
    )


def _folder_labels(root: str, all_paths: Sequence[str], paths: Sequence[str]) -> Tuple[List[int], List[str]]:
    """Labels of ``paths`` from their first-level subfolder (``root/<class>/...``); the classes are every subfolder
    of ``root`` (sorted by name, numbered by the whole folder so that ``max_train_samples`` renumbers nothing), and
    one without images (``all_paths``) is an error that names it."""
    classes = []
    for path in all_paths:
        parts = os.path.relpath(path, root).split(os.sep)
        if len(parts) < 2:
            raise ValueError(
                f"Class-conditional training on a folder needs one subfolder per class (root/<class>/image.png), "
                f"but {path!r} lies directly in {root!r}."
            )
        classes.append(parts[0])
    names = sorted(set(classes))
    subfolders = sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith("."))
    empty = [name for name in subfolders if name not in names and _leads_inside(root, name)]
    if empty:
        raise ValueError(
            f"Class folder(s) {empty} in {root!r} hold no images: add images to each class folder or remove it (a "
            "class without examples cannot be learned)."
        )
    index = {name: i for i, name in enumerate(names)}
    return [index[os.path.relpath(path, root).split(os.sep)[0]] for path in paths], names


def _leads_inside(root: str, name: str) -> bool:
    """Whether ``root/name`` stays inside ``root`` (a link out of it is skipped by `find_image_files`, not empty)."""
    real_root, real = os.path.realpath(root), os.path.realpath(os.path.join(root, name))
    return real.startswith(real_root.rstrip(os.sep) + os.sep)


# --------------------------------------------------------------------------------------------------
# Argument checks


def _check_index(index: Any, length: int) -> int:
    """Return ``index`` as an int in ``[0, length)`` (negative counts from the end), else ``IndexError``."""
    index = operator.index(index)
    if not -length <= index < length:
        raise IndexError(f"index {index} out of range for a data set of {length} items.")
    return index % length


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


def _load_digits(
    resolution: int, channels: Optional[int], max_train_samples: Optional[int], class_conditional: bool = False
) -> TrainingData:
    if resolution % 8:
        raise ValueError(
            f"The digits are 8x8 and are enlarged by whole pixel blocks to keep their {DIGITS_NUM_LEVELS} grey "
            f"levels, so resolution must be a multiple of 8 (8, 16, 32, 64, ...), got {resolution}."
        )
    channels = 1 if channels is None else channels
    images, labels = load_digits_split("train")
    if max_train_samples is not None:
        images, labels = images[:max_train_samples], labels[:max_train_samples]
    dataset = _UpsampledImages(images, resolution // 8, channels)
    data = TrainingData(
        dataset=dataset,
        sample_shape=(channels, resolution, resolution),
        num_levels=DIGITS_NUM_LEVELS,
        is_image=True,
        description=f"scikit-learn digits (train split, {len(dataset):,} images), {channels}x{resolution}x{resolution}",
    )
    return _with_labels(data, labels.tolist(), [str(digit) for digit in range(10)]) if class_conditional else data


def _load_fashion_mnist(
    resolution: int,
    channels: Optional[int],
    max_train_samples: Optional[int],
    class_conditional: bool,
    idx_folder: Optional[str],
    cache_dir: Optional[str],
) -> TrainingData:
    if resolution % 28:
        raise ValueError(
            "Fashion-MNIST's images are 28x28 and are enlarged by whole pixel blocks, so resolution must be a "
            f"multiple of 28 (28, 56, ...), got {resolution}."
        )
    channels = 1 if channels is None else channels
    images, labels = load_fashion_mnist("train", folder=idx_folder, cache_dir=cache_dir)
    if max_train_samples is not None:
        images, labels = images[:max_train_samples], labels[:max_train_samples]
    dataset = _UpsampledImages(images, resolution // 28, channels)
    if idx_folder is not None:
        where = f"IDX files in {Path(idx_folder).name}"
    elif idx_folder_has_split(DEBIAN_FOLDER, "train"):
        where = "Debian's dataset-fashion-mnist"
    else:
        where = f"the Hub's {HUB_DATASET}"
    data = TrainingData(
        dataset=dataset,
        sample_shape=(channels, resolution, resolution),
        num_levels=FASHION_MNIST_NUM_LEVELS,
        is_image=True,
        description=f"Fashion-MNIST (train split, {len(dataset):,} images; {where}), "
        f"{channels}x{resolution}x{resolution}",
    )
    return _with_labels(data, labels.tolist(), list(FASHION_MNIST_CLASSES)) if class_conditional else data


def _infer_channels(images: Any) -> int:
    """1 if every image yielded by ``images`` is greyscale, else 3."""
    return 1 if all(is_greyscale(image) for image in images) else 3


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
    class_conditional: bool = False,
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
    all_paths = paths
    if max_train_samples is not None:
        paths = paths[:max_train_samples]
    labelled = _folder_labels(root, all_paths, paths) if class_conditional else None  # before the slow checks
    # Check every file now: a damaged file should stop the run before training, not hours into it.
    verify_image_files(paths)
    if channels is None:
        channels = _infer_channels(_open_first_images(paths))
    dataset = _ImageFolderDataset(paths, resolution, channels, center_crop)
    data = TrainingData(
        dataset=dataset,
        sample_shape=(channels, resolution, resolution),
        num_levels=256,
        is_image=True,
        description=f"image folder {train_data_dir} ({len(paths):,} images), "
        + describe_geometry(channels, resolution, center_crop),
    )
    return data if labelled is None else _with_labels(data, *labelled)


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
    label_column: Optional[str] = None,
) -> TrainingData:
    hf_dataset = _load_hf_dataset(dataset_name, dataset_config_name, cache_dir)
    if image_column not in hf_dataset.column_names:
        raise ValueError(
            f"image_column {image_column!r} is not a column of {dataset_name!r}; its columns are "
            f"{hf_dataset.column_names}."
        )
    if label_column is not None and label_column not in hf_dataset.column_names:
        raise ValueError(
            f"label_column {label_column!r} is not a column of {dataset_name!r}; its columns are "
            f"{hf_dataset.column_names}. Pass the class column as --label_column."
        )
    if max_train_samples is not None and max_train_samples < len(hf_dataset):
        hf_dataset = hf_dataset.select(range(max_train_samples))
    labelled = None if label_column is None else _column_labels(hf_dataset, label_column, dataset_name)
    hf_dataset = hf_dataset.select_columns([image_column])  # decode only the images, not labels or captions
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
    data = TrainingData(
        dataset=dataset,
        sample_shape=(channels, resolution, resolution),
        num_levels=256,
        is_image=True,
        description=f"Hugging Face data set {dataset_name}{config} (train split, column {image_column!r}, "
        f"{len(dataset):,} images), " + describe_geometry(channels, resolution, center_crop),
    )
    return data if labelled is None else _with_labels(data, *labelled)


def _column_labels(hf_dataset: Any, label_column: str, dataset_name: str) -> Tuple[List[int], List[str]]:
    """Labels from a ``datasets`` column: a ``ClassLabel`` (its names) or integers ``0 .. K-1``."""
    values = list(hf_dataset[label_column])
    feature = hf_dataset.features[label_column]
    names = list(getattr(feature, "names", None) or [])
    if not all(isinstance(value, int) and not isinstance(value, bool) for value in values):
        bad = next(value for value in values if not isinstance(value, int) or isinstance(value, bool))
        raise ValueError(
            f"Column {label_column!r} of {dataset_name!r} must hold integer class labels, got {bad!r} "
            f"({type(bad).__name__})."
        )
    if not names and values and max(values) >= min(len(values), MAX_CLASSES):
        # Without class names the count is max + 1: bounded by the data before any list of names is built.
        raise ValueError(
            f"Column {label_column!r} holds the label {max(values)}, but {len(values):,} examples can hold at most "
            f"{min(len(values), MAX_CLASSES):,} classes (labels 0 .. K-1, K <= the examples and <= {MAX_CLASSES:,})."
        )
    count = len(names) or (max(values) + 1 if values else 0)
    if values and (min(values) < 0 or max(values) >= count):
        raise ValueError(
            f"Column {label_column!r} holds labels outside 0 .. {count - 1}: {min(values)} to {max(values)}."
        )
    return list(values), names or [str(label) for label in range(count)]


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
    class_conditional: bool = False,
    label_column: str = "label",
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
        class_conditional (`bool`, defaults to `False`): Also load class labels (``TrainingData.class_names``):
            the digit of each built-in digit, the first-level subfolder of each image file (one subfolder per
            class), or ``label_column`` of a Hugging Face data set. Not for the 2-D toys.
        label_column (`str`, defaults to ``"label"``): The class column of a Hugging Face data set.

    Returns:
        `TrainingData`: The data set with its shape, number of grey levels and description.

    Raises:
        ValueError: For zero or two sources; bad ``resolution`` (odd, < 4, or for digits not a multiple
            of 8), ``channels``, ``max_train_samples`` or ``num_toy_samples``; a folder that does not
            exist, holds no images, or holds a damaged image (named); a missing ``image_column``.
        DatasetUnavailableError: (a ``ValueError``) If a Hugging Face data set cannot be loaded, e.g.
            because the Hub is offline; the message suggests ``--train_data_dir`` or a built-in name.
    """
    idx_folder = None
    if dataset_name == FASHION_MNIST and train_data_dir is not None:  # the folder of its IDX files
        idx_folder, train_data_dir = train_data_dir, None
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
        max_train_samples = check_integer("max_train_samples", max_train_samples)
    if dataset_config_name is not None and (train_data_dir is not None or dataset_name in BUILTIN_DATASETS):
        source = train_data_dir if train_data_dir is not None else dataset_name
        raise ValueError(
            f"dataset_config_name={dataset_config_name!r} only applies to Hugging Face data sets, not to {source!r}."
        )

    check_bool("class_conditional", class_conditional)
    if class_conditional and dataset_name in TOY_DATASETS:
        raise ValueError(
            f"class_conditional needs labelled images (digits, a folder with one subfolder per class, or a data "
            f"set with a label column); the toy {dataset_name!r} has no classes."
        )
    if dataset_name in TOY_DATASETS:
        num_toy_samples = check_integer("num_toy_samples", num_toy_samples, low=2)
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

    resolution = check_resolution(resolution)
    channels = check_channels(channels)
    if dataset_name == "digits":
        return _load_digits(resolution, channels, max_train_samples, class_conditional)
    if dataset_name == FASHION_MNIST:
        return _load_fashion_mnist(resolution, channels, max_train_samples, class_conditional, idx_folder, cache_dir)
    if train_data_dir is not None:
        return _load_image_folder(
            train_data_dir, resolution, channels, center_crop, max_train_samples, class_conditional
        )
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
        label_column if class_conditional else None,
    )
