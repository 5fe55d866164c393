"""Training throughput of ``ncsn-train`` against a bare PyTorch loop doing the same work.

Both train the same NCSNv2 score network on the same data (scikit-learn digits, 8x8) with the same
batch size, loss (denoising score matching), optimizer (Adam), gradient clipping and EMA; the
script adds accelerate, checkpoint bookkeeping, logging and exact-resume randomness. Each is timed
over its training loop only (start-up and the final save excluded), twice, alternating, in one
process; the ratio of the best times is printed.

    python benchmarks/train_throughput.py --steps 200 --ngf 24 --batch_size 128
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from diffusers.training_utils import EMAModel  # noqa: E402

from ncsn_pipeline import NCSNScoreModel  # noqa: E402
from ncsn_pipeline.cli.train import main as train_main  # noqa: E402
from ncsn_pipeline.data.digits import DIGITS_NUM_LEVELS, load_digits_split  # noqa: E402
from ncsn_pipeline.losses import denoising_score_matching_loss  # noqa: E402
from ncsn_pipeline.noise_schedules import geometric_noise_levels  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import reset_accelerate_state  # noqa: E402  (test scaffolding: several trainings in one process)

SIGMA_MAX, SIGMA_MIN, NUM_LEVELS = 5.0, 0.01, 20


def bare_loop_steps_per_second(steps: int, ngf: int, batch_size: int, seed: int = 0) -> float:
    """A plain PyTorch loop: shuffle, dequantise, DSM loss, Adam, clipping, EMA."""
    torch.manual_seed(seed)
    images, _ = load_digits_split("train")
    model = NCSNScoreModel(in_channels=1, sample_size=8, ngf=ngf)
    ema = EMAModel(model.parameters(), decay=0.999)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    noise_levels = geometric_noise_levels(SIGMA_MAX, SIGMA_MIN, NUM_LEVELS).float()
    loader = torch.utils.data.DataLoader(images, batch_size=batch_size, shuffle=True, drop_last=True)
    generator = torch.Generator().manual_seed(seed)
    done = 0
    started = time.perf_counter()
    while done < steps:
        for batch in loader:
            clean = (batch.float() + torch.rand(batch.shape, generator=generator)) / DIGITS_NUM_LEVELS
            sigma = noise_levels[torch.randint(NUM_LEVELS, (clean.shape[0],), generator=generator)]
            noise = torch.randn(clean.shape, generator=generator)
            loss = denoising_score_matching_loss(model, clean, sigma, noise)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
            ema.step(model.parameters())
            loss.item()  # the script logs every step's loss: the same synchronisation here
            done += 1
            if done == steps:
                break
    return steps / (time.perf_counter() - started)


def script_steps_per_second(steps: int, ngf: int, batch_size: int, seed: int = 0) -> float:
    """``ncsn-train`` with the same settings; its own timer covers the training loop only."""
    with tempfile.TemporaryDirectory() as folder:
        output_dir = Path(folder) / "run"
        code = train_main(
            [
                "--dataset_name", "digits", "--resolution", "8", "--ngf", str(ngf),
                "--train_batch_size", str(batch_size), "--max_train_steps", str(steps),
                "--sigma_max", str(SIGMA_MAX), "--sigma_min", str(SIGMA_MIN), "--num_noise_levels", str(NUM_LEVELS),
                "--checkpointing_steps", str(10 * steps), "--report_to", "none", "--num_samples", "4",
                "--seed", str(seed), "--output_dir", str(output_dir),
            ]
        )  # fmt: skip
        if code != 0:
            raise RuntimeError("ncsn-train failed")
        record = json.loads((output_dir / "training_args.json").read_text())
    reset_accelerate_state()
    return steps / record["train_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--ngf", type=int, default=24)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, digits 8x8, ngf={args.ngf}, "
        f"batch {args.batch_size}, {args.steps} steps per measurement"
    )
    script, bare = [], []
    for repeat in range(args.repeats):
        script.append(script_steps_per_second(args.steps, args.ngf, args.batch_size))
        bare.append(bare_loop_steps_per_second(args.steps, args.ngf, args.batch_size))
        print(f"  repeat {repeat + 1}: ncsn-train {script[-1]:.2f} steps/s, bare loop {bare[-1]:.2f} steps/s")
    ratio = max(script) / max(bare)
    print(f"best: ncsn-train {max(script):.2f} steps/s, bare loop {max(bare):.2f} steps/s, ratio {ratio:.3f}")
    if not math.isfinite(ratio):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
