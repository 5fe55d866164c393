"""Overhead of NCSNPipeline + scheduler over a bare sampling loop, with the same cheap score function.

    python benchmarks/pipeline_overhead.py --threads 2

Both run annealed Langevin dynamics (NCSNScheduler's update, NCSN Algorithm 1 with the reference step
convention) for the same number of calls on a 16 x 3 x 32 x 32 batch and call the same model, a score so cheap
(``-x / (1 + sigma^2)``, the exact score of N(0, I) perturbed by sigma) that what is measured is the loop. Runs
alternate (who goes first too); the medians, the best times and the median ratio of back-to-back pairs are
printed side by side (on a shared machine the best times and the pairs are the least disturbed).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_2d import UNet2DOutput

from ncsn_pipeline import NCSNPipeline, NCSNScheduler

SHAPE = (16, 3, 32, 32)


class StandardNormalScore(ModelMixin, ConfigMixin):
    """The exact score of N(0, I) perturbed by sigma: ``-x / (1 + sigma^2)``."""

    @register_to_config
    def __init__(self, channels: int = 3, size: int = 32):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives the model a dtype and device

    @property
    def sample_shape(self):
        return (self.config.channels, self.config.size, self.config.size)

    def forward(self, sample, timestep, return_dict=True):
        sigma = torch.as_tensor(timestep, dtype=sample.dtype).reshape(-1, 1, 1, 1)
        return UNet2DOutput(sample=-sample / (1 + sigma**2))


def bare_loop(model, scheduler: NCSNScheduler, generator: torch.Generator) -> torch.Tensor:
    """Annealed Langevin dynamics written out with the scheduler's levels and step sizes, calling ``model``."""
    sample = torch.randn(SHAPE, generator=generator) * float(scheduler.sigmas[0])
    steps = scheduler.config.steps_per_level
    for sigma, step_size in zip(scheduler.sigmas.tolist(), scheduler.step_sizes.tolist()):
        sigmas = torch.full((SHAPE[0],), sigma)
        for _ in range(steps):
            score = model(sample, sigmas).sample
            noise = torch.randn(SHAPE, generator=generator)
            sample = sample + step_size * score + math.sqrt(2 * step_size) * noise
    return sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--levels", type=int, default=100)
    parser.add_argument("--steps_per_level", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scheduler = NCSNScheduler(
        sigma_max=10.0, sigma_min=0.01, num_noise_levels=args.levels, steps_per_level=args.steps_per_level,
        step_lr=2e-5, final_denoise=False,
    )  # fmt: skip
    pipe = NCSNPipeline(unet=StandardNormalScore(), scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    calls = scheduler.num_model_calls
    timings = {"pipeline": [], "bare loop": []}
    for repeat in range(args.repeats + 1):  # the first round warms up and is dropped
        order = ("pipeline", "bare loop") if repeat % 2 else ("bare loop", "pipeline")  # alternate who goes first
        for name in order:
            started = time.perf_counter()
            if name == "pipeline":
                pipe(batch_size=SHAPE[0], generator=torch.Generator().manual_seed(repeat), output_type="pt")
            else:
                bare_loop(pipe.unet, scheduler, torch.Generator().manual_seed(repeat))
            if repeat:
                timings[name].append((time.perf_counter() - started) / calls)
    best = {name: min(values) for name, values in timings.items()}
    pipeline, bare = (statistics.median(timings[name]) for name in ("pipeline", "bare loop"))
    # Each repeat runs both back to back: the ratio within a pair is the least disturbed by a busy neighbour.
    paired = statistics.median(p / b for p, b in zip(timings["pipeline"], timings["bare loop"]))
    print(f"{calls} calls on {SHAPE}, {args.threads} threads, {args.repeats} repeats:")
    for name, label in (("pipeline", "NCSNPipeline + NCSNScheduler"), ("bare loop", "bare loop")):
        median = statistics.median(timings[name])
        print(f"  {label:<30} median {median * 1e3:.3f} ms, best {best[name] * 1e3:.3f} ms per call")
    ratios = f"{pipeline / bare:.3f}x (medians), {best['pipeline'] / best['bare loop']:.3f}x (best)"
    print(f"  ratio: {ratios}, {paired:.3f}x (median of back-to-back pairs)")

if __name__ == "__main__":
    main()
