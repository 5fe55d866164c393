"""The Fashion-MNIST judge: a classifier of 28x28 garments that scores generated samples, like the digits judge.

`FashionClassifier` (three conv layers, a 128-unit feature layer, 10 logits) is trained on Fashion-MNIST's *train*
split with `train_fashion_classifier` and shipped with the package (``pretrained/fashion-judge``: weights and the
record of its training, test accuracy among it); `default_fashion_classifier` loads it. Samples are scored with the
same figures as the digits (`ncsn_pipeline.evaluation.digits_judge.judge_samples`): confident rate, class shares,
the asked-for class rate of conditional models, and the Fréchet distance in the judge's features to the *test*
split, each beside the same figure for real training images (the floor).

Real images enter as ``(v + 0.5) / 256`` (the centre of the training loop's dequantisation interval of grey level
``v``); the judge is trained on ``(v + u) / 256`` with one-pixel shifts, horizontal flips and a little pixel noise, so
that a sampler's continuous output is not out of its distribution.

>>> judge = default_fashion_classifier()  # doctest: +SKIP
>>> metrics = evaluate_fashion_samples(samples, judge)  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Dict, Optional

import torch
from torch import nn

from ..checks import check_integer
from ..data.fashion_mnist import FASHION_MNIST_CLASSES, FASHION_MNIST_NUM_LEVELS, load_fashion_mnist
from .digits_judge import (
    JudgeNetwork,
    check_unit_images,
    classify,
    fit_judge,
    judge_samples,
    requested_class_match,
    shift_by_up_to_one_pixel,
)

IMAGE_SIZE = 28
NUM_CLASSES = len(FASHION_MNIST_CLASSES)
FEATURE_DIM = 128
FLOOR_SUBSET_SEED = 0
JUDGE_FOLDER = Path(__file__).resolve().parents[1] / "pretrained" / "fashion-judge"
WEIGHTS_FILE = "judge.safetensors"
RECORD_FILE = "judge_record.json"
# The rows of a model card's evaluation table: (label, metric key); the reference column is the floor.
CARD_ROWS = (
    ("confident judgements (judge's max prob >= 0.9)", "confident_rate"),
    ("classes covered (of 10)", "class_coverage"),
    ("judged-class entropy (bits, uniform = 3.32)", "class_entropy_bits"),
    ("Fréchet distance in the judge's features to the test split (lower is better)", "frechet_distance"),
)


def to_unit_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 Fashion-MNIST images -> float ``(v + 0.5) / 256`` in ``(0, 1)``."""
    return (images.float() + 0.5) / FASHION_MNIST_NUM_LEVELS


class FashionClassifier(JudgeNetwork):
    """A small CNN for ``1 x 28 x 28`` garments in ``[0, 1]``: three conv layers, 128 features, 10 logits."""

    def __init__(self):
        super().__init__()
        self.conv_blocks = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 28 -> 14
            nn.Conv2d(32, 64, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 14 -> 7
        )
        self.feature_layer = nn.Sequential(nn.Flatten(), nn.Linear(64 * 7 * 7, FEATURE_DIM), nn.ReLU())
        self.head = nn.Linear(FEATURE_DIM, NUM_CLASSES)


def _augment(images_uint8: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Uniform dequantisation, horizontal flips, random shifts of up to one pixel and pixel noise of std 0.02."""
    batch = images_uint8.shape[0]
    images = (images_uint8.float() + torch.rand(images_uint8.shape, generator=generator)) / FASHION_MNIST_NUM_LEVELS
    flip = torch.rand(batch, generator=generator) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    shifted = shift_by_up_to_one_pixel(images, generator)
    return (shifted + 0.02 * torch.randn(shifted.shape, generator=generator)).clamp(0.0, 1.0)


def classifier_accuracy(classifier: FashionClassifier, split: str = "test") -> float:
    """Accuracy of ``classifier`` on one Fashion-MNIST split (``(v + 0.5) / 256``)."""
    images, labels = load_fashion_mnist(split)
    _, probabilities = classify(classifier, to_unit_images(images))
    return float((probabilities.argmax(dim=1) == labels).double().mean())


def train_fashion_classifier(
    seed: int = 0, epochs: int = 4, batch_size: int = 128, learning_rate: float = 2e-3, threads: int = 2
) -> FashionClassifier:
    """Train a `FashionClassifier` on the train split (Adam, cosine decay; a few minutes on 2 CPU cores).

    Deterministic for a given ``seed`` and ``threads``: weights, batch order and augmentation come from ``seed``;
    the global torch RNG and thread count are restored afterwards.
    """
    images, labels = load_fashion_mnist("train")
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        classifier = FashionClassifier()
    return fit_judge(classifier, images, labels, _augment, generator, epochs, batch_size, learning_rate, threads)


def save_fashion_classifier(classifier: FashionClassifier, folder: Path, record: Dict[str, object]) -> None:
    """Write the judge's weights (safetensors) and its training record into ``folder``."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({key: value.contiguous() for key, value in classifier.state_dict().items()}, folder / WEIGHTS_FILE)
    (folder / WEIGHTS_FILE).chmod(0o644)  # safetensors writes the file private; a shipped file is readable
    (folder / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n")


@functools.lru_cache(maxsize=1)
def default_fashion_classifier() -> FashionClassifier:
    """The shipped judge (``pretrained/fashion-judge``), loaded once per process. Do not modify it in place."""
    from safetensors.torch import load_file

    path = JUDGE_FOLDER / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"The Fashion-MNIST judge's weights are missing ({path}); reinstall the package.")
    classifier = FashionClassifier()
    classifier.load_state_dict(load_file(path))
    return classifier.eval()


@functools.lru_cache(maxsize=1)
def _test_split_features() -> torch.Tensor:
    """The shipped judge's features of the 10,000 test images, computed once per process (~4.6 s on 2 cores): an
    evaluation and its floor, or several models judged in one process, all compare against them."""
    return classify(default_fashion_classifier(), to_unit_images(load_fashion_mnist("test")[0]))[0]


def judge_record() -> Dict[str, object]:
    """How the shipped judge was trained and how accurate it is on the test split."""
    return json.loads((JUDGE_FOLDER / RECORD_FILE).read_text())


def evaluate_fashion_samples(
    samples, classifier: Optional[FashionClassifier] = None, confidence: float = 0.9
) -> Dict[str, object]:
    """Score generated ``(N, 1, 28, 28)`` garments in ``[0, 1]`` against the 10,000 test images (see
    `ncsn_pipeline.evaluation.digits_judge.judge_samples` for the figures); adds the judge's ``test_accuracy``."""
    classifier = default_fashion_classifier() if classifier is None else classifier
    samples = check_unit_images(samples, "samples", IMAGE_SIZE)
    reference = to_unit_images(load_fashion_mnist("test")[0])
    features = _test_split_features() if classifier is default_fashion_classifier() else None
    metrics = judge_samples(classifier, samples, reference, NUM_CLASSES, confidence, "test", features)
    metrics["test_accuracy"] = judge_record()["test_accuracy"] if classifier is default_fashion_classifier() else None
    return metrics


def floor_metrics(
    classifier: Optional[FashionClassifier] = None, num_samples: Optional[int] = None, confidence: float = 0.9
) -> Dict[str, object]:
    """The same figures for real *training* images (a fixed subset of ``num_samples``, seed 0) against the test
    split: what a generator that reproduces its training data would get."""
    images, _ = load_fashion_mnist("train")
    if num_samples is not None:
        num_samples = check_integer("num_samples (at most the train split's size)", num_samples, 2, len(images))
        chosen = torch.randperm(len(images), generator=torch.Generator().manual_seed(FLOOR_SUBSET_SEED))
        images = images[chosen[:num_samples]]
    return evaluate_fashion_samples(to_unit_images(images), classifier, confidence)


def requested_class_rate(
    samples, class_labels: torch.Tensor, classifier: Optional[FashionClassifier] = None, confidence: float = 0.9
) -> Dict[str, object]:
    """How often class-conditional samples are judged the class they were asked for (as for the digits)."""
    classifier = default_fashion_classifier() if classifier is None else classifier
    samples = check_unit_images(samples, "samples", IMAGE_SIZE)
    return requested_class_match(classifier, samples, class_labels, NUM_CLASSES, confidence)


def main() -> None:  # pragma: no cover - run by hand to (re)train the shipped judge
    """``python -m ncsn_pipeline.evaluation.fashion_judge``: train the judge and write it with its record."""
    started = time.perf_counter()
    classifier = train_fashion_classifier()
    seconds = time.perf_counter() - started
    record = {
        "command": "python -m ncsn_pipeline.evaluation.fashion_judge",
        "train": "Fashion-MNIST train split (60,000), 4 epochs, batch 128, Adam 2e-3 cosine, seed 0, 2 threads",
        "train_seconds": round(seconds, 1),
        "test_accuracy": classifier_accuracy(classifier, "test"),
        "train_accuracy": classifier_accuracy(classifier, "train"),
    }
    save_fashion_classifier(classifier, JUDGE_FOLDER, record)
    print(json.dumps(record, indent=2))


if __name__ == "__main__":  # pragma: no cover
    main()
