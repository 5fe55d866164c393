"""Offline sample-quality evaluation for generated 16x16 digits: a tiny "FID + classifier" for digits.

A small CNN (`DigitClassifier`) is trained on the digits *train* split (`digits_data`) at the
resolution the score model is trained at: each 8x8 pixel nearest-upsampled to a 2x2 block, grey level
``v`` in 0..16 mapped into ``[0, 1]`` with dequantisation noise, ``(v + u) / 17``, as the training loop does.
Generated samples are then scored with it:

* ``confident_rate``: the fraction of samples the classifier is sure about (max softmax probability
  >= ``confidence``), a proxy for "looks like some digit";
* ``class_coverage``, ``class_histogram`` and ``class_entropy_bits``: which digits the samples are
  (mode collapse shows as low coverage and entropy; ``log2(10) = 3.32`` bits is uniform);
* ``frechet_distance``: the Fréchet distance between Gaussian fits of the classifier's penultimate
  features of the samples and of the 359 held-out digits (FID, Heusel et al. 2017, with this
  classifier in place of Inception).

Every number is reported next to its *floor* (`floor_metrics`): the same metrics for real training
digits, i.e. what a perfect generator that reproduces the training data would get. Real digits (reference
and floor) are mapped to ``[0, 1]`` as ``(v + 0.5) / 17``, the centre of the interval ``[v/17, (v+1)/17)``
that the training loop's default uniform dequantisation spreads grey level ``v`` over, and within ``1/34``
of the non-dequantised ``v / 16``: against this reference the floor barely depends on which of the three
forms the real digits take (Fréchet distance 9.3-11.0 for the full train split), so it suits models trained
with or without dequantisation. (Against a ``v / 16`` reference, dequantised digits scored 60% worse.)

The Fréchet distance of a finite sample is biased upward, and the bias grows as the number of
samples ``N`` shrinks (the feature covariance of few samples is noisy). **Only compare Fréchet
distances computed with the same N**; the CLI computes the floor with the same N as the samples.

Example::

    ncsn-digits-eval --pipeline path/to/pipeline --num_samples 500 --output metrics.json

>>> classifier = train_digit_classifier(seed=0)  # doctest: +SKIP
>>> metrics = evaluate_digit_samples(generated_images, classifier)  # doctest: +SKIP
>>> floor = floor_metrics(classifier, num_samples=len(generated_images))  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import math
from typing import Dict, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_integer
from ..data.digits import DIGITS_NUM_LEVELS, load_digits_split

IMAGE_SIZE = 16  # the score model's resolution: 8x8 digits, each pixel a 2x2 block
NUM_CLASSES = 10
FEATURE_DIM = 64
# Samples are clamped to [0, 1]; values beyond this margin mean the caller passed data in another range
# (e.g. [-1, 1] or [0, 255]), which clamping would silently destroy.
RANGE_TOLERANCE = 0.1
FLOOR_SUBSET_SEED = 0
_EVAL_BATCH_SIZE = 512


def upsample_digits(images: torch.Tensor, dequantize: bool = True) -> torch.Tensor:
    """Map uint8 8x8 digits (values 0..16) to float 16x16 images in ``[0, 1]``, as the score model sees them.

    Args:
        images (`torch.Tensor`): Shape ``(N, 1, 8, 8)``, integer values 0..16.
        dequantize (`bool`, defaults to `True`): Map grey level ``v`` to ``(v + 0.5) / 17``, the centre of the
            training loop's dequantisation interval (the form all real digits take in this evaluation);
            `False` gives ``v / 16``, the training data without dequantisation.

    Returns:
        `torch.Tensor`: float32, shape ``(N, 1, 16, 16)``, each 8x8 pixel repeated in a 2x2 block.

    Example:
        >>> upsample_digits(torch.tensor([[[[0, 16], [8, 4]]]], dtype=torch.uint8), dequantize=False)[0, 0]
        tensor([[0.0000, 0.0000, 1.0000, 1.0000],
                [0.0000, 0.0000, 1.0000, 1.0000],
                [0.5000, 0.5000, 0.2500, 0.2500],
                [0.5000, 0.5000, 0.2500, 0.2500]])
        >>> upsample_digits(torch.tensor([[[[0, 16]]]], dtype=torch.uint8))[0, 0, 0] * 34  # (2 v + 1) / 34
        tensor([ 1.,  1., 33., 33.])
    """
    if dequantize:
        scaled = (images.float() + 0.5) / DIGITS_NUM_LEVELS
    else:
        scaled = images.float() / (DIGITS_NUM_LEVELS - 1)
    return scaled.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)


class JudgeNetwork(nn.Module):
    """What every judge is: ``conv_blocks`` -> ``feature_layer`` (the penultimate features of the Fréchet distance)
    -> ``head`` (class logits); subclasses build the three."""

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate (post-ReLU) activations, shape ``(N, feature dimension)``."""
        return self.feature_layer(self.conv_blocks(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits, shape ``(N, classes)``."""
        return self.head(self.features(x))


class DigitClassifier(JudgeNetwork):
    """A small CNN for ``1 x 16 x 16`` digits in ``[0, 1]``: two conv blocks, a 64-unit feature layer, 10 logits."""

    def __init__(self):
        super().__init__()
        self.conv_blocks = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 16x16 -> 8x8
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 8x8 -> 4x4
        )
        self.feature_layer = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, FEATURE_DIM), nn.ReLU())
        self.head = nn.Linear(FEATURE_DIM, NUM_CLASSES)


def shift_by_up_to_one_pixel(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``(N, 1, H, W)`` images each shifted by -1, 0 or +1 pixels along each axis (zeros enter at the edges)."""
    batch, _, height, width = images.shape
    padded = F.pad(images, (1, 1, 1, 1))
    shifts = torch.randint(0, 3, (batch, 2), generator=generator)
    rows = torch.arange(height)[None, :] + shifts[:, :1]
    cols = torch.arange(width)[None, :] + shifts[:, 1:]
    return padded[torch.arange(batch)[:, None, None], 0, rows[:, :, None], cols[:, None, :]][:, None]


def fit_judge(
    classifier: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    augment,
    generator: torch.Generator,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    threads: int,
    device: str = "cpu",
) -> nn.Module:
    """Train a judge with Adam (cosine-decayed to 0) on ``augment(images[batch], generator)``; the batch order and the
    augmentation come from ``generator``, torch's thread count is ``threads`` during training and restored after."""
    classifier.to(device)
    steps_per_epoch = math.ceil(len(labels) / batch_size)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        classifier.train()
        for _ in range(epochs):
            order = torch.randperm(len(labels), generator=generator)
            for start in range(0, len(labels), batch_size):
                chosen = order[start : start + batch_size]
                inputs = augment(images[chosen], generator).to(device)
                loss = F.cross_entropy(classifier(inputs), labels[chosen].to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
    finally:
        torch.set_num_threads(previous_threads)
    return classifier.eval()


def _augment(images_uint8: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Training augmentation: uniform dequantisation and random shifts of up to one 16x16 pixel.

    Generated samples are continuous and need not sit exactly on the 2x2 grid, so the classifier is
    trained on ``(v + u) / 17`` (``u ~ U[0, 1)``) instead of the 17 exact levels, shifted by -1, 0 or +1
    pixels along each axis, with a little Gaussian pixel noise like a sampler's last noise level leaves.
    """
    dequantised = (images_uint8.float() + torch.rand(images_uint8.shape, generator=generator)) / DIGITS_NUM_LEVELS
    images = dequantised.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
    shifted = shift_by_up_to_one_pixel(images, generator)
    noise = 0.02 * torch.randn(shifted.shape, generator=generator)
    return (shifted + noise).clamp(0.0, 1.0)


@torch.no_grad()
def classify(classifier: nn.Module, images: torch.Tensor):
    """Features (float64, CPU) and softmax probabilities (float64, CPU) of ``images``, in batches, for any judge
    with ``features(x)`` and ``head(features)`` (the digits and the Fashion-MNIST judges)."""
    classifier.eval()
    device = next(classifier.parameters()).device
    features, probabilities = [], []
    for start in range(0, images.shape[0], _EVAL_BATCH_SIZE):
        batch = images[start : start + _EVAL_BATCH_SIZE].to(device=device, dtype=torch.float32)
        batch_features = classifier.features(batch)
        features.append(batch_features.double().cpu())
        probabilities.append(classifier.head(batch_features).double().softmax(dim=1).cpu())
    return torch.cat(features), torch.cat(probabilities)


def classifier_accuracy(classifier: DigitClassifier, split: str = "held_out") -> float:
    """Accuracy of ``classifier`` on one digits split (upsampled to 16x16, ``(v + 0.5) / 17``).

    Args:
        classifier (`DigitClassifier`): The classifier.
        split (`str`, defaults to ``"held_out"``): ``"train"`` or ``"held_out"``.

    Returns:
        `float`: The fraction of correctly classified images.
    """
    images, labels = load_digits_split(split)
    _, probabilities = classify(classifier, upsample_digits(images))
    return float((probabilities.argmax(dim=1) == labels).double().mean())


def train_digit_classifier(
    seed: int = 0, epochs: int = 20, batch_size: int = 64, learning_rate: float = 3e-3, device: str = "cpu"
) -> DigitClassifier:
    """Train a `DigitClassifier` on the digits train split (a few seconds on one CPU core).

    Deterministic on CPU: the initial weights, the batch order and the augmentation all come from
    ``seed``; the global torch RNG is left as it was, and training runs on one thread (restored
    afterwards) so that the thread count cannot change the floating-point reductions.

    Args:
        seed (`int`, defaults to 0): Seeds the initial weights, batch order and augmentation.
        epochs (`int`, defaults to 20): Passes over the 1,438 training images.
        batch_size (`int`, defaults to 64): Mini-batch size.
        learning_rate (`float`, defaults to 3e-3): Adam's step size (cosine-decayed to 0).
        device (`str`, defaults to ``"cpu"``): Where to train; the returned model stays there.

    Returns:
        `DigitClassifier`: The trained classifier, in eval mode.
    """
    images, labels = load_digits_split("train")
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # seed the weight initialisation without touching global RNG
        torch.manual_seed(seed)
        classifier = DigitClassifier()
    return fit_judge(classifier, images, labels, _augment, generator, epochs, batch_size, learning_rate, 1, device)


@functools.lru_cache(maxsize=1)
def default_digit_classifier() -> DigitClassifier:
    """The standard evaluator, ``train_digit_classifier(seed=0)``, trained once per process and cached.

    Metrics are only comparable when computed with the same classifier; use this one unless there is
    a reason not to. Do not modify the returned model in place.
    """
    return train_digit_classifier(seed=0)


def _covariance(features: torch.Tensor) -> torch.Tensor:
    centred = features - features.mean(dim=0)
    return centred.T @ centred / (features.shape[0] - 1)


def _psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix; round-off negative eigenvalues become 0."""
    eigenvalues, eigenvectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (eigenvectors * eigenvalues.clamp(min=0).sqrt()) @ eigenvectors.T


def gaussian_frechet_distance(
    mean_a: torch.Tensor, covariance_a: torch.Tensor, mean_b: torch.Tensor, covariance_b: torch.Tensor
) -> float:
    """Fréchet (2-Wasserstein squared) distance between ``N(mean_a, covariance_a)`` and ``N(mean_b, covariance_b)``.

    ``|mean_a - mean_b|^2 + tr(A) + tr(B) - 2 tr((A B)^(1/2))``, where ``tr((A B)^(1/2))`` is computed as
    ``tr((A^(1/2) B A^(1/2))^(1/2))``: that matrix is symmetric positive semi-definite, so a symmetric
    eigen-decomposition gives its square root with real, non-negative eigenvalues even when ``A`` or ``B``
    is singular (fewer samples than feature dimensions, or dead ReLU units) -- no imaginary parts and no
    diagonal offset as with ``scipy.linalg.sqrtm(A @ B)``. Computed in float64.

    Args:
        mean_a, covariance_a, mean_b, covariance_b (`torch.Tensor`): Means of shape ``(D,)`` and
            covariances of shape ``(D, D)``.

    Returns:
        `float`: The distance (>= 0 up to round-off; tiny negative values are clipped to 0).
    """
    mean_a, mean_b = mean_a.double(), mean_b.double()
    covariance_a, covariance_b = covariance_a.double(), covariance_b.double()
    sqrt_a = _psd_sqrt(covariance_a)
    middle = sqrt_a @ covariance_b @ sqrt_a
    trace_sqrt_product = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    distance = (mean_a - mean_b).square().sum() + covariance_a.trace() + covariance_b.trace() - 2 * trace_sqrt_product
    return max(float(distance), 0.0)


def frechet_distance(features_a, features_b) -> float:
    """Fréchet distance between Gaussian fits (mean, unbiased covariance) of two feature sets.

    Args:
        features_a, features_b (`torch.Tensor` or array): Shapes ``(N_a, D)`` and ``(N_b, D)``, at least
            2 rows each.

    Returns:
        `float`: The distance. Biased upward for small ``N``: compare only values computed with the same
        numbers of samples.

    Example:
        >>> points = torch.randn(100, 4, generator=torch.Generator().manual_seed(0))
        >>> round(frechet_distance(points, points), 6), round(frechet_distance(points, points + 1.0), 6)
        (0.0, 4.0)
    """
    features_a = torch.as_tensor(features_a, dtype=torch.float64)
    features_b = torch.as_tensor(features_b, dtype=torch.float64)
    for name, features in (("features_a", features_a), ("features_b", features_b)):
        if features.ndim != 2 or features.shape[0] < 2:
            raise ValueError(f"{name} must have shape (N, D) with N >= 2, got {tuple(features.shape)}.")
        if not torch.isfinite(features).all():
            raise ValueError(f"{name} contains NaN or infinite values.")
    if features_a.shape[1] != features_b.shape[1]:
        raise ValueError(f"feature dimensions differ: {features_a.shape[1]} and {features_b.shape[1]}.")
    return gaussian_frechet_distance(
        features_a.mean(dim=0), _covariance(features_a), features_b.mean(dim=0), _covariance(features_b)
    )


def check_unit_images(images, name: str, size: int = IMAGE_SIZE) -> torch.Tensor:
    """Validate ``(N, 1, size, size)`` images in ``[0, 1]`` and return them clamped, as float32."""
    images = torch.as_tensor(images)
    if not images.is_floating_point():
        raise ValueError(f"{name} must be a float tensor of images in [0, 1], got dtype {images.dtype}.")
    if images.ndim != 4 or tuple(images.shape[1:]) != (1, size, size) or images.shape[0] < 2:
        raise ValueError(f"{name} must have shape (N, 1, {size}, {size}) with N >= 2, got {tuple(images.shape)}.")
    images = images.detach().float().cpu()
    if not torch.isfinite(images).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    low, high = float(images.min()), float(images.max())
    if low < -RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        raise ValueError(
            f"{name} must lie in [0, 1] (values outside it by more than {RANGE_TOLERANCE} are refused), got "
            f"values in [{low:.3g}, {high:.3g}]; rescale data in [-1, 1] or [0, 255] first."
        )
    return images.clamp(0.0, 1.0)


def judge_samples(
    classifier: nn.Module,
    samples: torch.Tensor,
    reference_images: torch.Tensor,
    num_classes: int,
    confidence: float,
    reference_name: str,
    reference_features: Optional[torch.Tensor] = None,
) -> Dict[str, object]:
    """The judge's figures for checked ``samples`` against real ``reference_images`` (any judge; see
    `evaluate_digit_samples` for the keys): confident rate, class coverage, histogram and entropy, Fréchet distance
    in the judge's features. ``reference_features``: this judge's features of ``reference_images`` where the caller
    has them already (`classify`), so that a large reference is not classified again for every evaluation."""
    confidence = float(confidence)
    if not 0.0 < confidence <= 1.0:
        raise ValueError(f"confidence must be in (0, 1], got {confidence!r}.")
    sample_features, probabilities = classify(classifier, samples)
    if reference_features is None:
        reference_features, _ = classify(classifier, reference_images)
    elif reference_features.shape[0] != reference_images.shape[0]:
        raise ValueError(
            f"reference_features holds {reference_features.shape[0]} rows for {reference_images.shape[0]} reference "
            "images; pass the judge's features of exactly these images (or none)."
        )
    max_probability, predicted = probabilities.max(dim=1)
    is_confident = max_probability >= confidence
    histogram = torch.bincount(predicted, minlength=num_classes)
    class_share = histogram.double() / histogram.sum()
    nonzero_share = class_share[class_share > 0]
    entropy_bits = float(-(nonzero_share * nonzero_share.log2()).sum())
    return {
        "num_samples": int(samples.shape[0]),
        "confidence": confidence,
        "confident_rate": float(is_confident.double().mean()),
        "class_coverage": int(predicted[is_confident].unique().numel()),
        "class_histogram": [int(count) for count in histogram],
        "class_entropy_bits": max(0.0, entropy_bits),  # not -0.0 for a single class
        "frechet_distance": frechet_distance(sample_features, reference_features),
        "reference": reference_name,
        "num_reference": int(reference_images.shape[0]),
    }


def requested_class_match(
    classifier: nn.Module, samples: torch.Tensor, class_labels, num_classes: int, confidence: float
) -> Dict[str, object]:
    """How often checked class-conditional ``samples`` are judged the class asked for (any judge; see
    `requested_class_rate` for the keys)."""
    labels = torch.as_tensor(class_labels).long().cpu()
    if labels.shape != (samples.shape[0],):
        count = samples.shape[0]
        raise ValueError(f"class_labels must hold one class per sample ({count}), got shape {tuple(labels.shape)}.")
    _, probabilities = classify(classifier, samples)
    max_probability, predicted = probabilities.max(dim=1)
    match = predicted == labels
    per_class = [
        float(match[labels == index].double().mean()) if (labels == index).any() else None
        for index in range(num_classes)
    ]
    return {
        "num_samples": int(samples.shape[0]),
        "match_rate": float(match.double().mean()),
        "confident_match_rate": float((match & (max_probability >= confidence)).double().mean()),
        "per_class_match_rate": per_class,
    }


def evaluate_digit_samples(
    samples,
    classifier: Optional[DigitClassifier] = None,
    reference: Union[str, torch.Tensor] = "held_out",
    confidence: float = 0.9,
) -> Dict[str, object]:
    """Score generated 16x16 digits with a digit classifier and a Fréchet distance to real digits.

    Args:
        samples (`torch.Tensor`): Float images of shape ``(N, 1, 16, 16)``, ``N >= 2``, in ``[0, 1]`` (clamped
            to it; values further than 0.1 outside, NaN or infinity raise a `ValueError`).
        classifier (`DigitClassifier`, *optional*): Defaults to `default_digit_classifier()`.
        reference (`str` or `torch.Tensor`, defaults to ``"held_out"``): The real digits the Fréchet distance
            is measured to: ``"held_out"`` (the 359 held-out digits, never seen by the classifier nor by
            a model trained on the train split) or a tensor of images like ``samples``.
        confidence (`float`, defaults to 0.9): The max softmax probability that makes a prediction confident.

    Returns:
        `Dict[str, object]`: JSON-serialisable ``num_samples``, ``confidence``, ``confident_rate``,
        ``class_coverage`` (classes predicted for at least one confident sample), ``class_histogram``
        (predicted-class counts over all samples), ``class_entropy_bits`` (entropy of that histogram;
        3.32 is uniform), ``frechet_distance`` (biased upward for small ``N``: compare only at the same
        ``N``), ``reference``, ``num_reference`` and ``held_out_accuracy`` (of the classifier).
    """
    samples = check_unit_images(samples, "samples")
    if isinstance(reference, str):
        if reference != "held_out":
            raise ValueError(f"reference must be 'held_out' or a tensor of images, got {reference!r}.")
        reference_images = upsample_digits(load_digits_split("held_out")[0])
        reference_name = "held_out"
    else:
        reference_images = check_unit_images(reference, "reference")
        reference_name = "custom"
    classifier = default_digit_classifier() if classifier is None else classifier
    metrics = judge_samples(classifier, samples, reference_images, NUM_CLASSES, confidence, reference_name)
    metrics["held_out_accuracy"] = classifier_accuracy(classifier, "held_out")
    return metrics


def requested_class_rate(
    samples, class_labels: torch.Tensor, classifier: Optional[DigitClassifier] = None, confidence: float = 0.9
) -> Dict[str, object]:
    """How often class-conditional samples are classified as the class they were asked for.

    Args:
        samples (`torch.Tensor`): Images as for `evaluate_digit_samples`, ``(N, 1, 16, 16)`` in ``[0, 1]``.
        class_labels (`torch.Tensor`): The requested digit of each sample, ``(N,)``.
        classifier (`DigitClassifier`, *optional*): Defaults to `default_digit_classifier()`.
        confidence (`float`, defaults to 0.9): The max softmax probability that makes a prediction confident.

    Returns:
        `Dict[str, object]`: ``match_rate`` (predicted class = requested), ``confident_match_rate`` (and with
        probability >= ``confidence``), ``per_class_match_rate`` (one per requested digit, `None` if not asked
        for) and ``num_samples``.
    """
    samples = check_unit_images(samples, "samples")
    classifier = default_digit_classifier() if classifier is None else classifier
    return requested_class_match(classifier, samples, class_labels, NUM_CLASSES, confidence)


def floor_metrics(
    classifier: Optional[DigitClassifier] = None, num_samples: Optional[int] = None, confidence: float = 0.9
) -> Dict[str, object]:
    """The metrics of `evaluate_digit_samples` for real training digits: the best a generator can expect.

    The training digits, upsampled to 16x16 as ``(v + 0.5) / 17`` like the held-out reference (see the module
    docstring for why), are scored against the held-out reference: the floor is what a perfect generator that
    reproduces its training data would get. Its samples would carry the sampler's last, tiny noise level on
    top; that hardly matters (Gaussian noise of std 0.01 moved the full-split floor's Fréchet distance by
    under 1%), since the classifier is trained with dequantisation and pixel noise. Because the classifier was
    also trained on these digits, its confidence on them is, if anything, a little higher than on unseen real
    digits.

    Args:
        classifier (`DigitClassifier`, *optional*): Defaults to `default_digit_classifier()`.
        num_samples (`int`, *optional*): Score a subset of this size (2..1438) of the train split, chosen by
            a fixed permutation (seed 0); pass the number of generated samples so that the Fréchet
            distances are comparable. Defaults to the whole train split (1,438 digits).
        confidence (`float`, defaults to 0.9): As in `evaluate_digit_samples`.

    Returns:
        `Dict[str, object]`: The same keys as `evaluate_digit_samples`.
    """
    images, _ = load_digits_split("train")
    if num_samples is not None:
        num_samples = check_integer("num_samples (at most the train split's size)", num_samples, 2, len(images))
        chosen = torch.randperm(len(images), generator=torch.Generator().manual_seed(FLOOR_SUBSET_SEED))
        images = images[chosen[:num_samples]]
    return evaluate_digit_samples(upsample_digits(images), classifier, reference="held_out", confidence=confidence)


def resize_to_digits(images: torch.Tensor) -> torch.Tensor:
    """Bring ``(N, 1, H, W)`` images to ``16 x 16``: nearest neighbour to enlarge, area averaging to shrink.

    Nearest neighbour turns 8x8 samples into exactly the 2x2 blocks the classifier knows; area averaging
    (not nearest) shrinks larger samples without aliasing.
    """
    if images.shape[-2:] == (IMAGE_SIZE, IMAGE_SIZE):
        return images
    enlarge = images.shape[-2] < IMAGE_SIZE and images.shape[-1] < IMAGE_SIZE
    return F.interpolate(images.float(), size=(IMAGE_SIZE, IMAGE_SIZE), mode="nearest" if enlarge else "area")
