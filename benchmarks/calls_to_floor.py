"""Network calls to the statistical floor on exact-score mixtures, and the prior-mismatch rule for ``sigma_max``
(issue 23, item 1).

Two mixtures drive the samplers through their exact scores (`GaussianMixtureScore`): NCSN's 2-D toy
(0.2 N((-5, -5), I) + 0.8 N((5, 5), I)) and a 10-mode 64-D mixture (1 x 8 x 8 "images", seeded means in
[-1.5, 1.5], weights 0.20 ... 0.04, stds 0.3 ... 0.7). A run reaches the floor when, for both of two seeds
(5,000 samples each), its mode-weight total variation is within 0.01 of the floor's (two independent exact sample
sets) and its within-mode spread ratio within 2 % of 1.

Part 1, ``sigma_max``: the deterministic DPM-Solver++ 2M (an exact-score ODE keeps any mismatch between the
prior N(0, sigma_max**2 I) and p_sigma_max) at 50 calls, with sigma_max from NCSNv2's Technique 1 (the largest
distance between modes), three times that, and `noise_schedules.sigma_max_for_prior` at tolerance 0.01, beside
the rule's bound (`prior_mismatch`).

Part 2, calls: a grid of named settings (sampler, rho, sigma_min, number of levels), sigma_max from the rule;
prints, for every setting, the figures of both seeds and marks those at the floor with ``FLOOR``; then the settings
that reach it on both mixtures at the same number of calls, if any.

    python benchmarks/calls_to_floor.py --threads 2        # about 2 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import torch

from ncsn_pipeline import GaussianMixtureScore, NCSNPipeline, score_schedulers
from ncsn_pipeline.noise_schedules import prior_mismatch, sigma_max_for_prior

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sampler_quality import exact_samples, metrics  # noqa: E402  (one definition of the metrics)

COUNT = 5000
SEEDS = (0, 1)
TV_SLACK, SPREAD_SLACK = 0.01, 0.02


def mixtures() -> Dict[str, GaussianMixtureScore]:
    generator = torch.Generator().manual_seed(0)
    means = (torch.rand(10, 1, 8, 8, generator=generator) * 2 - 1) * 1.5
    return {
        "toy-2d": GaussianMixtureScore.ncsn_toy(),
        "mixture-64d": GaussianMixtureScore(
            weights=[0.2, 0.15, 0.13, 0.11, 0.1, 0.09, 0.07, 0.06, 0.05, 0.04],
            means=means.tolist(),
            stds=torch.linspace(0.3, 0.7, 10).tolist(),
        ),
    }


def mixture_fit(model: GaussianMixtureScore) -> Tuple[torch.Tensor, torch.Tensor]:
    """The exact mean and covariance eigenvalues of the mixture (the Gaussian fit `gaussian_fit` estimates)."""
    weights, means, variances = model.mode_log_weights.exp(), model.mode_means, model.mode_variances
    mean = (weights[:, None] * means).sum(dim=0)
    centred = means - mean
    covariance = torch.diag(torch.full((means.shape[1],), float((weights * variances).sum()), dtype=torch.float64))
    covariance = covariance + (weights[:, None, None] * centred[:, :, None] * centred[:, None, :]).sum(dim=0)
    return mean, torch.linalg.eigvalsh(covariance)


def run(model, sampler: str, options: dict, sigma_max: float, seed: int) -> Tuple[torch.Tensor, int]:
    scheduler = score_schedulers()[sampler](sigma_max=sigma_max, **options)
    pipe = NCSNPipeline(unet=model, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    samples = pipe(batch_size=COUNT, generator=torch.Generator().manual_seed(seed), output_type="pt").images
    return samples.reshape(COUNT, -1), scheduler.num_model_calls


def judged(model, reference, floors, sampler, options, sigma_max) -> Tuple[List[Tuple[float, float]], int, bool]:
    figures = []
    for seed in SEEDS:
        samples, calls = run(model, sampler, options, sigma_max, seed)
        total_variation, spread, _ = metrics(model, samples, reference)
        figures.append((total_variation, spread))
    at_floor = all(
        tv <= floor + TV_SLACK and abs(spread - 1) <= SPREAD_SLACK for (tv, spread), floor in zip(figures, floors)
    )
    return figures, calls, at_floor


def settings() -> List[Tuple[str, str, dict]]:
    """(label, sampler, options) of the grid: every option a user can pass by name. DPM-Solver++ 2M, the closest to
    the floor on the coarse grid, gets a finer one (where the grid ends, rho, every call count from 10 to 15)."""
    grid = []
    coarse = itertools.product(
        [
            ("DPM-Solver++ 3M (eta 0)", "DPMSolverPlusPlusScheduler", {"algorithm": "3m-sde", "eta": 0.0}),
            ("DPM-Solver++ 2M-SDE", "DPMSolverPlusPlusScheduler", {"algorithm": "2m-sde"}),
            ("DPM-Solver++ 3M-SDE", "DPMSolverPlusPlusScheduler", {"algorithm": "3m-sde"}),
            ("probability-flow Heun", "ProbabilityFlowHeunScheduler", {}),
        ],
        (0.01, 0.03, 0.1),
        (3.0, 7.0),
    )
    fine = itertools.product(
        [("DPM-Solver++ 2M", "DPMSolverPlusPlusScheduler", {"algorithm": "2m"})],
        (0.01, 0.03, 0.05, 0.07, 0.1),
        (3.0, 5.0, 7.0),
    )
    for (label, sampler, fixed), sigma_min, rho in itertools.chain(fine, coarse):
        if sampler == "ProbabilityFlowHeunScheduler":
            levels = (6, 7, 8)  # two calls per level but the last
        elif fixed["algorithm"] == "2m":
            levels = tuple(range(10, 16))
        else:
            levels = (10, 12, 15)
        for count in levels:
            options = {**fixed, "sigma_min": sigma_min, "rho": rho, "num_noise_levels": count}
            grid.append((label, sampler, options))
    return grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    at_floor: Dict[str, Dict[Tuple[str, str, int], bool]] = {}
    for name, model in mixtures().items():
        generator = torch.Generator().manual_seed(123)
        reference = exact_samples(model, COUNT, generator)
        floors = [metrics(model, exact_samples(model, COUNT, generator), reference)[0] for _ in SEEDS]
        mean, eigenvalues = mixture_fit(model)
        technique_1 = float(torch.cdist(model.mode_means, model.mode_means).max())
        rule = sigma_max_for_prior(exact_samples(model, 20000, torch.Generator().manual_seed(7)), tolerance=0.01)
        print(f"\n== {name}: floor mode TV {floors[0]:.4f} / {floors[1]:.4f} (seed 0 / 1)")
        print("sigma_max rule, DPM-Solver++ 2M at 50 calls (mode TV, spread; seeds 0 / 1):")
        for label, sigma_max in (("Technique 1", technique_1), ("3 x Technique 1", 3 * technique_1),
                                 ("rule, tolerance 0.01", rule)):  # fmt: skip
            figures, _, _ = judged(
                model, reference, floors, "DPMSolverPlusPlusScheduler",
                {"algorithm": "2m", "num_noise_levels": 50, "sigma_min": 0.01}, sigma_max,
            )  # fmt: skip
            bound = prior_mismatch(mean, eigenvalues, sigma_max)
            shown = " / ".join(f"TV {tv:.4f}, spread {spread:.3f}" for tv, spread in figures)
            print(f"  {label:22s} sigma_max {sigma_max:7.2f}  bound {bound:.4f}  {shown}")
        print(f"calls (sigma_max {rule:.2f} from the rule):")
        at_floor[name] = {}
        for label, sampler, options in settings():
            figures, calls, reached = judged(model, reference, floors, sampler, options, rule)
            key = (label, f"sigma_min {options['sigma_min']:g}, rho {options['rho']:g}", calls)
            at_floor[name][key] = reached
            shown = "  ".join(f"TV {tv:.4f} spread {spread:.3f}" for tv, spread in figures)
            print(f"  {label:24s} {key[1]:22s} calls {calls:3d}  {shown}{'  FLOOR' if reached else ''}", flush=True)
    both = [key for key in at_floor["toy-2d"] if at_floor["toy-2d"][key] and at_floor["mixture-64d"].get(key)]
    print("\nAt the floor on both mixtures with one setting:", both or "none")
    for name, table in at_floor.items():
        print(f"At the floor on {name}:", [key for key, reached in table.items() if reached] or "none")
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
