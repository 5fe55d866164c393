"""The slowest request the web demo accepts, timed on this machine (issue 9, item 12: it must stay under 30 s).

For every image model and sampler, the largest request the limits admit is built from the limits themselves:
the most noise levels and Langevin steps whose calls stay within the tab's call limit, then the largest batch that keeps
calls x batch within ``MAX_IMAGE_WORK``, with the animation on; likewise for the playground with the most points.
Each is run once through the same functions the demo's callbacks call; the slowest is printed last.

    python benchmarks/demo_worst_case.py [--threads 2] [--only MODEL]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from ncsn_pipeline.demo import DemoModels  # noqa: E402
from ncsn_pipeline.demo.images import generate_images  # noqa: E402
from ncsn_pipeline.demo.limits import (  # noqa: E402
    MAX_BATCH_SIZE,
    MAX_IMAGE_CALLS,
    MAX_IMAGE_WORK,
    MAX_PLAYGROUND_CALLS,
    MAX_PLAYGROUND_WORK,
    NOISE_LEVELS_RANGE,
    POINTS_RANGE,
    STEPS_PER_LEVEL_RANGE,
)
from ncsn_pipeline.demo.playground import run_playground  # noqa: E402
from ncsn_pipeline.demo.samplers import SAMPLERS, prepare_run  # noqa: E402


def largest_run(base_config, sampler: str, max_calls: int):
    """(noise levels, steps per level, calls): the most calls within ``max_calls`` for this sampler."""
    best = None
    for levels in range(NOISE_LEVELS_RANGE[1], NOISE_LEVELS_RANGE[0] - 1, -1):
        for steps in (STEPS_PER_LEVEL_RANGE[1], 100, 50, 20, 10, 9, 5, 4, 3, 2, 1):
            calls = prepare_run(sampler, base_config, levels, steps, 1.0, max_calls).max_model_calls
            if calls <= max_calls and (best is None or calls > best[2]):
                best = (levels, steps, calls)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (set explicitly: see DESIGN.md §12)")
    parser.add_argument("--only", default=None, help="time one model's requests only (a key of the demo's tables)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = DemoModels.load()
    results = []
    for model, entry in models.images.items():
        if args.only and model != args.only:
            continue
        for sampler in SAMPLERS:
            levels, steps, calls = largest_run(entry.pipeline.scheduler.config, sampler, MAX_IMAGE_CALLS)
            for batch in sorted({1, min(MAX_BATCH_SIZE, MAX_IMAGE_WORK // calls)}):
                started = time.perf_counter()
                generate_images(models, model, sampler, levels, steps, 1.0, 0, batch, True)
                seconds = time.perf_counter() - started
                results.append((seconds, f"images {model} {sampler} {levels}x{steps} ({calls} calls) batch {batch}"))
                print(f"{seconds:6.1f} s  {results[-1][1]}", flush=True)
    for model, entry in models.points.items():
        if args.only and model != args.only:
            continue
        for sampler in SAMPLERS:
            levels, steps, calls = largest_run(entry.pipeline.scheduler.config, sampler, MAX_PLAYGROUND_CALLS)
            points = min(POINTS_RANGE[1], MAX_PLAYGROUND_WORK // (2 * calls))
            started = time.perf_counter()
            run_playground(models, model, sampler, levels, steps, 1.0, 1.0, 0, points)
            seconds = time.perf_counter() - started
            results.append((seconds, f"playground {model} {sampler} {levels}x{steps} ({calls} calls) {points} points"))
            print(f"{seconds:6.1f} s  {results[-1][1]}", flush=True)
    seconds, what = max(results)
    print(f"\nSlowest accepted request ({args.threads} torch threads): {seconds:.1f} s, {what}; the bound is 30 s.")


if __name__ == "__main__":
    main()
