"""What a request costs on the machine the demo runs on: its network is timed once, requests are priced before they run.

A network call on a batch of ``n`` samples takes about ``fixed + n * per_sample`` seconds (kernel launches and
Python per call, arithmetic per sample). The two numbers differ by two orders of magnitude between the bundled
models (the 8x8 digits RefineNet is dominated by its fixed part, the 28x28 Fashion-MNIST U-Net by its per-sample
part) and by a factor of three between CPUs of the same core count (AVX-512 or not), so the demo measures them on
the machine it serves from, with the thread count it serves with, instead of assuming one machine's figures.

A request is refused before it runs when its predicted time exceeds `MAX_PREDICTED_SECONDS`; while it runs, it is
stopped at `REQUEST_DEADLINE_SECONDS` (the machine may have become busier since the measurement).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .limits import MAX_IMAGE_CALLS, MAX_IMAGE_WORK

# Refuse requests predicted (from the start-up timing, on an otherwise idle machine) to take longer than this. Two
# busy single-threaded processes next to the demo on 2 cores made its requests up to 2.1x slower than predicted
# (benchmarks/demo_worst_case.py --busy 2, README): 12 s keeps them within the 30 s bound.
MAX_PREDICTED_SECONDS = 12.0
# A run still going at this point is stopped and answered with an error: the bound holds on any machine.
REQUEST_DEADLINE_SECONDS = 30.0
TIMING_BATCH = 8  # the second batch size timed (the first is 1)
TIMING_REPEATS = 3  # the fastest of these is kept (slower repeats measure interruptions, not the network)


@dataclass(frozen=True)
class CallCost:
    """The measured time of one network call: ``fixed_seconds + batch * seconds_per_sample``."""

    fixed_seconds: float
    seconds_per_sample: float

    def seconds(self, calls: int, batch_size: int) -> float:
        """Predicted seconds of ``calls`` network calls on a batch of ``batch_size``."""
        return calls * (self.fixed_seconds + batch_size * self.seconds_per_sample)

    def calls_within(self, seconds: float, batch_size: int) -> int:
        """The most network calls on a batch of ``batch_size`` predicted to fit in ``seconds``."""
        per_call = self.fixed_seconds + batch_size * self.seconds_per_sample
        return int(seconds / per_call) if per_call > 0 else 10**9

    def __add__(self, other: CallCost) -> CallCost:
        return CallCost(self.fixed_seconds + other.fixed_seconds, self.seconds_per_sample + other.seconds_per_sample)


def _fastest_call(call: Callable[[int], object], batch_size: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        call(batch_size)
        best = min(best, time.perf_counter() - started)
    return best


def measure_call_cost(
    call: Callable[[int], object], batch_size: int = TIMING_BATCH, repeats: int = TIMING_REPEATS
) -> CallCost:
    """Time ``call(1)`` and ``call(batch_size)`` (after one warm-up call, fastest of ``repeats``) and fit `CallCost`.

    >>> cost = measure_call_cost(lambda n: sum(range(1000 * n)))
    >>> cost.fixed_seconds >= 0 and cost.seconds_per_sample >= 0
    True
    """
    with torch.no_grad():
        call(1)  # first calls pay one-off costs (allocations, lazy initialisation)
        one = _fastest_call(call, 1, repeats)
        many = _fastest_call(call, batch_size, repeats)
    per_sample = max(many - one, 0.0) / (batch_size - 1)
    return CallCost(fixed_seconds=max(one - per_sample, 0.0), seconds_per_sample=per_sample)


def max_calls_in_time(cost: CallCost, batch_size: int, limit: float = MAX_PREDICTED_SECONDS) -> int:
    """The most network calls on ``batch_size`` samples within ``limit`` (at least 4: the fewest an adaptive sampler
    is given; more than the limit allows is then refused by `check_request_time`)."""
    return max(cost.calls_within(limit, batch_size), 4)


def max_image_calls(cost: CallCost, batch_size: int) -> int:
    """The most network calls an image request on ``batch_size`` samples may make: the tab's call limit, the work
    limit (calls x batch) and the predicted-time limit together (an adaptive sampler's cap; the page's suggestions)."""
    return min(MAX_IMAGE_CALLS, MAX_IMAGE_WORK // batch_size, max_calls_in_time(cost, batch_size))


def check_request_time(cost: CallCost, calls: int, batch_size: int, limit: float = MAX_PREDICTED_SECONDS) -> float:
    """Refuse ``calls`` network calls on ``batch_size`` samples when predicted to take more than ``limit`` seconds
    on this machine; return the prediction.

    >>> check_request_time(CallCost(0.01, 0.001), calls=100, batch_size=10)
    2.0
    """
    seconds = cost.seconds(calls, batch_size)
    if seconds > limit:
        raise ValueError(
            f"Too much work for this machine: {calls} network calls on a batch of {batch_size} would take about "
            f"{seconds:.0f} s here, the limit is {limit:.0f} s. Use fewer noise levels, fewer steps per level or a "
            "smaller batch."
        )
    return seconds


class DeadlinePassed(RuntimeError):
    """A run went on past its deadline (`REQUEST_DEADLINE_SECONDS`) and was stopped."""


def check_deadline(started: float, limit: Optional[float] = None) -> None:
    """Raise `DeadlinePassed` once ``limit`` seconds (default `REQUEST_DEADLINE_SECONDS`) have passed since
    ``started`` (a ``time.perf_counter()`` reading)."""
    limit = REQUEST_DEADLINE_SECONDS if limit is None else limit
    elapsed = time.perf_counter() - started
    if elapsed > limit:
        raise DeadlinePassed(
            f"Stopped after {elapsed:.0f} s: requests are limited to {limit:.0f} s and this machine is busier than "
            "when the demo timed its models. Try again with fewer noise levels, fewer steps per level or a smaller "
            "batch."
        )
