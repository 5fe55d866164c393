"""Train a score model with accelerate: ``ncsn-train`` or ``accelerate launch -m ncsn_pipeline.train``.

Shaped like diffusers' ``examples/unconditional_image_generation/train_unconditional.py``:

    accelerate launch -m ncsn_pipeline.train --dataset_name digits --resolution 16 \\
        --auto_noise_schedule --output_dir ncsn-digits --max_train_steps 3000

Differences from that script, on purpose:

* the loss is denoising score matching with ``lambda(sigma) = sigma**2`` (or sliced score matching),
  with noise levels drawn from exactly the levels of the scheduler that is saved;
* checkpoints are written to a temporary folder and renamed only once complete, old ones are
  removed only after that, and ``--resume_from_checkpoint latest`` picks the newest *complete* one;
* resuming restores the model, optimizer, learning-rate schedule, EMA, data order and the training
  randomness, so the run continues exactly as if it had not stopped; an incompatible configuration
  is refused;
* the output folder is a complete pipeline (``model_index.json`` written last) with the training
  arguments and a sample grid, loadable with ``NCSNPipeline.from_pretrained``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from safetensors.torch import load_file, save_file

from .cli_utils import positive_float, positive_int
from .hub import HubError
from .noise_schedules import ncsnv2_noise_schedule
from .training_data import BUILTIN_DATASETS, load_training_data

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
COMPLETE_MARKER = "checkpoint_complete.json"
# Arguments that must match to resume: they change the model, the data, the objective or the
# meaning of a step. Anything else (max_train_steps, logging, sampling cadence ...) may change.
RESUME_MUST_MATCH = (
    "dataset_name",
    "train_data_dir",
    "dataset_config_name",
    "resolution",
    "channels",
    "center_crop",
    "random_flip",
    "dequantize",
    "data_range",
    "num_toy_samples",
    "model",
    "ngf",
    "hidden_size",
    "num_layers",
    "sigma_max",
    "sigma_min",
    "num_noise_levels",
    "steps_per_level",
    "step_lr",
    "final_denoise",
    "auto_noise_schedule",
    "loss",
    "train_batch_size",
    "gradient_accumulation_steps",
    "learning_rate",
    "adam_beta1",
    "adam_beta2",
    "adam_weight_decay",
    "adam_epsilon",
    "lr_scheduler",
    "lr_warmup_steps",
    "use_ema",
    "ema_decay",
    "seed",
    "num_processes",
)


def recorded_args(args: argparse.Namespace) -> Dict[str, Any]:
    """The arguments as written to checkpoints, logs and ``training_args.json``: never the Hub token."""
    return {key: value for key, value in vars(args).items() if key != "hub_token"}


def _data_range(text: str) -> List[float]:
    parts = text.split(",")
    try:
        low, high = (float(part) for part in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected two numbers 'low,high' such as '0,1' or '-1,1', got {text!r}"
        ) from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise argparse.ArgumentTypeError(f"expected finite low < high, got {text!r}")
    return [low, high]


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``ncsn-train``."""
    parser = argparse.ArgumentParser(
        prog="ncsn-train",
        description="Train a noise-conditional score network (NCSN) with accelerate and save an NCSNPipeline.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset_name",
        default=None,
        help="a Hugging Face datasets name or local path, or a built-in offline data set: "
        + ", ".join(BUILTIN_DATASETS),
    )
    data.add_argument("--dataset_config_name", default=None, help="the datasets configuration name, if any")
    data.add_argument("--train_data_dir", default=None, help="a folder of images (searched recursively)")
    data.add_argument("--image_column", default="image", help="the column holding images in a datasets data set")
    data.add_argument("--cache_dir", default=None, help="where datasets caches downloads")
    data.add_argument("--resolution", type=positive_int, default=32, help="images are resized to this square size")
    data.add_argument("--channels", type=int, choices=(1, 3), default=None, help="1 (grey) or 3 (RGB); default: infer")
    data.add_argument(
        "--center_crop", action="store_true", help="resize the shorter side then centre-crop (else squash)"
    )
    data.add_argument("--random_flip", action="store_true", help="flip images horizontally at random")
    data.add_argument(
        "--no_dequantize",
        dest="dequantize",
        action="store_false",
        help="do not add uniform dequantisation noise (by default a grey level k of Q becomes (k + u) / Q)",
    )
    data.add_argument(
        "--data_range", type=_data_range, default=[0.0, 1.0], help="range images are mapped to: 'low,high'"
    )
    data.add_argument("--max_train_samples", type=positive_int, default=None, help="use only the first N examples")
    data.add_argument("--num_toy_samples", type=positive_int, default=20000, help="size of a built-in 2-D toy data set")
    data.add_argument("--dataloader_num_workers", type=int, default=0, help="data-loading worker processes")

    model = parser.add_argument_group("model")
    model.add_argument(
        "--model", choices=("auto", "ncsnv2", "mlp"), default="auto", help="ncsnv2 (images), mlp (2-D); auto picks"
    )
    model.add_argument("--ngf", type=positive_int, default=32, help="NCSNv2 RefineNet width (the paper uses 128)")
    model.add_argument("--hidden_size", type=positive_int, default=128, help="MLP width (2-D data)")
    model.add_argument("--num_layers", type=positive_int, default=3, help="MLP hidden layers (2-D data)")

    noise = parser.add_argument_group("noise schedule (saved as the pipeline's NCSNScheduler)")
    noise.add_argument("--sigma_max", type=positive_float, default=1.0, help="largest noise level")
    noise.add_argument("--sigma_min", type=positive_float, default=0.01, help="smallest noise level")
    noise.add_argument("--num_noise_levels", type=positive_int, default=10, help="number of geometric noise levels L")
    noise.add_argument("--steps_per_level", type=positive_int, default=5, help="Langevin steps per level T (sampling)")
    noise.add_argument(
        "--step_lr", type=positive_float, default=2e-5, help="Langevin step size at sigma_min (sampling)"
    )
    noise.add_argument("--no_final_denoise", dest="final_denoise", action="store_false", help="skip the denoising step")
    noise.add_argument(
        "--auto_noise_schedule",
        action="store_true",
        help="compute sigma_max (largest pairwise distance), L and step_lr from the training data with NCSNv2's "
        "techniques (overrides --sigma_max, --num_noise_levels and --step_lr)",
    )

    training = parser.add_argument_group("training")
    training.add_argument("--output_dir", required=True, help="the pipeline and checkpoints are written here")
    training.add_argument(
        "--overwrite_output_dir", action="store_true", help="allow an output_dir that holds a pipeline"
    )
    training.add_argument("--seed", type=int, default=0, help="seed of everything random in training")
    training.add_argument("--loss", choices=("dsm", "ssm"), default="dsm", help="denoising or sliced score matching")
    training.add_argument("--train_batch_size", type=positive_int, default=128, help="batch size per process")
    training.add_argument("--max_train_steps", type=positive_int, default=3000, help="optimizer updates in total")
    training.add_argument("--gradient_accumulation_steps", type=positive_int, default=1, help="batches per update")
    training.add_argument("--learning_rate", type=positive_float, default=1e-3, help="Adam learning rate")
    training.add_argument("--lr_scheduler", default="constant_with_warmup", help="a diffusers get_scheduler name")
    training.add_argument("--lr_warmup_steps", type=int, default=0, help="learning-rate warm-up updates")
    training.add_argument("--adam_beta1", type=float, default=0.9, help="Adam's first-moment decay")
    training.add_argument("--adam_beta2", type=float, default=0.999, help="Adam's second-moment decay")
    training.add_argument("--adam_weight_decay", type=float, default=0.0, help="Adam's L2 weight decay")
    training.add_argument("--adam_epsilon", type=float, default=1e-8, help="Adam's denominator epsilon")
    training.add_argument("--max_grad_norm", type=positive_float, default=1.0, help="gradient clipping norm")
    training.add_argument("--no_ema", dest="use_ema", action="store_false", help="do not keep an EMA of the weights")
    training.add_argument("--ema_decay", type=float, default=0.999, help="EMA decay (NCSNv2 uses 0.999)")
    training.add_argument(
        "--mixed_precision", choices=("no", "fp16", "bf16"), default=None, help="autocast precision (loss stays fp32)"
    )

    output = parser.add_argument_group("checkpoints, logging and samples")
    output.add_argument(
        "--checkpointing_steps", type=positive_int, default=500, help="save a checkpoint every N updates"
    )
    output.add_argument("--checkpoints_total_limit", type=positive_int, default=None, help="keep at most N checkpoints")
    output.add_argument(
        "--resume_from_checkpoint", default=None, help="'latest' (newest complete checkpoint in output_dir) or a path"
    )
    output.add_argument(
        "--report_to",
        default="auto",
        help="accelerate tracker: tensorboard, wandb, all, none; auto = tensorboard if installed",
    )
    output.add_argument("--logging_dir", default="logs", help="tracker folder, relative to output_dir")
    output.add_argument(
        "--save_samples_steps", type=positive_int, default=None, help="write a sample grid every N updates"
    )
    output.add_argument("--num_samples", type=positive_int, default=16, help="images in a sample grid (points for 2-D)")
    hub = parser.add_argument_group("publishing (after training, one commit: weights, configs, card, samples)")
    hub.add_argument("--push_to_hub", action="store_true", help="publish the trained pipeline to the Hugging Face Hub")
    hub.add_argument("--hub_model_id", default=None, help="the repository, 'user/name' (required with --push_to_hub)")
    hub.add_argument("--hub_token", default=None, help="a write token (default: the logged-in one or HF_TOKEN)")
    visibility = hub.add_mutually_exclusive_group()
    visibility.add_argument(
        "--hub_private", dest="hub_private", action="store_true", default=None, help="create the repository private"
    )
    visibility.add_argument("--hub_public", dest="hub_private", action="store_false", help="create it public")
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse and check the command line; every problem is reported with the offending value."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.dataset_name is None) == (args.train_data_dir is None):
        parser.error("pass exactly one of --dataset_name or --train_data_dir")
    if args.sigma_min >= args.sigma_max and not args.auto_noise_schedule:
        parser.error(f"--sigma_min ({args.sigma_min}) must be smaller than --sigma_max ({args.sigma_max})")
    if not 0.0 < args.ema_decay < 1.0:
        parser.error(f"--ema_decay must lie in (0, 1), got {args.ema_decay}")
    if args.lr_warmup_steps < 0:
        parser.error(f"--lr_warmup_steps must be >= 0, got {args.lr_warmup_steps}")
    if args.dataloader_num_workers < 0:
        parser.error(f"--dataloader_num_workers must be >= 0, got {args.dataloader_num_workers}")
    if args.push_to_hub and (args.hub_model_id is None or args.hub_private is None):
        parser.error("--push_to_hub needs --hub_model_id user/name and an explicit --hub_private or --hub_public")
    if args.report_to == "auto":
        try:
            import tensorboard  # noqa: F401

            args.report_to = "tensorboard"
        except ImportError:
            args.report_to = "none"
    return args


# ----------------------------------------------------------------------------- checkpoints


def complete_checkpoints(output_dir: Path) -> List[Path]:
    """Complete checkpoint folders in ``output_dir``, oldest first (a folder counts once its marker exists)."""
    if not output_dir.is_dir():
        return []
    found = []
    for path in output_dir.iterdir():
        match = CHECKPOINT_PATTERN.match(path.name)
        if match and path.is_dir() and (path / COMPLETE_MARKER).is_file():
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def resolve_checkpoint(output_dir: Path, resume_from_checkpoint: str) -> Optional[Path]:
    """The checkpoint folder to resume from: ``latest`` complete one in ``output_dir``, or an explicit path."""
    if resume_from_checkpoint == "latest":
        checkpoints = complete_checkpoints(output_dir)
        return checkpoints[-1] if checkpoints else None
    path = Path(resume_from_checkpoint)
    if not path.is_absolute() and not path.exists():
        path = output_dir / path
    if not (path / COMPLETE_MARKER).is_file():
        raise ValueError(
            f"--resume_from_checkpoint {resume_from_checkpoint!r}: {path} is not a complete checkpoint "
            f"(no {COMPLETE_MARKER}); use 'latest' or one of {[p.name for p in complete_checkpoints(output_dir)]}."
        )
    return path


def check_resume_compatible(checkpoint: Path, args: argparse.Namespace, num_processes: int) -> None:
    """Refuse to resume when an argument that shapes the model, data or objective has changed."""
    saved = json.loads((checkpoint / COMPLETE_MARKER).read_text())["training_args"]
    current = {**recorded_args(args), "num_processes": num_processes}
    differences = {
        key: (saved.get(key), current.get(key)) for key in RESUME_MUST_MATCH if saved.get(key) != current.get(key)
    }
    if differences:
        listed = "; ".join(f"--{key}: checkpoint {old!r}, now {new!r}" for key, (old, new) in differences.items())
        raise ValueError(
            f"Cannot resume from {checkpoint}: the configuration differs ({listed}). Use the checkpoint's settings, "
            "or start a new run in another --output_dir."
        )


class TrainingRandomness:
    """The generator behind every random draw of the training loop (noise levels, noise, flips, dequantisation).

    Kept separate from the global RNGs so that data loading or sampling previews cannot shift it, and
    saved in every checkpoint so that a resumed run draws exactly what the uninterrupted run would.
    """

    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(seed)

    def save(self, folder: Path, process_index: int) -> None:
        save_file({"generator_state": self.generator.get_state()}, self._file(folder, process_index))

    def load(self, folder: Path, process_index: int) -> None:
        path = self._file(folder, process_index)
        if not path.is_file():
            raise ValueError(f"{folder} has no training randomness for process {process_index} ({path.name}).")
        self.generator.set_state(load_file(path)["generator_state"])

    @staticmethod
    def _file(folder: Path, process_index: int) -> Path:
        return folder / f"training_randomness_{process_index}.safetensors"


def save_checkpoint(
    accelerator, output_dir: Path, global_step: int, args, randomness, ema_model, train_seconds: float
) -> Path:
    """Write ``checkpoint-<step>`` atomically: into a temporary folder, marked complete, then renamed."""
    final = output_dir / f"checkpoint-{global_step}"
    temporary = output_dir / f".checkpoint-{global_step}.tmp"
    if accelerator.is_main_process and temporary.exists():
        shutil.rmtree(temporary)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temporary))
    # Our own state, in safetensors (accelerate's custom-object files are pickles).
    randomness.save(temporary, accelerator.process_index)
    if ema_model is not None and accelerator.is_main_process:
        ema_state = {f"shadow.{i}": p.detach().cpu().contiguous() for i, p in enumerate(ema_model.shadow_params)}
        save_file(ema_state, temporary / "ema.safetensors")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        marker = {
            "global_step": global_step,
            "training_args": {**recorded_args(args), "num_processes": accelerator.num_processes},
            "ema_optimization_step": ema_model.optimization_step if ema_model is not None else None,
            "train_seconds": round(train_seconds, 1),  # training-loop time so far, over every resumed segment
        }
        (temporary / COMPLETE_MARKER).write_text(json.dumps(marker, indent=2))
        if final.exists():
            shutil.rmtree(final)
        os.replace(temporary, final)
        # Only now that the new checkpoint is complete may old ones go.
        if args.checkpoints_total_limit is not None:
            for old in complete_checkpoints(output_dir)[: -args.checkpoints_total_limit]:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, checkpoint: Path, randomness, ema_model) -> Tuple[int, float]:
    """Restore everything ``save_checkpoint`` wrote; return the global step and the training time so far."""
    accelerator.load_state(str(checkpoint))
    randomness.load(checkpoint, accelerator.process_index)
    marker = json.loads((checkpoint / COMPLETE_MARKER).read_text())
    if ema_model is not None:
        ema_state = load_file(checkpoint / "ema.safetensors")
        for index, parameter in enumerate(ema_model.shadow_params):
            parameter.data.copy_(ema_state[f"shadow.{index}"])
        ema_model.optimization_step = marker["ema_optimization_step"]
    return int(marker["global_step"]), float(marker.get("train_seconds", 0.0))


# ----------------------------------------------------------------------------- training


def to_model_input(batch: torch.Tensor, data, args, randomness: TrainingRandomness) -> torch.Tensor:
    """Map a batch of data-set items to the model's data range, with random flips and dequantisation."""
    if not data.is_image:
        return batch.float()
    # Random draws come from the CPU generator (reproducible on any device), then move to the batch.
    levels = batch.float()
    if args.random_flip:
        flip = (torch.rand(levels.shape[0], generator=randomness.generator) < 0.5).to(levels.device)
        levels = torch.where(flip[:, None, None, None], levels.flip(-1), levels)
    if args.dequantize:
        # Uniform dequantisation: grey level k of Q becomes uniform on [k/Q, (k+1)/Q).
        uniform = torch.rand(levels.shape, generator=randomness.generator).to(levels.device)
        unit = (levels + uniform) / data.num_levels
    else:
        unit = levels / (data.num_levels - 1)
    low, high = args.data_range
    return low + (high - low) * unit


def _stack_data(data, args, limit: int = 5000) -> torch.Tensor:
    """Up to ``limit`` examples as one tensor in the model's data range (for the noise-schedule techniques)."""
    count = min(len(data.dataset), limit)
    items = torch.stack([data.dataset[index] for index in range(count)]).float()
    if not data.is_image:
        return items
    low, high = args.data_range
    return low + (high - low) * items / (data.num_levels - 1)


def build_scheduler(args, data):
    """The NCSNScheduler the run trains for (and saves)."""
    from .scheduling_ncsn import NCSNScheduler

    if args.auto_noise_schedule:
        examples = _stack_data(data, args)
        schedule = ncsnv2_noise_schedule(examples, sigma_min=args.sigma_min, steps_per_level=args.steps_per_level)
        return NCSNScheduler(**schedule.to_dict(), final_denoise=args.final_denoise)
    return NCSNScheduler(
        sigma_max=args.sigma_max,
        sigma_min=args.sigma_min,
        num_noise_levels=args.num_noise_levels,
        steps_per_level=args.steps_per_level,
        step_lr=args.step_lr,
        final_denoise=args.final_denoise,
    )


def build_model(args, data):
    """The score network: NCSNv2 RefineNet for images, an MLP for 2-D points."""
    from .modeling_ncsn import NCSNScoreModel
    from .modeling_toy import ToyScoreModel

    kind = args.model if args.model != "auto" else ("ncsnv2" if data.is_image else "mlp")
    if kind == "ncsnv2":
        if not data.is_image:
            raise ValueError(f"--model ncsnv2 needs image data, but {data.description} is not.")
        channels, height, _ = data.sample_shape
        return NCSNScoreModel(in_channels=channels, sample_size=height, ngf=args.ngf)
    if len(data.sample_shape) != 1:
        raise ValueError(f"--model mlp needs vector data, but {data.description} has shape {data.sample_shape}.")
    return ToyScoreModel(data_dim=data.sample_shape[0], hidden_size=args.hidden_size, num_layers=args.num_layers)


def compute_loss(model, clean: torch.Tensor, noise_levels: torch.Tensor, args, randomness) -> torch.Tensor:
    """Draw one noise level per example (uniformly among the scheduler's levels) and evaluate the loss."""
    from .losses import denoising_score_matching_loss, sliced_score_matching_loss

    generator = randomness.generator
    indices = torch.randint(len(noise_levels), (clean.shape[0],), generator=generator)
    sigma = noise_levels[indices].to(device=clean.device, dtype=clean.dtype)
    noise = torch.randn(clean.shape, generator=generator).to(device=clean.device, dtype=clean.dtype)
    if args.loss == "dsm":
        return denoising_score_matching_loss(model, clean, sigma, noise)
    projections = torch.randn(clean.shape, generator=generator).to(device=clean.device, dtype=clean.dtype)
    return sliced_score_matching_loss(model, clean, sigma, noise, projections)


def save_sample_preview(pipeline, path: Path, num_samples: int, seed: int) -> None:
    """Write a grid of samples (images) or a scatter plot (2-D points) to ``path``, atomically."""
    from .cli_sample import _plot_points, save_image_grid

    pipeline.set_progress_bar_config(disable=True)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    if pipeline.config.data_range is not None:
        save_image_grid(pipeline(batch_size=num_samples, generator=generator, output_type="pil").images, path)
    else:
        points = pipeline(batch_size=max(num_samples, 1000), generator=generator, output_type="pt").images
        _plot_points(path, [("samples", points)], title=path.stem)


def reset_accelerate_state() -> None:
    """Forget accelerate's process-wide state, so that several trainings can run in one Python process (tests)."""
    from accelerate.state import AcceleratorState, GradientState, PartialState

    AcceleratorState._reset_state(reset_partial_state=True)
    PartialState._reset_state()
    GradientState._reset_state()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``ncsn-train``."""
    args = parse_args(argv)
    try:
        train(args)
    except (ValueError, FloatingPointError, HubError) as error:
        print(f"ncsn-train: error: {error}", file=sys.stderr)
        return 2
    return 0


def train(args: argparse.Namespace) -> Path:
    """Run training as ``args`` says; return the output folder."""
    from accelerate import Accelerator
    from accelerate.logging import get_logger
    from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel
    from tqdm.auto import tqdm

    output_dir = Path(args.output_dir)
    if (output_dir / "model_index.json").exists() and not (args.overwrite_output_dir or args.resume_from_checkpoint):
        raise ValueError(
            f"--output_dir {output_dir} already holds a trained pipeline; pass --overwrite_output_dir, "
            "--resume_from_checkpoint latest, or another folder."
        )
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(
            project_dir=str(output_dir), logging_dir=str(output_dir / args.logging_dir)
        ),
        # Seedable sampler: the shuffling of epoch e depends only on (seed, e), so a resumed run sees the same order.
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
    )
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    logger = get_logger("ncsn_pipeline.train", log_level="INFO")
    set_seed(args.seed)  # model initialisation
    randomness = TrainingRandomness(args.seed + accelerator.process_index)

    # 1. Data, noise schedule, model.
    data = load_training_data(
        dataset_name=args.dataset_name,
        dataset_config_name=args.dataset_config_name,
        train_data_dir=args.train_data_dir,
        image_column=args.image_column,
        cache_dir=args.cache_dir,
        resolution=args.resolution,
        channels=args.channels,
        center_crop=args.center_crop,
        max_train_samples=args.max_train_samples,
        num_toy_samples=args.num_toy_samples,
        seed=args.seed,
    )
    if len(data.dataset) < args.train_batch_size:
        raise ValueError(
            f"--train_batch_size {args.train_batch_size} is larger than the data set ({len(data.dataset)} examples)."
        )
    scheduler = build_scheduler(args, data)
    noise_levels = scheduler.noise_levels.float()  # exactly the levels the saved scheduler uses
    model = build_model(args, data)
    ema_model = (
        EMAModel(model.parameters(), decay=args.ema_decay, model_cls=type(model), model_config=model.config)
        if args.use_ema
        else None
    )

    # 2. Optimisation.
    optimizer = torch.optim.Adam(
        model.parameters(),
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=args.adam_weight_decay,
        eps=args.adam_epsilon,
    )
    dataloader = torch.utils.data.DataLoader(
        data.dataset,
        batch_size=args.train_batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=args.dataloader_num_workers,
    )
    lr_scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=args.max_train_steps * accelerator.num_processes,
    )
    model, optimizer, dataloader, lr_scheduler = accelerator.prepare(model, optimizer, dataloader, lr_scheduler)
    if ema_model is not None:
        ema_model.to(accelerator.device)

    # 3. Resume.
    global_step, earlier_seconds = 0, 0.0
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        for leftover in output_dir.glob(".checkpoint-*.tmp"):
            shutil.rmtree(leftover)  # an interrupted save: never complete, never used
    accelerator.wait_for_everyone()
    if args.resume_from_checkpoint:
        checkpoint = resolve_checkpoint(output_dir, args.resume_from_checkpoint)
        if checkpoint is None:
            logger.info("No complete checkpoint found: starting a new run.")
        else:
            check_resume_compatible(checkpoint, args, accelerator.num_processes)
            global_step, earlier_seconds = load_checkpoint(accelerator, checkpoint, randomness, ema_model)
            logger.info(f"Resumed from {checkpoint} at step {global_step}.")

    if accelerator.is_main_process:
        run_config = {
            key: (json.dumps(value) if isinstance(value, list) else value) for key, value in recorded_args(args).items()
        }
        accelerator.init_trackers("ncsn-train", config={k: v for k, v in run_config.items() if v is not None})
        logger.info(
            f"Training on {data.description}: {len(data.dataset)} examples, {accelerator.num_processes} process(es), "
            f"batch {args.train_batch_size} x {args.gradient_accumulation_steps} accumulation, "
            f"{len(noise_levels)} noise levels {noise_levels[0]:.4g} -> {noise_levels[-1]:.4g}."
        )
    loss_log = output_dir / "logs" / "loss.jsonl"
    if accelerator.is_main_process:
        loss_log.parent.mkdir(parents=True, exist_ok=True)

    # 4. The loop.
    progress = tqdm(
        range(args.max_train_steps), initial=global_step, disable=not accelerator.is_local_main_process, desc="steps"
    )
    started = time.perf_counter()
    first_epoch = (global_step * args.gradient_accumulation_steps) // len(dataloader)
    batches_to_skip = (global_step * args.gradient_accumulation_steps) % len(dataloader)
    epoch = first_epoch
    while global_step < args.max_train_steps:
        dataloader.set_epoch(epoch)
        batches = accelerator.skip_first_batches(dataloader, batches_to_skip) if batches_to_skip else dataloader
        batches_to_skip = 0
        model.train()
        for batch in batches:
            clean = to_model_input(batch, data, args, randomness).to(accelerator.device)
            with accelerator.accumulate(model):
                loss = compute_loss(model, clean, noise_levels, args, randomness)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            if not accelerator.sync_gradients:
                continue
            if ema_model is not None:
                ema_model.step(model.parameters())
            global_step += 1
            mean_loss = accelerator.gather(loss.detach()[None]).mean().item()
            if not math.isfinite(mean_loss):
                raise FloatingPointError(
                    f"The loss became {mean_loss} at step {global_step}: lower --learning_rate (now "
                    f"{args.learning_rate}) or use --mixed_precision no/bf16."
                )
            logs = {"loss": mean_loss, "lr": lr_scheduler.get_last_lr()[0]}
            progress.update(1)
            progress.set_postfix(**logs)
            accelerator.log(logs, step=global_step)
            if accelerator.is_main_process:
                with loss_log.open("a") as handle:
                    handle.write(json.dumps({"step": global_step, **logs}) + "\n")
            if global_step % args.checkpointing_steps == 0:
                elapsed = earlier_seconds + time.perf_counter() - started
                save_checkpoint(accelerator, output_dir, global_step, args, randomness, ema_model, elapsed)
            if args.save_samples_steps and global_step % args.save_samples_steps == 0 and accelerator.is_main_process:
                preview = _pipeline(accelerator, model, ema_model, scheduler, data, args)
                save_sample_preview(
                    preview, output_dir / "samples" / f"step-{global_step:06d}.png", args.num_samples, 0
                )
            if global_step >= args.max_train_steps:
                break
        epoch += 1
    progress.close()
    train_seconds = earlier_seconds + time.perf_counter() - started

    # 5. The pipeline folder: components first, model_index.json last, so a half-written folder never loads.
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        pipeline = _pipeline(accelerator, model, ema_model, scheduler, data, args)
        save_pipeline_folder(pipeline, output_dir, args, data, global_step, train_seconds, _hardware(accelerator))
        logger.info(f"Saved the pipeline to {output_dir} ({global_step} steps, {train_seconds:.0f} s).")
        if args.push_to_hub:
            from .hub import push_folder_to_hub

            url = push_folder_to_hub(output_dir, args.hub_model_id, private=args.hub_private, token=args.hub_token)
            logger.info(f"Pushed to {args.hub_model_id}: {url}")
    accelerator.end_training()
    return output_dir


def _hardware(accelerator) -> Dict[str, Any]:
    """What the run ran on, for the training record and the model card."""
    if accelerator.device.type == "cuda":
        device = torch.cuda.get_device_name(accelerator.device)
    else:
        device = f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads per process)"
    return {"num_processes": accelerator.num_processes, "device": device}


def _pipeline(accelerator, model, ema_model, scheduler, data, args):
    """An NCSNPipeline around a copy of the trained (EMA) weights, on the CPU."""
    from .pipeline_ncsn import NCSNPipeline
    from .scheduling_ncsn import NCSNScheduler

    unwrapped = accelerator.unwrap_model(model)
    copy = type(unwrapped).from_config(unwrapped.config)
    copy.load_state_dict(unwrapped.state_dict())
    if ema_model is not None:
        ema_model.copy_to(copy.parameters())
    copy = copy.to("cpu").eval()
    return NCSNPipeline(
        unet=copy,
        scheduler=NCSNScheduler.from_config(scheduler.config),
        data_range=args.data_range if data.is_image else None,
    )


def _command_line() -> Optional[str]:
    """The ``ncsn-train`` command that is running (with any Hub token masked), or None when called from Python."""
    if not sys.argv or "train" not in Path(sys.argv[0]).name:
        return None
    words = list(sys.argv[1:])
    for index, word in enumerate(words):
        if word == "--hub_token" and index + 1 < len(words):
            words[index + 1] = "***"
        elif word.startswith("--hub_token="):
            words[index] = "--hub_token=***"
    return " ".join(["ncsn-train", *words])


def save_pipeline_folder(pipeline, output_dir: Path, args, data, global_step, train_seconds, hardware) -> None:
    """Save ``pipeline`` plus ``training_args.json`` and ``sample_grid.png`` into ``output_dir`` atomically."""
    staging = output_dir / ".pipeline.tmp"
    if staging.exists():
        shutil.rmtree(staging)
    pipeline.save_pretrained(staging)
    record = {
        "command": _command_line(),
        "args": recorded_args(args),
        "data": data.description,
        "num_examples": len(data.dataset),
        "global_step": global_step,
        "train_seconds": round(train_seconds, 1),
        "num_processes": hardware["num_processes"],
        "hardware": f"{hardware['num_processes']} x {hardware['device']}",
        "torch": torch.__version__,
    }
    (staging / "training_args.json").write_text(json.dumps(record, indent=2))
    save_sample_preview(pipeline, staging / "sample_grid.png", args.num_samples, seed=0)
    index = staging / "model_index.json"
    for item in staging.iterdir():
        if item != index:
            target = output_dir / item.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
    os.replace(index, output_dir / "model_index.json")
    shutil.rmtree(staging)


if __name__ == "__main__":
    sys.exit(main())
