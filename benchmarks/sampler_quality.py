"""Sample quality against the number of network calls, for every sampler, on exact-score Gaussian mixtures.

    python benchmarks/sampler_quality.py --threads 2                       # table + plot, ~3 minutes on 2 cores
    python benchmarks/sampler_quality.py --threads 2 --budgets 20 50 --samples 2000    # a quick look

Three mixtures whose exact scores drive every sampler (`GaussianMixtureScore`), with ``sigma_min = 0.01`` and
``sigma_max`` from `choose_sigma_max` (large for the first two; NCSNv2's technique 1 for the third):

* ``toy-2d``: NCSN's toy, 0.2 N((-5, -5), I) + 0.8 N((5, 5), I);
* ``image-64d``: 1 x 8 x 8 "images", 5 modes with weights 0.35 / 0.25 / 0.2 / 0.12 / 0.08 and stds 0.3-0.7;
* ``offset-2d``: three modes around (40, 40), far from the origin compared with their spread, so that starting
  from N(0, sigma_max^2 I) is far from p_sigma_max (prior mismatch).

Metrics, each beside the floor (two independent sets of exact samples of the same size):

* mode-weight total variation: 0.5 * sum_k |w_k(samples) - w_k| (samples assigned to the nearest mean);
* spread ratio: within-mode standard deviation of the samples / the true one, averaged over modes;
* sliced Wasserstein-2 distance to exact samples (128 random directions).

Every sampler of the package runs at budgets of 10, 20, 35, 50, 100 and 200 network calls (its settings for a
budget are printed; the adaptive solver gets a tolerance per budget, ``ADAPTIVE_TOLERANCES``, and takes the calls it
needs, which the table shows),
and so does diffusers' own ``ScoreSdeVeScheduler`` predictor-corrector loop (as in its deprecated
``ScoreSdeVePipeline``: a corrector and a predictor call per level), in the same process. Writes
``benchmarks/results/sampler_quality.md`` and ``docs/sampler_quality.png`` (quality against calls, log x).
"""

from __future__ import annotations

import argparse
import functools
import math
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import torch

from ncsn_pipeline import GaussianMixtureScore, NCSNPipeline, score_schedulers
from ncsn_pipeline.noise_schedules import step_lr_for

ROOT = Path(__file__).resolve().parents[1]
BUDGETS = (10, 20, 35, 50, 100, 200)
# The adaptive solver's tolerance for each budget column: it takes the calls its tolerance needs, about these.
ADAPTIVE_TOLERANCES = {10: 2.0, 20: 1.0, 35: 0.6, 50: 0.3, 100: 0.1, 200: 0.04}


def mixtures() -> Dict[str, GaussianMixtureScore]:
    generator = torch.Generator().manual_seed(0)
    image_means = (torch.rand(5, 1, 8, 8, generator=generator) * 2 - 1) * 1.5
    return {
        "toy-2d": GaussianMixtureScore.ncsn_toy(),
        "image-64d": GaussianMixtureScore(
            weights=[0.35, 0.25, 0.2, 0.12, 0.08], means=image_means.tolist(), stds=[0.3, 0.4, 0.5, 0.6, 0.7]
        ),
        "offset-2d": GaussianMixtureScore(
            weights=[0.5, 0.3, 0.2], means=[[36.0, 36.0], [44.0, 38.0], [40.0, 45.0]], stds=[1.0, 1.0, 1.0]
        ),
    }


def exact_samples(model: GaussianMixtureScore, count: int, generator: torch.Generator) -> torch.Tensor:
    weights = model.mode_log_weights.exp()
    modes = torch.multinomial(weights, count, replacement=True, generator=generator)
    noise = torch.randn(count, model.mode_means.shape[1], generator=generator, dtype=torch.float64)
    return model.mode_means[modes] + model.mode_variances[modes].sqrt()[:, None] * noise


def metrics(model: GaussianMixtureScore, samples: torch.Tensor, reference: torch.Tensor) -> Tuple[float, float, float]:
    """(mode-weight TV, spread ratio, sliced W2) of ``samples`` against the mixture and exact ``reference``."""
    flat = samples.reshape(samples.shape[0], -1).double()
    means = model.mode_means
    true_weights = model.mode_log_weights.exp()
    nearest = torch.cdist(flat, means).argmin(dim=1)
    weights = torch.bincount(nearest, minlength=len(means)).double() / len(flat)
    total_variation = 0.5 * float((weights - true_weights).abs().sum())
    ratios = []
    for mode in range(len(means)):
        members = flat[nearest == mode]
        if len(members) > 10:
            ratios.append(float((members - means[mode]).std(dim=0).mean() / model.mode_variances[mode].sqrt()))
    spread = sum(ratios) / len(ratios) if ratios else math.nan
    directions = torch.randn(flat.shape[1], 128, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    directions = directions / directions.norm(dim=0, keepdim=True)
    projected = torch.sort(flat @ directions, dim=0).values
    projected_reference = torch.sort(reference.double() @ directions, dim=0).values
    sliced = float(((projected - projected_reference) ** 2).mean().sqrt())
    return total_variation, spread, sliced


def settings_for_budget(name: str, budget: int) -> Dict[str, int]:
    """Each sampler's settings that spend (at most) ``budget`` network calls."""
    if name == "NCSNScheduler":  # L levels x S Langevin steps + the final denoising call
        steps = 1 if budget <= 20 else 2
        return {"num_noise_levels": max(2, (budget - 1) // steps), "steps_per_level": steps}
    if name == "VEPredictorCorrectorScheduler":  # a corrector and a predictor call per level
        return {"num_noise_levels": max(2, budget // 2), "num_corrector_steps": 1}
    if name == "AdaptiveSDEScheduler":  # the tolerance decides the calls (the table shows how many it took)
        return {"rel_tol": ADAPTIVE_TOLERANCES[budget]}
    if name in ("ProbabilityFlowHeunScheduler", "EDMStochasticScheduler"):  # 2N - 1 calls
        return {"num_noise_levels": max(2, (budget + 1) // 2)}
    return {"num_noise_levels": budget}  # one call per level (DPM-Solver++)


def variants() -> Dict[str, Tuple[str, Dict]]:
    """Label -> (sampler class name, fixed options)."""
    table = {name: (name, {}) for name in score_schedulers() if name != "DPMSolverPlusPlusScheduler"}
    for algorithm in ("2m", "2m-sde", "3m-sde"):
        table[f"DPM-Solver++ {algorithm.upper()}"] = ("DPMSolverPlusPlusScheduler", {"algorithm": algorithm})
    return table


def run_package_sampler(model, class_name, options, sigma_max, count, seed) -> Tuple[torch.Tensor, int]:
    scheduler = score_schedulers()[class_name](sigma_max=sigma_max, sigma_min=0.01, **options)
    pipe = NCSNPipeline(unet=model, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    samples = pipe(batch_size=count, generator=torch.Generator().manual_seed(seed), output_type="pt").images
    return samples, scheduler.num_model_calls


def run_diffusers_pc(model, levels: int, sigma_max: float, count: int, seed: int) -> Tuple[torch.Tensor, int]:
    """diffusers' ``ScoreSdeVeScheduler`` loop, as ``ScoreSdeVePipeline.__call__`` runs it."""
    from diffusers import ScoreSdeVeScheduler

    scheduler = ScoreSdeVeScheduler(num_train_timesteps=levels, sigma_min=0.01, sigma_max=sigma_max, snr=0.16)
    generator = torch.Generator().manual_seed(seed)
    shape = (count, *model.sample_shape)
    sample = torch.randn(shape, generator=generator) * scheduler.init_noise_sigma
    scheduler.set_timesteps(levels)
    scheduler.set_sigmas(levels)
    calls = 0
    for index, timestep in enumerate(scheduler.timesteps):
        sigma = scheduler.sigmas[index] * torch.ones(count)
        for _ in range(scheduler.config.correct_steps):
            sample = scheduler.step_correct(model(sample, sigma).sample, sample, generator=generator).prev_sample
            calls += 1
        output = scheduler.step_pred(model(sample, sigma).sample, timestep, sample, generator=generator)
        sample, mean = output.prev_sample, output.prev_sample_mean
        calls += 1
    return mean, calls


def choose_sigma_max(data_name: str, model: GaussianMixtureScore) -> float:
    """``sigma_max`` of a run: for ``offset-2d`` NCSNv2's technique 1 (the largest distance between two modes),
    which ignores how far the data sits from the origin, so the prior mismatch shows; for the others three
    times (largest mean norm + largest distance), so that N(0, sigma_max^2 I) is close to p_sigma_max and
    the samplers' own errors show."""
    spread = float(torch.cdist(model.mode_means, model.mode_means).max())
    if data_name == "offset-2d":
        return spread
    return 3 * (float(model.mode_means.norm(dim=1).max()) + spread)


def run_with_budget(model, class_name, fixed, sigma_max, count, budget) -> Tuple[torch.Tensor, int, str]:
    options = {**fixed, **settings_for_budget(class_name, budget)}
    if class_name == "NCSNScheduler":  # NCSNv2's technique 4 for its step size on these levels
        levels, steps = options["num_noise_levels"], options["steps_per_level"]
        gamma = (sigma_max / 0.01) ** (1 / (levels - 1))
        options["step_lr"] = float(f"{step_lr_for(gamma, 0.01, steps):.3g}")
        options["final_denoise"] = True
    samples, calls = run_package_sampler(model, class_name, options, sigma_max, count, 0)
    return samples, calls, ", ".join(f"{key}={value}" for key, value in options.items())


def run_diffusers_with_budget(model, sigma_max, count, budget) -> Tuple[torch.Tensor, int, str]:
    levels = max(2, budget // 2)
    samples, calls = run_diffusers_pc(model, levels, sigma_max, count, 0)
    return samples, calls, f"num_train_timesteps={levels}, correct_steps=1, snr=0.16"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (set it: a busy machine oversubscribes)")
    parser.add_argument("--samples", type=int, default=10000, help="samples per run (default 10000)")
    parser.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS), help="network-call budgets")
    parser.add_argument("--no_plot", action="store_true", help="skip the plot")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    rows: List[Tuple[str, str, int, int, float, float, float, str]] = []
    floors: Dict[str, Tuple[float, float, float]] = {}
    for data_name, model in mixtures().items():
        sigma_max = choose_sigma_max(data_name, model)
        generator = torch.Generator().manual_seed(123)
        reference = exact_samples(model, args.samples, generator)
        floors[data_name] = metrics(model, exact_samples(model, args.samples, generator), reference)
        runners: Dict[str, Callable[[int], Tuple[torch.Tensor, int, str]]] = {}
        for label, (class_name, fixed) in variants().items():
            runners[label] = functools.partial(run_with_budget, model, class_name, fixed, sigma_max, args.samples)
        runners["diffusers ScoreSdeVeScheduler PC"] = functools.partial(
            run_diffusers_with_budget, model, sigma_max, args.samples
        )
        for label, runner in runners.items():
            for budget in args.budgets:
                samples, calls, settings = runner(budget)
                tv, spread, sliced = metrics(model, samples.reshape(len(samples), -1), reference)
                rows.append((data_name, label, budget, calls, tv, spread, sliced, settings))

    lines = [
        f"Exact-score mixtures, {args.samples} samples per run, sigma_min = 0.01, sigma_max: "
        + ", ".join(f"{name} {choose_sigma_max(name, model):.4g}" for name, model in mixtures().items())
        + ". Floor = two independent exact sample sets.",
        "",
        "| data | sampler | budget | calls | mode TV | spread ratio | sliced W2 | settings |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for data_name, (tv, spread, sliced) in floors.items():
        lines.append(f"| {data_name} | floor (exact vs exact) | | | {tv:.4f} | {spread:.3f} | {sliced:.4f} | |")
    for data_name, label, budget, calls, tv, spread, sliced, settings in rows:
        lines.append(
            f"| {data_name} | {label} | {budget} | {calls} | {tv:.4f} | {spread:.3f} | {sliced:.4f} | {settings} |"
        )
    # Smallest budget at which each sampler reaches the floor (TV <= floor + 0.01, spread within 2 %).
    lines += ["", "Fewest calls reaching the floor (mode TV <= floor + 0.01 and spread ratio within 2 %):", ""]
    for label in dict.fromkeys(row[1] for row in rows):
        reached = []
        for data_name in floors:
            ok = [
                row[3]  # the calls the run took (the adaptive solver's follow from its tolerance)
                for row in rows
                if row[0] == data_name
                and row[1] == label
                and row[4] <= floors[data_name][0] + 0.01
                and abs(row[5] - 1) <= 0.02
            ]
            reached.append(f"{data_name}: {min(ok) if ok else 'not reached'}")
        lines.append(f"- {label}: " + "; ".join(reached))
    lines += ["", f"Measured with `python benchmarks/sampler_quality.py --threads {args.threads}` in "
              f"{time.perf_counter() - started:.0f} s."]  # fmt: skip
    text = "\n".join(lines)
    print(text)
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "sampler_quality.md").write_text(text + "\n")

    if not args.no_plot:
        from matplotlib.figure import Figure

        figure = Figure(figsize=(13, 7.5), dpi=100)
        axes = figure.subplots(2, len(floors), squeeze=False)
        for column, data_name in enumerate(floors):
            for row_index, (metric, position, label_y) in enumerate(
                (("mode TV", 4, "mode-weight TV"), ("spread", 5, "|spread ratio - 1|"))
            ):
                axis = axes[row_index, column]
                for label in dict.fromkeys(row[1] for row in rows):
                    points = [(row[3], row[position]) for row in rows if row[0] == data_name and row[1] == label]
                    values = [abs(value - 1) if metric == "spread" else value for _, value in points]
                    axis.plot([calls for calls, _ in points], values, marker="o", label=label)
                floor_value = floors[data_name][0] if metric == "mode TV" else abs(floors[data_name][1] - 1)
                axis.axhline(floor_value, color="black", linestyle="--", label="floor (exact vs exact)")
                axis.set_xscale("log")
                axis.set_yscale("log")
                axis.set_xlabel("network calls per sample")
                axis.set_ylabel(label_y)
                axis.set_title(data_name, fontsize=10)
        axes[0, 0].legend(fontsize=7)
        figure.tight_layout()
        docs = ROOT / "docs"
        docs.mkdir(exist_ok=True)
        figure.savefig(docs / "sampler_quality.png")
        print(f"Wrote {results / 'sampler_quality.md'} and {docs / 'sampler_quality.png'}")


if __name__ == "__main__":
    main()
