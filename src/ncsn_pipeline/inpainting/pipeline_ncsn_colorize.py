"""`NCSNColorizePipeline`: colour samples for a grey image, with any 3-channel score model and any sampler.

Score-SDE's colorization (Song et al. 2021, Appendix I.2): write each pixel's colour in an orthonormal basis whose
first axis is grey, ``(r + g + b) / sqrt(3)``; the grey coordinate is known, the two colour coordinates are not, and
the replacement method of inpainting fills them in. Because the basis is orthonormal, the VE noise ``sigma z`` is
still independent standard noise in it, so the known coordinate is re-noised exactly as a known pixel would be.
"""

from __future__ import annotations

import math
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np
import PIL.Image
import torch

from ..checks import check_choice, check_integer
from ..pipeline_ncsn import OUTPUT_TYPES, NCSNPipelineOutput, check_score_scheduler
from .pipeline_ncsn_inpaint import NCSNInpaintPipeline

GreyInput = Union[PIL.Image.Image, np.ndarray, torch.Tensor, List[PIL.Image.Image], List[np.ndarray]]

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


def _grey_batch(value: GreyInput) -> torch.Tensor:
    """PIL image(s) (0-255; RGB ones averaged over channels), numpy ``HW``/``HWC``/``NHWC`` or tensors
    ``HW``/``CHW``/``NCHW`` in [0, 1], with 1 or 3 channels -> grey ``(N, 1, H, W)`` float64, the channel mean."""
    if isinstance(value, list):
        if not value:
            raise ValueError("image is an empty list.")
        return torch.cat([_grey_batch(item) for item in value])
    if isinstance(value, PIL.Image.Image):
        mode = "L" if value.mode in ("1", "L", "I", "F") else "RGB"
        value = np.asarray(value.convert(mode), dtype=np.float64) / 255.0
    if isinstance(value, np.ndarray):
        tensor = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float64))
        layouts = {
            2: lambda t: t[None, None],
            3: lambda t: t.permute(2, 0, 1)[None],
            4: lambda t: t.permute(0, 3, 1, 2),
        }
        if tensor.ndim not in layouts:
            raise ValueError(f"image as a numpy array must be HW, HWC or NHWC, got shape {value.shape}.")
        tensor = layouts[tensor.ndim](tensor)
    elif isinstance(value, torch.Tensor):
        tensor = value.detach().to(torch.float64).cpu()
        layouts = {2: lambda t: t[None, None], 3: lambda t: t[None], 4: lambda t: t}
        if tensor.ndim not in layouts:
            raise ValueError(f"image as a tensor must be HW, CHW or NCHW, got shape {tuple(value.shape)}.")
        tensor = layouts[tensor.ndim](tensor)
    else:
        raise ValueError(
            f"image must be a PIL image, a numpy array, a tensor or a list of them, got {type(value).__name__}."
        )
    if tensor.shape[1] not in (1, 3):
        raise ValueError(f"image must have 1 (grey) or 3 (RGB) channels, got {tensor.shape[1]}.")
    return tensor.mean(dim=1, keepdim=True)


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

    def _prepare_grey(self, image: GreyInput, batch_size: Optional[int]):
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
            grey = _grey_batch(image)
            if tuple(grey.shape[2:]) != shape[1:]:
                raise ValueError(
                    f"image must be {' x '.join(map(str, shape[1:]))} for this model, got "
                    f"{' x '.join(map(str, grey.shape[2:]))}."
                )
            if grey.min() < -1e-6 or grey.max() > 1 + 1e-6:
                raise ValueError(
                    f"image values must lie in [0, 1] (PIL images: 0-255), got {float(grey.min()):.3g} to "
                    f"{float(grey.max()):.3g}."
                )
            low, high = data_range
            grey = low + (high - low) * grey
        if not torch.isfinite(grey).all():
            raise ValueError("image must be finite.")
        count = len(grey) if batch_size is None else check_integer("batch_size", batch_size)
        if len(grey) not in (1, count):
            raise ValueError(f"image holds {len(grey)} items for a batch of {count}; give 1 or {count}.")
        known = torch.zeros(count, *shape, dtype=torch.float64)
        known[:, :1] = math.sqrt(3) * grey  # the grey coordinate of a pixel whose channel mean is `grey`
        mask = torch.ones_like(known)
        mask[:, 0] = 0  # keep the grey axis, sample the colour axes
        return known, mask

    @torch.no_grad()
    def __call__(
        self,
        image: GreyInput,
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
            class_labels, classifier, guidance_scale: Class conditioning and classifier guidance, as in
                `NCSNPipeline`.

        Returns:
            `NCSNPipelineOutput` or `tuple`: the colour images.
        """
        check_score_scheduler(self.scheduler)
        check_choice("output_type", output_type, OUTPUT_TYPES)
        jump_length = check_integer("jump_length", jump_length)
        jump_n_sample = check_integer("jump_n_sample", jump_n_sample)
        known, mask = self._prepare_grey(image, batch_size)
        conditioning = self._conditioning(known.shape[0], class_labels, classifier, guidance_scale)
        if output_type == "pil" and self.config.data_range is None:
            self._postprocess(torch.empty(0), output_type)  # raises the explanatory error
        sample = self._sample_with_replacement(
            known, mask, generator, num_inference_steps, jump_length, jump_n_sample, conditioning
        )
        output = self._postprocess(sample, output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (output,)
        return NCSNPipelineOutput(images=output)

    def _replace(self, sample, known, mask, sigma: float, generator):
        """Step 2: the replacement of `NCSNInpaintPipeline`, in the colour basis."""
        coordinates = super()._replace(to_color_basis(sample), known, mask, sigma, generator)
        return from_color_basis(coordinates)
