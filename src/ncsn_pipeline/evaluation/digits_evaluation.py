"""The digits evaluation behind ``ncsn-digits-eval`` (command line in `ncsn_pipeline.cli.digits_eval`): sample a
digits pipeline and judge the samples.

    ncsn-digits-eval --pipeline path/to/pipeline --num_samples 500 --output metrics.json [--record]

``--record`` also writes the pipeline folder's ``evaluation.json`` (`ncsn_pipeline.folder_records`), which its model
card shows.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Dict

from ..arguments import apply_sampler_arguments
from ..data.digits import load_digits_split
from ..files import write_text_atomically
from ..folder_records import write_evaluation
from .batches import sample_in_batches
from .config import DigitsEvaluationConfig
from .digits_judge import (
    default_digit_classifier,
    evaluate_digit_samples,
    floor_metrics,
    requested_class_rate,
    resize_to_digits,
    train_digit_classifier,
)

# The rows of a model card's evaluation table: (label, metric key).
CARD_ROWS = (
    ("confident-classification rate (max prob >= 0.9)", "confident_rate"),
    ("classes covered (of 10)", "class_coverage"),
    ("predicted-class entropy (bits, uniform = 3.32)", "class_entropy_bits"),
    ("Fréchet distance in classifier features (lower is better)", "frechet_distance"),
)


def format_table(sample_metrics: Dict[str, object], floor: Dict[str, object]) -> str:
    """A small text table of the sample metrics next to the floor."""
    rows = [
        ("confident_rate", "{:.3f}"),
        ("class_coverage", "{:d}"),
        ("class_entropy_bits", "{:.3f}"),
        ("frechet_distance", "{:.3f}"),
    ]
    lines = [f"{'metric':<20}{'samples':>12}{'floor':>12}"]
    for key, style in rows:
        lines.append(f"{key:<20}{style.format(sample_metrics[key]):>12}{style.format(floor[key]):>12}")
    if "requested_class" in sample_metrics:
        rate = sample_metrics["requested_class"]["match_rate"]
        lines.append(f"{'requested_class':<20}{rate:>12.3f}{'':>12}  (samples classified as the digit asked for)")
    lines.append(
        f"(N = {sample_metrics['num_samples']} each; classifier held-out accuracy "
        f"{sample_metrics['held_out_accuracy']:.3f})"
    )
    return "\n".join(lines)


def _adaptive_calls(payload: Dict[str, object]) -> str:
    """What an adaptive sampler's runs took (its description gives only the cap); empty for planned runs."""
    calls = payload.get("model_calls_per_batch") or []
    if not calls or f"({calls[0]} model calls)" in str(payload["sampler"]):
        return ""
    return f"; {min(calls)} to {max(calls)} model calls per batch"


def record_evaluation(folder: Path, payload: Dict[str, object], sampler: str) -> Path:
    """Write the card's ``evaluation.json`` for ``folder`` from a payload of `run`."""
    samples, floor, num_samples = payload["samples"], payload["floor"], payload["num_samples"]
    metrics = [{"name": name, "value": samples[key], "reference": floor[key]} for name, key in CARD_ROWS]
    if "requested_class" in samples:
        name = "samples classified as the digit asked for (the classes in turn)"
        metrics.append({"name": name, "value": samples["requested_class"]["match_rate"]})
    return write_evaluation(
        folder,
        metrics=metrics,
        reference_label=f"floor: real training digits (same N = {num_samples})",
        notes=(
            f"{num_samples} samples (seed {payload['seed']}, {sampler}{_adaptive_calls(payload)}) against the "
            f"{samples['num_reference']} held-out "
            f"digits, which the model never saw; the classifier (held-out accuracy {samples['held_out_accuracy']:.3f}) "
            f"is trained on the training split only. Sampling took {payload['seconds']['sampling']:.1f} s on "
            f"{payload['device']}. Fréchet distances depend on N: compare only at the same N."
        ),
        command=f"ncsn-digits-eval --pipeline <this folder> --num_samples {num_samples} --seed {payload['seed']}",
    )


def run(config: DigitsEvaluationConfig) -> Dict[str, object]:
    """Sample, evaluate and write the JSON as ``config`` says (checked first; an argparse namespace of
    ``ncsn-digits-eval``'s flags works too); return what was written."""
    if not isinstance(config, DigitsEvaluationConfig):
        config = DigitsEvaluationConfig(**vars(config))
    config.validate()
    output = Path(config.output)
    num_train = len(load_digits_split("train")[1])
    if not 2 <= config.num_samples <= num_train:
        # The floor needs as many distinct real digits as there are samples (same N, same FD bias).
        raise ValueError(
            f"--num_samples must be from 2 to {num_train} (the train split's size), got {config.num_samples}."
        )
    from ..pretrained import resolve_pipeline  # the one rule of every command: a local folder wins over a name

    pipe, folder = resolve_pipeline(config.pipeline)
    if config.record and folder is None:
        raise ValueError(f"--record writes into a local pipeline folder; --pipeline {config.pipeline!r} is none.")
    pipe = pipe.to(config.device)
    apply_sampler_arguments(pipe, config)
    pipe.set_progress_bar_config(disable=True)
    if pipe.config.data_range is None or len(pipe.sample_shape) != 3 or pipe.sample_shape[0] != 1:
        raise ValueError(
            f"The pipeline in {config.pipeline!r} does not generate 1-channel images (sample shape "
            f"{pipe.sample_shape}, data_range {pipe.config.data_range}); digits evaluation needs them."
        )

    started = time.perf_counter()
    classifier = (
        default_digit_classifier() if config.classifier_seed == 0 else train_digit_classifier(config.classifier_seed)
    )
    classifier_seconds = time.perf_counter() - started

    images, labels, calls, sampling_seconds = sample_in_batches(
        pipe, config.num_samples, config.batch_size, config.seed, config.num_inference_steps, progress=sys.stderr
    )
    samples = resize_to_digits(images)

    started = time.perf_counter()
    sample_metrics = evaluate_digit_samples(samples, classifier, confidence=config.confidence)
    if labels is not None:  # a class-conditional model: how often its samples are the digit asked for
        sample_metrics["requested_class"] = requested_class_rate(samples, labels, classifier, config.confidence)
    floor = floor_metrics(classifier, num_samples=config.num_samples, confidence=config.confidence)
    evaluation_seconds = time.perf_counter() - started

    payload = {
        "pipeline": os.fspath(config.pipeline),
        "sampler": pipe.scheduler.description,
        "seed": config.seed,
        "classifier_seed": config.classifier_seed,
        "num_samples": config.num_samples,
        "sample_size": list(pipe.sample_shape[1:]),
        "device": str(config.device),
        "model_calls_per_batch": calls,
        "samples": sample_metrics,
        "floor": floor,
        "seconds": {
            "classifier_training": classifier_seconds,
            "sampling": sampling_seconds,
            "evaluation": evaluation_seconds,
        },
    }
    write_text_atomically(output, json.dumps(payload, indent=2) + "\n")
    print(format_table(sample_metrics, floor))
    print(f"Sampling {sampling_seconds:.1f} s, evaluation {evaluation_seconds:.1f} s; wrote {output}.")
    if config.record:
        print(f"Wrote {record_evaluation(folder, payload, pipe.scheduler.description)}.")
    return payload
