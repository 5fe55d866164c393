"""Seconds per training step of candidate score networks for 28 x 28 grey images (Fashion-MNIST), side by side.

    python benchmarks/recipe_step_time.py [--threads 2] [--batch_size 64] [--steps 10]

The first measurement of issue 20's recipe search: what a step of each network costs on this machine (forward,
backward and an Adam update on a batch of noisy 28 x 28 images at random noise levels, class-conditional where the
network takes classes), with its parameter count and weight size. It does not say which learns fastest per second;
the equal-CPU-time training comparison does (to come). Ratios are to the package's current default, the NCSNv2
RefineNet with ngf = 32.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from ncsn_pipeline import NCSNScoreModel  # noqa: E402


def _unet(channels):
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=28,
        in_channels=1,
        out_channels=1,
        block_out_channels=channels,
        down_block_types=("DownBlock2D",) * (len(channels) - 1) + ("AttnDownBlock2D",),
        up_block_types=("AttnUpBlock2D",) + ("UpBlock2D",) * (len(channels) - 1),
        layers_per_block=1,
        time_embedding_type="fourier",
        num_class_embeds=10,
        norm_num_groups=8,
    )


CANDIDATES = {
    "NCSNv2 RefineNet, ngf 32 (default)": lambda: NCSNScoreModel(
        in_channels=1, sample_size=28, ngf=32, num_class_embeds=10
    ),
    "NCSNv2 RefineNet, ngf 16": lambda: NCSNScoreModel(in_channels=1, sample_size=28, ngf=16, num_class_embeds=10),
    "NCSNv2 RefineNet, ngf 64": lambda: NCSNScoreModel(in_channels=1, sample_size=28, ngf=64, num_class_embeds=10),
    "UNet2DModel 32-64 (attention at 14x14)": lambda: _unet((32, 64)),
    "UNet2DModel 32-64-64 (attention at 7x7)": lambda: _unet((32, 64, 64)),
}


def _step_seconds(model, batch_size: int, steps: int) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch_size, 1, 28, 28, generator=generator)
    labels = torch.randint(0, 10, (batch_size,), generator=generator)
    timings = []
    for step in range(steps + 2):
        sigma = torch.exp(torch.empty(batch_size).uniform_(math.log(0.01), math.log(20.0), generator=generator))
        noise = torch.randn(images.shape, generator=generator)
        started = time.perf_counter()
        score = model(images + sigma[:, None, None, None] * noise, sigma, class_labels=labels).sample
        loss = 0.5 * ((sigma[:, None, None, None] * score + noise) ** 2).sum(dim=(1, 2, 3)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= 2:  # the first two steps warm up the allocator
            timings.append(time.perf_counter() - started)
    return sorted(timings)[len(timings) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name, build in CANDIDATES.items():
        torch.manual_seed(0)
        model = build().train()
        parameters = sum(p.numel() for p in model.parameters())
        rows.append((name, parameters, parameters * 4 / 2**20, _step_seconds(model, args.batch_size, args.steps)))
    base = rows[0][3]
    print(f"28x28 grey, batch {args.batch_size}, {args.threads} threads, median of {args.steps} steps")
    print(f"{'network':<42} {'parameters':>11} {'MB':>6} {'s / step':>9} {'ratio':>6}")
    for name, parameters, megabytes, seconds in rows:
        print(f"{name:<42} {parameters:>11,} {megabytes:>6.1f} {seconds:>9.3f} {seconds / base:>6.2f}")


if __name__ == "__main__":
    main()
