"""`NCSNColorizePipeline`: colour samples for a grey image, with any 3-channel score model and any sampler.

Score-SDE's colorization (Song et al. 2021, Appendix I.2): write each pixel's colour in an orthonormal basis whose
first axis is grey, ``(r + g + b) / sqrt(3)``; the grey coordinate is known, the two colour coordinates are not, and
the replacement method of inpainting fills them in. Because the basis is orthonormal, the VE noise ``sigma z`` is
still independent standard noise in it, so the known coordinate is re-noised exactly as a known pixel would be.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch

from ..checks import check_integer
from ..image_processor import ImageInput, broadcast_batch, check_unit_range, preprocess_images
from ..pipeline_ncsn import NCSNPipeline, NCSNPipelineOutput
from .pipeline_ncsn_inpaint import NCSNInpaintPipeline

# Rows: the grey axis and two colour axes, orthonormal (COLOR_BASIS @ COLOR_BASIS.T = I).
COLOR_BASIS = torch.tensor(
    [
        [1 / math.sqrt(3), 1 / math.sqrt(3), 1 / math.sqrt(3)],
        [1 / math.sqrt(2), -1 / math.sqrt(2), 0.0],
        [1 / math.sqrt(6), 1 / math.sqrt(6), -2 / math.sqrt(6)],
    ],
    dtype=torch.float64,
)


def to_color_basis(sample: torch.Tensor) -> torch.Tensor:
    """``(batch, 3, ...)`` RGB -> coordinates in `COLOR_BASIS` (channel 0: grey times sqrt(3))."""
    return torch.einsum("ij,bj...->bi...", COLOR_BASIS.to(sample.device, sample.dtype), sample)


def from_color_basis(coordinates: torch.Tensor) -> torch.Tensor:
    """The inverse of `to_color_basis` (the transpose, since the basis is orthonormal)."""
    return torch.einsum("ji,bj...->bi...", COLOR_BASIS.to(coordinates.device, coordinates.dtype), coordinates)


def _grey(images: torch.Tensor) -> torch.Tensor:
    """Grey ``(N, 1, H, W)`` of grey or RGB images: an RGB image counts by its channel mean."""
    if images.shape[1] not in (1, 3):
        raise ValueError(f"image must have 1 (grey) or 3 (RGB) channels, got {images.shape[1]}.")
    return images.mean(dim=1, keepdim=True)


class NCSNColorizePipeline(NCSNInpaintPipeline):
    r"""Colorization with a 3-channel score model: colour samples whose grey (channel mean) is the given image.

    With the basis ``B`` (`COLOR_BASIS`, first row grey) applied to each pixel and the known grey ``g``:

    1. Start from the prior ``x ~ N(0, sigma_max**2 I)``.
    2. After each step (the sample now at ``sigma'``): ``c = B x``; ``c_0 <- sqrt(3) g + sigma' z``; ``x <- B^T c``.
       (With ``jump_n_sample > 1``, RePaint's resampling as in `NCSNInpaintPipeline`.)
    The grey of the output is the input's (up to clipping to the pixel range and float rounding).

    Example:
        >>> import torch
        >>> from ncsn_pipeline import NCSNScoreModel, VEPredictorCorrectorScheduler
        >>> model = NCSNScoreModel(in_channels=3, sample_size=8, ngf=8)
        >>> pipe = NCSNColorizePipeline(model, VEPredictorCorrectorScheduler(num_noise_levels=4), data_range=(0, 1))
        >>> pipe.set_progress_bar_config(disable=True)
        >>> grey = torch.full((1, 8, 8), 0.5)
        >>> colour = pipe(grey, generator=torch.Generator().manual_seed(0), output_type="pt").images
        >>> colour.shape
        torch.Size([1, 3, 8, 8])
    """

    def _prepare_grey(self, image: ImageInput, batch_size: Optional[int]):
        """Known coordinates (grey axis only) and the repaint mask in the colour basis, ``(batch, 3, H, W)``."""
        shape = tuple(self.sample_shape)
        if len(shape) < 1 or shape[0] != 3:
            raise ValueError(f"Colorization needs a model of 3-channel (RGB) samples; this one's shape is {shape}.")
        data_range = self.config.data_range
        if data_range is None:  # raw data: a tensor of grey values (channel means) in the data space
            if not isinstance(image, torch.Tensor):
                raise ValueError("For non-image data (data_range=None), image must be a tensor of grey values.")
            grey = image.detach().to(torch.float64).cpu().reshape(-1, 1, *shape[1:])
        else:
            grey = preprocess_images(image, "image", per_item=_grey)
            if tuple(grey.shape[2:]) != shape[1:]:
                raise ValueError(
                    f"image must be {' x '.join(map(str, shape[1:]))} for this model, got "
                    f"{' x '.join(map(str, grey.shape[2:]))}."
                )
            check_unit_range(grey, "image")
            low, high = data_range
            grey = low + (high - low) * grey
        if not torch.isfinite(grey).all():
            raise ValueError("image must be finite.")
        count = len(grey) if batch_size is None else self._checked_batch_size(batch_size)
        grey = broadcast_batch(grey, "image", count)
        known = torch.zeros(count, *shape, dtype=torch.float64)
        known[:, :1] = math.sqrt(3) * grey  # the grey coordinate of a pixel whose channel mean is `grey`
        mask = torch.ones_like(known)
        mask[:, 0] = 0  # keep the grey axis, sample the colour axes
        return known, mask

    @torch.no_grad()
    def __call__(
        self,
        image: ImageInput,
        batch_size: Optional[int] = None,
        generator: Optional[Union[torch.Generator, List[torch.Generator]]] = None,
        num_inference_steps: Optional[int] = None,
        jump_length: int = 1,
        jump_n_sample: int = 1,
        output_type: str = "pil",
        return_dict: bool = True,
        class_labels: Optional[Union[int, Sequence[int], torch.Tensor]] = None,
        classifier: Optional[Any] = None,
        guidance_scale: Optional[float] = None,
        guidance_model: Optional[Any] = None,
        callback_on_step_end: Optional[Callable[[NCSNPipeline, int, torch.Tensor, Dict[str, Any]], Dict]] = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("sample",),
    ) -> Union[NCSNPipelineOutput, Tuple]:
        r"""Colour samples for the grey ``image``.

        Args:
            image (PIL image, numpy array, tensor or a list of them): The grey image(s): PIL (0-255; an RGB image
                counts by its channel mean), numpy ``HW``/``HWC``/``NHWC`` or tensors ``HW``/``CHW``/``NCHW`` in
                [0, 1] with 1 or 3 channels; for non-image pipelines (``data_range=None``) a tensor of grey values.
            batch_size (`int`, *optional*): Samples; defaults to the number of images.
            generator (`torch.Generator` or list, *optional*): For the prior, the sampler and the re-noising.
            num_inference_steps (`int`, *optional*): Noise levels (as in `NCSNPipeline`).
            jump_length (`int`, defaults to 1), jump_n_sample (`int`, defaults to 1): RePaint's resampling, as in
                `NCSNInpaintPipeline`.
            output_type (`str`, defaults to ``"pil"``): ``"pil"``, ``"np"`` or ``"pt"``.
            return_dict (`bool`, defaults to `True`): Return an `NCSNPipelineOutput` instead of a tuple.
            class_labels, classifier, guidance_scale, guidance_model: Class conditioning, classifier guidance and
                autoguidance, as in `NCSNPipeline`.
            callback_on_step_end, callback_on_step_end_tensor_inputs: As in `NCSNInpaintPipeline`.

        Returns:
            `NCSNPipelineOutput` or `tuple`: the colour images.
        """
        jump_length = check_integer("jump_length", jump_length)
        jump_n_sample = check_integer("jump_n_sample", jump_n_sample)
        known, mask = self._prepare_grey(image, batch_size)
        self._check_call(
            known.shape[0],
            generator,
            output_type,
            callback_on_step_end_tensor_inputs,
            callback_on_step_end,
            return_dict,
        )
        conditioning = self._conditioning(known.shape[0], class_labels, classifier, guidance_scale, guidance_model)
        sample = self._sample_with_replacement(
            known,
            mask,
            generator,
            num_inference_steps,
            jump_length,
            jump_n_sample,
            conditioning,
            callback_on_step_end,
            callback_on_step_end_tensor_inputs,
        )
        return self._finish(self._postprocess(sample, output_type), return_dict)

    def _replace(self, sample, known, mask, sigma: float, generator):
        """Step 2: the replacement of `NCSNInpaintPipeline`, in the colour basis."""
        coordinates = super()._replace(to_color_basis(sample), known, mask, sigma, generator)
        return from_color_basis(coordinates)
