"""score_sde_pytorch NCSN++ checkpoints -> diffusers' ``UNet2DModel`` where it can represent the config, the
package's `NCSNppScoreModel` otherwise.

Layout (``checkpoint.pth``): ``{"model", "ema", "optimizer", "step"}``; ``model`` keys are
``module.all_modules.N.*`` (one flat list of modules in construction order) plus ``module.sigmas``;
``ema["shadow_params"]`` holds the averages of the *trainable* parameters in ``model.parameters()`` order (the
Fourier projection ``all_modules.0.W`` is fixed and has none).

``UNet2DModel`` with Skip blocks and a Fourier embedding is the NCSN++ of the ``output_skip`` / ``input_skip``
configs (CelebA-HQ, FFHQ, LSUN church and bedroom): BigGAN residual blocks with FIR resampling, DDPM attention,
skip connections rescaled by 1/sqrt(2), ``2x - 1`` input mapping (``center_input_sample``) and the division by
sigma. Its Skip blocks normalise with ``min(channels // 4, 32)`` groups like score_sde; its attention and the
output pyramid use 32 groups, which agrees only when every channel count is >= 128, as in the published models.
"""

from __future__ import annotations

import math
import re
from typing import Any, Dict, List, Optional, Tuple

import torch

from .originals import CheckpointFamily, ConversionError, ConvertedModel, config_value, load_converted_weights

# What UNet2DModel's Skip blocks implement; any other value of these keys needs a different network.
UNET2D_REQUIREMENTS = {
    "progressive": "output_skip",
    "progressive_input": "input_skip",
    "resblock_type": "biggan",
    "embedding_type": "fourier",
    "fir": True,
    "fir_kernel": [1, 3, 3, 1],
    "skip_rescale": True,
    "scale_by_sigma": True,
    "normalization": "GroupNorm",
    "nonlinearity": "swish",
    "attention_type": "ddpm",
    "progressive_combine": "sum",
    "resamp_with_conv": True,
    "conditional": True,
}
MIN_UNET2D_CHANNELS = 128


def is_score_sde_config(config: Dict[str, Any]) -> bool:
    """Whether ``config`` is a score_sde ``ml_collections`` config of an NCSN++ model."""
    return config.get("model", {}).get("name") == "ncsnpp"


def unet2d_problems(config: Dict[str, Any]) -> List[str]:
    """Why ``UNet2DModel`` cannot represent this NCSN++ config (empty when it can)."""
    model = config["model"]
    problems = [
        f"model.{key} is {model.get(key)!r} (UNet2DModel needs {expected!r})"
        for key, expected in UNET2D_REQUIREMENTS.items()
        if model.get(key) != expected and not (isinstance(expected, list) and list(model.get(key) or []) == expected)
    ]
    channels = [model["nf"] * multiple for multiple in model["ch_mult"]]
    if min(channels) < MIN_UNET2D_CHANNELS:
        problems.append(
            f"channel counts {channels} go below {MIN_UNET2D_CHANNELS} (UNet2DModel's attention and output use 32 "
            "GroupNorm groups where score_sde uses min(channels // 4, 32))"
        )
    size = config_value(config, "data", "image_size")
    attention = {size // 2**level for level in range(len(model["ch_mult"]))} & set(model["attn_resolutions"])
    if attention != set(model["attn_resolutions"]) or model.get("dropout", 0.0) != 0.0:
        problems.append("attention resolutions or dropout outside what the Skip blocks take")
    return problems


def unet2d_config(config: Dict[str, Any]) -> Dict[str, Any]:
    """The ``UNet2DModel`` config of an ``output_skip`` / ``input_skip`` NCSN++ config."""
    model, size = config["model"], config_value(config, "data", "image_size")
    attention = set(model["attn_resolutions"])
    levels = range(len(model["ch_mult"]))
    down = ["AttnSkipDownBlock2D" if size // 2**level in attention else "SkipDownBlock2D" for level in levels]
    return {
        "sample_size": size,
        "in_channels": config_value(config, "data", "num_channels"),
        "out_channels": config_value(config, "data", "num_channels"),
        "center_input_sample": not config_value(config, "data", "centered", False),
        "time_embedding_type": "fourier",
        "flip_sin_to_cos": True,
        "down_block_types": down,
        "up_block_types": [name.replace("Down", "Up") for name in reversed(down)],
        "block_out_channels": [model["nf"] * multiple for multiple in model["ch_mult"]],
        "layers_per_block": model["num_res_blocks"],
        "mid_block_scale_factor": math.sqrt(2.0),
        "downsample_padding": 1,
        "act_fn": "silu",
        "norm_eps": 1e-6,
        "norm_num_groups": 32,
        "attention_head_dim": None,
    }


def _original_weights(checkpoint: Any, weights: str) -> Tuple[List[Tuple[int, str, torch.Tensor]], str]:
    """``(module index, parameter name, tensor)`` in construction order, with the EMA averages if asked for."""
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
        raise ConversionError(
            "This is not a score_sde checkpoint: expected a dict with 'model', 'ema', 'optimizer' and 'step'."
        )
    entries = []
    for key, value in checkpoint["model"].items():
        match = re.fullmatch(r"(?:module\.)?all_modules\.(\d+)\.(.+)", key)
        if match:
            entries.append((int(match[1]), match[2], value))
    if weights == "ema":
        shadow = (checkpoint.get("ema") or {}).get("shadow_params")
        if not isinstance(shadow, list):
            raise ConversionError("This checkpoint holds no EMA weights: convert with weights='raw' (--weights raw).")
        trainable = [position for position, (index, name, _) in enumerate(entries) if (index, name) != (0, "W")]
        if len(shadow) != len(trainable):
            raise ConversionError(
                f"The checkpoint's EMA holds {len(shadow)} tensors for {len(trainable)} trainable parameters."
            )
        for position, average in zip(trainable, shadow):
            index, name, value = entries[position]
            if tuple(average.shape) != tuple(value.shape):
                raise ConversionError(f"EMA tensor for all_modules.{index}.{name} has shape {tuple(average.shape)}.")
            entries[position] = (index, name, average)
    return entries, weights


def unet2d_state_dict(unet, entries: List[Tuple[int, str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """The ``UNet2DModel`` state dict from score_sde's flat module list, walked in construction order."""
    modules: Dict[int, Dict[str, torch.Tensor]] = {}
    for index, name, value in entries:
        modules.setdefault(index, {})[name] = value
    state: Dict[str, torch.Tensor] = {}
    cursor = iter(sorted(modules))

    def take(prefix: str, renames: Dict[str, str], transpose: Tuple[str, ...] = ()) -> None:
        index = next(cursor, None)
        if index is None:
            raise ConversionError(f"The checkpoint has too few modules for {prefix} of the model its config describes.")
        for original, value in modules[index].items():
            if original not in renames:
                raise ConversionError(
                    f"all_modules.{index}.{original} does not fit {prefix}: the config does not match."
                )
            state[f"{prefix}.{renames[original]}"] = value.t() if original in transpose else value

    resnet = {
        "GroupNorm_0.weight": "norm1.weight", "GroupNorm_0.bias": "norm1.bias",
        "Conv_0.weight": "conv1.weight", "Conv_0.bias": "conv1.bias",
        "Dense_0.weight": "time_emb_proj.weight", "Dense_0.bias": "time_emb_proj.bias",
        "GroupNorm_1.weight": "norm2.weight", "GroupNorm_1.bias": "norm2.bias",
        "Conv_1.weight": "conv2.weight", "Conv_1.bias": "conv2.bias",
        "Conv_2.weight": "conv_shortcut.weight", "Conv_2.bias": "conv_shortcut.bias",
    }  # fmt: skip
    attention = {
        "GroupNorm_0.weight": "group_norm.weight", "GroupNorm_0.bias": "group_norm.bias",
        "NIN_0.W": "to_q.weight", "NIN_0.b": "to_q.bias", "NIN_1.W": "to_k.weight", "NIN_1.b": "to_k.bias",
        "NIN_2.W": "to_v.weight", "NIN_2.b": "to_v.bias", "NIN_3.W": "to_out.0.weight", "NIN_3.b": "to_out.0.bias",
    }  # fmt: skip
    nin = ("NIN_0.W", "NIN_1.W", "NIN_2.W", "NIN_3.W")  # score_sde's NIN weights are (in, out)
    plain = {"weight": "weight", "bias": "bias"}

    take("time_proj", {"W": "weight"})
    take("time_embedding.linear_1", plain)
    take("time_embedding.linear_2", plain)
    take("conv_in", plain)
    for number, block in enumerate(unet.down_blocks):
        for layer in range(len(block.resnets)):
            take(f"down_blocks.{number}.resnets.{layer}", resnet)
            if hasattr(block, "attentions"):
                take(f"down_blocks.{number}.attentions.{layer}", attention, nin)
        if block.resnet_down is not None:
            take(f"down_blocks.{number}.resnet_down", resnet)
            take(f"down_blocks.{number}.skip_conv", {"Conv_0.weight": "weight", "Conv_0.bias": "bias"})
    take("mid_block.resnets.0", resnet)
    take("mid_block.attentions.0", attention, nin)
    take("mid_block.resnets.1", resnet)
    for number, block in enumerate(unet.up_blocks):
        for layer in range(len(block.resnets)):
            take(f"up_blocks.{number}.resnets.{layer}", resnet)
        if hasattr(block, "attentions"):
            take(f"up_blocks.{number}.attentions.0", attention, nin)
        if block.resnet_up is not None:
            take(f"up_blocks.{number}.skip_norm", plain)
            take(f"up_blocks.{number}.skip_conv", plain)
            take(f"up_blocks.{number}.resnet_up", resnet)
    take("conv_norm_out", plain)
    take("conv_out", plain)
    left = list(cursor)
    if left:
        raise ConversionError(f"The checkpoint has modules the config's model does not: all_modules.{left[:5]}.")
    return state


# Settings every NCSN++ of the package shares with the published VE configs; other values are refused.
NCSNPP_REQUIREMENTS = {
    "embedding_type": "fourier",
    "conditional": True,
    "normalization": "GroupNorm",
    "nonlinearity": "swish",
    "attention_type": "ddpm",
    "conv_size": 3,
}


def ncsnpp_config(config: Dict[str, Any]) -> Dict[str, Any]:
    """The `NCSNppScoreModel` config of a score_sde NCSN++ config."""
    model = config["model"]
    problems = [
        f"model.{key} is {model.get(key)!r} (the package's NCSN++ needs {expected!r})"
        for key, expected in NCSNPP_REQUIREMENTS.items()
        if model.get(key, expected) != expected
    ]
    if problems:
        raise ConversionError("This NCSN++ config cannot be converted: " + "; ".join(problems) + ".")
    return {
        "in_channels": config_value(config, "data", "num_channels"),
        "sample_size": config_value(config, "data", "image_size"),
        "nf": model["nf"],
        "ch_mult": list(model["ch_mult"]),
        "num_res_blocks": model["num_res_blocks"],
        "attn_resolutions": list(model["attn_resolutions"]),
        "resblock_type": model["resblock_type"].lower(),
        "progressive": model["progressive"].lower(),
        "progressive_input": model["progressive_input"].lower(),
        "progressive_combine": model["progressive_combine"].lower(),
        "fir": bool(model["fir"]),
        "fir_kernel": list(model["fir_kernel"]),
        "resamp_with_conv": bool(model["resamp_with_conv"]),
        "skip_rescale": bool(model["skip_rescale"]),
        "fourier_scale": float(model["fourier_scale"]),
        "dropout": float(model["dropout"]),
        "centered": bool(config_value(config, "data", "centered", False)),
        "scale_by_sigma": bool(model["scale_by_sigma"]),
    }


def build_model(config: Dict[str, Any], checkpoint: Any, weights=None):
    """``(model, its state dict from the checkpoint, "ema" or "raw")`` for an NCSN++ config: diffusers'
    ``UNet2DModel`` where it represents the config (`unet2d_problems` is empty), else `NCSNppScoreModel`."""
    from ..modeling_ncsnpp import check_ncsnpp_size

    model_config = config["model"]
    try:  # the size first, whichever class is built: a config must not build a network of many gigabytes
        check_ncsnpp_size(
            config_value(config, "data", "num_channels"), config_value(config, "model", "nf"),
            config_value(config, "model", "num_res_blocks"), model_config.get("ch_mult"),
            config_value(config, "data", "image_size"),
        )  # fmt: skip
    except ValueError as error:
        if isinstance(error, ConversionError):
            raise
        raise ConversionError(f"The config describes an NCSN++ the package cannot build: {error}") from None
    has_ema = isinstance(checkpoint, dict) and isinstance(checkpoint.get("ema"), dict)
    entries, chosen = _original_weights(checkpoint, weights or ("ema" if has_ema else "raw"))
    if not unet2d_problems(config):
        from diffusers import UNet2DModel

        unet = UNet2DModel(**unet2d_config(config))
        return unet, unet2d_state_dict(unet, entries), chosen
    from ..modeling_ncsnpp import NCSNppScoreModel

    try:
        model = NCSNppScoreModel(**ncsnpp_config(config))
    except ValueError as error:
        if isinstance(error, ConversionError):
            raise
        raise ConversionError(f"The config describes an NCSN++ the package cannot build: {error}") from None
    return model, {f"all_modules.{index}.{name}": value for index, name, value in entries}, chosen


def build_scheduler(config: Dict[str, Any]):
    """`VEPredictorCorrectorScheduler` with the config's VE SDE and PC settings (``num_scales`` levels, ``snr``,
    ``n_steps_each`` corrector steps)."""
    from ..scheduling_ve_pc import VEPredictorCorrectorScheduler

    return VEPredictorCorrectorScheduler(
        sigma_max=float(config_value(config, "model", "sigma_max")),
        sigma_min=float(config_value(config, "model", "sigma_min")),
        num_noise_levels=int(config_value(config, "model", "num_scales")),
        num_corrector_steps=int(config_value(config, "sampling", "n_steps_each", 1)),
        snr=float(config_value(config, "sampling", "snr", 0.16)),
    )


def build(
    config: Dict[str, Any], checkpoint: Any, weights: Optional[str], architecture: Optional[str] = None
) -> ConvertedModel:
    """The converter's entry for score_sde NCSN++ checkpoints: model with the checkpoint's weights, the PC sampler,
    and the data range (``[-1, 1]`` for ``data.centered`` configs, else ``[0, 1]``). The config alone decides the
    network, so ``architecture`` (``--architecture``, for NCSNv2) is refused."""
    if architecture is not None:
        raise ConversionError(f"--architecture picks an NCSNv2 network; this is a score-SDE NCSN++ ({architecture!r}).")
    model, state, chosen = build_model(config, checkpoint, weights)
    load_converted_weights(model, state)
    data_range = (-1.0, 1.0) if config_value(config, "data", "centered", False) else (0.0, 1.0)
    return ConvertedModel("score-sde", model, build_scheduler(config), data_range, chosen)


FAMILY = CheckpointFamily("a score_sde NCSN++ config (model.name 'ncsnpp')", is_score_sde_config, build)
