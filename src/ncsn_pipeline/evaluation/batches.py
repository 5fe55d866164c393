"""Many samples in batches, on one process or many: what ``ncsn-eval``, ``ncsn-digits-eval``, ``ncsn-sample
--output_dir`` and the benchmarks sample with.

A run of ``num_samples`` is cut into batches of ``batch_size`` (the last one smaller), and batch ``b`` of a run seeded
``seed`` draws all its randomness from its own generator, seeded from the pair ``(seed, b)``. So a batch's images do not
depend on which process samples it, and a run split across processes with ``accelerate launch`` gives the same images
as one process (tested): process ``r`` of ``W`` samples batches ``r, r + W, r + 2W, ...``.

Example:
    >>> from ncsn_pipeline.evaluation.batches import batch_seed, process_batches
    >>> process_batches(250, 100, process_index=1, num_processes=2)  # (batch index, first sample, count)
    [(1, 100, 100)]
    >>> batch_seed(0, 1) == batch_seed(0, 1) != batch_seed(1, 0)
    True
"""

from __future__ import annotations

import os
import time
from typing import Dict, List, Optional, TextIO, Tuple

import numpy
import torch


def batch_seed(seed: int, batch_index: int) -> int:
    """The generator seed of batch ``batch_index`` in a run seeded ``seed``.

    NumPy's `SeedSequence` mixes the pair, so the streams of different pairs are independent (``seed + batch_index``
    would give seed 0's second batch the images of seed 1's first). A negative ``seed`` is taken modulo 2**64, as
    `torch.Generator.manual_seed` takes it.
    """
    if batch_index < 0:
        raise ValueError(f"batch_index must be >= 0, got {batch_index}.")
    entropy = [int(seed) % 2**64, int(batch_index)]
    return int(numpy.random.SeedSequence(entropy).generate_state(1, dtype=numpy.uint64)[0])


def process_batches(
    num_samples: int, batch_size: int, process_index: int = 0, num_processes: int = 1
) -> List[Tuple[int, int, int]]:
    """The batches process ``process_index`` of ``num_processes`` samples, as (batch index, first sample, count):
    every ``num_processes``-th batch, starting at its own index, so the processes take turns and finish together."""
    if num_samples < 1 or batch_size < 1:
        raise ValueError(f"num_samples and batch_size must be >= 1, got {num_samples} and {batch_size}.")
    if not 0 <= process_index < num_processes:
        raise ValueError(f"process_index must be in [0, {num_processes}), got {process_index}.")
    starts = range(0, num_samples, batch_size)
    return [(index, start, min(batch_size, num_samples - start)) for index, start in enumerate(starts)][
        process_index::num_processes
    ]


def launched_processes(cpu: bool):
    """accelerate's `PartialState` when this command runs as one of several processes (``accelerate launch
    --num_processes N``, torchrun), else `None`; ``cpu``: the processes sample on the CPU (gloo, not NCCL)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState

    state = PartialState(cpu=cpu)
    return state if state.num_processes > 1 else None


def finish_processes(state) -> None:
    """Close this process's side of the process group once it has no more collectives to take part in: left open,
    gloo may abort the process at exit. No waiting: the main process may judge samples long after the others end."""
    if state is not None:
        state.destroy_process_group()


def sample_batch(pipe, batch_index: int, start: int, count: int, seed: int, labels, num_inference_steps, pipe_kwargs):
    """One batch's images (``pt``, float32 on the CPU) and the network calls its run took."""
    generator = torch.Generator().manual_seed(batch_seed(seed, batch_index))
    images = pipe(
        batch_size=count,
        generator=generator,
        num_inference_steps=num_inference_steps,
        output_type="pt",
        class_labels=None if labels is None else labels[start : start + count],
        **(pipe_kwargs or {}),
    ).images
    return images.float().cpu(), pipe.scheduler.num_model_calls


def requested_labels(pipe, num_samples: int) -> Optional[torch.Tensor]:
    """The class asked for each sample of a class-conditional model, the classes in turn (``index % num_classes``);
    `None` for other models."""
    num_classes = getattr(pipe.unet, "num_classes", None)
    return None if num_classes is None else torch.arange(num_samples) % num_classes


def _gather(items: list) -> list:
    """Every process's ``items``, concatenated in process order, on every process."""
    from accelerate.utils import gather_object

    return gather_object(items)


def sample_in_batches(
    pipe,
    num_samples: int,
    batch_size: int,
    seed: int,
    num_inference_steps: Optional[int] = None,
    progress: Optional[TextIO] = None,
    pipe_kwargs: Optional[Dict[str, object]] = None,
    processes=None,
) -> Tuple[torch.Tensor, Optional[torch.Tensor], List[int], float]:
    """``num_samples`` images (``pt``, on the CPU; batch ``b`` from a generator seeded `batch_seed` ``(seed, b)``), the
    class asked for each (`requested_labels`), the network calls of each batch's run (an adaptive sampler's differ)
    and the sampling time in seconds.

    ``progress``: a stream that gets one line per round of batches (samples done, seconds so far, time left);
    ``pipe_kwargs``: further arguments of each pipeline call (e.g. ``guidance_model`` and ``guidance_scale``);
    ``processes``: accelerate's `PartialState` of a multi-process run (`launched_processes`): each process samples
    its share of the batches (`process_batches`) and every process gets all images, in order, gathered one round of
    batches at a time (the memory of a round, not of the run, is in flight).
    """
    started = time.perf_counter()
    process_index, num_processes = (0, 1) if processes is None else (processes.process_index, processes.num_processes)
    labels = requested_labels(pipe, num_samples)
    mine = process_batches(num_samples, batch_size, process_index, num_processes)
    num_rounds = len(process_batches(num_samples, batch_size, 0, num_processes))  # process 0 has the most
    batches, calls, done = [], [], 0
    for round_index in range(num_rounds):
        result = None
        if round_index < len(mine):
            index, start, count = mine[round_index]
            result = sample_batch(pipe, index, start, count, seed, labels, num_inference_steps, pipe_kwargs)
        results = [result] if num_processes == 1 else _gather([result])  # in process order = batch order
        for images, model_calls in (item for item in results if item is not None):
            batches.append(images)
            calls.append(model_calls)
            done += len(images)
        if progress is not None and process_index == 0:
            elapsed = time.perf_counter() - started
            left = elapsed / done * (num_samples - done)
            print(f"sampling: {done}/{num_samples} samples, {elapsed:.0f} s (about {left:.0f} s left)", file=progress)
            progress.flush()
    return torch.cat(batches), labels, calls, time.perf_counter() - started
