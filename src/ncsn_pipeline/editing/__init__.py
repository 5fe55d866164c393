"""Image editing with score models: SDEdit's image-to-image (`NCSNImg2ImgPipeline`)."""

from .pipeline_ncsn_img2img import NCSNImg2ImgPipeline, strength_to_sigma

__all__ = ["NCSNImg2ImgPipeline", "strength_to_sigma"]
