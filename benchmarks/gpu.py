"""Accelerator throughput of the paper-size networks (issue 23, item 5), in one command of under 5 minutes.

    python benchmarks/gpu.py                                    # on an accelerator: the README's table
    python benchmarks/gpu.py --device cpu --quick --threads 2   # a smoke run of this script on a CPU (tiny networks)

Networks: NCSNv2 at CIFAR-10 size (``NCSNScoreModel(in_channels=3, sample_size=32, ngf=128)``, NCSNv2's CIFAR-10
config) and NCSN++ with score_sde's CIFAR-10 VE config (``NCSNppScoreModel()``'s defaults, nf 128). For each:
network forward throughput (images per second) at float32, bfloat16 (the model and its inputs in bfloat16, as
``pipe.to(torch.bfloat16)`` runs it), channels-last (float32 and bfloat16) and ``torch.compile`` (float32 and
bfloat16; the sigma is a tensor input, so one graph serves every level), and one training step (denoising score
matching, Adam) at float32 and under bfloat16 autocast. Each figure is the median of timed runs over ``--seconds``
after warm-up, with the device synchronised around each run. Writes ``benchmarks/results/gpu.md`` (not with
``--quick``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import torch
from diffusers.utils import logging as diffusers_logging

from ncsn_pipeline import NCSNppScoreModel, NCSNScoreModel
from ncsn_pipeline.losses import denoising_score_matching_loss

ROOT = Path(__file__).resolve().parents[1]


def networks(quick: bool) -> Dict[str, Callable[[], torch.nn.Module]]:
    """Name -> builder of the networks measured (tiny versions with ``--quick``)."""
    if quick:
        return {
            "NCSNv2 (tiny)": lambda: NCSNScoreModel(in_channels=3, sample_size=16, ngf=8),
            "NCSN++ (tiny)": lambda: NCSNppScoreModel(
                sample_size=16, nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,)
            ),
        }
    return {
        "NCSNv2 CIFAR-10 (ngf 128)": lambda: NCSNScoreModel(in_channels=3, sample_size=32, ngf=128),
        "NCSN++ CIFAR-10 VE (nf 128)": lambda: NCSNppScoreModel(),
    }


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_second(run: Callable[[], None], batch: int, device: torch.device, seconds: float) -> float:
    """Median images/s of ``run`` (one batch) over about ``seconds`` of timed runs, after three warm-up runs."""
    for _ in range(3):
        run()
    synchronize(device)
    times: List[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 3:
        started = time.perf_counter()
        run()
        synchronize(device)
        times.append(time.perf_counter() - started)
    return batch / statistics.median(times)


def forward_runs(build, batch: int, device: torch.device, compile_: bool) -> List[Tuple[str, Callable[[], None]]]:
    """(label, one forward pass) for each precision / layout / compilation measured."""
    runs = []
    variants = [("float32", torch.float32, False, False), ("bfloat16", torch.bfloat16, False, False)]
    variants += [("float32, channels-last", torch.float32, True, False)]
    variants += [("bfloat16, channels-last", torch.bfloat16, True, False)]
    if compile_:
        variants += [("float32, compiled", torch.float32, False, True)]
        variants += [("bfloat16, compiled", torch.bfloat16, False, True)]
    for label, dtype, channels_last, compiled in variants:
        torch.manual_seed(0)
        model = build().to(device=device, dtype=dtype).eval()
        sample = torch.randn(batch, 3, model.config.sample_size, model.config.sample_size, device=device, dtype=dtype)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            sample = sample.contiguous(memory_format=torch.channels_last)
        sigma = torch.full((batch,), 0.5, device=device, dtype=dtype)
        network = torch.compile(model) if compiled else model

        def run(network=network, sample=sample, sigma=sigma):
            with torch.no_grad():
                network(sample, sigma)

        runs.append((label, run))
    return runs


def training_runs(build, batch: int, device: torch.device) -> List[Tuple[str, Callable[[], None]]]:
    """(label, one training step) at float32 and under bfloat16 autocast."""
    runs = []
    for label, autocast in (("train step, float32", False), ("train step, bfloat16 autocast", True)):
        torch.manual_seed(0)
        model = build().to(device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        size = model.config.sample_size
        clean = torch.rand(batch, 3, size, size, device=device) * 2 - 1
        sigma = torch.exp(torch.empty(batch, device=device).uniform_(-4.6, 3.9))  # 0.01 to 50
        noise = torch.randn_like(clean)

        def step(model=model, optimizer=optimizer, clean=clean, sigma=sigma, noise=noise, autocast=autocast):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                loss = denoising_score_matching_loss(model, clean, sigma, noise)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        runs.append((label, step))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--device", default="cuda", help="torch device (default: cuda)")
    parser.add_argument("--batch", type=int, default=128, help="images per forward pass and training step")
    parser.add_argument("--seconds", type=float, default=4.0, help="timed seconds per figure (after warm-up)")
    parser.add_argument("--quick", action="store_true", help="tiny networks and batch 4: a smoke run of the script")
    parser.add_argument("--no_compile", action="store_true", help="leave out the torch.compile rows")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (set it on a shared CPU)")
    args = parser.parse_args()
    diffusers_logging.set_verbosity_error()  # not the note on casting with .to(dtype): the casts are the point
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batch = 4 if args.quick else args.batch
    started = time.perf_counter()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    lines = [f"{name}, torch {torch.__version__}, batch {batch}; images per second (median of timed runs)", ""]
    lines += ["| network | run | images/s | vs float32 |", "| --- | --- | --- | --- |"]
    print("\n".join(lines), flush=True)
    for network_name, build in networks(args.quick).items():
        baseline = None
        runs = forward_runs(build, batch, device, compile_=not args.no_compile)
        runs += training_runs(build, batch, device)
        for label, run in runs:
            rate = images_per_second(run, batch, device, args.seconds)
            if label in ("float32", "train step, float32"):
                baseline = rate
            lines.append(f"| {network_name} | {label} | {rate:,.1f} | {rate / baseline:.2f}x |")
            print(lines[-1], flush=True)
    lines.append("")
    lines.append(f"Whole run: {time.perf_counter() - started:.0f} s (`python benchmarks/gpu.py {' '.join(_argv())}`).")
    print(lines[-1])
    if not args.quick:
        (ROOT / "benchmarks" / "results" / "gpu.md").write_text("\n".join(lines) + "\n")


def _argv() -> List[str]:
    import sys

    return sys.argv[1:]


if __name__ == "__main__":
    main()
