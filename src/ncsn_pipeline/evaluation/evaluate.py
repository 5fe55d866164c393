"""``ncsn-eval``: one command for what a model card reports about a pipeline.

    ncsn-eval ncsn-digits --data digits --record
    ncsn-eval path/to/pipeline --sampler AdaptiveSDEScheduler --num_samples 500 --output run.json

For the pipeline (a folder, a bundled name or a Hub repository id) and the chosen sampler:

* sample quality: the digits evaluation (`digits_judge`) for 1-channel image pipelines, next to the floor of real
  digits (other data: none yet, see ``--help``);
* bits per dimension of held-out data (``--data``) through the probability-flow ODE (`ncsn_pipeline.likelihood`),
  with the dequantization and the model calls of the likelihood;
* network calls and seconds per sample of the sampler.

It writes everything to ``--output`` and, with ``--record``, the rows a model card shows to the folder's
``evaluation.json`` (through `ncsn_pipeline.folder_records.write_evaluation`, that file's only writer).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from ..arguments import apply_sampler_arguments
from ..files import write_text_atomically
from ..folder_records import write_evaluation
from .config import EvaluationConfig
from .judge_choice import choose_judge
from .torchscript_files import check_torchscript_file

DATA_SETS = ("digits",)


def held_out_data(
    name: str, pipe, count: Optional[int], seed: int, center_crop: bool = False
) -> Tuple[torch.Tensor, int, str]:
    """``(dequantized data, levels per dimension, description)`` of a held-out set in the pipeline's data space:
    the held-out digits, or the 8-bit images of a folder (prepared as ``ncsn-train`` prepares training images)."""
    from ..data.digits import load_digits_split
    from ..likelihood import uniform_dequantize

    if pipe.config.data_range is None or len(pipe.sample_shape) != 3:
        raise ValueError(f"--data needs an image pipeline (this one makes raw samples of shape {pipe.sample_shape}).")
    data_range = tuple(pipe.config.data_range)
    if Path(name).is_dir():
        levels = load_image_folder(name, pipe.sample_shape, count, center_crop)
        channels, height, width = pipe.sample_shape
        data = uniform_dequantize(levels, 256, data_range, torch.Generator().manual_seed(seed))
        geometry = "centre-cropped" if center_crop else "resized"
        description = f"{len(levels)} images of {Path(name).name}, {geometry} to {height} x {width}, 8-bit"
        return data.float(), 256, f"{description}, uniform dequantization"
    if name not in DATA_SETS:
        raise ValueError(f"Unknown --data {name!r}; choose one of {list(DATA_SETS)} or an image folder.")
    if tuple(pipe.sample_shape) != (1, 8, 8):
        raise ValueError(
            f"--data digits needs a pipeline of 1 x 8 x 8 images (this one makes {pipe.sample_shape}, data_range "
            f"{pipe.config.data_range})."
        )
    levels = load_digits_split("held_out")[0].long()[:count]
    data = uniform_dequantize(levels, 17, tuple(pipe.config.data_range), torch.Generator().manual_seed(seed))
    return data.float(), 17, f"{len(levels)} held-out digits, 17 levels, uniform dequantization over centred bins"


def load_image_folder(
    folder: str, sample_shape, count: Optional[int] = None, center_crop: bool = False
) -> torch.Tensor:
    """The 8-bit images of ``folder`` as ``torch.uint8`` ``(N, C, H, W)`` of the pipeline's sample shape, prepared as
    ``ncsn-train`` prepares training images."""
    from PIL import Image

    from ..data.image_files import find_image_files, prepare_image, verify_image_files

    channels, height, width = sample_shape
    if height != width or channels not in (1, 3):
        raise ValueError(f"Image folders need square 1- or 3-channel images; the pipeline makes {tuple(sample_shape)}.")
    paths = find_image_files(folder)[:count]
    if not paths:
        raise ValueError(f"{folder!r} holds no image files.")
    verify_image_files(paths)
    images = []
    for path in paths:
        with Image.open(path) as image:
            images.append(prepare_image(image, resolution=height, channels=channels, center_crop=center_crop))
    return torch.stack(images)


def feature_frechet_distance(network, images_a: torch.Tensor, images_b: torch.Tensor, batch_size: int = 100) -> float:
    """Fréchet distance between Gaussian fits of ``network``'s features of two image sets (floats in [0, 1]).

    >>> network = torch.nn.Flatten()
    >>> images = torch.rand(50, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    >>> round(feature_frechet_distance(network, images, images), 9)
    0.0
    """
    from .digits_judge import frechet_distance

    def features(images):
        with torch.no_grad():
            parts = [network(images[start : start + batch_size]) for start in range(0, len(images), batch_size)]
        return torch.cat(parts).reshape(len(images), -1)

    return frechet_distance(features(images_a.float()), features(images_b.float()))


def plan_fid(config: EvaluationConfig, pipe, folder: Optional[Path]) -> Dict[str, Any]:
    """Check ``--fid``'s requirements before any sampling: an image pipeline, torchmetrics, the Inception file (found
    or downloaded) and the reference images (``--reference``, else Fashion-MNIST's test split for a model judged as
    a Fashion-MNIST model). Returns what `run_fid` needs."""
    from .inception_metrics import InceptionMetricsUnavailable, find_inception

    if config.skip_samples:
        raise ValueError("--fid measures samples; it cannot go with --skip_samples.")
    if pipe.config.data_range is None or len(pipe.sample_shape) != 3 or pipe.sample_shape[0] not in (1, 3):
        raise ValueError(f"--fid needs a pipeline of 1- or 3-channel images (this one makes {pipe.sample_shape}).")
    try:
        import torchmetrics  # noqa: F401
    except ImportError:
        raise InceptionMetricsUnavailable(
            "--fid needs torchmetrics: pip install 'ncsn-pipeline[fid]' (or pip install torchmetrics)."
        ) from None
    plan: Dict[str, Any] = {"inception": find_inception(config.inception), "count": config.num_samples}
    if config.reference is not None:
        if not Path(config.reference).is_dir():
            raise ValueError(f"--reference {config.reference!r} is not a folder of images.")
        plan.update(reference="folder", label=f"images of {Path(config.reference).name}")
        # Read now, before any sampling: a folder of broken files or decompression bombs stops the run at once.
        plan["reference_images"] = load_image_folder(config.reference, pipe.sample_shape, config.num_samples)
    elif choose_judge("auto", pipe, folder) == "fashion-mnist" and tuple(pipe.sample_shape) == (1, 28, 28):
        plan.update(reference="fashion-mnist", label="Fashion-MNIST test images")
    elif choose_judge("auto", pipe, folder) == "digits" and tuple(pipe.sample_shape) == (1, 8, 8):
        # The held-out split has 359 images: samples, reference and floor all use min(N, 359) (the same N).
        plan.update(reference="digits", label="held-out scikit-learn digits", count=min(config.num_samples, 359))
    else:
        raise ValueError(
            "--fid needs real images to compare with: pass --reference FOLDER (Fashion-MNIST models default to the "
            "test split, 8 x 8 digits models to the held-out digits)."
        )
    return plan


def run_fid(plan: Dict[str, Any], images: torch.Tensor, config: EvaluationConfig) -> Dict[str, Any]:
    """FID and KID of ``images`` against the plan's reference (and, for Fashion-MNIST, of as many real training
    images: the floor), with their card rows and note."""
    from .inception_metrics import inception_metrics, load_inception

    count = plan["count"]
    floor = None
    if plan["reference"] == "folder":
        reference = plan["reference_images"].float() / 255
    elif plan["reference"] == "digits":
        from ..data.digits import DIGITS_NUM_LEVELS, load_digits_split

        reference = load_digits_split("held_out")[0][:count].float() / (DIGITS_NUM_LEVELS - 1)
        floor = load_digits_split("train")[0][:count].float() / (DIGITS_NUM_LEVELS - 1)
    else:
        from ..data.fashion_mnist import load_fashion_mnist

        reference = load_fashion_mnist("test")[0][:count].float() / 255
        floor = load_fashion_mnist("train")[0][:count].float() / 255
    images = images[:count]
    print(f"FID / KID: Inception features of {len(images)} samples and {len(reference)} reference images...",
          file=sys.stderr)  # fmt: skip
    features = load_inception(plan["inception"])  # loaded only now, when it is needed (it is TorchScript code)
    result = inception_metrics(features, images, reference, config.batch_size, config.seed)
    floor_result = (
        inception_metrics(features, floor, reference, config.batch_size, config.seed) if floor is not None else None
    )
    label = f"{len(reference)} {plan['label']}"
    fid_name = f"FID (Inception, {len(images)} samples vs {label}; lower is better)"
    kid_name = f"KID (Inception, subsets of {result['kid_subset_size']}; lower is better)"
    rows = [{"name": fid_name, "value": result["fid"]}, {"name": kid_name, "value": result["kid_mean"]}]
    if floor_result is not None:
        rows[0]["reference"], rows[1]["reference"] = floor_result["fid"], floor_result["kid_mean"]
    note = (
        f"FID / KID: torchmetrics with {features.description}, "
        f"{len(images)} samples against {label}; KID {result['kid_mean']:.4g} +- {result['kid_std']:.2g} over "
        f"random subsets of {result['kid_subset_size']}"
        + (f"; the reference column: {len(floor)} real training images" if floor is not None else "")
        + ". FID depends on N: compare at the same N."
    )
    return {"samples": result, "floor": floor_result, "reference": label, "rows": rows, "note": note,
            "network": features.name, "network_description": features.description}  # fmt: skip


# The real images each judge's floor draws from (train splits): a sample count above it has no floor.
FLOOR_SPLIT_SIZES = {"digits": 1438, "fashion-mnist": 60_000}


def check_sample_count(num_samples: int, judge: str, frechet: bool) -> None:
    """Before sampling: the judge's floor takes as many real images as samples, and a Fréchet distance needs two."""
    if (judge != "none" or frechet) and num_samples < 2:
        raise ValueError(f"--num_samples must be at least 2 for Fréchet distances (a covariance), got {num_samples}.")
    if judge in FLOOR_SPLIT_SIZES and num_samples > FLOOR_SPLIT_SIZES[judge]:
        raise ValueError(
            f"--num_samples {num_samples} is above the {FLOOR_SPLIT_SIZES[judge]:,} real training images the "
            f"{judge} judge's floor is measured on (the same N for both); pass at most that, or --judge none."
        )


def run(config: EvaluationConfig) -> Dict[str, Any]:
    """Evaluate as ``config`` says (checked first; an argparse namespace of ``ncsn-eval``'s flags works too);
    return the report (also written to ``--output``)."""
    if not isinstance(config, EvaluationConfig):
        config = EvaluationConfig(**vars(config))
    config.validate()
    from .batches import finish_processes, launched_processes, sample_in_batches
    from .digits_evaluation import CARD_ROWS
    from .digits_judge import (
        default_digit_classifier,
        evaluate_digit_samples,
        floor_metrics,
        requested_class_rate,
        resize_to_digits,
    )

    output = Path(config.output)
    if config.data is not None and config.data not in DATA_SETS and not Path(config.data).is_dir():  # before sampling
        raise ValueError(f"Unknown --data {config.data!r}; choose one of {list(DATA_SETS)} or an image folder.")
    dtype = config.dtype
    if dtype != "float32" and (config.record or config.data is not None):
        raise ValueError(
            f"--dtype {dtype} evaluates samples only: --record writes the card's figures and --data computes "
            "bits/dim with an ODE solver at float32 tolerances; drop them or use --dtype float32."
        )
    from ..pretrained import resolve_pipeline

    pipe, folder = resolve_pipeline(config.pipeline)
    if config.record and folder is None:
        raise ValueError(f"--record writes a local folder's evaluation.json; {config.pipeline!r} has no local folder.")
    if config.feature_network is not None and config.reference is None:
        raise ValueError("--feature_network and --reference go together: features of samples and of real images.")
    if config.reference is not None and config.feature_network is None and not config.fid:
        raise ValueError("--reference is the real images of --feature_network or --fid; pass one of them.")
    if config.reference is not None and not Path(config.reference).is_dir():
        raise ValueError(f"--reference {config.reference!r} is not a folder of images.")
    if config.feature_network is not None:
        check_torchscript_file(config.feature_network, "--feature_network")  # loaded only when needed
    if config.skip_samples and config.data is None:
        raise ValueError("Nothing to evaluate: --skip_samples without --data.")
    judge = choose_judge(config.judge, pipe, folder)
    if not config.skip_samples:
        features = config.feature_network is not None or config.fid
        check_sample_count(config.num_samples, judge, features)
    held_out = None
    if config.data is not None:  # read before sampling: a bad folder stops the run before the expensive part
        held_out = held_out_data(config.data, pipe, config.likelihood_samples, config.seed, config.center_crop)
    fid_plan = plan_fid(config, pipe, folder) if config.fid else None
    feature_reference = None  # read before sampling, as --fid's: a bad folder stops the run at once
    if config.feature_network is not None:
        if pipe.config.data_range is None or len(pipe.sample_shape) != 3:
            raise ValueError("--feature_network needs an image pipeline.")
        feature_reference = load_image_folder(config.reference, pipe.sample_shape)
    # Under `accelerate launch --num_processes N` each process samples its share of the batches on its own device.
    processes = launched_processes(cpu=torch.device(config.device).type == "cpu")
    device = config.device if processes is None else processes.device
    if processes is not None and config.skip_samples:
        raise ValueError("Several processes split the samples; --skip_samples has none to split: run one process.")
    # Cast only when the dtype changes: diffusers' `ModelMixin.to` warns about float32 modules on any dtype argument.
    target_dtype = getattr(torch, dtype)
    pipe = pipe.to(device) if pipe.dtype == target_dtype else pipe.to(device, target_dtype)
    apply_sampler_arguments(pipe, config)
    pipe.set_progress_bar_config(disable=True)
    report: Dict[str, Any] = {
        "pipeline": config.pipeline, "sampler": pipe.scheduler.description, "device": config.device, "dtype": dtype,
    }  # fmt: skip
    rows: List[Dict[str, Any]] = []
    notes: List[str] = []

    if not config.skip_samples:
        images, labels, calls, seconds = sample_in_batches(
            pipe,
            config.num_samples,
            config.batch_size,
            config.seed,
            config.num_inference_steps,
            progress=sys.stderr,
            processes=processes,
        )
        if processes is not None and not processes.is_main_process:
            finish_processes(processes)  # the main process judges the gathered samples and writes the report
            return {}
        report["sampling"] = {
            "num_samples": config.num_samples,
            "batch_size": config.batch_size,
            "seed": config.seed,
            "processes": 1 if processes is None else processes.num_processes,
            "model_calls_per_batch": calls,
            "network_calls_per_sample": sum(calls) / len(calls),
            "seconds_per_sample": seconds / config.num_samples,
        }
        if judge == "digits":
            classifier = default_digit_classifier()
            samples = evaluate_digit_samples(resize_to_digits(images), classifier)
            floor = floor_metrics(classifier, num_samples=config.num_samples)
            report["digits"] = {"samples": samples, "floor": floor}
            rows += [{"name": name, "value": samples[key], "reference": floor[key]} for name, key in CARD_ROWS]
            if labels is not None:  # a class-conditional model, asked for the classes in turn
                requested = requested_class_rate(resize_to_digits(images), labels, classifier)
                report["digits"]["requested_class"] = requested
                rows.append({"name": "samples classified as the digit asked for", "value": requested["match_rate"]})
            notes.append(
                f"Samples: {config.num_samples} (seed {config.seed}) against the {samples['num_reference']} held-out "
                f"digits, which the model never saw; the classifier (held-out accuracy "
                f"{samples['held_out_accuracy']:.3f}) is trained on the training split only; Fréchet distances "
                "depend on N, compare only at the same N."
            )
        elif judge == "fashion-mnist":
            from . import fashion_judge

            samples = fashion_judge.evaluate_fashion_samples(images)
            floor = fashion_judge.floor_metrics(num_samples=config.num_samples)
            report["fashion-mnist"] = {"samples": samples, "floor": floor}
            rows += [
                {"name": name, "value": samples[key], "reference": floor[key]} for name, key in fashion_judge.CARD_ROWS
            ]
            shares = [count / samples["num_samples"] for count in samples["class_histogram"]]
            floor_shares = [count / floor["num_samples"] for count in floor["class_histogram"]]
            rows.append({"name": "smallest class share", "value": min(shares), "reference": min(floor_shares)})
            if labels is not None:
                requested = fashion_judge.requested_class_rate(images, labels)
                report["fashion-mnist"]["requested_class"] = requested
                rows.append({"name": "samples judged the class asked for", "value": requested["match_rate"]})
            notes.append(
                f"Samples: {config.num_samples} (seed {config.seed}) against Fashion-MNIST's 10,000 test images, "
                f"which the model never saw; the judge (test accuracy {samples['test_accuracy']:.3f}) is trained on "
                "the training split only; the reference column is real training images (same N). Fréchet distances "
                "depend on N."
            )
        if config.feature_network is not None:
            network = torch.jit.load(config.feature_network, map_location="cpu").eval()
            reference = feature_reference.float() / 255
            distance = feature_frechet_distance(network, images, reference, config.batch_size)
            label = (
                f"{Path(config.feature_network).name} features to {len(reference)} images of "
                f"{Path(config.reference).name}"
            )
            report["feature_frechet_distance"] = {"value": distance, "features": label}
            rows.append(
                {"name": f"Fréchet distance in {label} (N = {config.num_samples}; lower is better)", "value": distance}
            )
        if fid_plan is not None:
            report["inception"] = run_fid(fid_plan, images, config)
            rows += report["inception"].pop("rows")
            notes.append(report["inception"]["note"])
        rows.append({"name": "network calls per sample", "value": report["sampling"]["network_calls_per_sample"]})
        on_devices = config.device if processes is None else f"{processes.num_processes} processes, {config.device}"
        rows.append(
            {
                "name": f"seconds per sample (batch {min(config.batch_size, config.num_samples)}, {on_devices})",
                "value": report["sampling"]["seconds_per_sample"],
            }
        )

    if held_out is not None:
        data, num_levels, description = held_out
        started = time.perf_counter()
        print(f"bits per dimension: {len(data)} examples through the probability-flow ODE...", file=sys.stderr)
        pipe.set_progress_bar_config(disable=False, desc="likelihood batches")  # one line per batch of the ODE
        result = pipe.log_likelihood(
            data,
            batch_size=config.likelihood_batch_size,
            num_levels=num_levels,
            divergence=config.divergence,
            num_probes=config.num_probes,
            probe=config.probe,
            rtol=config.tolerance,
            atol=config.tolerance,
            generator=torch.Generator().manual_seed(config.seed),
        )
        seconds = time.perf_counter() - started
        bpd = result.bits_per_dim
        sampler_config = pipe.scheduler.config
        report["likelihood"] = {
            "data": description,
            "num_examples": len(data),
            "bits_per_dim": float(bpd.mean()),
            "bits_per_dim_standard_error": float(bpd.std() / math.sqrt(len(bpd))) if len(bpd) > 1 else None,
            "nats_per_example": float(result.log_likelihood.mean()),
            "sigma_min": float(sampler_config.sigma_min),
            "sigma_max": float(sampler_config.sigma_max),
            "divergence": (config.divergence if config.divergence == "exact"
                           else f"{config.probe} x {config.num_probes}"),  # fmt: skip
            "tolerance": config.tolerance,
            "model_calls": result.num_model_calls,
            "seconds": seconds,
        }
        name = f"bits per dimension ({Path(config.data).name or config.data}, held out; lower is better)"
        rows.append({"name": name, "value": float(bpd.mean())})
        notes.append(
            f"Bits/dim: {description}, of the data perturbed to sigma_min = {float(sampler_config.sigma_min):g} with "
            f"the prior N(0, {float(sampler_config.sigma_max):.4g}^2 I) (probability-flow ODE, rtol = atol = "
            f"{config.tolerance:g}, "
            f"{report['likelihood']['divergence']} divergence; standard error "
            + (
                f"{report['likelihood']['bits_per_dim_standard_error']:.3f})."
                if len(bpd) > 1
                else "not defined for one example)."
            )
        )

    report["card"] = {"metrics": rows, "notes": " ".join([f"Sampler: {pipe.scheduler.description}.", *notes])}
    write_text_atomically(output, json.dumps(report, indent=2) + "\n")
    for row in rows:
        reference = f" (floor {row['reference']:.4g})" if row.get("reference") is not None else ""
        print(f"{row['name']}: {row['value']:.4g}{reference}")
    print(f"Wrote {output}.")
    if config.record:
        command = " ".join(["ncsn-eval", "<this folder>", *_recorded_arguments(config)])
        path = write_evaluation(
            folder,
            metrics=rows,
            reference_label=(
                f"floor: real training digits (same N = {config.num_samples})"
                if "digits" in report
                else f"floor: real training images (same N = {config.num_samples})"
                if "fashion-mnist" in report
                else "reference"
            ),
            notes=report["card"]["notes"],
            command=command,
        )
        print(f"Wrote {path}.")
    finish_processes(processes)
    return report


def _recorded_arguments(config: EvaluationConfig) -> List[str]:
    """The options of this run that change its result, for the card's command line."""
    parts = [f"--num_samples {config.num_samples}", f"--seed {config.seed}"]
    if config.batch_size != EvaluationConfig.batch_size:  # the batches' seeds follow the batches
        parts.append(f"--batch_size {config.batch_size}")
    if config.skip_samples:
        parts = ["--skip_samples"]
    if config.judge != "auto":
        parts.append(f"--judge {config.judge}")
    if config.sampler:
        parts.append(f"--sampler {config.sampler}")
    parts += [f"--sampler_option {key}={value}" for key, value in config.sampler_option or []]
    if config.num_inference_steps:
        parts.append(f"--num_inference_steps {config.num_inference_steps}")
    if config.fid:
        parts.append("--fid")
    if config.feature_network:
        parts.append(f"--feature_network {Path(config.feature_network).name}")
    if config.reference:  # by its name only, as --data below
        parts.append(f"--reference {Path(config.reference).name}")
    if config.data:
        # A folder by its name only: a local path says nothing to the card's readers and may name the user's folders.
        parts.append(f"--data {config.data if config.data in DATA_SETS else Path(config.data).name}")
        if config.divergence != "hutchinson" or config.num_probes != 1:
            parts.append(f"--divergence {config.divergence} --num_probes {config.num_probes}")
    return parts
