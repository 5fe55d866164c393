"""Seconds per sample of the commands' sampling (``ncsn-eval``, ``ncsn-digits-eval``) by torch thread count, on an idle
machine and beside a busy neighbour (one process spinning on one core, as another job on a shared machine does).

    python benchmarks/command_threads.py [--num_samples 200] [--threads 1 2]

Prints one table, every cell measured in this run, and the ratio of each cell to the 1-thread idle one. The
commands take ``--threads`` (default 1, which this benchmark chose): the bundled models' calls are small, and on a
shared 2-core machine a second intra-op thread waits on the busy core.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from ncsn_pipeline.evaluation.batches import sample_in_batches  # noqa: E402
from ncsn_pipeline.pretrained import load_pretrained  # noqa: E402


def _spin(stop) -> None:
    torch.set_num_threads(1)
    x = torch.randn(256, 256)
    while not stop.is_set():
        x = torch.tanh(x @ x) * 0.5


def seconds_per_sample(threads: int, num_samples: int) -> float:
    torch.set_num_threads(threads)
    pipe = load_pretrained("ncsn-digits")
    pipe.set_progress_bar_config(disable=True)
    sample_in_batches(pipe, 100, 100, seed=1)  # warm-up
    _, _, _, seconds = sample_in_batches(pipe, num_samples, 100, seed=0)
    return seconds / num_samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_samples", type=int, default=200)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    results = {}
    for neighbour in ("idle", "busy neighbour"):
        stop = multiprocessing.Event()
        spinner = multiprocessing.Process(target=_spin, args=(stop,)) if neighbour != "idle" else None
        if spinner is not None:
            spinner.start()
            time.sleep(1.0)
        try:
            for threads in args.threads:
                results[(neighbour, threads)] = seconds_per_sample(threads, args.num_samples)
        finally:
            if spinner is not None:
                stop.set()
                spinner.join()
    base = results[("idle", args.threads[0])]
    print(f"ncsn-digits, default sampler, batch 100, {args.num_samples} samples ({os.cpu_count()} CPUs)")
    print(f"{'machine':<16} {'threads':>7} {'s / sample':>11} {'ratio':>7}")
    for (neighbour, threads), seconds in results.items():
        print(f"{neighbour:<16} {threads:>7} {seconds:>11.4f} {seconds / base:>7.2f}")


if __name__ == "__main__":
    main()
