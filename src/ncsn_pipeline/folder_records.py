"""The records a pipeline folder keeps about itself, next to its weights: their names, their writers, their readers.

=======================  ===================================  =========================================
file                     written by                           read by
=======================  ===================================  =========================================
``training_args.json``   ``ncsn-train`` (`write_training`)     the model card, the demo (class names)
``conversion.json``      ``ncsn-convert`` (`write_conversion`) the model card
``evaluation.json``      ``ncsn-eval --record``                the model card
                         (`write_evaluation`)
``tuned_steps.json``     ``ncsn-tune-steps``                   the model card
                         (`write_tuned_steps`)
``guide/``               ``ncsn-train --save_guide_at``        autoguidance (`guide_folder`:
                         (a pipeline folder: a weaker model    ``ncsn-sample --guidance_model``, the
                         of the same data)                     demo, the model card)
=======================  ===================================  =========================================

This module is the only place that names, writes or reads them; it sits low in the package (it imports only
`ncsn_pipeline.files`), so that training, conversion, evaluation and the Hub layer all use it without importing
one another. Every writer is atomic: a reader never sees half a record.

``evaluation.json``::

    {"reference_label": "...", "metrics": [{"name": "...", "value": 0.9, "reference": 0.95}, ...],
     "notes": "...", "command": "..."}

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as folder:
...     _ = write_evaluation(folder, [{"name": "confident digits", "value": 0.86, "reference": 0.94}])
...     read_evaluation(folder)["metrics"][0]["value"], read_conversion(folder)
(0.86, None)
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from .files import write_text_atomically

TRAINING_RECORD = "training_args.json"
CONVERSION_RECORD = "conversion.json"
EVALUATION_RECORD = "evaluation.json"
TUNED_STEPS_RECORD = "tuned_steps.json"
GUIDE_FOLDER = "guide"  # autoguidance's weaker model of the same data, a pipeline folder inside the model's folder
# Records that feed the model card and stay in local folders only (a Hub export renders the card, then drops them;
# the tuned levels themselves live in the scheduler's config, which travels).
CARD_ONLY_RECORDS = (TRAINING_RECORD, EVALUATION_RECORD, TUNED_STEPS_RECORD)

PathLike = Union[str, os.PathLike]


def guide_folder(folder: PathLike) -> Optional[Path]:
    """The guide a model folder keeps for autoguidance (``folder/guide``, a saved pipeline), `None` when it has none."""
    path = Path(folder) / GUIDE_FOLDER
    return path if (path / "model_index.json").is_file() else None


def _read_json(folder: PathLike, name: str) -> Optional[Dict[str, Any]]:
    """``folder/name`` as a dict, ``None`` when the file is absent; a broken file raises `ValueError` naming it."""
    path = Path(folder) / name
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}).") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(record).__name__}.")
    return record


def _write_json(folder: PathLike, name: str, record: Dict[str, Any]) -> Path:
    path = Path(folder) / name
    write_text_atomically(path, json.dumps(record, indent=2) + "\n")
    return path


# ---------------------------------------------------------------------------- training_args.json
def write_training(folder: PathLike, record: Dict[str, Any]) -> Path:
    """Write ``training_args.json`` (built by `ncsn_pipeline.training.records.training_record`)."""
    return _write_json(folder, TRAINING_RECORD, record)


def read_training(folder: PathLike) -> Optional[Dict[str, Any]]:
    """The training record of ``folder``, or ``None`` for folders that were not trained by ``ncsn-train``."""
    return _read_json(folder, TRAINING_RECORD)


# ---------------------------------------------------------------------------- conversion.json
def write_conversion(folder: PathLike, record: Dict[str, Any]) -> Path:
    """Write ``conversion.json``: where converted weights came from (built by `ncsn_pipeline.conversion`)."""
    return _write_json(folder, CONVERSION_RECORD, record)


def read_conversion(folder: PathLike) -> Optional[Dict[str, Any]]:
    """The conversion record of ``folder``, or ``None`` for folders that were not converted."""
    return _read_json(folder, CONVERSION_RECORD)


# ---------------------------------------------------------------------------- evaluation.json
def _check_evaluation(record: Any, where: str) -> Dict[str, Any]:
    if not isinstance(record, dict) or not isinstance(record.get("metrics"), list) or not record["metrics"]:
        raise ValueError(f"{where}: an evaluation record needs a non-empty 'metrics' list.")
    for metric in record["metrics"]:
        value = metric.get("value") if isinstance(metric, dict) else None
        if (
            not isinstance(metric, dict)
            or not isinstance(metric.get("name"), str)
            or not isinstance(value, (int, float))
        ):
            raise ValueError(f"{where}: every metric needs a 'name' and a numeric 'value', got {metric!r}.")
        if not math.isfinite(value):
            raise ValueError(f"{where}: metric {metric['name']!r} has the non-finite value {value!r}.")
    return record


def write_evaluation(
    folder: PathLike,
    metrics: List[Dict[str, Any]],
    reference_label: str = "reference",
    notes: Optional[str] = None,
    command: Optional[str] = None,
) -> Path:
    """Write ``folder/evaluation.json`` atomically and return its path.

    Args:
        folder: The pipeline folder.
        metrics: ``[{"name": str, "value": number, "reference": number or None}, ...]``.
        reference_label: What the ``reference`` column is (e.g. "floor: real training digits").
        notes: How it was measured, in a sentence or two.
        command: The command that reproduces the measurement.
    """
    record = {"reference_label": reference_label, "metrics": metrics, "notes": notes, "command": command}
    _check_evaluation(record, str(folder))
    return _write_json(folder, EVALUATION_RECORD, record)


def read_evaluation(folder: PathLike) -> Optional[Dict[str, Any]]:
    """The evaluation record of ``folder``, or ``None`` when it has none; a broken file raises `ValueError`."""
    record = _read_json(folder, EVALUATION_RECORD)
    return None if record is None else _check_evaluation(record, str(Path(folder) / EVALUATION_RECORD))


# ---------------------------------------------------------------------------- tuned_steps.json
def write_tuned_steps(folder: PathLike, num_calls: int, record: Dict[str, Any]) -> Path:
    """Add (or replace) how the levels of ``num_calls``-call runs were tuned to ``folder/tuned_steps.json``
    (``{"10": {"levels": [...], "distance": ..., "command": ...}, ...}``, built by `ncsn_pipeline.step_tuning`)."""
    records = read_tuned_steps(folder) or {}
    records[str(num_calls)] = record
    return _write_json(folder, TUNED_STEPS_RECORD, dict(sorted(records.items(), key=lambda item: int(item[0]))))


def read_tuned_steps(folder: PathLike) -> Optional[Dict[str, Any]]:
    """The tuning records of ``folder`` by call count, or ``None`` when its levels were never tuned."""
    record = _read_json(folder, TUNED_STEPS_RECORD)
    if record is not None and not all(str(key).isdigit() and isinstance(value, dict) for key, value in record.items()):
        raise ValueError(f"{Path(folder) / TUNED_STEPS_RECORD}: expected {{'N': {{...}}}} by call count.")
    return record
