"""How far replacement inpainting is from the exact conditional, for every sampler, with and without resampling.

    python benchmarks/inpainting_bias.py --threads 2 [--samples 4000]

An exact-score 4-D Gaussian (`GaussianScore`; correlations 0.3-0.8) with coordinates 0 and 3 known: its conditional
is known in closed form, so every deviation of the filled coordinates is the method's (plus sampling noise: the
standard error of a mean is about sqrt(0.6 / N), 0.012 at N = 4,000). Each sampler runs 50 noise levels,
sigma 20 -> 0.01, with plain replacement (``jump_n_sample=1``) and with RePaint's resampling (``jump_length=10,
jump_n_sample=10``) where the sampler can restart at its level starts. Printed: the largest error of the two
conditional means and of the conditional covariance entries, the model calls and the time.

A second table does the same for a two-mode mixture (`GaussianMixtureScore`, 3-D, coordinate 0 known): how often
the filled part lands in each mode (closed form: the posterior weights of the modes given the known coordinate)
and its mean within the larger mode, for predictor-corrector with several resampling settings.

A third does it for colorization of the built-in ``color-glyphs`` (each glyph in red and in blue, same grey): given
the grey of one glyph, the exact conditional puts all its mass on that glyph's two colours (half each); printed is
how often a colorization is nearest to one of them, and the share of red among those.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from ncsn_pipeline import GaussianMixtureScore, GaussianScore, VEPredictorCorrectorScheduler, score_schedulers  # noqa: E402
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
            seconds = time.perf_counter() - started
            mean_error = float((samples.mean(0) - mean).abs().max())
            covariance_error = float((torch.cov(samples.T) - covariance).abs().max())
            label = "none" if jump_n_sample == 1 else "j10 x r10"
            calls = scheduler.num_model_calls * jump_n_sample
            print(f"{name:<32} {label:>12} {mean_error:>11.3f} {covariance_error:>10.3f} {calls:>6} {seconds:>8.1f}")

    mixture_section(args.samples)
    colorization_section(min(args.samples, 1000))


def mixture_section(count: int) -> None:
    model = GaussianMixtureScore(weights=[0.4, 0.6], means=[[-1.5, -1.0, -2.0], [1.5, 2.0, 1.0]], stds=[0.8, 0.8])
    known, mask = torch.tensor([0.3, 0.0, 0.0]), torch.tensor([0.0, 1.0, 1.0])
    means = torch.tensor(model.config.means, dtype=torch.float64)
    log_posterior = torch.tensor(model.config.weights).log() - 0.5 * (known[0] - means[:, 0]) ** 2 / 0.8**2
    posterior = float(torch.softmax(log_posterior, 0)[1])
    print(f"\nmixture: weight of the mode at {means[1].tolist()} given x0 = 0.3: {posterior:.3f} (closed form), its")
    print(f"unknown mean {means[1, 1:].tolist()}; predictor-corrector, 50 levels, N = {count}")
    print(f"{'jump_length x jump_n_sample':>28} {'mode weight':>12} {'mean in mode':>16} {'calls':>6}")
    for jump_length, jump_n_sample in ((10, 1), (10, 10), (10, 30), (5, 20), (25, 10)):
        scheduler = VEPredictorCorrectorScheduler(sigma_max=20.0, sigma_min=0.01, num_noise_levels=50)
        pipe = NCSNInpaintPipeline(model, scheduler)
        pipe.set_progress_bar_config(disable=True)
        samples = pipe(
            known,
            mask,
            batch_size=count,
            jump_length=jump_length,
            jump_n_sample=jump_n_sample,
            generator=torch.Generator().manual_seed(0),
            output_type="pt",
        ).images.double()
        in_mode = torch.cdist(samples, means).argmin(dim=1) == 1
        mode_mean = [round(v, 3) for v in samples[in_mode][:, 1:].mean(0).tolist()]
        label = f"{jump_length} x {jump_n_sample}"
        print(f"{label:>28} {float(in_mode.double().mean()):>12.3f} {str(mode_mean):>16} {100 * jump_n_sample:>6}")


def colorization_section(count: int) -> None:
    from ncsn_pipeline.inpainting import NCSNColorizePipeline
    from ncsn_pipeline.pretrained import load_pretrained

    glyphs = load_pretrained("color-glyphs")
    grey = glyphs.unet.mode_means[4].reshape(3, 8, 8).mean(0).float()  # glyph 2 (the cross): modes 4 (red), 5 (blue)
    print(
        f"\ncolorization of the grey cross of color-glyphs, 30 levels, N = {count}: closed form 1.000 right shape, "
        "0.500 red"
    )
    print(f"{'sampler':<32} {'jump_length x jump_n_sample':>28} {'right shape':>12} {'red':>6} {'calls':>6}")
    for name, jump_length, jump_n_sample in (
        ("VEPredictorCorrectorScheduler", 5, 1), ("VEPredictorCorrectorScheduler", 5, 5),
        ("VEPredictorCorrectorScheduler", 3, 10), ("NCSNScheduler", 5, 1), ("NCSNScheduler", 5, 10),
        ("DPMSolverPlusPlusScheduler", 5, 1),
    ):  # fmt: skip
        scheduler = score_schedulers()[name].from_config(glyphs.scheduler.config, num_noise_levels=30)
        pipe = NCSNColorizePipeline(glyphs.unet, scheduler, data_range=(0, 1))
        pipe.set_progress_bar_config(disable=True)
        colours = pipe(
            grey, batch_size=count, jump_length=jump_length, jump_n_sample=jump_n_sample,
            generator=torch.Generator().manual_seed(0), output_type="pt",
        ).images.double()  # fmt: skip
        nearest = torch.cdist(colours.flatten(1), glyphs.unet.mode_means).argmin(dim=1)
        right = (nearest == 4) | (nearest == 5)
        red = float((nearest[right] == 4).double().mean()) if right.any() else float("nan")
        label = f"{jump_length} x {jump_n_sample}"
        calls = scheduler.num_model_calls * jump_n_sample
        print(f"{name:<32} {label:>28} {float(right.double().mean()):>12.3f} {red:>6.3f} {calls:>6}")


if __name__ == "__main__":
    main()
