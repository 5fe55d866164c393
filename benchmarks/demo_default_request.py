"""How long ``python app.py`` takes to come up and to answer its default requests, timed from a fresh process.

    python benchmarks/demo_default_request.py [--threads 1] [--repeats 3]

Starts ``app.py`` (its default model and settings, ``--threads`` as given) in a new process on a free port, waits
until it serves, then sends each tab's default request (the values the page shows when it opens: default model,
sampler, its suggested noise levels and steps, seed, batch, the animation on) through ``gradio_client``
``--repeats`` times and prints the seconds of each, the first one included (it pays the first network calls).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="app.py --threads (its default is 1)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import gradio_client

    from ncsn_pipeline.demo import DemoModels
    from ncsn_pipeline.demo.limits import (
        ANY_CLASS,
        DEFAULT_AUTOGUIDANCE_SCALE,
        DEFAULT_BATCH_SIZE,
        DEFAULT_FILLS,
        DEFAULT_GUIDANCE_SCALE,
        DEFAULT_IMAGE_MODEL,
        DEFAULT_SAMPLER,
        DEFAULT_SEED,
    )

    models = DemoModels.load()
    tuned = models.defaults("images", DEFAULT_IMAGE_MODEL)
    generate = [DEFAULT_IMAGE_MODEL, DEFAULT_SAMPLER, tuned["noise_levels"], tuned["steps_per_level"], 1.0,
                DEFAULT_SEED, DEFAULT_BATCH_SIZE, True, ANY_CLASS, DEFAULT_GUIDANCE_SCALE,
                DEFAULT_AUTOGUIDANCE_SCALE]  # fmt: skip
    inpaint = [DEFAULT_IMAGE_MODEL, 0, "right half", DEFAULT_SAMPLER, tuned["noise_levels"], tuned["steps_per_level"],
               1.0, DEFAULT_SEED, DEFAULT_FILLS, 1, ANY_CLASS, DEFAULT_GUIDANCE_SCALE]  # fmt: skip

    port = _free_port()
    started = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--port", str(port), "--threads", str(args.threads)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = None
        while client is None and time.perf_counter() - started < 120:
            try:
                client = gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
            except Exception:  # not serving yet
                time.sleep(0.5)
        print(f"app.py served after {time.perf_counter() - started:.1f} s (default model {DEFAULT_IMAGE_MODEL})")
        for name, request in (("/generate", generate), ("/inpaint", inpaint)):
            for repeat in range(args.repeats):
                begun = time.perf_counter()
                summary = client.predict(*request, api_name=name)[-1]
                print(f"{name} default request {repeat + 1}: {time.perf_counter() - begun:.2f} s  ({summary[:90]}...)")
        client.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
