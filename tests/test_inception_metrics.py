"""Standard FID / KID (ncsn-eval --fid): torchmetrics' estimators on a stand-in for NVlabs' TorchScript Inception.

The stand-in has the official file's interface (``net(uint8 images (N, 3, H, W), return_features=True)`` -> features)
but 16 random-projection features: the real network cannot be downloaded here, and the package's own code (loading,
grey-to-RGB, 8-bit conversion, sharing features between FID and KID, the reference sets, the card rows) is the same.
"""

import os

import pytest
import torch

from ncsn_pipeline.evaluation.digits_judge import frechet_distance
from ncsn_pipeline.evaluation.inception_metrics import (
    InceptionMetricsUnavailable,
    inception_metrics,
    inception_path,
    load_inception,
    to_uint8,
)

pytest.importorskip("torchmetrics")


class _StandIn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        # Features of order 1, as Inception's pool features are (KID's cubic kernel is scale-sensitive).
        projection = torch.randn(3 * 8 * 8, 16, generator=torch.Generator().manual_seed(0)) / 8
        self.projection = torch.nn.Parameter(projection)

    def forward(self, images: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        assert images.dtype == torch.uint8 and images.shape[1] == 3  # what the real network takes
        small = torch.nn.functional.adaptive_avg_pool2d(images.float() / 255, 8)
        return small.flatten(1) @ self.projection


@pytest.fixture(scope="module")
def stand_in_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / "inception-2015-12-05.pt"
    torch.jit.save(torch.jit.script(_StandIn()), str(path))
    return path


def _images(count, seed, shift=0.0, channels=1):
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(count, channels, 28, 28, generator=generator) * 0.8 + shift).clamp(0, 1)


def test_fid_is_the_frechet_distance_of_the_features_and_kid_is_near_zero_for_one_distribution(stand_in_file):
    features = load_inception(stand_in_file)
    assert features.num_features == 16
    samples, reference = _images(300, 0), _images(300, 1)
    result = inception_metrics(features, samples, reference, batch_size=64)
    with torch.no_grad():  # the same distance computed with the package's own Fréchet code
        ours = frechet_distance(features(to_uint8(samples)), features(to_uint8(reference)))
    assert result["fid"] == pytest.approx(ours, rel=1e-4, abs=1e-6)
    # Two draws of one distribution: KID (an unbiased MMD^2) is near 0, far below that of a shifted distribution.
    shifted = inception_metrics(features, _images(300, 2, shift=0.2), reference, batch_size=64)
    assert shifted["fid"] > 10 * result["fid"] and abs(result["kid_mean"]) < 0.05 * shifted["kid_mean"]
    assert result["kid_subset_size"] == 300


def test_grey_images_are_repeated_to_rgb_and_kid_subsets_follow_the_seed(stand_in_file):
    features = load_inception(stand_in_file)
    grey = _images(5, 0)
    with torch.no_grad():
        torch.testing.assert_close(features(to_uint8(grey)), features(to_uint8(grey).expand(-1, 3, -1, -1)))
    samples, reference = _images(60, 3), _images(80, 4)
    first = inception_metrics(features, samples, reference, seed=7)
    assert inception_metrics(features, samples, reference, seed=7) == first
    assert first["kid_subset_size"] == 60
    with pytest.raises(ValueError, match="8-bit images"):
        features(grey)


def test_the_inception_file_is_named_cached_or_refused_offline(tmp_path, monkeypatch):
    with pytest.raises(InceptionMetricsUnavailable, match="is not a file"):
        inception_path(tmp_path / "missing.pt")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InceptionMetricsUnavailable, match="HF_HUB_OFFLINE=1 forbids downloading"):
        inception_path(cache_dir=tmp_path)
    (tmp_path / "inception-2015-12-05.pt").write_bytes(b"x")
    assert inception_path(cache_dir=tmp_path) == tmp_path / "inception-2015-12-05.pt"
    with pytest.raises(InceptionMetricsUnavailable, match="not a TorchScript Inception network"):
        load_inception(tmp_path / "inception-2015-12-05.pt")
    assert os.listdir(tmp_path) == ["inception-2015-12-05.pt"]
