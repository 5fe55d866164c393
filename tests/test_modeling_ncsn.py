"""Tests for the NCSNv2 score network `NCSNScoreModel`."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import math

import pytest
import torch
from diffusers.models.unets.unet_2d import UNet2DOutput

from ncsn_pipeline.modeling_ncsn import NCSNScoreModel

# Published size of the NCSNv2 CIFAR-10 network (Song & Ermon 2020), in_channels=3, ngf=128.
PAPER_PARAMETER_COUNT = 29_694_083


def _tiny_model(in_channels: int = 3, ngf: int = 8) -> NCSNScoreModel:
    torch.manual_seed(0)
    return NCSNScoreModel(in_channels=in_channels, sample_size=8, ngf=ngf).eval()


@pytest.fixture(scope="module")
def model() -> NCSNScoreModel:
    return _tiny_model()


def _noisy(batch: int = 2, channels: int = 3, height: int = 8, width: int = 8, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, height, width, generator=generator)


def test_paper_configuration_has_published_parameter_count():
    paper_model = NCSNScoreModel(in_channels=3, sample_size=32, ngf=128)
    assert sum(p.numel() for p in paper_model.parameters()) == PAPER_PARAMETER_COUNT
    assert paper_model.num_parameters() == PAPER_PARAMETER_COUNT
    assert paper_model.sample_shape == (3, 32, 32)


@pytest.mark.parametrize(
    ("channels", "height", "width"),
    [(1, 8, 8), (3, 8, 8), (1, 16, 12), (3, 16, 12), (3, 4, 6)],
)
def test_output_shape_and_dtype(channels, height, width):
    net = _tiny_model(in_channels=channels)
    sample = _noisy(channels=channels, height=height, width=width)
    with torch.no_grad():
        output = net(sample, 0.5)
    assert isinstance(output, UNet2DOutput)
    assert output.sample.shape == sample.shape
    assert output.sample.dtype == sample.dtype
    assert torch.isfinite(output.sample).all()


def test_stage_resolutions_and_widths():
    # Only res2 downsamples; the dilated "down" blocks of res3/res4 keep the resolution.
    ngf = 4
    net = NCSNScoreModel(in_channels=3, sample_size=8, ngf=ngf).eval()
    shapes = {}
    for name in ("res1", "res2", "res3", "res4", "refine1", "refine2", "refine3", "refine4"):
        stage = getattr(net, name)
        last = stage[-1] if isinstance(stage, torch.nn.ModuleList) else stage
        last.register_forward_hook(lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape[1:])))
    with torch.no_grad():
        net(_noisy(batch=1, height=16, width=12), 1.0)
    full, half = (16, 12), (8, 6)
    assert shapes == {
        "res1": (ngf, *full),
        "res2": (2 * ngf, *half),
        "res3": (2 * ngf, *half),
        "res4": (2 * ngf, *half),
        "refine1": (2 * ngf, *half),
        "refine2": (2 * ngf, *half),
        "refine3": (ngf, *half),
        "refine4": (ngf, *full),
    }


def test_parameter_layout_follows_reference():
    ngf = 4
    params = {name: tuple(p.shape) for name, p in NCSNScoreModel(sample_size=8, ngf=ngf).named_parameters()}
    # Downsampling block: 1x1 conv + mean-pool shortcut; dilated "down" blocks: dilated 3x3 conv shortcut.
    assert params["res2.0.shortcut.conv.weight"] == (2 * ngf, ngf, 1, 1)
    assert params["res3.0.shortcut.weight"] == (2 * ngf, 2 * ngf, 3, 3)
    assert params["res4.0.shortcut.weight"] == (2 * ngf, 2 * ngf, 3, 3)
    assert not any(".shortcut." in name for name in params if name.startswith(("res1.", "res3.1", "res4.1")))
    # RCU and CRP convs are bias-free; MSF convs have a bias; the deepest refine block has no MSF.
    assert not any(name.endswith(".bias") and (".blocks." in name or ".crp." in name) for name in params)
    assert params["refine2.msf.convs.1.bias"] == (2 * ngf,)
    assert not any(name.startswith("refine1.msf") for name in params)
    assert sum(name.startswith("refine4.output_convs.") for name in params) == 3 * 2
    assert {params[f"normalizer.{p}"] for p in ("alpha", "gamma", "beta")} == {(ngf,)}


def test_return_dict_false_gives_a_one_tuple(model):
    sample = _noisy()
    with torch.no_grad():
        as_tuple = model(sample, 0.5, return_dict=False)
        as_output = model(sample, 0.5).sample
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 1
    torch.testing.assert_close(as_tuple[0], as_output, rtol=0, atol=0)


def test_output_dtype_follows_sample_not_model(model):
    sample = _noisy().double()
    with torch.no_grad():
        score = model(sample, 0.5).sample
        reference = model(sample.float(), 0.5).sample
    assert score.dtype == torch.float64
    torch.testing.assert_close(score, reference.double())


def test_sample_shape_property():
    net = NCSNScoreModel(in_channels=1, sample_size=12, ngf=4)
    assert net.sample_shape == (1, 12, 12)


def test_score_scales_as_one_over_sigma(model):
    sample = _noisy()
    sigma = 0.37
    with torch.no_grad():
        score = model(sample, sigma).sample
        score_doubled_sigma = model(sample, 2 * sigma).sample
    assert score.abs().max() > 0
    torch.testing.assert_close(score_doubled_sigma, score / 2, rtol=1e-6, atol=1e-6)


def test_scalar_and_per_example_sigma_agree(model):
    sample = _noisy(batch=3)
    sigma = 0.7
    with torch.no_grad():
        from_float = model(sample, sigma).sample
        from_0d = model(sample, torch.tensor(sigma)).sample
        from_batch = model(sample, torch.full((3,), sigma)).sample
        from_float64 = model(sample, torch.full((3,), sigma, dtype=torch.float64)).sample
    torch.testing.assert_close(from_0d, from_float, rtol=0, atol=0)
    torch.testing.assert_close(from_batch, from_float, rtol=0, atol=0)
    torch.testing.assert_close(from_float64, from_float, rtol=0, atol=0)


def test_per_example_sigma_is_applied_to_its_own_example(model):
    sample = _noisy(batch=2)
    sigmas = torch.tensor([0.1, 3.0])
    with torch.no_grad():
        batched = model(sample, sigmas).sample
        one_by_one = torch.cat([model(sample[i : i + 1], sigmas[i]).sample for i in range(2)])
    torch.testing.assert_close(batched, one_by_one, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("sample", "match"),
    [
        (torch.zeros(3, 8, 8), r"4-D .* got shape \(3, 8, 8\)"),
        (torch.zeros(1, 2, 8, 8), r"2 channels, expected in_channels=3"),
        (torch.zeros(1, 3, 7, 8), r"even and >= 4, got 7x8"),
        (torch.zeros(1, 3, 8, 5), r"even and >= 4, got 8x5"),
        (torch.zeros(1, 3, 2, 2), r"even and >= 4, got 2x2"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.int64), r"floating point dtype, got torch.int64"),
    ],
)
def test_bad_sample_raises(model, sample, match):
    with pytest.raises(ValueError, match=match):
        model(sample, 1.0)


@pytest.mark.parametrize(
    ("timestep", "match"),
    [
        (torch.ones(3), r"scalar or have shape \(2,\) .* got shape \(3,\)"),
        (torch.ones(2, 1), r"scalar or have shape \(2,\) .* got shape \(2, 1\)"),
        (0.0, r"finite and > 0 .* got 0\.0"),
        (-1.5, r"finite and > 0 .* got -1\.5"),
        (math.nan, r"finite and > 0 .* got nan"),
        (math.inf, r"finite and > 0 .* got inf"),
        (torch.tensor(-2.0), r"finite and > 0 .* got -2\.0"),
        (torch.tensor([1.0, -3.0]), r"finite and > 0 .* got \[-3\.0\]"),
        (1e-50, r"finite and > 0 .* got 1e-50"),  # underflows to 0 in the model's float32
    ],
)
def test_bad_timestep_raises(model, timestep, match):
    with pytest.raises(ValueError, match=match):
        model(_noisy(batch=2), timestep)


def test_wrong_argument_types_raise_type_error(model):
    with pytest.raises(TypeError, match="list"):
        model([[0.0]], 1.0)
    with pytest.raises(TypeError, match="str"):
        model(_noisy(), "1.0")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"in_channels": 0}, r"in_channels must be a whole number from 1 to 16, got 0"),
        ({"in_channels": 1.5}, r"in_channels must be a whole number from 1 to 16, got 1\.5"),
        ({"sample_size": 7}, r"sample_size must be even .* got 7"),
        ({"sample_size": 2}, r"sample_size must be a whole number from 4 to 1024, got 2"),
        ({"ngf": 1}, r"ngf must be a whole number from 2 to 256, got 1"),
    ],
)
def test_bad_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NCSNScoreModel(**{"sample_size": 8, "ngf": 4, **kwargs})


def test_save_and_load_round_trip(model, tmp_path):
    model.save_pretrained(tmp_path, safe_serialization=True)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()

    reloaded = NCSNScoreModel.from_pretrained(tmp_path).eval()
    for key in ("in_channels", "sample_size", "ngf"):
        assert reloaded.config[key] == model.config[key]

    sample = _noisy()
    sigmas = torch.tensor([0.2, 1.3])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(sample, sigmas).sample, model(sample, sigmas).sample, rtol=0, atol=0)


def test_gradients_reach_every_parameter():
    net = _tiny_model(in_channels=1).train()
    sample = _noisy(batch=2, channels=1, height=8, width=6)
    score = net(sample, torch.tensor([0.5, 2.0])).sample
    score.square().mean().backward()
    missing = [name for name, p in net.named_parameters() if p.grad is None]
    assert missing == []
    no_signal = [name for name, p in net.named_parameters() if not p.grad.abs().sum() > 0]
    assert no_signal == []
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())
