"""Folders in diffusers' ``ScoreSdeVePipeline`` layout (the ``google/ncsnpp-*`` repositories) through NCSNPipeline.

The folder is built here with diffusers' own classes: a ``UNet2DModel`` with a Fourier sigma embedding (Skip
blocks, as in those repositories) and a ``ScoreSdeVeScheduler`` with non-default settings, so that a setting
that is dropped shows.
"""

import json

import numpy as np
import pytest
import torch
from diffusers import ScoreSdeVePipeline, ScoreSdeVeScheduler, UNet2DModel

from ncsn_pipeline import NCSNPipeline, VEPredictorCorrectorScheduler, score_schedulers

SCHEDULER_SETTINGS = dict(num_train_timesteps=40, snr=0.12, sigma_min=0.02, sigma_max=30.0, correct_steps=2)


@pytest.fixture(scope="module")
def score_sde_folder(tmp_path_factory):
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8,
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 32),  # diffusers' Skip blocks normalise with 32 groups
        layers_per_block=1,
        time_embedding_type="fourier",
        down_block_types=("SkipDownBlock2D", "AttnSkipDownBlock2D"),
        up_block_types=("AttnSkipUpBlock2D", "SkipUpBlock2D"),
        flip_sin_to_cos=True,
        mid_block_scale_factor=2**0.5,
    )
    folder = tmp_path_factory.mktemp("score-sde") / "ncsnpp-tiny"
    ScoreSdeVePipeline(unet=unet, scheduler=ScoreSdeVeScheduler(**SCHEDULER_SETTINGS)).save_pretrained(folder)
    return folder


def test_the_folder_loads_with_every_scheduler_setting(score_sde_folder):
    assert json.loads((score_sde_folder / "model_index.json").read_text())["_class_name"] == "ScoreSdeVePipeline"
    pipe = NCSNPipeline.from_pretrained(score_sde_folder)
    assert isinstance(pipe.unet, UNet2DModel)
    assert isinstance(pipe.scheduler, VEPredictorCorrectorScheduler)
    config = pipe.scheduler.config
    assert (config.num_noise_levels, config.num_corrector_steps, config.snr) == (40, 2, 0.12)
    assert (config.sigma_min, config.sigma_max) == (0.02, 30.0)
    assert pipe.scheduler.num_model_calls == 40 * 3
    assert pipe.config.data_range == [0.0, 1.0]


@pytest.mark.parametrize("how", ["config dict", "saved config", "scheduler object"])
def test_from_config_maps_score_sde_ve_settings_for_every_sampler(score_sde_folder, how):
    original = ScoreSdeVeScheduler(**SCHEDULER_SETTINGS)
    source = {
        "config dict": original.config,
        "saved config": json.loads((score_sde_folder / "scheduler" / "scheduler_config.json").read_text()),
        "scheduler object": original,
    }[how]
    for name, sampler in score_schedulers().items():
        config = sampler.from_config(source).config
        assert (config.sigma_min, config.sigma_max, config.num_noise_levels) == (0.02, 30.0, 40), name
    mapped = VEPredictorCorrectorScheduler.from_config(source).config
    assert (mapped.num_corrector_steps, mapped.snr) == (2, 0.12)


def _sample_both(folder, snap_to_levels: bool):
    reference = ScoreSdeVePipeline.from_pretrained(folder)
    reference.set_progress_bar_config(disable=True)
    ours = NCSNPipeline.from_pretrained(folder)
    ours.set_progress_bar_config(disable=True)
    if snap_to_levels:
        # diffusers calls the model at sigma(t) on a continuous grid ending at t = sampling_eps, but steps with the
        # geometric levels; calling it at the nearest level makes the two runs the same computation.
        levels = ours.scheduler.sigmas.float()
        forward = reference.unet.forward

        def at_levels(sample, timestep, *args, **kwargs):
            sigma = torch.as_tensor(timestep, dtype=torch.float64).reshape(-1)
            nearest = (sigma[:, None] / levels.double()[None, :] - 1).abs().argmin(dim=1)
            return forward(sample, levels[nearest], *args, **kwargs)

        reference.unet.forward = at_levels
    steps = SCHEDULER_SETTINGS["num_train_timesteps"]
    expected = reference(
        batch_size=3, num_inference_steps=steps, generator=torch.Generator().manual_seed(0), output_type="np"
    ).images
    actual = ours(batch_size=3, generator=torch.Generator().manual_seed(0), output_type="np").images
    return expected, actual


def test_sampling_reproduces_score_sde_ve_pipeline(score_sde_folder):
    """Same random draws in the same order (initial noise, each corrector's, each predictor's), so the samples
    agree draw for draw. At the same sigmas they agree to float32 rounding (1e-4 of the [0, 1] range over 120
    steps); with diffusers' own model sigmas, which differ from the levels by a relative
    log(sigma_max / sigma_min) * sampling_eps ~ 1e-4, to 2e-3."""
    expected, actual = _sample_both(score_sde_folder, snap_to_levels=True)
    assert np.abs(expected - actual).max() < 1e-4
    expected, actual = _sample_both(score_sde_folder, snap_to_levels=False)
    assert np.abs(expected - actual).max() < 2e-3
    assert np.abs(expected - actual).mean() < 1e-4
    assert expected.std() > 0.1  # real images, not a constant that would agree trivially


@pytest.mark.parametrize("sampler", sorted(score_schedulers()))
def test_every_sampler_samples_the_folder(score_sde_folder, sampler):
    pipe = NCSNPipeline.from_pretrained(score_sde_folder)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = score_schedulers()[sampler].from_config(pipe.scheduler.config)
    images = pipe(batch_size=2, num_inference_steps=3, generator=torch.Generator().manual_seed(1), output_type="np")
    assert images.images.shape == (2, 8, 8, 3) and np.isfinite(images.images).all()


def test_a_score_sde_folder_without_a_fourier_model_is_refused(tmp_path):
    unet = UNet2DModel(
        sample_size=8,
        block_out_channels=(16, 16),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    )
    ScoreSdeVePipeline(unet=unet, scheduler=ScoreSdeVeScheduler()).save_pretrained(tmp_path / "positional")
    with pytest.raises(ValueError, match="time_embedding_type='positional'"):
        NCSNPipeline.from_pretrained(tmp_path / "positional")


def _assert_same_samples(pipe, other):
    """Both pipelines draw the same samples from the same seed."""
    for each in (pipe, other):
        each.set_progress_bar_config(disable=True)
    kwargs = dict(batch_size=2, num_inference_steps=4, output_type="np")
    np.testing.assert_array_equal(
        pipe(generator=torch.Generator().manual_seed(2), **kwargs).images,
        other(generator=torch.Generator().manual_seed(2), **kwargs).images,
    )


def test_a_score_sde_repository_loads_by_repo_id(score_sde_folder, tmp_path):
    """The same folder published on a (stand-in) Hub as diffusers publishes it, loaded by repository id."""
    import huggingface_hub

    from hub_stand_in import running_stand_in

    with running_stand_in() as hub, hub.patched_client(tmp_path / "home"):
        huggingface_hub.create_repo("google/ncsnpp-tiny")
        huggingface_hub.upload_folder(repo_id="google/ncsnpp-tiny", folder_path=score_sde_folder)
        pipe = NCSNPipeline.from_pretrained("google/ncsnpp-tiny")
    assert isinstance(pipe.scheduler, VEPredictorCorrectorScheduler) and pipe.scheduler.config.num_noise_levels == 40
    _assert_same_samples(pipe, NCSNPipeline.from_pretrained(score_sde_folder))


def test_a_bin_only_score_sde_repository_loads_by_repo_id(score_sde_folder, tmp_path):
    """Issue 22, item 4: the older ``google/ncsnpp-*`` repositories hold ``diffusion_pytorch_model.bin`` only. The
    download fetches it when there is no safetensors file, it is read as tensors only, and it samples as the
    safetensors folder does."""
    import shutil

    import huggingface_hub
    from safetensors.torch import load_file

    from hub_stand_in import running_stand_in

    folder = tmp_path / "bin-only"
    shutil.copytree(score_sde_folder, folder)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(weights), folder / "unet" / "diffusion_pytorch_model.bin")
    weights.unlink()
    with running_stand_in() as hub, hub.patched_client(tmp_path / "home"):
        huggingface_hub.create_repo("google/ncsnpp-bin-only")
        huggingface_hub.upload_folder(repo_id="google/ncsnpp-bin-only", folder_path=folder)
        pipe = NCSNPipeline.from_pretrained("google/ncsnpp-bin-only")
    _assert_same_samples(pipe, NCSNPipeline.from_pretrained(score_sde_folder))
