"""Which sample-quality judge ``ncsn-eval`` (and the demo's inpainting tab) uses for a pipeline: `choose_judge`.

Kept apart from `ncsn_pipeline.evaluation.evaluate` so that the demo can ask without importing the evaluation's
heavier dependencies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..folder_records import read_training

JUDGES = ("auto", "digits", "fashion-mnist", "none")


def choose_judge(judge: str, pipe, folder: Optional[Path]) -> str:
    """The sample-quality judge for ``pipe``: ``judge`` itself, or for ``"auto"``: ``"fashion-mnist"`` for a model
    trained on it (its training record says so) or of 1 x 28 x 28 images, ``"digits"`` for other 1-channel image
    models, ``"none"`` for the rest."""
    if judge not in JUDGES:
        raise ValueError(f"Unknown judge {judge!r}; choose one of {list(JUDGES)}.")
    if judge != "auto":
        return judge
    if pipe.config.data_range is None or len(pipe.sample_shape) != 3 or pipe.sample_shape[0] != 1:
        return "none"
    record = read_training(folder) if folder is not None else None
    trained_on = ((record or {}).get("args") or {}).get("dataset_name")
    if trained_on == "fashion-mnist" or tuple(pipe.sample_shape) == (1, 28, 28):
        return "fashion-mnist"
    return "digits"
