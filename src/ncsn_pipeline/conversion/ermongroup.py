"""ermongroup checkpoints (NCSN v1 and NCSNv2) -> the package's score models and `NCSNScheduler`.

Layouts (``checkpoint.pth``):

* NCSN v1 (ermongroup/ncsn): ``[model_state_dict, optimizer_state_dict]``; keys prefixed ``module.`` by
  ``nn.DataParallel``; no EMA.
* NCSNv2 (ermongroup/ncsnv2): ``[model_state_dict, optimizer_state_dict, epoch, step, ema_shadow]``; model keys
  prefixed ``module.`` and holding the ``sigmas`` buffer; ``ema_shadow`` maps parameter names (no prefix) to
  their averages.

Conventions carried into the config: the networks map their input ``x -> 2x - 1`` unless the config sets
``logit_transform`` or ``rescaled`` (``center_input``); NCSNv2 divides by sigma, NCSN v1 does not and knows only
its training levels; the noise levels are geometric from ``sigma_begin`` to ``sigma_end`` (``num_classes``).
"""

from __future__ import annotations

import re
from typing import Any, Dict, Iterable, Optional, Tuple

import torch

from ..modeling_ncsn import ARCHITECTURES, NCSNScoreModel
from ..modeling_ncsn_v1 import NCSNv1ScoreModel
from ..scheduling_ncsn import NCSNScheduler
from .originals import (
    CheckpointFamily,
    ConversionError,
    ConvertedModel,
    config_value,
    dataset_name,
    load_converted_weights,
)

# NCSN v1's sampler (ermongroup/ncsn runners/anneal_runner.py): 100 Langevin steps per level, step_lr 2e-5.
NCSN_V1_SAMPLING = {"steps_per_level": 100, "step_lr": 2e-5, "final_denoise": False}
# ermongroup/ncsnv2 runners/ncsn_runner.py get_model: the network of each data set.
NCSNV2_ARCHITECTURES = {"CIFAR10": "ncsnv2", "CELEBA": "ncsnv2", "LSUN": "ncsnv2-deeper", "FFHQ": "ncsnv2-deepest"}


def is_ermongroup_config(config: Dict[str, Any]) -> bool:
    """Whether ``config`` is an ermongroup YAML config (its model section has ``sigma_begin`` and ``num_classes``)."""
    model = config.get("model", {})
    return "sigma_begin" in model and "num_classes" in model


def family(config: Dict[str, Any]) -> str:
    """``"ncsn-v1"`` or ``"ncsnv2"`` (NCSNv2 configs name their ``normalization``)."""
    return "ncsnv2" if "normalization" in config["model"] else "ncsn-v1"


def _input_mapping(config: Dict[str, Any]) -> Tuple[bool, Tuple[float, float]]:
    """``(center_input, data_range)`` from the config's ``logit_transform`` and ``rescaled``."""
    if config_value(config, "data", "logit_transform", False):
        raise ConversionError(
            "data.logit_transform is true: such a model works on logit-transformed pixels, which NCSNPipeline does "
            "not produce; none of the published models uses it."
        )
    if config_value(config, "data", "rescaled", False):
        return False, (-1.0, 1.0)  # trained on [-1, 1] data, fed as it is
    return True, (0.0, 1.0)


def ncsnv2_architecture(
    config: Dict[str, Any], state_keys: Optional[Iterable[str]] = None, architecture: Optional[str] = None
) -> str:
    """Which NCSNv2 network a checkpoint is: ``architecture`` if given (``--architecture``), else the reference's
    choice for the config's ``data.dataset`` (CIFAR10 / CELEBA: NCSNv2, LSUN: Deeper, FFHQ: Deepest), else what the
    checkpoint's own keys say (``res31``: Deepest, ``res5``: Deeper, neither: NCSNv2). The 28-pixel branch of the
    reference (``data.image_size: 28``) is NCSNv2 itself: its ``adjust_padding`` only acts in blocks without
    dilation, and the only block it is set on is dilated."""
    if architecture is not None:
        if architecture not in ARCHITECTURES:
            raise ConversionError(f"--architecture must be one of {sorted(ARCHITECTURES)}, got {architecture!r}.")
        return architecture
    dataset = dataset_name(config).upper()
    if dataset in NCSNV2_ARCHITECTURES:
        return NCSNV2_ARCHITECTURES[dataset]
    if state_keys is None:
        raise ConversionError(
            f"data.dataset {dataset!r} does not say which NCSNv2 network this is (the reference's table: "
            f"{sorted(NCSNV2_ARCHITECTURES)}); pass --architecture ({', '.join(sorted(ARCHITECTURES))})."
        )
    stages = {key.split(".")[0] for key in state_keys}
    return "ncsnv2-deepest" if "res31" in stages else "ncsnv2-deeper" if "res5" in stages else "ncsnv2"


def build_model(
    config: Dict[str, Any], state_keys: Optional[Iterable[str]] = None, architecture: Optional[str] = None
) -> torch.nn.Module:
    """The score model (random weights) that ``config`` describes; for NCSNv2, the network `ncsnv2_architecture`
    picks (from ``architecture``, the dataset, or the checkpoint's ``state_keys``)."""
    center_input, _ = _input_mapping(config)
    channels = config_value(config, "data", "channels")
    size = config_value(config, "data", "image_size")
    ngf = config_value(config, "model", "ngf")
    try:
        if family(config) == "ncsn-v1":
            return NCSNv1ScoreModel(
                in_channels=channels,
                sample_size=size,
                ngf=ngf,
                sigma_max=config_value(config, "model", "sigma_begin"),
                sigma_min=config_value(config, "model", "sigma_end"),
                num_noise_levels=config_value(config, "model", "num_classes"),
                center_input=center_input,
            )
        for key, expected in (("normalization", "InstanceNorm++"), ("nonlinearity", "elu"), ("spec_norm", False)):
            value = config_value(config, "model", key, expected)
            if value != expected:
                raise ConversionError(f"model.{key} is {value!r}; the published NCSNv2 models use {expected!r}.")
        return NCSNScoreModel(
            in_channels=channels,
            sample_size=size,
            ngf=ngf,
            architecture=ncsnv2_architecture(config, state_keys, architecture),
            center_input=center_input,
        )
    except ValueError as error:
        if isinstance(error, ConversionError):
            raise
        raise ConversionError(f"The config describes a model the package cannot build: {error}") from None


def build_scheduler(config: Dict[str, Any]) -> NCSNScheduler:
    """`NCSNScheduler` with the config's noise levels and its sampling settings (annealed Langevin dynamics)."""
    levels = {
        "sigma_max": float(config_value(config, "model", "sigma_begin")),
        "sigma_min": float(config_value(config, "model", "sigma_end")),
        "num_noise_levels": int(config_value(config, "model", "num_classes")),
    }
    if family(config) == "ncsn-v1":
        return NCSNScheduler(**levels, **NCSN_V1_SAMPLING)
    spacing = config_value(config, "model", "sigma_dist", "geometric")
    if spacing != "geometric":
        raise ConversionError(f"model.sigma_dist is {spacing!r}; NCSNScheduler uses geometric noise levels.")
    return NCSNScheduler(
        **levels,
        steps_per_level=int(config_value(config, "sampling", "n_steps_each")),
        step_lr=float(config_value(config, "sampling", "step_lr")),
        final_denoise=bool(config_value(config, "sampling", "denoise", True)),
    )


def _package_key(key: str, v1: bool) -> str:
    """A reference state-dict key in the package's naming (RefineNet units as nested lists)."""
    key = key[len("module.") :] if key.startswith("module.") else key
    key = re.sub(r"\b(\d+)_(\d+)_conv\.", lambda m: f"blocks.{int(m[1]) - 1}.{int(m[2]) - 1}.", key)
    key = re.sub(r"\b(\d+)_(\d+)_norm\.", lambda m: f"norms.{int(m[1]) - 1}.{int(m[2]) - 1}.", key)
    if v1:  # the conditional fusion and pooling keep their norms and convs side by side
        key = re.sub(r"\.(msf|crp)\.(convs|norms)\.", r".\1_\2.", key)
    return key


def state_dict(checkpoint: Any, config: Dict[str, Any], weights: Optional[str]) -> Tuple[Dict[str, torch.Tensor], str]:
    """The weights to load, in the package's naming, and which ones they are (``"ema"`` or ``"raw"``).

    Args:
        checkpoint: What ``torch.load`` returned.
        config: The original config.
        weights: ``"ema"``, ``"raw"``, or `None` for EMA when the checkpoint has it (NCSNv2), raw otherwise.
    """
    v1 = family(config) == "ncsn-v1"
    expected = "[model_state_dict, optimizer_state_dict]" if v1 else "[model, optimizer, epoch, step, ema_shadow]"
    if not isinstance(checkpoint, (list, tuple)) or not checkpoint or not isinstance(checkpoint[0], dict):
        raise ConversionError(
            f"This is not an ermongroup checkpoint: expected a list {expected}, got {type(checkpoint).__name__}."
        )
    model = {key[len("module.") :] if key.startswith("module.") else key: value for key, value in checkpoint[0].items()}
    model.pop("sigmas", None)  # NCSNv2's copy of the noise levels: they are the scheduler's config here
    has_ema = not v1 and len(checkpoint) >= 5 and isinstance(checkpoint[4], dict)
    chosen = weights or ("ema" if has_ema else "raw")
    if chosen == "ema":
        if not has_ema:
            raise ConversionError(
                "This checkpoint holds no EMA weights (NCSN v1 never kept them; an NCSNv2 checkpoint keeps them as its "
                "5th item when trained with model.ema): convert with weights='raw' (--weights raw)."
            )
        shadow = {
            key[len("module.") :] if key.startswith("module.") else key: value for key, value in checkpoint[4].items()
        }
        unknown = sorted(set(shadow) - set(model))
        if unknown:
            raise ConversionError(f"The EMA weights name parameters the model does not have: {unknown[:10]}.")
        model.update(shadow)
    elif chosen != "raw":
        raise ConversionError(f"weights must be 'ema' or 'raw', got {weights!r}.")
    return {_package_key(key, v1): value for key, value in model.items()}, chosen


def build(
    config: Dict[str, Any], checkpoint: Any, weights: Optional[str], architecture: Optional[str] = None
) -> ConvertedModel:
    """The converter's entry for ermongroup checkpoints: model with the checkpoint's weights, sampler, data range."""
    state, chosen = state_dict(checkpoint, config, weights)
    if architecture is not None and family(config) != "ncsnv2":
        raise ConversionError(
            f"--architecture picks an NCSNv2 network; this is an NCSN v1 checkpoint ({architecture!r})."
        )
    model = build_model(config, state_keys=state, architecture=architecture)
    load_converted_weights(model, state)
    _, data_range = _input_mapping(config)
    return ConvertedModel(family(config), model, build_scheduler(config), data_range, chosen)


FAMILY = CheckpointFamily(
    "an ermongroup NCSN / NCSNv2 config (model.sigma_begin, model.num_classes)", is_ermongroup_config, build
)
