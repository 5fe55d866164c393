"""The evaluations' settings as typed dataclasses: `EvaluationConfig` (``ncsn-eval``) and
`DigitsEvaluationConfig` (``ncsn-digits-eval``), one field per flag with the same name and default. The command
lines build one from their flags; from Python, build it and call `ncsn_pipeline.evaluation.evaluate.run` (or
`ncsn_pipeline.evaluation.digits_evaluation.run`). Each ``validate`` checks the fields themselves; what needs the
model or the data (a judge that fits, a sample count the floor allows) is checked by ``run`` before it samples.

Example:
    >>> from ncsn_pipeline.evaluation.config import EvaluationConfig
    >>> EvaluationConfig(pipeline="ncsn-digits", num_samples=0).validate()
    Traceback (most recent call last):
    ...
    ValueError: num_samples must be an integer >= 1, got 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from ..checks import check_fields, check_positive
from .judge_choice import JUDGES


def _check_fields(config, positive_ints=(), optional_positive_ints=(), choices=None) -> None:
    check_fields(
        config,
        integers_from=dict.fromkeys(positive_ints + optional_positive_ints, 1),
        choices=choices,
        optional=optional_positive_ints,
    )
    if config.pipeline is None:
        raise ValueError("pipeline is required: a pipeline folder, a bundled model name or a repo id.")
    if not str(config.output).lower().endswith(".json"):
        raise ValueError(f"--output must name a .json file, got {config.output!r}.")


@dataclass
class EvaluationConfig:
    """``ncsn-eval``'s settings (``ncsn-eval --help`` explains each)."""

    pipeline: Optional[str] = None
    num_samples: int = 1000
    batch_size: int = 100
    seed: int = 0
    skip_samples: bool = False
    sampler: Optional[str] = None
    sampler_option: List[str] = field(default_factory=list)
    num_inference_steps: Optional[int] = None
    feature_network: Optional[str] = None
    reference: Optional[str] = None
    fid: bool = False
    inception: Optional[str] = None
    data: Optional[str] = None
    center_crop: bool = False
    likelihood_samples: Optional[int] = None
    divergence: str = "hutchinson"
    num_probes: int = 1
    probe: str = "rademacher"
    tolerance: float = 1e-05
    likelihood_batch_size: int = 64
    device: str = "cpu"
    dtype: str = "float32"
    output: str = "evaluation-run.json"
    record: bool = False
    judge: str = "auto"
    threads: int = 1

    def validate(self) -> EvaluationConfig:
        """Check the fields; returns the config itself, or raises `ValueError` naming the bad value."""
        _check_fields(
            self,
            positive_ints=("num_samples", "batch_size", "num_probes", "likelihood_batch_size", "threads"),
            optional_positive_ints=("num_inference_steps", "likelihood_samples"),
            choices={
                "divergence": ("hutchinson", "exact"),
                "probe": ("rademacher", "gaussian"),
                "dtype": ("float32", "bfloat16"),
                "judge": JUDGES,
            },
        )
        check_positive("--tolerance", self.tolerance)
        return self


@dataclass
class DigitsEvaluationConfig:
    """``ncsn-digits-eval``'s settings (``ncsn-digits-eval --help`` explains each)."""

    pipeline: Optional[str] = None
    num_samples: int = 500
    batch_size: int = 100
    seed: int = 0
    classifier_seed: int = 0
    confidence: float = 0.9
    sampler: Optional[str] = None
    sampler_option: List[str] = field(default_factory=list)
    num_inference_steps: Optional[int] = None
    device: str = "cpu"
    output: str = "metrics.json"
    record: bool = False
    threads: int = 1

    def validate(self) -> DigitsEvaluationConfig:
        """Check the fields; returns the config itself, or raises `ValueError` naming the bad value."""
        _check_fields(self, positive_ints=("num_samples", "batch_size", "threads"),
                      optional_positive_ints=("num_inference_steps",))  # fmt: skip
        if isinstance(self.confidence, bool) or not isinstance(self.confidence, (int, float)) or not (
            0 < self.confidence < 1
        ):
            raise ValueError(f"--confidence must lie in (0, 1), got {self.confidence!r}.")
        return self
