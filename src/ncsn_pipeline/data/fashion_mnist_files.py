"""Fashion-MNIST's files, read without any network code: the IDX reader, the class names, and the 200 held-out
test images shipped with the package (`load_held_out_slice`, for the demo's inpainting tab).

`ncsn_pipeline.data.fashion_mnist` finds the full data set (a folder, Debian's package, the Hub) and reads
it with these functions; the demo imports only this module, so its extra needs no ``datasets``.
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
# 200 test-split images shipped with the package (20 per class; its README says which), for the demo's inpainting tab.
HELD_OUT_SLICE_FOLDER = Path(__file__).resolve().parents[1] / "pretrained" / "fashion-mnist-held-out"
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


def check_split(split: str) -> None:
    if split not in IDX_FILES:
        raise ValueError(f"split must be one of {list(IDX_FILES)}, got {split!r}.")


def read_idx_split(folder: Union[str, os.PathLike], split: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(images uint8 (N, 1, 28, 28), labels int64 (N,))`` of ``split`` from the IDX files in ``folder``."""
    check_split(split)
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


def load_held_out_slice() -> Tuple[torch.Tensor, torch.Tensor]:
    """The 200 test-split images shipped with the package: ``(images uint8 (200, 1, 28, 28), labels (200,))``."""
    return read_idx_split(HELD_OUT_SLICE_FOLDER, "test")
