"""Standard FID and KID of image samples: torchmetrics' estimators on the Inception network of the published FIDs.

* FID (Heusel et al. 2017): the Fréchet distance between Gaussian fits of 2048-d Inception pool features of samples
  and real images. KID (Bińkowski et al. 2018): the unbiased squared MMD with the cubic polynomial kernel on the
  same features, averaged over random subsets (mean and standard deviation); unlike FID it has no bias in N.
* The estimators are torchmetrics' ``FrechetInceptionDistance`` and ``KernelInceptionDistance`` (the ``fid`` extra):
  of the three well-kept libraries (torchmetrics, torch-fidelity, clean-fid) it is the only one whose metrics run
  without torchvision, which has no build matching a CPU-only torch from PyPI, and it takes any feature network.
* The network is NVlabs' TorchScript port of TensorFlow's ``inception-2015-12-05`` (the one behind the FIDs of
  StyleGAN2-ADA, EDM and clean-fid), read from a file the user names (``--inception``), else from the cache
  (``~/.cache/ncsn_pipeline``), else downloaded there on first use from `INCEPTION_URL` (never when
  ``HF_HUB_OFFLINE=1``). It is a TorchScript file: loading it runs its code, so use the official file.

Grey images are repeated to three channels and every image goes in as 8-bit (the network resizes to 299 x 299
itself), as the reference implementations do for MNIST-like data.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch
from torch import nn

INCEPTION_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"
INCEPTION_FILE = "inception-2015-12-05.pt"
DEFAULT_CACHE = Path.home() / ".cache" / "ncsn_pipeline"
KID_SUBSETS = 100  # torchmetrics' default number of subsets
KID_MAX_SUBSET_SIZE = 1000  # the subset size of the KID papers (Bińkowski et al. 2018, clean-fid)


class InceptionMetricsUnavailable(ValueError):
    """FID / KID cannot run: the ``fid`` extra or the Inception file is missing; the message says what to do."""


class InceptionFeatures(nn.Module):
    """torchmetrics' feature network: 8-bit images ``(N, C, H, W)`` (C = 1 or 3) -> Inception pool features.

    Args:
        network: NVlabs' TorchScript Inception, called as ``network(images_uint8_rgb, return_features=True)``.
    """

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network
        with torch.no_grad():
            self.num_features = int(self(torch.zeros(1, 3, 32, 32, dtype=torch.uint8)).shape[-1])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(
                f"Inception features take 8-bit images (N, 1 or 3, H, W), got {images.dtype} {tuple(images.shape)}."
            )
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        return self.network(images.contiguous(), return_features=True).float()


def inception_path(path: Optional[Union[str, os.PathLike]] = None, cache_dir: Optional[Path] = None) -> Path:
    """The Inception file: ``path`` if given (it must exist), else the cached copy, downloaded on first use.

    Raises:
        InceptionMetricsUnavailable: for a missing ``path``, or no cached copy and no way to download one.
    """
    if path is not None:
        if not Path(path).is_file():
            raise InceptionMetricsUnavailable(
                f"--inception {os.fspath(path)!r} is not a file; pass NVlabs' {INCEPTION_FILE} ({INCEPTION_URL})."
            )
        return Path(path)
    cached = Path(cache_dir or DEFAULT_CACHE) / INCEPTION_FILE
    if cached.is_file():
        return cached
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        raise InceptionMetricsUnavailable(
            f"FID / KID need the Inception network, which is not in {cached.parent} and HF_HUB_OFFLINE=1 forbids "
            f"downloading it: download {INCEPTION_URL} on a machine with internet and pass --inception FILE."
        )
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_name(f".{INCEPTION_FILE}.{os.getpid()}.partial")
    try:
        torch.hub.download_url_to_file(INCEPTION_URL, os.fspath(partial), progress=True)
        os.replace(partial, cached)  # a complete file or none: an interrupted download leaves no cached copy
    except Exception as error:
        raise InceptionMetricsUnavailable(
            f"Could not download the Inception network from {INCEPTION_URL} ({error}); download it yourself and pass "
            "--inception FILE."
        ) from error
    finally:
        partial.unlink(missing_ok=True)
    return cached


def load_inception(path: Optional[Union[str, os.PathLike]] = None, cache_dir: Optional[Path] = None):
    """`InceptionFeatures` around the TorchScript Inception file (`inception_path`); loading runs its code."""
    file = inception_path(path, cache_dir)
    try:
        network = torch.jit.load(os.fspath(file), map_location="cpu").eval()
    except RuntimeError as error:
        raise InceptionMetricsUnavailable(f"{file} is not a TorchScript Inception network: {error}") from error
    return InceptionFeatures(network)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] (floats) -> 8-bit, rounded as PIL does when it saves them."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)


def inception_metrics(
    features: InceptionFeatures,
    samples: torch.Tensor,
    reference: torch.Tensor,
    batch_size: int = 100,
    seed: int = 0,
) -> Dict[str, Any]:
    """FID and KID of ``samples`` against ``reference`` (both floats in [0, 1], ``(N, C, H, W)``), with torchmetrics.

    KID uses subsets of ``min(1000, N_samples, N_reference)`` examples; its subsets are drawn with ``seed``.

    Returns:
        ``{"fid", "kid_mean", "kid_std", "num_samples", "num_reference", "kid_subset_size"}``.
    """
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance
    except ImportError as error:
        raise InceptionMetricsUnavailable(
            "FID / KID need torchmetrics: pip install 'ncsn-pipeline[fid]' (or pip install torchmetrics)."
        ) from error
    if len(samples) < 2 or len(reference) < 2:
        raise ValueError(f"FID / KID need at least 2 samples and 2 reference images, got {len(samples)} and "
                         f"{len(reference)}.")  # fmt: skip
    subset_size = min(KID_MAX_SUBSET_SIZE, len(samples), len(reference))
    # The metrics are given features, computed once per image and shared by both (an Inception pass is the cost).
    fid = FrechetInceptionDistance(feature=_GivenFeatures(features.num_features), reset_real_features=False)
    with warnings.catch_warnings():  # "KID keeps every feature in memory": 2 x N x 2048 floats, known and small
        warnings.simplefilter("ignore", UserWarning)
        kid = KernelInceptionDistance(feature=_GivenFeatures(features.num_features), subsets=KID_SUBSETS,
                                      subset_size=subset_size)  # fmt: skip
    with torch.no_grad():
        for images, real in ((reference, True), (samples, False)):
            for start in range(0, len(images), batch_size):
                batch_features = features(to_uint8(images[start : start + batch_size].float()))
                fid.update(batch_features, real=real)
                kid.update(batch_features, real=real)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # torchmetrics draws KID's subsets with torch's global generator
    try:
        kid_mean, kid_std = kid.compute()
    finally:
        torch.random.set_rng_state(state)
    return {
        "fid": float(fid.compute()),
        "kid_mean": float(kid_mean),
        "kid_std": float(kid_std),
        "num_samples": len(samples),
        "num_reference": len(reference),
        "kid_subset_size": subset_size,
    }


class _GivenFeatures(nn.Module):
    """The "network" of the torchmetrics metrics here: features in, the same features out."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features
