"""Checkpoints of ``ncsn-train``: written atomically, found only when complete, resumed exactly.

A checkpoint is a folder ``checkpoint-<step>`` holding accelerate's state (model, optimizer, learning-rate
schedule, data order), the EMA weights and the training randomness (safetensors), and, written last, the
marker ``checkpoint_complete.json`` (step, arguments, training time and the command segments so far).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
from safetensors.torch import load_file, save_file

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
    accelerator,
    output_dir: Path,
    global_step: int,
    args,
    randomness,
    ema_model,
    train_seconds: float,
    segments: List[Dict[str, str]],
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
            "segments": segments,  # the commands that ran, in order, with their steps
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


def load_checkpoint(accelerator, checkpoint: Path, randomness, ema_model) -> Tuple[int, float, List[Dict[str, str]]]:
    """Restore everything ``save_checkpoint`` wrote; return the global step, the training time and the segments."""
    accelerator.load_state(str(checkpoint))
    randomness.load(checkpoint, accelerator.process_index)
    marker = json.loads((checkpoint / COMPLETE_MARKER).read_text())
    if ema_model is not None:
        ema_state = load_file(checkpoint / "ema.safetensors")
        for index, parameter in enumerate(ema_model.shadow_params):
            parameter.data.copy_(ema_state[f"shadow.{index}"])
        ema_model.optimization_step = marker["ema_optimization_step"]
    return int(marker["global_step"]), float(marker.get("train_seconds", 0.0)), list(marker.get("segments", []))
