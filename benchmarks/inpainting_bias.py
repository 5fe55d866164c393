"""How far replacement inpainting is from the exact conditional, for every sampler, with and without resampling.

    python benchmarks/inpainting_bias.py --threads 2 [--samples 4000]

An exact-score 4-D Gaussian (`GaussianScore`; correlations 0.3-0.8) with coordinates 0 and 3 known: its conditional
is known in closed form, so every deviation of the filled coordinates is the method's (plus sampling noise: the
standard error of a mean is about sqrt(0.6 / N), 0.012 at N = 4,000). Each sampler runs 50 noise levels,
sigma 20 -> 0.01, with plain replacement (``jump_n_sample=1``) and with RePaint's resampling (``jump_length=10,
jump_n_sample=10``) where the sampler can restart at its level starts. Printed: the largest error of the two
conditional means and of the conditional covariance entries, the model calls and the time.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from ncsn_pipeline import GaussianScore, score_schedulers  # noqa: E402
from ncsn_pipeline.inpainting import NCSNInpaintPipeline  # noqa: E402

MEAN = [1.0, -1.0, 0.5, 0.0]
COVARIANCE = [[1.0, 0.6, 0.3, 0.5], [0.6, 1.0, 0.5, 0.4], [0.3, 0.5, 1.0, 0.8], [0.5, 0.4, 0.8, 1.0]]
KNOWN = torch.tensor([2.0, 0.0, 0.0, 1.0])  # coordinates 0 and 3 are known
MASK = torch.tensor([0.0, 1.0, 1.0, 0.0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--samples", type=int, default=4000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = GaussianScore(MEAN, COVARIANCE)
    unknown, mean, covariance = model.conditional([0, 3], KNOWN[[0, 3]])
    print(
        f"closed form: mean {[round(v, 3) for v in mean.tolist()]}, covariance "
        f"{[[round(v, 3) for v in row] for row in covariance.tolist()]}; N = {args.samples}"
    )
    print(f"{'sampler':<32} {'resampling':>12} {'mean error':>11} {'cov error':>10} {'calls':>6} {'seconds':>8}")
    for name, cls in score_schedulers().items():
        for jump_n_sample in (1, 10):
            # from_config: annealed Langevin picks its step size for these levels (NCSNv2's technique 4)
            scheduler = cls.from_config(dict(sigma_max=20.0, sigma_min=0.01, num_noise_levels=50))
            pipe = NCSNInpaintPipeline(model, scheduler)
            pipe.set_progress_bar_config(disable=True)
            calls = []
            forward = model.forward
            model.forward = lambda *a, **k: calls.append(1) or forward(*a, **k)
            started = time.perf_counter()
            try:
                samples = pipe(
                    KNOWN,
                    MASK,
                    batch_size=args.samples,
                    jump_length=10,
                    jump_n_sample=jump_n_sample,
                    generator=torch.Generator().manual_seed(0),
                    output_type="pt",
                ).images.double()[:, unknown]
            except ValueError:  # resampling needs a sampler that can restart mid-run
                print(f"{name:<32} {'j10 x r10':>12} {'(cannot restart)':>30}")
                continue
            finally:
                model.forward = forward
            seconds = time.perf_counter() - started
            mean_error = float((samples.mean(0) - mean).abs().max())
            covariance_error = float((torch.cov(samples.T) - covariance).abs().max())
            label = "none" if jump_n_sample == 1 else "j10 x r10"
            print(
                f"{name:<32} {label:>12} {mean_error:>11.3f} {covariance_error:>10.3f} {len(calls):>6} {seconds:>8.1f}"
            )


if __name__ == "__main__":
    main()
