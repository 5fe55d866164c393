"""`TrainingConfig`: everything a training run is given, typed, checked in one place (`TrainingConfig.validate`);
`ClassifierTrainingConfig` the same for ``ncsn-train-classifier``.

``ncsn-train`` builds one from its flags (same names: ``--max_train_steps`` is ``max_train_steps``; ``ncsn-train
--help`` explains each) and `ncsn_pipeline.training.loop.train` runs it; from Python, build it directly. Its fields
(less the Hub token) are what ``training_args.json`` records under ``"args"``, and `TrainingConfig.from_record`
reads such a record back, older ones included (a field they lack takes its default).

Example:
    >>> from ncsn_pipeline.training.config import TrainingConfig
    >>> config = TrainingConfig(dataset_name="digits", resolution=8, max_train_steps=200, output_dir="my-digits")
    >>> config.validate().max_train_steps
    200
    >>> TrainingConfig(dataset_name="digits", max_train_steps=0).validate()
    Traceback (most recent call last):
    ...
    ValueError: max_train_steps must be an integer >= 1, got 0.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ..checks import check_data_range, check_fields
from ..data.names import FASHION_MNIST  # the data set whose train_data_dir is the folder of its IDX files

MODELS = ("auto", "ncsnv2", "edm-unet", "mlp")
INVERSE_SQRT = "inverse_sqrt"  # EDM2's learning-rate decay (`inverse_sqrt_decay`), besides diffusers' schedules

# Range checks per field (the cross-field rules are in `TrainingConfig.validate`).
_POSITIVE_INTS = (
    "posthoc_ema_interval", "lr_decay_steps",
    "resolution", "num_toy_samples", "ngf", "layers_per_block", "hidden_size", "num_layers", "steps_per_level",
    "train_batch_size", "max_train_steps", "gradient_accumulation_steps", "threads", "checkpointing_steps",
    "num_samples",
)  # fmt: skip
_OPTIONAL_POSITIVE_INTS = (
    "max_train_samples", "checkpoints_total_limit", "save_samples_steps", "save_guide_at", "tune_steps",
)  # fmt: skip
_NON_NEGATIVE_INTS = ("dataloader_num_workers", "lr_warmup_steps", "seed")
_POSITIVE_FLOATS = ("sigma_max", "sigma_min", "step_lr", "log_normal_std", "learning_rate", "max_grad_norm")
_OPTIONAL_POSITIVE_FLOATS = ("sigma_data", "max_train_minutes")
# EDM's settings at the edges: beyond these the preconditioning over- or underflows (sigma_data 1e300, 1e-300) or
# sigma spans more than float32 (a log-normal std of 1e10) and training fails at its first step, naming no flag.
SIGMA_DATA_RANGE = (1e-4, 1e4)
MAX_LOG_NORMAL_STD = 5.0
MAX_ABS_LOG_NORMAL_MEAN = 15.0
_CHOICES = {
    "model": MODELS,
    "loss": ("dsm", "ssm"),
    "noise_sampling": ("auto", "levels", "log-normal"),
    "loss_weighting": ("auto", "sigma2", "edm"),
    "mixed_precision": (None, "no", "fp16", "bf16"),
    "channels": (None, 1, 3),
}


@dataclass
class TrainingConfig:
    """A training run's settings: the flags of ``ncsn-train``, one field each, with the same defaults."""

    # Data.
    dataset_name: Optional[str] = None
    dataset_config_name: Optional[str] = None
    train_data_dir: Optional[str] = None
    image_column: str = "image"
    class_conditional: bool = False
    label_column: str = "label"
    label_dropout: float = 0.0
    cache_dir: Optional[str] = None
    resolution: int = 32
    channels: Optional[int] = None
    center_crop: bool = False
    random_flip: bool = False
    dequantize: bool = True
    data_range: List[float] = field(default_factory=lambda: [0.0, 1.0])
    max_train_samples: Optional[int] = None
    num_toy_samples: int = 20000
    dataloader_num_workers: int = 0
    # Model.
    model: str = "auto"
    ngf: int = 32
    block_out_channels: List[int] = field(default_factory=lambda: [32, 64, 64])
    layers_per_block: int = 1
    sigma_data: Optional[float] = None
    hidden_size: int = 128
    num_layers: int = 3
    # Noise levels and the sampler saved with the model.
    sigma_max: float = 1.0
    sigma_min: float = 0.01
    num_noise_levels: int = 10
    steps_per_level: int = 5
    step_lr: float = 2e-05
    final_denoise: bool = True
    auto_noise_schedule: bool = False
    # Output.
    output_dir: Optional[str] = None
    overwrite_output_dir: bool = False
    seed: int = 0
    # Objective.
    loss: str = "dsm"
    noise_sampling: str = "auto"
    log_normal_mean: Optional[float] = None
    log_normal_std: float = 1.2
    loss_weighting: str = "auto"
    # Optimisation.
    train_batch_size: int = 128
    max_train_steps: int = 3000
    max_train_minutes: Optional[float] = None
    gradient_accumulation_steps: int = 1
    learning_rate: float = 0.001
    lr_scheduler: str = "constant_with_warmup"
    lr_warmup_steps: int = 0
    lr_decay_steps: int = 1000
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_weight_decay: float = 0.0
    adam_epsilon: float = 1e-08
    max_grad_norm: float = 1.0
    use_ema: bool = True
    ema_decay: float = 0.999
    posthoc_ema: bool = False
    posthoc_ema_interval: int = 500
    mixed_precision: Optional[str] = None
    threads: int = 1
    # Checkpoints, logs, samples, what is left behind.
    checkpointing_steps: int = 500
    checkpoints_total_limit: Optional[int] = None
    resume_from_checkpoint: Optional[str] = None
    report_to: str = "auto"
    logging_dir: str = "logs"
    save_samples_steps: Optional[int] = None
    num_samples: int = 16
    save_guide_at: Optional[int] = None
    tune_steps: Optional[int] = None
    # Publishing.
    push_to_hub: bool = False
    push_demo: bool = False
    hub_model_id: Optional[str] = None
    hub_token: Optional[str] = dataclasses.field(default=None, repr=False)  # never printed, never recorded
    hub_private: Optional[bool] = None

    def validate(self) -> TrainingConfig:
        """Check every field and the rules between them; resolve ``report_to="auto"`` (TensorBoard if installed).
        Returns the config itself; raises `ValueError` naming the bad value and what would be accepted."""
        check_fields(
            self,
            integers_from={**dict.fromkeys(_POSITIVE_INTS + _OPTIONAL_POSITIVE_INTS, 1),
                           **dict.fromkeys(_NON_NEGATIVE_INTS, 0)},  # fmt: skip
            positive=_POSITIVE_FLOATS + _OPTIONAL_POSITIVE_FLOATS,
            choices=_CHOICES,
            optional=_OPTIONAL_POSITIVE_INTS + _OPTIONAL_POSITIVE_FLOATS,
        )
        check_data_range(self.data_range)
        if not (self.block_out_channels and all(isinstance(c, int) and c > 0 for c in self.block_out_channels)):
            raise ValueError(f"block_out_channels must be positive whole numbers, got {self.block_out_channels!r}.")
        if not 0.0 <= self.label_dropout:
            raise ValueError(f"--label_dropout must be from 0 to below 1, got {self.label_dropout!r}.")
        if self.label_dropout >= 1.0:
            raise ValueError("--label_dropout must be below 1 (at 1 no example keeps its class); 0.1 is usual")
        idx_folder = self.dataset_name == FASHION_MNIST and self.train_data_dir is not None
        if (self.dataset_name is None) == (self.train_data_dir is None) and not idx_folder:
            raise ValueError(
                f"pass exactly one of --dataset_name or --train_data_dir (or both for --dataset_name {FASHION_MNIST}: "
                "the folder of its IDX files)"
            )
        if self.sigma_min >= self.sigma_max and not self.auto_noise_schedule:
            raise ValueError(f"--sigma_min ({self.sigma_min}) must be smaller than --sigma_max ({self.sigma_max})")
        if self.loss == "ssm" and (self.noise_sampling == "log-normal" or self.loss_weighting == "edm"):
            raise ValueError(
                f"--noise_sampling {self.noise_sampling} / --loss_weighting {self.loss_weighting} are for --loss dsm; "
                "sliced score matching (--loss ssm) trains on the noise levels with lambda(sigma) = sigma^2"
            )
        if self.label_dropout > 0 and not self.class_conditional:
            raise ValueError(f"--label_dropout {self.label_dropout:g} drops class labels: it needs --class_conditional")
        low, high = SIGMA_DATA_RANGE
        if self.sigma_data is not None and not low <= self.sigma_data <= high:
            raise ValueError(
                f"--sigma_data must lie in [{low:g}, {high:g}] (the data's standard deviation in --data_range units), "
                f"got {self.sigma_data:g}"
            )
        if self.log_normal_std > MAX_LOG_NORMAL_STD:
            raise ValueError(f"--log_normal_std must be at most {MAX_LOG_NORMAL_STD:g}, got {self.log_normal_std:g}")
        if self.log_normal_mean is not None and not (
            isinstance(self.log_normal_mean, (int, float)) and abs(self.log_normal_mean) <= MAX_ABS_LOG_NORMAL_MEAN
        ):
            raise ValueError(
                f"--log_normal_mean must be a number from {-MAX_ABS_LOG_NORMAL_MEAN:g} to {MAX_ABS_LOG_NORMAL_MEAN:g} "
                f"(log sigma), got {self.log_normal_mean!r}"
            )
        from diffusers.optimization import SchedulerType

        schedules = [kind.value for kind in SchedulerType] + [INVERSE_SQRT]
        if self.lr_scheduler not in schedules:
            raise ValueError(f"--lr_scheduler must be one of {schedules}, got {self.lr_scheduler!r}")
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"--ema_decay must lie in (0, 1), got {self.ema_decay}")
        if self.save_guide_at is not None and self.save_guide_at >= self.max_train_steps:
            raise ValueError(
                f"--save_guide_at {self.save_guide_at} must come before the last step (--max_train_steps "
                f"{self.max_train_steps}): the guide is an earlier, weaker version of the model"
            )
        if self.push_demo and not self.push_to_hub:
            raise ValueError("--push_demo publishes a demo Space of the pushed model: it needs --push_to_hub.")
        if self.push_to_hub and (self.hub_model_id is None or self.hub_private is None):
            raise ValueError(
                "--push_to_hub needs --hub_model_id user/name and an explicit --hub_private or --hub_public"
            )
        if self.report_to == "auto":
            try:
                import tensorboard  # noqa: F401

                self.report_to = "tensorboard"
            except ImportError:
                self.report_to = "none"
        return self

    def to_record(self) -> Dict[str, Any]:
        """The fields as ``training_args.json`` records them: never the Hub token."""
        return {key: value for key, value in dataclasses.asdict(self).items() if key != "hub_token"}

    @classmethod
    def from_record(cls, record: Dict[str, Any]) -> TrainingConfig:
        """A config from a recorded ``"args"`` dict (``training_args.json``, a checkpoint's): fields it lacks take
        their defaults (older records), keys that are no field (flags since removed) are left out."""
        names = {spec.name for spec in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in record.items() if key in names})

    @classmethod
    def defaults(cls) -> Dict[str, Any]:
        """Every field's default (what ``ncsn-train``'s parser takes as its own)."""
        return {key: value for key, value in dataclasses.asdict(cls()).items()}


@dataclass
class ClassifierTrainingConfig:
    """A noise-conditional classifier's training (``ncsn-train-classifier``'s flags, one field each, same defaults):
    labelled images as ``ncsn-train --class_conditional`` reads them, the noise range of ``pipeline`` (or given)."""

    dataset_name: Optional[str] = None
    train_data_dir: Optional[str] = None
    image_column: str = "image"
    label_column: str = "label"
    cache_dir: Optional[str] = None
    resolution: Optional[int] = None
    channels: Optional[int] = None
    center_crop: bool = False
    max_train_samples: Optional[int] = None
    pipeline: Optional[str] = None
    sigma_max: Optional[float] = None
    sigma_min: Optional[float] = None
    data_range: Optional[List[float]] = None
    block_out_channels: List[int] = field(default_factory=lambda: [32, 64])
    max_train_steps: int = 3000
    train_batch_size: int = 128
    learning_rate: float = 1e-3
    seed: int = 0
    mixed_precision: Optional[str] = None
    output_dir: Optional[str] = None
    overwrite_output_dir: bool = False

    def validate(self) -> ClassifierTrainingConfig:
        """Check every field and the rules between them; returns the config itself, or raises `ValueError`."""
        integers = ("max_train_steps", "train_batch_size", "resolution", "max_train_samples")
        floats = ("learning_rate", "sigma_max", "sigma_min")
        check_fields(
            self,
            integers_from=dict.fromkeys(integers, 1),
            positive=floats,
            choices={name: _CHOICES[name] for name in ("mixed_precision", "channels")},
            optional=integers + floats,
        )
        if not (self.block_out_channels and all(isinstance(c, int) and c > 0 for c in self.block_out_channels)):
            raise ValueError(f"block_out_channels must be positive whole numbers, got {self.block_out_channels!r}.")
        if (self.dataset_name is None) == (self.train_data_dir is None):
            raise ValueError("pass exactly one of --dataset_name or --train_data_dir (labelled images)")
        if self.output_dir is None:
            raise ValueError("output_dir is required: where to save the classifier")
        if self.sigma_min is not None and self.sigma_max is not None and self.sigma_min >= self.sigma_max:
            raise ValueError(f"--sigma_min ({self.sigma_min}) must be smaller than --sigma_max ({self.sigma_max})")
        return self


def inverse_sqrt_decay(step: int, decay_steps: int, warmup_steps: int = 0) -> float:
    """EDM2's learning-rate factor (Karras et al. 2024, §2.3): constant until ``decay_steps``, then
    ``1 / sqrt(step / decay_steps)``; times a linear warm-up over ``warmup_steps``.

    >>> [round(inverse_sqrt_decay(step, 100), 3) for step in (0, 100, 400, 10_000)]
    [1.0, 1.0, 0.5, 0.1]
    """
    warmup = min(step / warmup_steps, 1.0) if warmup_steps else 1.0
    return warmup / max(step / decay_steps, 1.0) ** 0.5
