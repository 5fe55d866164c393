"""Checkpoints of ``ncsn-train``: written atomically, found only when complete, resumed exactly.

A checkpoint is a folder ``checkpoint-<step>`` holding accelerate's state (model, optimizer, learning-rate
schedule, data order), the EMA weights and the training randomness (safetensors), and, written last, the
marker ``checkpoint_complete.json`` (step, arguments, training time and the command segments so far).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from safetensors.torch import load_file, save_file

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
COMPLETE_MARKER = "checkpoint_complete.json"
# Arguments that must match to resume: they change the model, the data, the objective or the
# meaning of a step. Anything else (max_train_steps, logging, sampling cadence ...) may change.
# What checkpoints written before these arguments existed trained with (they are resumable with these values).
ARGS_BEFORE_THEY_EXISTED = {
    "block_out_channels": [32, 64, 64],
    "layers_per_block": 1,
    "sigma_data": None,
    "noise_sampling": "levels",
    "log_normal_mean": None,
    "log_normal_std": 1.2,
    "loss_weighting": "sigma2",
    "posthoc_ema": False,
    "posthoc_ema_interval": 500,
    "lr_decay_steps": 1000,
}
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
    "block_out_channels",
    "layers_per_block",
    "sigma_data",
    "noise_sampling",
    "log_normal_mean",
    "log_normal_std",
    "loss_weighting",
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
    "lr_decay_steps",
    "use_ema",
    "ema_decay",
    "posthoc_ema",
    "posthoc_ema_interval",
    "seed",
    "num_processes",
)


POSTHOC_EMA_STATE = "posthoc_ema.safetensors"  # a checkpoint's power-function profiles (--posthoc_ema)


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


def remove_checkpoint(checkpoint: Path) -> None:
    """Delete a checkpoint folder so that a kill midway leaves no half-deleted ``checkpoint-N``.

    The folder is first renamed (atomic) to ``.checkpoint-N.deleting``, which nothing resumes from and which
    `remove_incomplete_checkpoints` finishes off at the next start.
    """
    doomed = checkpoint.with_name(f".{checkpoint.name}.deleting")
    os.replace(checkpoint, doomed)
    shutil.rmtree(doomed)


def remove_incomplete_checkpoints(output_dir: Path) -> List[Path]:
    """Remove what interrupted saves and deletions left in ``output_dir``; return what was removed.

    That is ``.checkpoint-N.tmp`` (a save that never completed), ``.checkpoint-N.deleting`` (a deletion that never
    completed) and any ``checkpoint-N`` folder without its completion marker (a deletion interrupted by an older
    version). A complete checkpoint is only ever created by renaming a finished ``.tmp`` folder, so none of these
    can hold a usable checkpoint.
    """
    removed = []
    for path in sorted(output_dir.iterdir()) if output_dir.is_dir() else []:
        orphan = CHECKPOINT_PATTERN.match(path.name) and not (path / COMPLETE_MARKER).is_file()
        leftover = re.fullmatch(r"\.checkpoint-\d+\.(tmp|deleting)", path.name)
        if path.is_dir() and (orphan or leftover):
            shutil.rmtree(path)
            removed.append(path)
    return removed


def checkpoint_problem(checkpoint: Path) -> Optional[str]:
    """Why ``checkpoint`` cannot be resumed from (naming the broken file), or ``None`` when it is intact.

    Reads every file: the marker must be JSON, safetensors files must load and hold only finite floats, and
    accelerate's ``torch.save`` files (zip archives) must pass their CRC checks, so a truncated or corrupted file
    is found before any state is restored.
    """
    from safetensors import safe_open

    try:
        json.loads((checkpoint / COMPLETE_MARKER).read_text())
    except (OSError, ValueError) as error:
        return f"{checkpoint / COMPLETE_MARKER} is not readable JSON ({error})"
    for path in sorted(checkpoint.iterdir()):
        try:
            if path.suffix == ".safetensors":
                with safe_open(str(path), framework="pt") as handle:
                    for key in handle.keys():
                        tensor = handle.get_tensor(key)
                        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                            return f"{path} holds NaN or infinite values in {key!r}"
            elif path.suffix in (".bin", ".pkl", ".pt"):
                with zipfile.ZipFile(path) as archive:
                    damaged = archive.testzip()
                if damaged is not None:
                    return f"{path} is corrupted (member {damaged} fails its CRC check)"
        except Exception as error:  # safetensors, zipfile and OS errors all mean: this file cannot be restored
            return f"{path} is truncated or corrupted ({type(error).__name__}: {error})"
    return None


def resolve_checkpoint(
    output_dir: Path, resume_from_checkpoint: str, on_skip: Optional[Callable[[str], None]] = None
) -> Optional[Path]:
    """The checkpoint folder to resume from: the newest *intact* complete one (``latest``), or an explicit path.

    With ``latest``, a broken newest checkpoint is skipped (``on_skip`` receives why) in favour of the newest
    intact one; if every checkpoint is broken, or an explicit one is, a `ValueError` names the broken file and
    lists the intact checkpoints.
    """
    checkpoints = complete_checkpoints(output_dir)
    if resume_from_checkpoint == "latest":
        problems = []
        for checkpoint in reversed(checkpoints):
            problem = checkpoint_problem(checkpoint)
            if problem is None:
                return checkpoint
            problems.append(problem)
            if on_skip is not None:
                on_skip(f"Skipping {checkpoint.name}: {problem}.")
        if problems:
            raise ValueError(
                f"No intact checkpoint in {output_dir}: {'; '.join(problems)}. Start a new run with another "
                "--output_dir, or remove the broken checkpoints."
            )
        return None
    path = Path(resume_from_checkpoint)
    if not path.is_absolute() and not path.exists():
        path = output_dir / path
    if not (path / COMPLETE_MARKER).is_file():
        raise ValueError(
            f"--resume_from_checkpoint {resume_from_checkpoint!r}: {path} is not a complete checkpoint "
            f"(no {COMPLETE_MARKER}); use 'latest' or one of {[p.name for p in checkpoints]}."
        )
    problem = checkpoint_problem(path)
    if problem is not None:
        intact = [checkpoint.name for checkpoint in checkpoints if checkpoint_problem(checkpoint) is None]
        raise ValueError(
            f"--resume_from_checkpoint {resume_from_checkpoint!r}: {problem}. Intact checkpoints: {intact or 'none'}."
        )
    return path


def check_resume_compatible(checkpoint: Path, args: argparse.Namespace, num_processes: int) -> None:
    """Refuse to resume when an argument that shapes the model, data or objective has changed."""
    saved = json.loads((checkpoint / COMPLETE_MARKER).read_text())["training_args"]
    saved = {**ARGS_BEFORE_THEY_EXISTED, **saved}
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


class DiskFullError(RuntimeError):
    """A checkpoint could not be written for lack of space; the message names the file and what was kept."""


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` means the disk is full (``ENOSPC``, or torch's zip writer reporting a failed write)."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    text = str(error)
    return "No space left on device" in text or "file write failed" in text


def save_checkpoint(
    accelerator,
    output_dir: Path,
    global_step: int,
    args,
    randomness,
    ema_model,
    train_seconds: float,
    segments: List[Dict[str, str]],
    posthoc_ema=None,
) -> Path:
    """Write ``checkpoint-<step>`` atomically: into a temporary folder, marked complete, then renamed."""
    final = output_dir / f"checkpoint-{global_step}"
    temporary = output_dir / f".checkpoint-{global_step}.tmp"
    if accelerator.is_main_process and temporary.exists():
        shutil.rmtree(temporary)
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(temporary))
        # Our own state, in safetensors (accelerate's custom-object files are pickles).
        randomness.save(temporary, accelerator.process_index)
        if ema_model is not None and accelerator.is_main_process:
            ema_state = {f"shadow.{i}": p.detach().cpu().contiguous() for i, p in enumerate(ema_model.shadow_params)}
            save_file(ema_state, temporary / "ema.safetensors")
        if posthoc_ema is not None and accelerator.is_main_process:  # the power-function profiles, as they are now
            save_file(posthoc_ema.state_dict(), temporary / POSTHOC_EMA_STATE)
    except (OSError, RuntimeError) as error:
        if not is_disk_full(error):
            raise
        newest = max(temporary.glob("*"), key=lambda path: path.stat().st_mtime, default=temporary)
        shutil.rmtree(temporary, ignore_errors=True)
        intact = [path.name for path in complete_checkpoints(output_dir)]
        raise DiskFullError(
            f"No space left on device while writing {getattr(error, 'filename', None) or newest} (checkpoint "
            f"{global_step}); it was removed, and the earlier checkpoints are untouched ({intact or 'none'}). Free "
            "some space, then continue with --resume_from_checkpoint latest."
        ) from error
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
                remove_checkpoint(old)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(
    accelerator, checkpoint: Path, randomness, ema_model, posthoc_ema=None
) -> Tuple[int, float, List[Dict[str, str]]]:
    """Restore everything ``save_checkpoint`` wrote; return the global step, the training time and the segments."""
    accelerator.load_state(str(checkpoint))
    randomness.load(checkpoint, accelerator.process_index)
    marker = json.loads((checkpoint / COMPLETE_MARKER).read_text())
    if ema_model is not None:
        ema_state = load_file(checkpoint / "ema.safetensors")
        for index, parameter in enumerate(ema_model.shadow_params):
            parameter.data.copy_(ema_state[f"shadow.{index}"])
        ema_model.optimization_step = marker["ema_optimization_step"]
    if posthoc_ema is not None:
        posthoc_ema.load_state_dict(load_file(checkpoint / POSTHOC_EMA_STATE))
    return int(marker["global_step"]), float(marker.get("train_seconds", 0.0)), list(marker.get("segments", []))
