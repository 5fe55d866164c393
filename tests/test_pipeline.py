"""`NCSNPipeline`: outputs, callbacks, save/load round trips and bad input."""

import json
import re

import numpy as np
import PIL.Image
import pytest
import torch
from safetensors.torch import load_file, save_file

from helpers import HOSTILE_PICKLES
from ncsn_pipeline import (
    GaussianMixtureScore,
    NCSNPipeline,
    NCSNScheduler,
    NCSNScoreModel,
    ToyScoreModel,
)
from ncsn_pipeline.errors import CorruptedWeightsError
from ncsn_pipeline.pretrained import load_pretrained

FAST = dict(num_inference_steps=3)


def _image_pipeline() -> NCSNPipeline:
    torch.manual_seed(0)
    model = NCSNScoreModel(in_channels=1, sample_size=8, ngf=8)
    scheduler = NCSNScheduler(sigma_max=3.0, sigma_min=0.01, num_noise_levels=10, steps_per_level=2, step_lr=1e-5)
    pipe = NCSNPipeline(unet=model, scheduler=scheduler, data_range=(0, 1))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _toy_pipeline() -> NCSNPipeline:
    pipe = NCSNPipeline(unet=GaussianMixtureScore.ncsn_toy(), scheduler=NCSNScheduler.from_preset("ncsn-toy"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_image_output_types():
    pipe = _image_pipeline()
    images = pipe(batch_size=2, generator=_generator(), **FAST).images
    assert len(images) == 2 and all(isinstance(image, PIL.Image.Image) for image in images)
    assert images[0].size == (8, 8) and images[0].mode == "L"
    array = pipe(batch_size=2, generator=_generator(), output_type="np", **FAST).images
    assert array.shape == (2, 8, 8, 1) and array.min() >= 0 and array.max() <= 1
    tensor = pipe(batch_size=2, generator=_generator(), output_type="pt", **FAST).images
    assert tensor.shape == (2, 1, 8, 8)
    np.testing.assert_array_equal(tensor.permute(0, 2, 3, 1).numpy(), array)
    np.testing.assert_array_equal(np.asarray(images[0]), (array[0, :, :, 0] * 255).round().astype(np.uint8))


def test_data_range_maps_samples_to_unit_interval():
    pipe = _toy_pipeline()
    raw = pipe(batch_size=4, generator=_generator(), output_type="pt", **FAST).images
    ranged = NCSNPipeline(pipe.unet, pipe.scheduler, data_range=(-8.0, 8.0))
    ranged.set_progress_bar_config(disable=True)
    mapped = ranged(batch_size=4, generator=_generator(), output_type="pt", **FAST).images
    torch.testing.assert_close(mapped, ((raw.clamp(-8, 8) + 8) / 16).float())


def test_two_dimensional_data_returns_raw_samples():
    pipe = _toy_pipeline()
    points = pipe(batch_size=5, generator=_generator(), output_type="np", **FAST).images
    assert points.shape == (5, 2) and points.dtype == np.float64
    output = pipe(batch_size=5, generator=_generator(), output_type="pt", **FAST)
    assert torch.equal(output.samples, output.images)
    np.testing.assert_array_equal(output.images.numpy(), points)
    with pytest.raises(ValueError, match='output_type="pil" needs image data, but this pipeline has data_range=None'):
        pipe(batch_size=5, output_type="pil")


def test_return_dict_false_matches_dict_output():
    pipe = _image_pipeline()
    as_dict = pipe(batch_size=2, generator=_generator(), output_type="np", **FAST).images
    (as_tuple,) = pipe(batch_size=2, generator=_generator(), output_type="np", return_dict=False, **FAST)
    np.testing.assert_array_equal(as_dict, as_tuple)


def test_same_seed_same_samples_and_different_seed_different_samples():
    pipe = _image_pipeline()
    first = pipe(batch_size=2, generator=_generator(1), output_type="np", **FAST).images
    second = pipe(batch_size=2, generator=_generator(1), output_type="np", **FAST).images
    third = pipe(batch_size=2, generator=_generator(2), output_type="np", **FAST).images
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, third)


def test_callback_sees_every_step_and_can_replace_the_sample():
    pipe = _toy_pipeline()
    seen = []

    def callback(pipeline, step_index, timestep, callback_kwargs):
        seen.append((step_index, float(timestep), callback_kwargs["sample"].shape))
        if step_index == len(pipeline.scheduler.timesteps) - 1:
            return {"sample": torch.zeros_like(callback_kwargs["sample"])}
        return {}

    output = pipe(batch_size=3, generator=_generator(), output_type="pt", callback_on_step_end=callback, **FAST)
    assert [index for index, _, _ in seen] == list(range(len(pipe.scheduler.timesteps)))
    assert [sigma for _, sigma, _ in seen] == pipe.scheduler.timesteps.tolist()
    assert torch.equal(output.images, torch.zeros(3, 2, dtype=output.images.dtype))


def test_number_of_model_calls_is_levels_times_steps_plus_denoising():
    pipe = _image_pipeline()
    pipe.scheduler = NCSNScheduler.from_config(pipe.scheduler.config, steps_per_level=3)
    calls = []
    pipe.unet.register_forward_hook(lambda module, args, output: calls.append(args[1]))
    pipe(batch_size=2, generator=_generator(), num_inference_steps=4, output_type="np")
    assert len(calls) == 4 * 3 + 1 == pipe.scheduler.num_model_calls
    assert all(sigma.shape == (2,) for sigma in calls)


def test_schedulers_are_interchangeable_via_from_config():
    pipe = _toy_pipeline()
    pipe.scheduler = NCSNScheduler.from_config(pipe.scheduler.config, final_denoise=True)
    points = pipe(batch_size=3, generator=_generator(), output_type="np", **FAST).images
    assert points.shape == (3, 2) and np.isfinite(points).all()


@pytest.mark.parametrize("factory", [_image_pipeline, _toy_pipeline, lambda: load_pretrained("glyph-mixture")])
def test_save_and_load_give_bit_identical_samples(factory, tmp_path):
    pipe = factory()
    pipe.set_progress_bar_config(disable=True)
    before = pipe(batch_size=3, generator=_generator(7), output_type="pt", **FAST).images
    pipe.save_pretrained(tmp_path)
    files = sorted(path.relative_to(tmp_path).as_posix() for path in tmp_path.rglob("*") if path.is_file())
    assert "unet/diffusion_pytorch_model.safetensors" in files
    assert not any(name.endswith((".bin", ".pt", ".pth", ".ckpt")) for name in files)
    loaded = NCSNPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded.unet) is type(pipe.unet) and type(loaded.scheduler) is type(pipe.scheduler)
    assert loaded.config.data_range == pipe.config.data_range
    after = loaded(batch_size=3, generator=_generator(7), output_type="pt", **FAST).images
    assert torch.equal(before, after)


def test_trained_toy_model_round_trip(tmp_path):
    torch.manual_seed(0)
    pipe = NCSNPipeline(ToyScoreModel(hidden_size=16), NCSNScheduler.from_preset("ncsn-toy"))
    pipe.set_progress_bar_config(disable=True)
    before = pipe(batch_size=4, generator=_generator(), output_type="np", **FAST).images
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["data_range"] is None
    loaded = NCSNPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(loaded(batch_size=4, generator=_generator(), output_type="np", **FAST).images, before)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupted_weights_give_a_clear_error(damage, tmp_path):
    _image_pipeline().save_pretrained(tmp_path)
    weights = tmp_path / "unet" / "diffusion_pytorch_model.safetensors"
    content = weights.read_bytes()
    weights.write_bytes(content[: len(content) // 2] if damage == "truncate" else b"not a safetensors file" * 4)
    with pytest.raises(CorruptedWeightsError, match="truncated or corrupted.*diffusion_pytorch_model.safetensors"):
        NCSNPipeline.from_pretrained(tmp_path)


def test_non_finite_weights_are_refused(tmp_path):
    _image_pipeline().save_pretrained(tmp_path)
    weights = tmp_path / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    state["begin_conv.weight"][0, 0, 0, 0] = float("nan")
    save_file(state, weights)
    with pytest.raises(ValueError, match="NaN or infinite values in 'begin_conv.weight'"):
        NCSNPipeline.from_pretrained(tmp_path)


def _bin_only_folder(tmp_path):
    """A pipeline folder in diffusers' layout whose model has only ``unet/diffusion_pytorch_model.bin``."""
    pipe = _image_pipeline()
    pipe.save_pretrained(tmp_path)
    torch.save(pipe.unet.state_dict(), tmp_path / "unet" / "diffusion_pytorch_model.bin")
    (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    return pipe


def test_a_folder_with_only_bin_weights_loads_them_as_tensors_and_samples(tmp_path):
    """Issue 22, item 4: older diffusers repositories hold only ``.bin`` weights; they load (read with
    ``torch.load(weights_only=True)``) and sample exactly as the safetensors original."""
    pipe = _bin_only_folder(tmp_path)
    loaded = NCSNPipeline.from_pretrained(tmp_path)
    for name, tensor in pipe.unet.state_dict().items():
        assert torch.equal(loaded.unet.state_dict()[name], tensor), name
    run = dict(batch_size=2, num_inference_steps=3, output_type="np")
    expected = pipe(generator=torch.Generator().manual_seed(0), **run).images
    assert np.array_equal(loaded(generator=torch.Generator().manual_seed(0), **run).images, expected)
    with pytest.raises(ValueError, match="use_safetensors=False .* is not supported"):
        NCSNPipeline.from_pretrained(tmp_path, use_safetensors=False)


class _CreatesAFile:
    """Pickled as a call of ``pathlib.Path.touch``: unpickling it (without weights_only) creates the file."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        from pathlib import Path

        return (Path.touch, (Path(self.target),))


@pytest.mark.parametrize("where", ["a tensor's place", "the whole file"])
def test_a_malicious_bin_is_refused_and_its_payload_never_runs(tmp_path, where):
    """A ``.bin`` whose unpickling would create a file: refused by name, and the file is never created."""
    folder = tmp_path / "pipeline"
    pipe = _bin_only_folder(folder)
    target = tmp_path / "created-by-the-payload"
    state = pipe.unet.state_dict()
    payload = (
        {**state, "begin_conv.bias": _CreatesAFile(target)} if where == "a tensor's place" else _CreatesAFile(target)
    )
    torch.save(payload, folder / "unet" / "diffusion_pytorch_model.bin")
    refused = r"diffusion_pytorch_model.bin names __builtin__.getattr, pathlib\S*Path.* in its pickle.*not loaded"
    with pytest.raises(ValueError, match=refused) as error:
        NCSNPipeline.from_pretrained(folder)
    assert not target.exists() and "weights_only=False" not in str(error.value)  # no advice to switch the check off
    # The payload is real: plain unpickling runs it.
    with open(folder / "unet" / "diffusion_pytorch_model.bin", "rb") as handle:
        assert handle.read(2) == b"PK"  # torch.save's zip format
    torch.load(folder / "unet" / "diffusion_pytorch_model.bin", weights_only=False)
    assert target.exists()


@pytest.mark.parametrize("payload, named", HOSTILE_PICKLES)
def test_a_bin_pickle_is_read_before_it_is_unpickled_and_refused_by_name(tmp_path, monkeypatch, payload, named):
    """The allowed callables of weights_only cost CPU and memory in proportion to their arguments, not to the file:
    the pickle's opcodes are read first (nothing executed) and anything a dict of tensors never holds is refused
    by name; torch.load is never reached."""
    folder = tmp_path / "pipeline"
    _bin_only_folder(folder)
    (folder / "unet" / "diffusion_pytorch_model.bin").write_bytes(payload)
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: pytest.fail("unpickled before the check"))
    with pytest.raises(ValueError, match=f"names {re.escape(named)}") as error:
        NCSNPipeline.from_pretrained(folder)
    assert "weights_only=False" not in str(error.value) and "it was not loaded" in str(error.value)


@pytest.mark.parametrize(
    "tensor, named",
    [
        (lambda: torch.empty(3, device="meta"), "torch._utils._rebuild_meta_tensor_no_storage"),
        (lambda: torch.zeros(3, 3).to_sparse(), "torch._utils._rebuild_sparse_tensor"),
        (lambda: torch.quantize_per_tensor(torch.zeros(3), 0.1, 0, torch.qint8), "torch._utils._rebuild_qtensor"),
    ],
)
def test_exotic_tensors_in_a_bin_are_refused_by_name(tmp_path, tensor, named):
    folder = tmp_path / "pipeline"
    pipe = _bin_only_folder(folder)
    torch.save({**pipe.unet.state_dict(), "begin_conv.bias": tensor()}, folder / "unet" / "diffusion_pytorch_model.bin")
    with pytest.raises(ValueError, match=re.escape(named)):
        NCSNPipeline.from_pretrained(folder)


def test_other_pickle_weights_are_still_refused(tmp_path):
    pipe = _image_pipeline()
    pipe.save_pretrained(tmp_path)
    torch.save(pipe.unet.state_dict(), tmp_path / "unet" / "model.ckpt")
    (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(
        ValueError, match=r"holds only pickle weights \(model.ckpt\); ncsn-pipeline reads pickle weights only"
    ):
        NCSNPipeline.from_pretrained(tmp_path)


def test_a_bin_that_holds_something_else_than_named_tensors_is_refused(tmp_path):
    _bin_only_folder(tmp_path)
    torch.save([torch.zeros(2)], tmp_path / "unet" / "diffusion_pytorch_model.bin")
    with pytest.raises(ValueError, match="holds a list, not a dict of named tensors"):
        NCSNPipeline.from_pretrained(tmp_path)
    (tmp_path / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is not a readable PyTorch weight file"):
        NCSNPipeline.from_pretrained(tmp_path)


@pytest.mark.parametrize("keys", [{"drop": 1}, {"add": 1}, {"drop": 1, "add": 1}, {"reshape": 1}])
@pytest.mark.parametrize("low_cpu_mem_usage", [True, False])
def test_weights_that_do_not_match_the_model_are_refused_naming_the_keys(tmp_path, keys, low_cpu_mem_usage):
    pipe = _image_pipeline()
    pipe.save_pretrained(tmp_path)
    path = tmp_path / "unet" / "diffusion_pytorch_model.safetensors"
    weights = load_file(path)
    if "drop" in keys:
        del weights["begin_conv.bias"]
    if "add" in keys:
        weights["extra.weight"] = torch.zeros(2)
    if "reshape" in keys:
        weights["begin_conv.bias"] = torch.zeros(3)
    save_file(weights, path)
    expected = {
        "drop": r"missing \['begin_conv.bias'\]",
        "add": r"unexpected \['extra.weight'\]",
        "reshape": "begin_conv",
    }
    with pytest.raises(ValueError) as error:
        NCSNPipeline.from_pretrained(tmp_path, low_cpu_mem_usage=low_cpu_mem_usage)
    for key in keys:
        assert re.search(expected[key], str(error.value)), str(error.value)


def test_pickle_serialisation_is_refused(tmp_path):
    with pytest.raises(ValueError, match="only as safetensors"):
        _image_pipeline().save_pretrained(tmp_path, safe_serialization=False)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(batch_size=0), "batch_size must be an integer >= 1, got 0"),
        (dict(batch_size=2.5), "batch_size must be an integer >= 1, got 2.5"),
        (dict(output_type="jpg"), r"Unknown output_type 'jpg'; choose one of \['pil', 'np', 'pt'\]"),
        (dict(num_inference_steps=0), "num_inference_steps must be a whole number from 2 to 100000, got 0"),
        (dict(steps_per_level=2), "unexpected keyword argument 'steps_per_level'"),
        (dict(batch_size=2, generator=[torch.Generator()]), "Got 1 generators for batch_size=2"),
        (dict(batch_size=2, generator=(torch.Generator(), torch.Generator())), "generator must be a torch.Generator"),
        (dict(batch_size=2, generator=0), r"generator must be a torch.Generator, a list of them .* got 0"),
        (dict(batch_size=2, generator=[torch.Generator(), None]), "generator must be a torch.Generator"),
        (dict(callback_on_step_end_tensor_inputs=["latents"]), r"may only name \['sample'\], got \['latents'\]"),
    ],
)
def test_bad_call_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        _image_pipeline()(**kwargs)


@pytest.mark.parametrize("data_range", [(1, 0), (0,), (0, float("inf")), "01"])
def test_bad_data_range(data_range):
    with pytest.raises(ValueError, match="data_range must be two finite numbers"):
        NCSNPipeline(GaussianMixtureScore.ncsn_toy(), NCSNScheduler(), data_range=data_range)


@pytest.mark.parametrize("unet", [None, "ncsn-digits", GaussianMixtureScore.ncsn_toy().forward])
def test_the_score_model_is_checked_when_the_pipeline_is_built(unet):
    """Issue 21, item 11: ``None`` was accepted (and failed at the first call), a string failed inside diffusers'
    register_modules with ``AttributeError: 'str' object has no attribute '__module__'``."""
    with pytest.raises(ValueError, match=r"unet must be a score model \(a torch.nn.Module called as unet\(x, sigma\)"):
        NCSNPipeline(unet, NCSNScheduler())


def test_a_bin_that_expands_far_beyond_its_size_is_refused_before_loading(tmp_path):
    """A deflated entry of zeros would make torch.load allocate ~1 GB per MB of file; the zip directory tells."""
    import zipfile

    _bin_only_folder(tmp_path)
    weights = tmp_path / "unet" / "diffusion_pytorch_model.bin"
    plain = tmp_path / "plain.bin"
    torch.save({"weight": torch.zeros(4 * 2**20)}, plain)  # 16 MB of zeros
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(weights, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info.filename))
    assert weights.stat().st_size < 2**20
    with pytest.raises(ValueError, match=r"diffusion_pytorch_model.bin expands to 16,7\d\d,\d\d\d bytes from"):
        NCSNPipeline.from_pretrained(tmp_path)


def test_a_folder_that_is_not_a_saved_pipeline_is_named_in_the_error(tmp_path):
    (tmp_path / "unet").mkdir()
    with pytest.raises(ValueError, match=r"is a folder but not a saved pipeline: it has no model_index.json"):
        NCSNPipeline.from_pretrained(tmp_path)
    from ncsn_pipeline.pretrained import load_pipeline

    with pytest.raises(ValueError, match=str(tmp_path)):
        load_pipeline(tmp_path)
