"""Conversion of published research checkpoints (NCSN v1, NCSNv2, score-SDE NCSN++) into `NCSNPipeline` folders.

``ncsn-convert CHECKPOINT --config CONFIG --output_dir DIR [--weights ema|raw]`` (`cli.convert`) and
`convert_checkpoint` do the same. A family of checkpoints is one `CheckpointFamily` entry (``matches``,
``build``) in `CHECKPOINT_FAMILIES`; its module (`ermongroup`, `score_sde`) owns everything else about it.
"""

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # for type checkers and the API reference
    from .convert import CHECKPOINT_FAMILIES, convert_checkpoint
    from .originals import (
        CheckpointFamily,
        ConversionError,
        ConvertedModel,
        load_converted_weights,
        load_original_checkpoint,
        load_original_config,
    )
    from .published import PUBLISHED_CONFIGS

__all__ = [
    "CHECKPOINT_FAMILIES",
    "CheckpointFamily",
    "ConversionError",
    "ConvertedModel",
    "PUBLISHED_CONFIGS",
    "convert_checkpoint",
    "load_converted_weights",
    "load_original_checkpoint",
    "load_original_config",
]
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "CHECKPOINT_FAMILIES": "convert",
        "convert_checkpoint": "convert",
        **dict.fromkeys(
            ["CheckpointFamily", "ConversionError", "ConvertedModel", "load_converted_weights",
             "load_original_checkpoint", "load_original_config"],
            "originals",
        ),  # fmt: skip
        "PUBLISHED_CONFIGS": "published",
    },
)
