"""The slowest requests the web demo accepts, and a burst of concurrent requests, timed on this machine.

Issue 9 (item 12) and issue 21 (item 8): every accepted request must finish within 30 s on 2 cores, also next to two
busy processes, and a burst of 50 concurrent requests must leave the demo responsive with flat memory.

``--tab images|inpainting|playground``: for every model and sampler, the accepted request of largest predicted
time (images and inpainting: `ncsn_pipeline.demo.cost`, from the network's timing on this machine; the playground:
the most noise levels, steps and points its limits admit) is found with the demo's own checks and run once through
the functions the demo's callbacks call (without the demo's 30 s deadline, so the real time shows). Classes are
chosen where a model takes them, guided models at the largest guidance scale; inpainting also with the largest
RePaint resampling where the sampler can restart. The slowest is printed last.

``--burst N``: starts ``app.py`` (its default threads) in a subprocess, sends N default requests of the three tabs at
once through the queue, reads the page every half second meanwhile, and reports what each request got, the page's
slowest answer and the server's resident memory before, after one burst and after a second one.

``--busy K`` runs K busy processes (single-threaded PyTorch matrix products, as other jobs on the machine) meanwhile.

    python benchmarks/demo_worst_case.py --tab inpainting --busy 2 [--threads 1] [--only MODEL] [--samplers A,B]
    python benchmarks/demo_worst_case.py --burst 50 --busy 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from ncsn_pipeline.demo import DemoModels  # noqa: E402
from ncsn_pipeline.demo.cost import MAX_PREDICTED_SECONDS as MAX_PREDICTED_S  # noqa: E402
from ncsn_pipeline.demo.cost import max_image_calls  # noqa: E402
from ncsn_pipeline.demo.images import generate_images  # noqa: E402
from ncsn_pipeline.demo.inpainting import inpaint_image  # noqa: E402
from ncsn_pipeline.demo.limits import (  # noqa: E402
    ANY_CLASS,
    GUIDANCE_SCALE_RANGE,
    MAX_BATCH_SIZE,
    MAX_IMAGE_CALLS,
    MAX_PLAYGROUND_CALLS,
    MAX_PLAYGROUND_WORK,
    NOISE_LEVELS_RANGE,
    POINTS_RANGE,
    RESAMPLING_RANGE,
    STEPS_PER_LEVEL_RANGE,
)
from ncsn_pipeline.demo.playground import run_playground  # noqa: E402
from ncsn_pipeline.demo.samplers import SAMPLERS, prepare_run  # noqa: E402
from ncsn_pipeline.scheduling_utils import restartable_samplers  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BUSY_LOOP = (
    "import torch\ntorch.set_num_threads(1)\na = torch.randn(512, 512)\nwhile True:\n    a = torch.tanh(a @ a)\n"
)
STEP_CHOICES = (STEPS_PER_LEVEL_RANGE[1], 100, 50, 20, 10, 9, 5, 4, 3, 2, 1)


@contextlib.contextmanager
def busy_processes(count: int):
    """``count`` CPU-bound processes (one thread each) for the duration of the block."""
    processes = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(count)]
    try:
        time.sleep(1.0 if count else 0.0)  # let them start
        yield
    finally:
        for process in processes:
            process.kill()
            process.wait()


def run_sizes(base_config, sampler: str, max_calls: int, jump_n_sample: int = 1):
    """``{total calls: (noise levels, steps per level)}`` for the runs of ``sampler`` within ``max_calls`` (an adaptive
    sampler's run is its cap: the most it may take)."""
    sizes = {}
    for levels in range(NOISE_LEVELS_RANGE[1], NOISE_LEVELS_RANGE[0] - 1, -1):
        for steps in STEP_CHOICES if SAMPLERS[sampler].langevin_steps_key else (1,):
            run = prepare_run(sampler, base_config, levels, steps, 1.0, max(max_calls // jump_n_sample, 1))
            calls = run.max_model_calls * jump_n_sample
            if calls <= max_calls:
                sizes.setdefault(calls, (levels, steps))
        if SAMPLERS[sampler].adaptive:
            break  # its calls do not depend on the levels asked for
    return sizes


def largest_run(base_config, sampler: str, max_calls: int, jump_n_sample: int = 1):
    """(noise levels, steps per level, total calls): the most calls within ``max_calls`` for this sampler."""
    calls = max(run_sizes(base_config, sampler, max_calls, jump_n_sample))
    return (*run_sizes(base_config, sampler, max_calls, jump_n_sample)[calls], calls)


def slowest_image_request(entry, sampler: str, guided: bool, jump_n_sample: int = 1):
    """(predicted seconds, levels, steps, calls, batch) of the accepted request of largest predicted time."""
    cost = entry.call_cost(guided=guided)
    config = entry.pipeline.scheduler.config
    fixed_sizes = None if SAMPLERS[sampler].adaptive else run_sizes(config, sampler, MAX_IMAGE_CALLS, jump_n_sample)
    best = None
    for batch in range(1, MAX_BATCH_SIZE + 1):
        max_calls = max_image_calls(cost, batch)
        sizes = fixed_sizes or run_sizes(config, sampler, max_calls, jump_n_sample)
        fitting = [calls for calls in sizes if calls <= max_calls and cost.seconds(calls, batch) <= MAX_PREDICTED_S]
        if fitting:
            calls = max(fitting)
            if best is None or cost.seconds(calls, batch) > best[0]:
                best = (cost.seconds(calls, batch), *sizes[calls], calls, batch)
    return best


def time_tab(models: DemoModels, tab: str, only, samplers, print_row):
    for model, entry in (models.points if tab == "playground" else models.images).items():
        if only and model != only:
            continue
        for sampler in samplers:
            if tab == "playground":
                levels, steps, calls = largest_run(entry.pipeline.scheduler.config, sampler, MAX_PLAYGROUND_CALLS)
                points = min(POINTS_RANGE[1], MAX_PLAYGROUND_WORK // (2 * calls))
                started = time.perf_counter()
                run_playground(models, model, sampler, levels, steps, 1.0, 1.0, 0, points)
                print_row(time.perf_counter() - started, None, f"{tab}: {model} {sampler} {levels}x{steps} ({calls} "
                          f"calls) {points} points")  # fmt: skip
                continue
            class_name = entry.class_names[-1] if entry.class_names else ANY_CLASS
            guided = entry.classifier is not None
            guidance = GUIDANCE_SCALE_RANGE[1]
            jumps = [1] if tab == "images" else [1, RESAMPLING_RANGE[1]]
            for jump_n_sample in jumps:
                if jump_n_sample > 1 and sampler not in restartable_samplers():
                    continue
                predicted, levels, steps, calls, batch = slowest_image_request(entry, sampler, guided, jump_n_sample)
                started = time.perf_counter()
                if tab == "images":
                    generate_images(models, model, sampler, levels, steps, 1.0, 0, batch, True, class_name, guidance)
                else:
                    inpaint_image(models, model, 0, "right half", sampler, levels, steps, 1.0, 0, batch,
                                  jump_n_sample, class_name, guidance)  # fmt: skip
                what = f"{tab}: {model} {sampler} {levels}x{steps}"
                what += f" x{jump_n_sample} resampling" if jump_n_sample > 1 else ""
                what += f" ({calls} calls) batch {batch}"
                what += f", class {class_name}" if class_name != ANY_CLASS else ""
                what += f", guidance {guidance:g}" if guided else ""
                print_row(time.perf_counter() - started, predicted, what)


# --------------------------------------------------------------------------------------------------
# The burst
# --------------------------------------------------------------------------------------------------
def default_bodies(models: DemoModels):
    """Each tab's default request: the values the page shows when it opens (as benchmarks/demo_default_request.py)."""
    from ncsn_pipeline.demo.limits import (
        DEFAULT_BATCH_SIZE,
        DEFAULT_FILLS,
        DEFAULT_GUIDANCE_SCALE,
        DEFAULT_IMAGE_MODEL,
        DEFAULT_PLAYGROUND_MODEL,
        DEFAULT_POINTS,
        DEFAULT_SAMPLER,
        DEFAULT_SEED,
    )

    image = models.defaults("images", DEFAULT_IMAGE_MODEL)
    points = models.defaults("points", DEFAULT_PLAYGROUND_MODEL)
    controls = [DEFAULT_SAMPLER, image["noise_levels"], image["steps_per_level"], 1.0, DEFAULT_SEED]
    return {
        "generate": [DEFAULT_IMAGE_MODEL, *controls, DEFAULT_BATCH_SIZE, True, ANY_CLASS, DEFAULT_GUIDANCE_SCALE],
        "inpaint": [DEFAULT_IMAGE_MODEL, 0, "right half", *controls, DEFAULT_FILLS, 1, ANY_CLASS,
                    DEFAULT_GUIDANCE_SCALE],
        "playground": [DEFAULT_PLAYGROUND_MODEL, DEFAULT_SAMPLER, points["noise_levels"], points["steps_per_level"],
                       1.0, 1.0, DEFAULT_SEED, DEFAULT_POINTS],
    }  # fmt: skip


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _resident_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))


def _request(url: str, api: str, data) -> str:
    """One request through the queue (``/call``): 'served', 'queue full' or 'error: ...'."""
    body = json.dumps({"data": data}).encode()
    try:
        joined = urllib.request.urlopen(
            urllib.request.Request(f"{url}gradio_api/call/{api}", body, {"content-type": "application/json"}),
            timeout=600,
        )
        event_id = json.loads(joined.read())["event_id"]
        stream = urllib.request.urlopen(f"{url}gradio_api/call/{api}/{event_id}", timeout=600).read().decode()
    except urllib.error.HTTPError as error:  # the queue refuses a join with 503 when it is full
        text = error.read().decode(errors="replace")
        return "queue full" if error.code == 503 and "queue is full" in text.lower() else f"error: {error} {text[:200]}"
    except (urllib.error.URLError, OSError) as error:
        return f"error: {error}"
    if "event: complete" in stream:
        return "served"
    if "Queue is full" in stream or "queue is full" in stream.lower():
        return "queue full"
    return "error: " + stream[-200:].replace("\n", " ")


def burst_round(url: str, count: int, bodies):
    """Send ``count`` requests at once (the tabs in turn) while reading the page every half second; return each
    request's (outcome, seconds) and the page's answer times."""
    page_seconds, done = [], threading.Event()
    apis = [list(bodies)[number % len(bodies)] for number in range(count)]
    outcomes = [None] * count
    barrier = threading.Barrier(count)

    def read_page():
        while not done.is_set():
            asked = time.perf_counter()
            urllib.request.urlopen(url, timeout=60).read()
            page_seconds.append(time.perf_counter() - asked)
            time.sleep(0.5)

    def send(number):
        barrier.wait()
        asked = time.perf_counter()
        outcomes[number] = (_request(url, apis[number], bodies[apis[number]]), time.perf_counter() - asked)

    reader = threading.Thread(target=read_page)
    senders = [threading.Thread(target=send, args=(number,)) for number in range(count)]
    reader.start()
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    done.set()
    reader.join()
    return outcomes, page_seconds


def burst(count: int, threads: int, rounds: int) -> None:
    bodies = default_bodies(DemoModels.load())
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--port", str(port), "--threads", str(threads)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        started = time.perf_counter()
        while True:
            try:
                urllib.request.urlopen(url, timeout=5).read()
                break
            except (urllib.error.URLError, OSError):
                if server.poll() is not None or time.perf_counter() - started > 300:
                    raise SystemExit("app.py did not start") from None
                time.sleep(0.5)
        print(f"app.py served after {time.perf_counter() - started:.1f} s; {count} requests at once, {rounds} times")
        for api, data in bodies.items():  # warm-up: one of each
            assert _request(url, api, data) == "served", api
        memory = [_resident_mb(server.pid)]
        for round_number in range(1, rounds + 1):
            began = time.perf_counter()
            outcomes, page_seconds = burst_round(url, count, bodies)
            memory.append(_resident_mb(server.pid))
            kinds = sorted({outcome for outcome, _ in outcomes})
            counts = ", ".join(f"{sum(outcome == kind for outcome, _ in outcomes)} {kind}" for kind in kinds)
            served = [seconds for outcome, seconds in outcomes if outcome == "served"]
            refused = [seconds for outcome, seconds in outcomes if outcome == "queue full"]
            print(
                f"burst {round_number}: {counts} in {time.perf_counter() - began:.1f} s; served requests answered in "
                f"{min(served):.1f}-{max(served):.1f} s"
                + (f", 'queue full' answered within {max(refused):.2f} s" if refused else "")
                + f"; page read {len(page_seconds)} times meanwhile, slowest {max(page_seconds):.2f} s"
            )
        steps = ", ".join(f"{mb:.0f} MB after burst {number}" for number, mb in enumerate(memory[1:], start=1))
        print(f"server resident memory: {memory[0]:.0f} MB after warm-up, {steps}")
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (app.py's default: 1; DESIGN.md §12)")
    parser.add_argument("--tab", choices=("images", "inpainting", "playground"), action="append", default=None,
                        help="the tab(s) whose slowest requests to time (default: all three)")  # fmt: skip
    parser.add_argument("--only", default=None, help="time one model's requests only (a key of the demo's tables)")
    parser.add_argument("--samplers", default=None, help="comma-separated sampler classes (default: every one)")
    parser.add_argument("--busy", type=int, default=0, help="busy single-threaded processes meanwhile (default 0)")
    parser.add_argument("--burst", type=int, default=0, help="instead: N concurrent default requests to app.py")
    parser.add_argument("--rounds", type=int, default=4, help="bursts, one after the other (default 4)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.burst:
        with busy_processes(args.busy):
            burst(args.burst, args.threads, args.rounds)
        return
    models = DemoModels.load()
    models.time_networks()  # as app.py does at start-up, on a machine not yet busy
    samplers = args.samplers.split(",") if args.samplers else list(SAMPLERS)
    results = []

    def print_row(seconds, predicted, what):
        results.append((seconds, what))
        guess = f"(predicted {predicted:4.1f} s)" if predicted is not None else " " * 18
        print(f"{seconds:6.1f} s {guess}  {what}", flush=True)

    with busy_processes(args.busy):
        for tab in args.tab or ("images", "inpainting", "playground"):
            time_tab(models, tab, args.only, samplers, print_row)
    seconds, what = max(results)
    print(
        f"\nSlowest accepted request ({args.threads} torch thread(s), {args.busy} busy processes): {seconds:.1f} s, "
        f"{what}; the bound is 30 s."
    )


if __name__ == "__main__":
    main()
