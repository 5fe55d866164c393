"""``ncsn-train-classifier``: train a `NoiseConditionalClassifier` on labelled images for classifier guidance.

    ncsn-train-classifier --dataset_name digits --resolution 8 --pipeline ./ncsn-digits --output_dir ./digits-classifier

For every batch (Song et al. 2021, Appendix I.1):

1. Map the images to the score model's data range (dequantised, as ``ncsn-train`` does).
2. Draw one noise level per image, log-uniform in ``[sigma_min, sigma_max]`` (the levels a sampler visits), and
   perturb: ``x + sigma z``.
3. Minimise the cross-entropy of ``classifier(x + sigma z, sigma)`` against the labels (Adam, accelerate).

``--pipeline`` takes the noise range, data range and image size from a score pipeline folder, so that the classifier
covers exactly the levels that pipeline samples at. The run ends with the accuracy at several noise levels on the
held-out digits (built-in digits) or on the training images, saved with the weights in ``classifier_record.json``.
The output folder is written in a staging folder and moved into place at the end: an interrupted run leaves nothing.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..checks import check_data_range, check_integer, check_noise_range, check_positive
from ..files import write_text_atomically
from ..modeling_classifier import NoiseConditionalClassifier
from ..modeling_ncsn import MAX_SAMPLE_SIDE
from .checkpoints import TrainingRandomness
from .config import ClassifierTrainingConfig
from .data import load_training_data
from .loop import to_model_input

RECORD_FILE = "classifier_record.json"
EVALUATION_SIGMAS = 5  # accuracy reported at this many levels, geometric from sigma_max to sigma_min


def _noise_settings(config: ClassifierTrainingConfig) -> Dict[str, Any]:
    """sigma_max, sigma_min, data_range and resolution from ``--pipeline`` and the flags (flags win)."""
    settings: Dict[str, Any] = {"sigma_max": None, "sigma_min": None, "data_range": [0.0, 1.0], "resolution": None}
    if config.pipeline is not None:
        folder = Path(config.pipeline)
        try:
            scheduler = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
            index = json.loads((folder / "model_index.json").read_text())
            unet = json.loads((folder / "unet" / "config.json").read_text())
        except (OSError, ValueError) as error:
            message = f"--pipeline {config.pipeline!r} is not a readable score pipeline folder: {error}"
            raise ValueError(message) from error
        for name, record in (("scheduler/scheduler_config.json", scheduler), ("model_index.json", index),
                             ("unet/config.json", unet)):  # fmt: skip
            if not isinstance(record, dict):
                kind = type(record).__name__
                raise ValueError(f"--pipeline {config.pipeline!r}: {name} is not a JSON object ({kind}).")
        settings.update(sigma_max=scheduler.get("sigma_max"), sigma_min=scheduler.get("sigma_min"))
        settings["data_range"] = index.get("data_range") or [0.0, 1.0]
        settings["resolution"] = unet.get("sample_size")
    for key in ("sigma_max", "sigma_min", "data_range", "resolution"):
        if getattr(config, key) is not None:
            settings[key] = getattr(config, key)
    if settings["sigma_max"] is None or settings["sigma_min"] is None:
        raise ValueError("Give the noise range: --pipeline (a score pipeline folder) or --sigma_max and --sigma_min.")
    # Values read from a folder are checked like flags: the package's one set of checks names the bad value.
    settings["sigma_max"] = check_positive("sigma_max", settings["sigma_max"])
    settings["sigma_min"] = check_positive("sigma_min", settings["sigma_min"])
    check_noise_range(settings["sigma_min"], settings["sigma_max"])
    settings["data_range"] = check_data_range(settings["data_range"])
    if settings["resolution"] is None:
        raise ValueError("Give the image size: --resolution, or --pipeline to take the score model's.")
    settings["resolution"] = check_integer("resolution (the score model's sample_size)", settings["resolution"],
                                           high=MAX_SAMPLE_SIDE)  # fmt: skip
    return settings


def log_uniform_sigmas(count: int, sigma_min: float, sigma_max: float, generator: torch.Generator) -> torch.Tensor:
    """``count`` noise levels, log-uniform in ``[sigma_min, sigma_max]`` (step 2)."""
    unit = torch.rand(count, generator=generator, dtype=torch.float64)
    return torch.exp(math.log(sigma_min) + unit * (math.log(sigma_max) - math.log(sigma_min))).float()


@torch.no_grad()
def accuracy_by_noise_level(
    classifier, images: torch.Tensor, labels: torch.Tensor, sigmas: Sequence[float], seed: int = 0
) -> List[Dict[str, float]]:
    """Accuracy of ``classifier`` on ``images + sigma z`` at each of ``sigmas`` (images in the data range)."""
    classifier.eval()
    generator = torch.Generator().manual_seed(seed)
    results = []
    for sigma in sigmas:
        noisy = images + sigma * torch.randn(images.shape, generator=generator)
        predictions = torch.cat([
            classifier(batch, torch.full((len(batch),), float(sigma))).logits.argmax(dim=1)
            for batch in noisy.split(512)
        ])  # fmt: skip
        results.append({"sigma": float(sigma), "accuracy": float((predictions == labels).float().mean())})
    return results


def _evaluation_images(config, data, settings) -> tuple:
    """Held-out digits for the built-in digits; otherwise (up to 2,000 of) the training images."""
    if config.dataset_name == "digits":
        from ..data.digits import DIGITS_NUM_LEVELS, load_digits_split

        images, labels = load_digits_split("held_out")
        factor = settings["resolution"] // 8
        images = images.repeat_interleave(factor, -2).repeat_interleave(factor, -1)
        images = images.expand(-1, data.sample_shape[0], -1, -1)
        unit = (images.float() + 0.5) / DIGITS_NUM_LEVELS
        source = "held-out digits (359)"
    else:
        count = min(len(data.dataset), 2000)
        pairs = [data.dataset[index] for index in range(count)]
        images = torch.stack([image for image, _ in pairs]).float()
        labels = torch.stack([torch.as_tensor(label) for _, label in pairs])
        unit = (images + 0.5) / data.num_levels
        source = f"training images ({count})"
    low, high = settings["data_range"]
    return low + (high - low) * unit, labels, source


def train_classifier(config: ClassifierTrainingConfig) -> Path:
    """Train and save the classifier (module docstring) as ``config`` says (checked first); returns the output
    folder."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    if not isinstance(config, ClassifierTrainingConfig):  # an argparse namespace of the command's flags
        config = ClassifierTrainingConfig(**vars(config))
    config.validate()

    output_dir = Path(config.output_dir)
    if (output_dir / "config.json").exists() and not config.overwrite_output_dir:
        raise ValueError(f"{output_dir} already holds a classifier; pass --overwrite_output_dir to replace it.")
    settings = _noise_settings(config)
    data = load_training_data(
        dataset_name=config.dataset_name,
        train_data_dir=config.train_data_dir,
        image_column=config.image_column,
        cache_dir=config.cache_dir,
        resolution=settings["resolution"],
        channels=config.channels,
        center_crop=config.center_crop,
        max_train_samples=config.max_train_samples,
        class_conditional=True,
        label_column=config.label_column,
    )
    accelerator = Accelerator(mixed_precision=config.mixed_precision)
    set_seed(config.seed)
    classifier = NoiseConditionalClassifier(
        in_channels=data.sample_shape[0],
        sample_size=data.sample_shape[1],
        num_classes=len(data.class_names),
        block_out_channels=list(config.block_out_channels),
    )
    optimizer = torch.optim.Adam(classifier.parameters(), lr=config.learning_rate)
    loader = torch.utils.data.DataLoader(
        data.dataset,
        batch_size=min(config.train_batch_size, len(data.dataset)),
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(config.seed),
    )
    classifier, optimizer, loader = accelerator.prepare(classifier, optimizer, loader)
    randomness = TrainingRandomness(config.seed + accelerator.process_index)
    sigma_min, sigma_max = settings["sigma_min"], settings["sigma_max"]

    started, step, losses = time.perf_counter(), 0, []
    # One progress bar for the run (on the main process), as ncsn-train shows: steps, rate, time left, the loss.
    progress = tqdm(total=config.max_train_steps, desc="classifier steps", disable=not accelerator.is_main_process)
    classifier.train()
    while step < config.max_train_steps:
        for images, labels in loader:
            # 1. Data range; 2. noise; 3. cross-entropy.
            clean = to_model_input(
                images, data, randomness, random_flip=False, dequantize=True, data_range=settings["data_range"]
            ).to(accelerator.device)
            sigma = log_uniform_sigmas(len(clean), sigma_min, sigma_max, randomness.generator).to(clean.device)
            noise = torch.randn(clean.shape, generator=randomness.generator).to(clean.device)
            logits = classifier(clean + sigma[:, None, None, None] * noise, sigma).logits
            loss = F.cross_entropy(logits.float(), labels.to(logits.device))
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            step += 1
            losses.append(float(loss.detach()))
            progress.update()
            progress.set_postfix(loss=f"{losses[-1]:.3g}", refresh=False)
            if not math.isfinite(losses[-1]):
                raise FloatingPointError(f"The loss became {losses[-1]} at step {step}: lower --learning_rate.")
            if step >= config.max_train_steps:
                break
    progress.close()
    train_seconds = time.perf_counter() - started

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        model = accelerator.unwrap_model(classifier).to("cpu").eval()
        images, labels, source = _evaluation_images(config, data, settings)
        levels = torch.logspace(math.log10(sigma_max), math.log10(sigma_min), EVALUATION_SIGMAS).tolist()
        record = {
            "data": data.description,
            "class_names": list(data.class_names),
            "noise_levels": {"sigma_max": sigma_max, "sigma_min": sigma_min, "data_range": settings["data_range"]},
            "steps": step,
            "final_loss (mean of the last 100 steps)": sum(losses[-100:]) / len(losses[-100:]),
            "train_seconds": round(train_seconds, 1),
            "evaluation": {"images": source, "accuracy": accuracy_by_noise_level(model, images, labels, levels)},
            "config": {key: value for key, value in vars(config).items() if key != "overwrite_output_dir"},
        }
        _save(model, record, output_dir)
        for entry in record["evaluation"]["accuracy"]:
            print(f"sigma {entry['sigma']:8.4g}: accuracy {entry['accuracy']:.3f} on {source}")
        print(f"Saved the classifier to {output_dir} ({step} steps, {train_seconds:.0f} s).")
    return output_dir


def _save(model, record: Dict[str, Any], output_dir: Path) -> None:
    """Write the classifier into a staging folder, then move it into place (nothing half-written is left)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    staging = output_dir / ".classifier.tmp"
    if staging.exists():
        shutil.rmtree(staging)
    try:
        model.save_pretrained(staging)
        write_text_atomically(staging / RECORD_FILE, json.dumps(record, indent=2))
        for item in sorted(staging.iterdir(), key=lambda path: path.name == "config.json"):  # config.json last
            os.replace(item, output_dir / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
