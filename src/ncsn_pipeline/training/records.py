"""What a training run writes about itself: ``training_args.json`` (read by the model card) and ``logs/loss.jsonl``.

This module is their only writer. No Hub token is ever written: the recorded arguments leave it out, and the
recorded command line is masked by value (`mask_secrets`), however the token was passed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from ..files import write_text_atomically
from .checkpoints import recorded_args


def _known_secrets(args) -> List[str]:
    """Every Hub token this run could know: ``--hub_token``, ``HF_TOKEN`` and the logged-in one."""
    from huggingface_hub import get_token

    candidates = [getattr(args, "hub_token", None), os.environ.get("HF_TOKEN"), get_token()]
    return [token for token in candidates if token and len(token) >= 4]


def mask_secrets(text: str, secrets: List[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``***`` (masking by value, whatever the spelling)."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def command_line(args) -> Optional[str]:
    """The ``ncsn-train`` command that is running, every token masked, or None when called from Python."""
    if not sys.argv or "train" not in Path(sys.argv[0]).name:
        return None
    return mask_secrets(" ".join(["ncsn-train", *sys.argv[1:]]), _known_secrets(args))


def trim_loss_log(path: Path, last_step: int) -> None:
    """Keep only the complete lines of ``logs/loss.jsonl`` for steps ``1 .. last_step`` (one line per step).

    Lines logged after the checkpoint a run resumes from, and a torn last line (a kill or a full disk while
    writing), are dropped, so that after any number of interruptions the log holds each step exactly once.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
                step = int(entry["step"])
            except (ValueError, KeyError, TypeError):
                continue  # a torn or foreign line
            if 1 <= step <= last_step:
                kept[step] = line
    write_text_atomically(path, "".join(kept[step] + "\n" for step in sorted(kept)))


def training_record(args, data, global_step: int, train_seconds: float, hardware, segments) -> Dict[str, Any]:
    """``training_args.json``, which the model card reads; this function is its only writer.

    ``segments`` lists every command that ran, in order, with its steps: more than one after a resume.
    """
    return {
        "command": command_line(args),
        "args": recorded_args(args),
        "data": data.description,
        "num_examples": len(data.dataset),
        **({"class_names": list(data.class_names)} if data.class_names is not None else {}),
        "global_step": global_step,
        "train_seconds": round(train_seconds, 1),
        "num_processes": hardware["num_processes"],
        "hardware": f"{hardware['num_processes']} x {hardware['device']}",
        "torch": torch.__version__,
        **({"segments": segments} if len(segments) > 1 else {}),
    }
