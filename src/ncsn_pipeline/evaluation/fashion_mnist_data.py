"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017; 70,000 grey 28x28 images in 10 classes, MIT licence), read locally.

Where the data comes from, in order:

1. a folder that holds the four IDX files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
   ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally ``.gz``): the one the caller names
   (``ncsn-train --dataset_name fashion-mnist --train_data_dir FOLDER``), else Debian's ``dataset-fashion-mnist``
   package (`DEBIAN_FOLDER`);
2. else the Hugging Face Hub's ``zalando-datasets/fashion_mnist`` through ``datasets`` (needs internet once);
3. else a `FashionMNISTUnavailableError` that says how to get it.

The splits are the data set's own: ``"train"`` (60,000) and ``"test"`` (10,000). Training uses the first, the
evaluation's held-out figures the second, so the judge's test images were never seen in training.

>>> images, labels = load_fashion_mnist("test")  # doctest: +SKIP
>>> images.shape, images.dtype, FASHION_MNIST_CLASSES[int(labels[0])]  # doctest: +SKIP
(torch.Size([10000, 1, 28, 28]), torch.uint8, 'Ankle boot')
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np
import torch

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FASHION_MNIST_NUM_LEVELS = 256  # 8-bit pixels
DEBIAN_FOLDER = Path("/usr/share/datasets/fashion-mnist")
HUB_DATASET = "zalando-datasets/fashion_mnist"
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SPLIT_SIZES = {"train": 60_000, "test": 10_000}
# IDX magic numbers: two zero bytes, the type (0x08 = unsigned byte) and the number of dimensions.
_IDX_UBYTE = 0x08


class FashionMNISTUnavailableError(ValueError):
    """Fashion-MNIST is neither in a local folder nor reachable on the Hub; the message says how to get it."""


def read_idx(path: Union[str, os.PathLike]) -> np.ndarray:
    """An IDX file (``.gz`` or not) of unsigned bytes as a numpy array of its shape.

    Raises:
        ValueError: naming the file, when it is not an unsigned-byte IDX file or is shorter than its header says.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as error:
        raise ValueError(f"{path} cannot be read as an IDX file ({error}).") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != _IDX_UBYTE or not 1 <= data[3] <= 4:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (its first bytes are {data[:4].hex()}).")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path} is truncated: its header is incomplete.")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise ValueError(
            f"{path} holds {len(data) - header:,} bytes of data where its header promises {expected - header:,} "
            f"(shape {shape}): the file is truncated or not what it says."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _idx_path(folder: Path, name: str) -> Optional[Path]:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def idx_folder_has_split(folder: Union[str, os.PathLike], split: str) -> bool:
    """Whether ``folder`` holds the two IDX files of ``split``."""
    return all(_idx_path(Path(folder), name) is not None for name in IDX_FILES[split])


def _check_split(split: str) -> None:
    if split not in IDX_FILES:
        raise ValueError(f"split must be one of {list(IDX_FILES)}, got {split!r}.")


def read_idx_split(folder: Union[str, os.PathLike], split: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(images uint8 (N, 1, 28, 28), labels int64 (N,))`` of ``split`` from the IDX files in ``folder``."""
    _check_split(split)
    folder = Path(folder)
    paths = [_idx_path(folder, name) for name in IDX_FILES[split]]
    if None in paths:
        missing = [name for name, path in zip(IDX_FILES[split], paths) if path is None]
        raise FashionMNISTUnavailableError(f"{folder} has no {' or '.join(missing)}[.gz] (Fashion-MNIST's IDX files).")
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"{folder}: the {split} images {images.shape} and labels {labels.shape} do not match (expected "
            "(N, 28, 28) images and N labels)."
        )
    if labels.size and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
        raise ValueError(f"{paths[1]} has label {int(labels.max())}; Fashion-MNIST's labels are 0 to 9.")
    return torch.from_numpy(images.copy())[:, None], torch.from_numpy(labels.astype(np.int64))


def _from_hub(split: str, cache_dir: Optional[str]) -> Tuple[torch.Tensor, torch.Tensor]:
    try:
        import datasets
    except ImportError as error:
        raise FashionMNISTUnavailableError(_advice("the `datasets` library is not installed")) from error
    try:
        hub = datasets.load_dataset(HUB_DATASET, split=split, cache_dir=cache_dir)
    except Exception as error:  # offline, unreachable, not cached: datasets raises many types
        raise FashionMNISTUnavailableError(_advice(f"the Hub could not be reached ({type(error).__name__})")) from None
    images = torch.from_numpy(np.stack([np.asarray(image, dtype=np.uint8) for image in hub["image"]]))[:, None]
    return images, torch.as_tensor(hub["label"], dtype=torch.int64)


def _advice(cause: str) -> str:
    return (
        f"Fashion-MNIST is not on this machine and {cause}. Get it one of these ways: `apt-get install "
        f"dataset-fashion-mnist` (Debian: the IDX files in {DEBIAN_FOLDER}); download the four IDX files from "
        "https://github.com/zalandoresearch/fashion-mnist into a folder and pass it with --train_data_dir; or, with "
        f"internet, let `datasets` fetch {HUB_DATASET} from the Hub once (unset HF_HUB_OFFLINE)."
    )


def load_fashion_mnist(
    split: str, folder: Union[str, os.PathLike, None] = None, cache_dir: Optional[str] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """One split of Fashion-MNIST: ``(images uint8 (N, 1, 28, 28), labels int64 (N,))``, from ``folder``'s IDX files,
    else Debian's package, else the Hub (see the module docstring).

    Raises:
        FashionMNISTUnavailableError: when none of the sources has it, saying how to get it.
    """
    _check_split(split)
    if folder is not None:
        if not Path(folder).is_dir():
            raise FashionMNISTUnavailableError(f"{folder} is not a folder (it should hold Fashion-MNIST's IDX files).")
        return read_idx_split(folder, split)
    if idx_folder_has_split(DEBIAN_FOLDER, split):
        return read_idx_split(DEBIAN_FOLDER, split)
    return _from_hub(split, cache_dir)
