"""A run begun mid-schedule against the tail of a full run, on exact-score mixtures (issue 22, item 1).

    python benchmarks/begin_anywhere.py --threads 2            # ~1 minute on 2 cores

DPM-Solver++ (2M, 2M-SDE, 3M-SDE; 50 levels) and the adaptive SDE solver keep state between calls, so a run begun at
level k (RePaint's restarts, SDEdit) cannot repeat the full run's steps: DPM-Solver++ warms up with a first- and a
second-order step, the adaptive solver chooses its own steps from the new start. For each of two seeds, a full run of
5,000 samples records its states at the level starts 1/4, 1/2 and 3/4 of the way; a run begun there from those
states (fresh noise) must end in the same distribution as the full run. Printed per run: mode-weight total variation,
within-mode spread ratio and sliced Wasserstein-2 distance to exact samples (`sampler_quality.metrics`), beside the
same figures for a second set of exact samples (the floor).

Mixtures (`sampler_quality.mixtures`): ``toy-2d`` (NCSN's toy) and ``image-64d`` (5 modes of 1 x 8 x 8 "images").
Writes ``benchmarks/results/begin_anywhere.txt``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, List, Tuple

import torch
from sampler_quality import choose_sigma_max, exact_samples, metrics, mixtures

from ncsn_pipeline import score_schedulers

ROOT = Path(__file__).resolve().parents[1]
VARIANTS: Dict[str, Tuple[str, Dict]] = {
    "DPM-Solver++ 2M": ("DPMSolverPlusPlusScheduler", {"algorithm": "2m", "num_noise_levels": 50}),
    "DPM-Solver++ 2M-SDE": ("DPMSolverPlusPlusScheduler", {"algorithm": "2m-sde", "num_noise_levels": 50}),
    "DPM-Solver++ 3M-SDE": ("DPMSolverPlusPlusScheduler", {"algorithm": "3m-sde", "num_noise_levels": 50}),
    "adaptive SDE (rel_tol 0.05)": ("AdaptiveSDEScheduler", {"rel_tol": 0.05}),
}


def drive(model, scheduler, sample, generator, begin: int = 0, record: Dict[int, torch.Tensor] = None):
    """Run ``scheduler`` on the exact score from call ``begin``; ``record`` keeps the sample at every call."""
    for index, sigma in enumerate(scheduler.iter_timesteps()):
        if index < begin:
            continue
        if record is not None:
            record[index] = sample
        score = model(sample, sigma.expand(sample.shape[0])).sample
        sample = scheduler.step(score, sigma, sample, generator=generator, return_dict=False)[0]
    return sample


def begun_runs(model, class_name, options, sigma_max, count, seed) -> List[Tuple[str, torch.Tensor]]:
    """The full run and the runs begun at three of its level starts, each as (label, samples)."""
    sampler = score_schedulers()[class_name]
    full = sampler(sigma_max=sigma_max, sigma_min=0.01, **options)
    generator = torch.Generator().manual_seed(seed)
    prior = torch.randn(count, *model.sample_shape, generator=generator, dtype=torch.float64) * full.init_noise_sigma
    record: Dict[int, torch.Tensor] = {}
    samples = drive(model, full, prior, generator, record=record)
    runs = [(f"full run ({full.num_model_calls} calls)", samples)]
    starts = full.level_start_indices
    for fraction in (0.25, 0.5, 0.75):
        start = starts[int(fraction * (len(starts) - 1))]
        level = float(full.timesteps[start])
        begun = sampler(sigma_max=sigma_max, sigma_min=0.01, **options)
        if begun.adaptive:
            begun.set_begin_sigma(level)
            first = 0
        else:
            begun.set_begin_index(start)
            first = start
        generator = torch.Generator().manual_seed(1000 + seed)
        samples = drive(model, begun, record[start], generator, begin=first)
        calls = begun.num_model_calls - first
        runs.append((f"begun at sigma {level:.3g} ({calls} calls)", samples))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (set it: a busy machine oversubscribes)")
    parser.add_argument("--samples", type=int, default=5000, help="samples per run (default 5000)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lines = [f"N = {args.samples} per run, seeds 0 and 1; figures: mode TV / spread ratio / sliced W2 (vs exact)"]
    for data_name in ("toy-2d", "image-64d"):
        model = mixtures()[data_name]
        sigma_max = choose_sigma_max(data_name, model)
        floors = []
        for seed in (0, 1):
            reference = exact_samples(model, args.samples, torch.Generator().manual_seed(10 + seed)).flatten(1)
            second = exact_samples(model, args.samples, torch.Generator().manual_seed(20 + seed))
            floors.append(metrics(model, second, reference))
        floor = "   ".join(f"{tv:.4f} / {spread:.3f} / {sliced:.4f}" for tv, spread, sliced in floors)
        lines += ["", f"{data_name} (sigma_max {sigma_max:.4g}); exact vs exact (floor): {floor}"]
        for label, (class_name, options) in VARIANTS.items():
            lines.append(f"  {label}")
            per_seed = []
            for seed in (0, 1):
                reference = exact_samples(model, args.samples, torch.Generator().manual_seed(10 + seed)).flatten(1)
                per_seed.append(
                    [(name, metrics(model, samples, reference)) for name, samples in
                     begun_runs(model, class_name, options, sigma_max, args.samples, seed)]  # fmt: skip
                )
            for row in range(len(per_seed[0])):
                figures = "   ".join(
                    f"{tv:.4f} / {spread:.3f} / {sliced:.4f}" for tv, spread, sliced in (s[row][1] for s in per_seed)
                )
                lines.append(f"    {per_seed[0][row][0]:<36} {figures}")
            print("\n".join(lines[-5:]), flush=True)
    text = "\n".join(lines) + "\n"
    (ROOT / "benchmarks" / "results" / "begin_anywhere.txt").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
