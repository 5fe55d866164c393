"""Conversion of published research checkpoints (NCSN v1, NCSNv2, score-SDE NCSN++) into `NCSNPipeline` folders.

``ncsn-convert CHECKPOINT --config CONFIG --output_dir DIR [--weights ema|raw]`` (`cli.convert`) and
`convert_checkpoint` do the same.
"""

from .convert import CONVERSION_RECORD, convert_checkpoint, read_conversion_record
from .originals import ConversionError, load_original_checkpoint, load_original_config
from .published import PUBLISHED_CONFIGS

__all__ = [
    "CONVERSION_RECORD",
    "ConversionError",
    "PUBLISHED_CONFIGS",
    "convert_checkpoint",
    "load_original_checkpoint",
    "load_original_config",
    "read_conversion_record",
]
