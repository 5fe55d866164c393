"""Controllable generation by replacement: inpainting (`NCSNInpaintPipeline`) and colorization
(`NCSNColorizePipeline`) with any score model and any sampler of the package."""

from .pipeline_ncsn_colorize import COLOR_BASIS, NCSNColorizePipeline, from_color_basis, to_color_basis
from .pipeline_ncsn_inpaint import NCSNInpaintPipeline

__all__ = ["COLOR_BASIS", "NCSNColorizePipeline", "NCSNInpaintPipeline", "from_color_basis", "to_color_basis"]
