"""The sampler contract (``ncsn_pipeline.scheduling_utils``) for every score sampler the package exports.

Samplers are discovered from the public API, so a new one is covered without editing this file. In the spirit
of diffusers' ``SchedulerCommonTest``; each check names the defect it guards against.
"""

import json
import logging

import pytest
import torch
from diffusers import DDIMScheduler
from diffusers.utils import logging as diffusers_logging

from ncsn_pipeline import GaussianMixtureScore, NCSNPipeline, score_schedulers
from ncsn_pipeline.hub import export_for_hub, render_model_card
from ncsn_pipeline.scheduling_utils import can_restart_at_level_starts, restartable_samplers

SAMPLERS = score_schedulers()
# Small runs of every sampler on NCSN's toy, from the same tuned settings.
BASE = dict(sigma_max=20.0, sigma_min=0.5, num_noise_levels=5)


def _scheduler(name):
    return SAMPLERS[name].from_config(BASE)


def _run(scheduler, start_index=0, sample=None, generator_state=None, record=None, stop_index=None):
    """Drive ``scheduler`` from ``timesteps[start_index]`` (to ``stop_index``, or the end) with the exact toy score;
    return the last sample."""
    model = GaussianMixtureScore.ncsn_toy()
    generator = torch.Generator().manual_seed(0)
    if generator_state is not None:
        generator.set_state(generator_state)
    if sample is None:
        sample = torch.randn(6, 2, generator=generator) * scheduler.init_noise_sigma
    for index, sigma in enumerate(scheduler.iter_timesteps()):  # an adaptive sampler decides each level on the way
        if index < start_index:
            continue
        if index == stop_index:
            break
        if record is not None:
            record[index] = (sample.clone(), generator.get_state())
        score = model(sample, sigma).sample
        sample = scheduler.step(score, sigma, sample, generator=generator).prev_sample
    return sample


def test_the_package_exports_three_samplers_at_least():
    assert {"NCSNScheduler", "VEPredictorCorrectorScheduler", "ProbabilityFlowHeunScheduler"} <= set(SAMPLERS)


@pytest.mark.parametrize("name", SAMPLERS)
def test_set_timesteps_takes_only_levels_and_device(name):
    import inspect

    scheduler = _scheduler(name)
    assert list(inspect.signature(scheduler.set_timesteps).parameters) == ["num_inference_steps", "device"]
    scheduler.set_timesteps(4)
    assert scheduler.num_model_calls == len(scheduler.timesteps) > 0
    if scheduler.adaptive:  # the calls follow from a tolerance: the plan knows the first level and the cap only
        assert len(scheduler.timesteps) == 1 and scheduler.max_model_calls >= 4
        assert f"(at most {scheduler.max_model_calls} model calls)" in scheduler.description
    else:
        assert scheduler.max_model_calls == scheduler.num_model_calls
        assert f"({scheduler.num_model_calls} model calls)" in scheduler.description
    assert scheduler.sampler_name and scheduler.level_start_indices[0] == 0


@pytest.mark.parametrize("name", SAMPLERS)
def test_iter_timesteps_yields_every_call_of_a_run_and_the_run_respects_max_model_calls(name):
    """Defect guarded: a loop that reads a planned `timesteps` misses an adaptive sampler's later calls (or runs
    past the last one)."""
    scheduler = _scheduler(name)
    model, generator = GaussianMixtureScore.ncsn_toy(), torch.Generator().manual_seed(0)
    sample = torch.randn(6, 2, generator=generator) * scheduler.init_noise_sigma
    seen = []
    for sigma in scheduler.iter_timesteps():
        seen.append(float(sigma))
        sample = scheduler.step(model(sample, sigma).sample, sigma, sample, generator=generator).prev_sample
    assert seen == scheduler.timesteps.tolist() and len(seen) == scheduler.num_model_calls <= scheduler.max_model_calls
    assert seen[-1] == pytest.approx(BASE["sigma_min"], rel=1e-6) or not scheduler.adaptive
    assert all(0 <= index < len(seen) for index in scheduler.level_start_indices)
    with pytest.raises(ValueError, match="step was called after the last"):
        scheduler.step(sample, seen[-1], sample)


@pytest.mark.parametrize("name", SAMPLERS)
def test_save_load_round_trip(name, tmp_path):
    scheduler = _scheduler(name)
    scheduler.save_pretrained(tmp_path)
    loaded = SAMPLERS[name].from_pretrained(tmp_path)
    public = lambda config: {key: value for key, value in config.items() if not key.startswith("_")}  # noqa: E731
    assert public(loaded.config) == public(scheduler.config) and torch.equal(loaded.timesteps, scheduler.timesteps)


@pytest.mark.parametrize("source", SAMPLERS)
@pytest.mark.parametrize("target", SAMPLERS)
def test_from_config_between_every_pair_is_silent(source, target, caplog):
    diffusers_logging.enable_propagation()
    try:
        with caplog.at_level(logging.WARNING):
            swapped = SAMPLERS[target].from_config(_scheduler(source).config)
    finally:
        diffusers_logging.disable_propagation()
    assert [record for record in caplog.records if record.levelno >= logging.WARNING] == []
    assert type(swapped) is SAMPLERS[target] and swapped.config.sigma_max == BASE["sigma_max"]
    assert set(swapped.compatibles) == set(SAMPLERS.values())


@pytest.mark.parametrize("name", SAMPLERS)
def test_tuple_and_dict_outputs_agree_and_dtype_and_device_are_kept(name):
    as_dict, as_tuple = _scheduler(name), _scheduler(name)
    sample = torch.randn(3, 2, dtype=torch.float64)
    score = -sample
    sigma = next(iter(as_dict.iter_timesteps()))
    next(iter(as_tuple.iter_timesteps()))  # (how an adaptive sampler is driven)
    out = as_dict.step(score, sigma, sample, generator=torch.Generator().manual_seed(1))
    tup = as_tuple.step(score, sigma, sample, generator=torch.Generator().manual_seed(1), return_dict=False)
    assert isinstance(tup, tuple) and torch.equal(out.prev_sample, tup[0]) and torch.equal(out.prev_sample_mean, tup[1])
    assert out.prev_sample.dtype == torch.float64 and out.prev_sample.device == sample.device
    as_dict.set_timesteps(3, device="cpu")
    assert as_dict.timesteps.device.type == "cpu"


@pytest.mark.parametrize("name", SAMPLERS)
def test_same_generator_same_samples(name):
    assert torch.equal(_run(_scheduler(name)), _run(_scheduler(name)))


def _begin(scheduler, index, level):
    """Begin ``scheduler``'s next run at call ``index`` of a full run, at noise level ``level``; return the index its
    loop begins at (the adaptive sampler moves its first call to ``level``)."""
    if scheduler.adaptive:
        assert scheduler.set_begin_sigma(level) == pytest.approx(level, rel=1e-6)
        return 0
    scheduler.set_begin_index(index)
    return index


@pytest.mark.parametrize("name", SAMPLERS)
def test_starting_at_any_level_start_equals_the_tail_of_a_full_run(name):
    """Defect guarded: a first step that ignores its timestep and runs the update of timesteps[0]; a multistep run
    that begins with the history of an earlier run."""
    full = _scheduler(name)
    record = {}
    final = _run(full, record=record)
    starts = list(full.level_start_indices)
    # Every planned sampler can begin at every level start (RePaint restarts there); the adaptive one at its first
    # call only, which `set_begin_sigma` moves to any level.
    begins = [index for index in range(len(full.timesteps)) if full.can_begin_at(index)]
    if full.adaptive:
        assert begins == [0] and not can_restart_at_level_starts(full) and name not in restartable_samplers()
    else:
        assert set(starts) <= set(begins) and can_restart_at_level_starts(full) and name in restartable_samplers()
    exact = not (full.adaptive or full.multistep)  # otherwise the tail matches in distribution (the next test)
    for start in sorted({starts[1], starts[len(starts) // 2], starts[-1]}):
        sample, state = record[start]
        earlier_levels = [float(full.timesteps[index]) for index in starts if index < start]
        if exact and float(full.timesteps[start]) not in earlier_levels:  # a value names the first such level start
            assert torch.allclose(_run(_scheduler(name), start, sample, state), final, atol=1e-6), start
        # Begun part-way through another run of the same scheduler object (as RePaint jumps back) = begun on a fresh
        # one, exactly, for every sampler: nothing of the earlier run (a multistep history) is kept.
        used = _scheduler(name)
        _run(used, stop_index=len(full.timesteps) - 1)
        fresh = _scheduler(name)
        level = float(full.timesteps[start])
        tail = _run(used, _begin(used, start, level), sample, state)
        assert torch.equal(tail, _run(fresh, _begin(fresh, start, level), sample, state)), start
        if exact:
            assert torch.allclose(tail, final, atol=1e-6), start
    for index in set(range(len(full.timesteps))) - set(begins):
        with pytest.raises(ValueError, match=f"begin_index {index} is not where a run of {name} can start"):
            _scheduler(name).set_begin_index(index)


# Runs accurate enough that a lower-order warm-up changes little: 30 levels down to 0.01 on the toy.
ACCURATE = dict(sigma_max=20.0, sigma_min=0.01, num_noise_levels=30)


def _summary(points):
    """Mode weight (of the (5, 5) mode), per-mode means and per-mode standard deviations of toy samples."""
    upper = points.sum(dim=1) > 0
    return upper.double().mean(), torch.cat([points[upper].mean(0), points[~upper].mean(0)]), torch.cat(
        [points[upper].std(0), points[~upper].std(0)]
    )


@pytest.mark.parametrize("name", SAMPLERS)
def test_a_run_begun_mid_schedule_matches_the_full_runs_tail_in_distribution(name):
    """Defect guarded: a multistep sampler whose first step after a late begin uses a wrong order or missing
    predictions (or the adaptive sampler's first step at a moved level), which shows in the output distribution.

    From 4000 states of a full run at a level, a run begun there (fresh noise) and the full run end in the same
    distribution. Tolerances, about 4.5 standard errors of the difference of two independent runs of 4000 toy samples
    (mode weight 0.8: 0.009; means of the 800-sample mode with std 1: 0.05; standard deviations: 0.035), while a
    warm-up at the wrong order or level moves the means by whole units."""
    variants = [{"algorithm": "3m-sde"}, {"algorithm": "2m"}] if name == "DPMSolverPlusPlusScheduler" else [{}]
    for options in variants:
        full = SAMPLERS[name].from_config(ACCURATE, **options)
        record = {}
        final = _summary(_run(full, sample=torch.randn(4000, 2, generator=torch.Generator().manual_seed(0)) * 20.0,
                              record=record))
        starts = full.level_start_indices
        for start in sorted({starts[1], starts[len(starts) // 2], starts[-3]}):
            begun = SAMPLERS[name].from_config(ACCURATE, **options)
            sample, _ = record[start]
            state = torch.Generator().manual_seed(start + 1).get_state()
            tail = _summary(_run(begun, _begin(begun, start, float(full.timesteps[start])), sample, state))
            weight_gap, mean_gap, std_gap = (float((a - b).abs().max()) for a, b in zip(tail, final))
            assert weight_gap < 0.04 and mean_gap < 0.2 and std_gap < 0.15, (options, start, tail, final)


@pytest.mark.parametrize("name", SAMPLERS)
def test_a_timestep_not_in_the_schedule_is_refused(name):
    scheduler = _scheduler(name)
    sample = torch.zeros(2, 2)
    next(iter(scheduler.iter_timesteps()))
    with pytest.raises(ValueError, match="timestep 123.0 is not one of this scheduler's noise levels"):
        scheduler.step(sample, 123.0, sample)
    with pytest.raises(ValueError, match="is not where a run of"):
        scheduler.set_begin_index(len(scheduler.timesteps) + 5)


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("sigma", [2.0, torch.tensor(2.0), torch.tensor([2.0]), torch.full((4,), 2.0)])
def test_add_noise_broadcasts_a_scalar_a_single_or_a_per_example_sigma(name, sigma):
    clean, noise = torch.zeros(4, 1, 3, 3), torch.ones(4, 1, 3, 3)
    assert torch.equal(_scheduler(name).add_noise(clean, noise, sigma), torch.full((4, 1, 3, 3), 2.0))


@pytest.mark.parametrize("name", SAMPLERS)
def test_add_noise_refuses_a_wrong_shape(name):
    with pytest.raises(ValueError, match=r"timesteps must be a scalar or of shape \(1,\) or \(4,\)"):
        _scheduler(name).add_noise(torch.zeros(4, 2), torch.ones(4, 2), torch.ones(3))


@pytest.mark.parametrize("name", SAMPLERS)
def test_options_are_config_and_checked_by_name(name):
    sampler_class = SAMPLERS[name]
    with pytest.raises(ValueError, match=f"{name} has no option 'no_such_option'; its options are"):
        sampler_class.from_scheduler_config(BASE, no_such_option=1)
    for key in (sampler_class.langevin_steps_key, sampler_class.step_size_key):
        assert key is None or key in sampler_class.sampler_options()


def test_the_pipeline_refuses_a_scheduler_that_does_not_consume_scores():
    with pytest.raises(ValueError, match="NCSNPipeline cannot sample with DDIMScheduler: it does not consume scores"):
        NCSNPipeline(GaussianMixtureScore.ncsn_toy(), DDIMScheduler())
    pipe = NCSNPipeline(GaussianMixtureScore.ncsn_toy(), _scheduler("NCSNScheduler"))
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    with pytest.raises(ValueError, match="cannot sample with DDIMScheduler"):
        pipe(batch_size=2, output_type="np")


@pytest.mark.parametrize("name", SAMPLERS)
def test_pipeline_with_each_sampler_card_export_and_reload(name, tmp_path):
    """Defect guarded: model cards that read NCSN-only config keys (KeyError for the other samplers)."""
    pipe = NCSNPipeline(GaussianMixtureScore.ncsn_toy(), _scheduler(name))
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(batch_size=4, generator=torch.Generator().manual_seed(3), output_type="np").images
    pipe.save_pretrained(tmp_path / "saved")
    card = render_model_card(tmp_path / "saved", repo_id="user/toy")
    assert pipe.scheduler.description in card.text and f"`{name}`" in card.text
    export = export_for_hub(tmp_path / "saved", tmp_path / "export", repo_id="user/toy", pipeline_class=NCSNPipeline)
    index = json.loads((export / "model_index.json").read_text())
    assert index["scheduler"][1] == name and (export / "scheduler" / f"{index['scheduler'][0]}.py").is_file()
    for folder in (tmp_path / "saved", export):
        reloaded = NCSNPipeline.from_pretrained(folder)
        reloaded.set_progress_bar_config(disable=True)
        assert type(reloaded.scheduler) is SAMPLERS[name]
        again = reloaded(batch_size=4, generator=torch.Generator().manual_seed(3), output_type="np").images
        assert (again == expected).all()


@pytest.mark.parametrize("name", SAMPLERS)
def test_a_listed_timestep_where_a_run_cannot_begin_is_named_as_such(name):
    """Defect guarded: EDM's Heun calls (listed in its timesteps) were called "not one of this scheduler's noise
    levels" when a run began there."""
    scheduler = _scheduler(name)
    calls = scheduler.timesteps.tolist()
    not_startable = [index for index in range(len(calls)) if not scheduler.can_begin_at(index)]
    startable_values = {calls[index] for index in range(len(calls)) if scheduler.can_begin_at(index)}
    not_startable = [index for index in not_startable if calls[index] not in startable_values]
    for index in not_startable[:2]:
        fresh = _scheduler(name)
        next(iter(fresh.iter_timesteps()))
        sample = torch.zeros(2, 2)
        with pytest.raises(ValueError, match=f"cannot begin at timestep .* \\(call {index} of its timesteps\\)"):
            fresh.step(sample, calls[index], sample)


def test_the_package_exports_every_sampler_it_defines_and_nothing_else_registers():
    """`score_schedulers` comes from the samplers' own registration, not a reach into the package: each must be
    exported, and a user's subclass stays out of the package's list."""
    import ncsn_pipeline
    from ncsn_pipeline import NCSNScheduler

    exported = {name for name in ncsn_pipeline.__all__ if name in SAMPLERS}
    assert exported == set(SAMPLERS)

    class MySampler(NCSNScheduler):
        pass

    assert "MySampler" not in score_schedulers()


@pytest.mark.parametrize(
    "away", [name for name in SAMPLERS if "num_train_noise_levels" not in SAMPLERS[name].sampler_options()]
)
@pytest.mark.parametrize(
    "home", [name for name in SAMPLERS if "num_train_noise_levels" in SAMPLERS[name].sampler_options()]
)
def test_a_swap_away_and_back_keeps_each_samplers_own_level_count(home, away):
    """Defect guarded: DPMSolverPlusPlusScheduler -> VEPredictorCorrectorScheduler -> DPMSolverPlusPlusScheduler
    planned 232 calls (the training levels) where the first made 50."""
    start = SAMPLERS[home].from_config({**BASE, "num_train_noise_levels": 40, "num_noise_levels": 7})
    visited = SAMPLERS[away].from_config(start.config)
    assert visited.config.num_noise_levels == 40  # a sampler on its training levels samples on all 40
    back = SAMPLERS[home].from_config(visited.config)
    assert back.config.num_noise_levels == 7 and back.config.num_train_noise_levels == 40
    assert back.num_model_calls == start.num_model_calls or back.adaptive
    # Changing the visited sampler's levels changes the training levels that go back, not the sampling levels.
    changed = SAMPLERS[away].from_config(visited.config, num_noise_levels=30)
    again = SAMPLERS[home].from_config(changed.config)
    assert again.config.num_train_noise_levels == 30 and again.config.num_noise_levels == 7


def test_the_default_sampler_survives_a_swap_through_predictor_corrector():
    from ncsn_pipeline import DPMSolverPlusPlusScheduler, NCSNScheduler, VEPredictorCorrectorScheduler
    from ncsn_pipeline.scheduling_dpmpp import default_sampler

    default = default_sampler(NCSNScheduler.from_preset("ncsnv2-cifar10").config)
    swapped = DPMSolverPlusPlusScheduler.from_config(VEPredictorCorrectorScheduler.from_config(default.config).config)
    assert swapped.num_model_calls == default.num_model_calls == 50
    assert NCSNScheduler.from_config(swapped.config).num_model_calls == 1161  # the tuned original, still restorable


def test_the_adaptive_sampler_refuses_a_plain_diffusers_loop():
    """Defect guarded: `for t in scheduler.timesteps` saw only the first level and returned a trial point (noise)
    after one call, without a word."""
    scheduler = SAMPLERS["AdaptiveSDEScheduler"].from_config(BASE)
    model, sample = GaussianMixtureScore.ncsn_toy(), torch.zeros(4, 2)
    with pytest.raises(ValueError, match=r"drive it with `for t in scheduler.iter_timesteps\(\)"):
        for sigma in scheduler.timesteps:
            sample = scheduler.step(model(sample, sigma).sample, sigma, sample).prev_sample
