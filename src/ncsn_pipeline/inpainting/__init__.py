"""Inpainting with any score model and any stochastic sampler of the package (`NCSNInpaintPipeline`)."""

from .pipeline_ncsn_inpaint import NCSNInpaintPipeline

__all__ = ["NCSNInpaintPipeline"]
