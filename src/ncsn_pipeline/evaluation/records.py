"""``evaluation.json``: the measured quality of a pipeline folder, which its model card shows. This module is its
only writer (`write_evaluation`) and reader (`read_evaluation`)::

    {"reference_label": "...", "metrics": [{"name": "...", "value": 0.9, "reference": 0.95}, ...],
     "notes": "...", "command": "..."}
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from ..files import write_text_atomically

EVALUATION_FILE = "evaluation.json"


def _check_record(record: Any, where: str) -> Dict[str, Any]:
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
    folder: Union[str, os.PathLike],
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
    _check_record(record, str(folder))
    path = Path(folder) / EVALUATION_FILE
    write_text_atomically(path, json.dumps(record, indent=2) + "\n")
    return path


def read_evaluation(folder: Union[str, os.PathLike]) -> Optional[Dict[str, Any]]:
    """The evaluation record of ``folder``, or ``None`` when it has none; a broken file raises `ValueError`."""
    path = Path(folder) / EVALUATION_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}).") from None
    return _check_record(record, str(path))
