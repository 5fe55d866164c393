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

import os
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np
import torch

from .fashion_mnist_files import (  # noqa: F401 - the reader's names, also used from here
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_NUM_LEVELS,
    HELD_OUT_SLICE_FOLDER,
    IDX_FILES,
    SPLIT_SIZES,
    FashionMNISTUnavailableError,
    check_split,
    idx_folder_has_split,
    load_held_out_slice,
    read_idx,
    read_idx_split,
)

DEBIAN_FOLDER = Path("/usr/share/datasets/fashion-mnist")
HUB_DATASET = "zalando-datasets/fashion_mnist"


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
    check_split(split)
    if folder is not None:
        if not Path(folder).is_dir():
            raise FashionMNISTUnavailableError(f"{folder} is not a folder (it should hold Fashion-MNIST's IDX files).")
        return read_idx_split(folder, split)
    if idx_folder_has_split(DEBIAN_FOLDER, split):
        return read_idx_split(DEBIAN_FOLDER, split)
    return _from_hub(split, cache_dir)
