"""Config files are untrusted input: absurd sizes are refused at construction, fast, with the limit in the message.

(Issue 9, item 9: a ~200-byte scheduler_config.json with 2e8 noise levels took 6.7 GB and 21 s to load.)
"""

import json
import time

import pytest

from ncsn_pipeline import NCSNPipeline, NCSNScheduler, NCSNScoreModel, ToyScoreModel, score_schedulers
from ncsn_pipeline.checks import MAX_MODEL_CALLS, MAX_NOISE_LEVELS, MAX_STEPS_PER_LEVEL

QUICK_S = 5.0
LEVELS = f"must be a whole number from 2 to {MAX_NOISE_LEVELS}"
STEPS = f"must be a whole number from 1 to {MAX_STEPS_PER_LEVEL}"

HOSTILE_SCHEDULER_CONFIGS = [
    ("NCSNScheduler", {"num_noise_levels": 200_000_000}, f"num_noise_levels {LEVELS}"),
    ("NCSNScheduler", {"steps_per_level": 10**9}, f"steps_per_level {STEPS}"),
    ("NCSNScheduler", {"num_noise_levels": 100_000, "steps_per_level": 1000}, f"limit of {MAX_MODEL_CALLS:,}"),
    ("VEPredictorCorrectorScheduler", {"num_noise_levels": 10**9}, f"num_noise_levels {LEVELS}"),
    ("VEPredictorCorrectorScheduler", {"num_corrector_steps": 10**9}, "num_corrector_steps must be a whole number"),
    ("ProbabilityFlowHeunScheduler", {"num_noise_levels": 10**9}, f"num_noise_levels {LEVELS}"),
    ("ProbabilityFlowHeunScheduler", {"num_train_noise_levels": 10**9}, f"num_train_noise_levels {LEVELS}"),
]


def _saved_pipeline(folder, unet, scheduler_name="NCSNScheduler"):
    scheduler = score_schedulers()[scheduler_name].from_config(NCSNScheduler(sigma_max=3.0, num_noise_levels=4).config)
    NCSNPipeline(unet, scheduler, data_range=(0, 1) if isinstance(unet, NCSNScoreModel) else None).save_pretrained(
        folder
    )
    return folder


def _edit(path, **changes):
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize(("name", "overrides", "message"), HOSTILE_SCHEDULER_CONFIGS)
def test_a_hostile_scheduler_config_file_is_refused_fast(name, overrides, message, tmp_path):
    folder = _saved_pipeline(tmp_path / "pipe", ToyScoreModel(hidden_size=4), name)
    _edit(folder / "scheduler" / "scheduler_config.json", **overrides)
    started = time.perf_counter()
    with pytest.raises(ValueError, match=message):
        NCSNPipeline.from_pretrained(folder)
    assert time.perf_counter() - started < QUICK_S


@pytest.mark.parametrize("name", score_schedulers())
def test_a_huge_run_is_refused_before_anything_is_allocated(name):
    scheduler = score_schedulers()[name]()
    with pytest.raises(ValueError, match=f"num_inference_steps {LEVELS}"):
        scheduler.set_timesteps(10**9)


@pytest.mark.parametrize(
    ("unet", "overrides", "message"),
    [
        ("ncsn", {"ngf": 10**9}, "ngf must be a whole number from 2 to 256"),
        ("ncsn", {"sample_size": 10**6}, "sample_size must be a whole number from 4 to 1024"),
        ("ncsn", {"in_channels": 10**6}, "in_channels must be a whole number from 1 to 16"),
        ("toy", {"hidden_size": 10**9}, "hidden_size must be a whole number from 1 to 65536"),
        ("toy", {"hidden_size": 60_000}, "parameters, more than the limit of 50,000,000"),
    ],
)
def test_a_hostile_model_config_file_is_refused_fast(unet, overrides, message, tmp_path):
    model = NCSNScoreModel(in_channels=1, sample_size=8, ngf=4) if unet == "ncsn" else ToyScoreModel(hidden_size=4)
    folder = _saved_pipeline(tmp_path / "pipe", model)
    _edit(folder / "unet" / "config.json", **overrides)
    started = time.perf_counter()
    with pytest.raises(ValueError, match=message):
        NCSNPipeline.from_pretrained(folder)
    assert time.perf_counter() - started < QUICK_S
