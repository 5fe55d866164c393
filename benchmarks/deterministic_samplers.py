"""Why deterministic samplers (probability-flow ODE) fail on a trained model where stochastic ones do not.

    python benchmarks/deterministic_samplers.py --threads 2 [--samples 300]

On the bundled ``ncsn-digits`` model (noise levels 4.736 -> 0.01 from NCSNv2's technique 1), each run is scored by
the package's digits evaluation (confident-classification rate, Fréchet distance to the held-out digits; N as
given, so compare rows with each other only):

1. the probability-flow Heun sampler at the model's levels and with more levels (does discretisation matter?);
2. the same ODE started from other points than ``N(0, sigma_max^2 I)``: from exact samples of ``p_sigma_max``
   (training digits plus noise) and from ``N(mean of the digits, sigma_max^2 I)`` (how much is prior mismatch?);
3. DPM-Solver++ 2M (deterministic) and 3M-SDE (stochastic) at the same number of levels.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from ncsn_pipeline import DPMSolverPlusPlusScheduler, ProbabilityFlowHeunScheduler  # noqa: E402
from ncsn_pipeline.data.digits import load_digits_split  # noqa: E402
from ncsn_pipeline.evaluation.digits_judge import (  # noqa: E402
    default_digit_classifier,
    evaluate_digit_samples,
    resize_to_digits,
)
from ncsn_pipeline.pretrained import load_pretrained  # noqa: E402


def run_from(pipe, scheduler, start: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The pipeline's sampling loop from a given start (instead of its own draw from the prior)."""
    scheduler.set_timesteps()
    sample = start
    with torch.no_grad():
        for sigma in scheduler.iter_timesteps():
            score = pipe.unet(sample, sigma.expand(len(sample))).sample
            sample = scheduler.step(score, sigma, sample, generator=generator, return_dict=False)[0]
    return sample.clamp(0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    classifier = default_digit_classifier()
    pipe = load_pretrained("ncsn-digits")
    pipe.set_progress_bar_config(disable=True)
    config = pipe.scheduler.config
    sigma_max, count = float(config.sigma_max), args.samples
    digits = load_digits_split("train")[0][:count].float() / 16.0  # scikit-learn digits are 0..16, data in [0, 1]
    print(f"ncsn-digits, sigma_max {sigma_max:.4g}, norm of the digits' mean {float(digits.mean(0).norm()):.3g}")

    def prior(generator):
        return torch.randn(count, *pipe.sample_shape, generator=generator) * sigma_max

    runs = [
        ("PF-ODE Heun, 22 levels, start N(0, sigma_max^2 I)", ProbabilityFlowHeunScheduler.from_config(config), prior),
        (
            "PF-ODE Heun, 50 levels, start N(0, sigma_max^2 I)",
            ProbabilityFlowHeunScheduler.from_config(config, num_noise_levels=50),
            prior,
        ),
        (
            "PF-ODE Heun, 22 levels, start: digits + sigma_max noise (exact p_sigma_max)",
            ProbabilityFlowHeunScheduler.from_config(config),
            lambda generator: digits + prior(generator),
        ),
        (
            "PF-ODE Heun, 22 levels, start N(mean digit, sigma_max^2 I)",
            ProbabilityFlowHeunScheduler.from_config(config),
            lambda generator: digits.mean(0) + prior(generator),
        ),
        (
            "DPM-Solver++ 2M (deterministic), 22 levels",
            DPMSolverPlusPlusScheduler.from_config(config, algorithm="2m"),
            prior,
        ),
        ("DPM-Solver++ 3M-SDE, 22 levels", DPMSolverPlusPlusScheduler.from_config(config, algorithm="3m-sde"), prior),
    ]
    print(f"\n| run ({count} samples, seed 0) | calls | confident rate | Fréchet distance |")
    print("| --- | ---: | ---: | ---: |")
    for label, scheduler, start in runs:
        generator = torch.Generator().manual_seed(0)
        samples = run_from(pipe, scheduler, start(generator), generator)
        scores = evaluate_digit_samples(resize_to_digits(samples), classifier)
        print(
            f"| {label} | {scheduler.num_model_calls} | {scores['confident_rate']:.3f} | "
            f"{scores['frechet_distance']:.2f} |",
            flush=True,
        )
    print(f"\nMeasured with `python benchmarks/deterministic_samplers.py --threads {args.threads} --samples {count}` "
          f"in {time.perf_counter() - started:.0f} s.")  # fmt: skip


if __name__ == "__main__":
    main()
