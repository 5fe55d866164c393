"""scikit-learn's handwritten digits (1,797 images, 8x8, 17 grey levels) with a fixed train/held-out split.

The split is shared by the training script's built-in ``digits`` data set and by the sample-quality
evaluation, so that the evaluation's held-out digits were never seen in training.

Example:

>>> images, labels = load_digits_split("train")  # doctest: +SKIP
>>> images.shape, images.dtype, int(images.max())  # doctest: +SKIP
(torch.Size([1438, 1, 8, 8]), torch.uint8, 16)
"""

from __future__ import annotations

from typing import Tuple

import torch

DIGITS_NUM_LEVELS = 17  # pixel values are the integers 0..16
HELD_OUT_FRACTION = 0.2
SPLIT_SEED = 0


def load_digits_split(split: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """Load one split of scikit-learn's digits.

    Args:
        split (`str`): ``"train"`` (80%, 1,438 images) or ``"held_out"`` (20%, 359 images); a fixed
            permutation (seed 0) decides which image goes where.

    Returns:
        `Tuple[torch.Tensor, torch.Tensor]`: ``images`` (uint8, shape ``(N, 1, 8, 8)``, values 0..16) and
        ``labels`` (int64, shape ``(N,)``).
    """
    if split not in ("train", "held_out"):
        raise ValueError(f"split must be 'train' or 'held_out', got {split!r}.")
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("The digits data set needs scikit-learn: pip install 'ncsn-pipeline[train]'.") from error
    digits = load_digits()  # bundled with scikit-learn: no download
    images = torch.as_tensor(digits.images, dtype=torch.uint8)[:, None]
    labels = torch.as_tensor(digits.target, dtype=torch.int64)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SPLIT_SEED))
    num_held_out = round(HELD_OUT_FRACTION * len(labels))
    chosen = order[num_held_out:] if split == "train" else order[:num_held_out]
    return images[chosen], labels[chosen]
