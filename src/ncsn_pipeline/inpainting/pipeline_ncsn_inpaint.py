"""`NCSNInpaintPipeline`: fill in the masked part of images with any score model and any stochastic sampler.

The replacement method of NCSN (Song & Ermon 2019, annealed Langevin inpainting) and of score-SDE's
predictor-corrector inpainter (Song et al. 2021, Appendix I.2): sample the whole image as usual, and after every
step overwrite the known part with the known data perturbed to the noise level the sample has reached, so that
the unknown part follows the score of the model *given* the (noisy) known part.

Plain replacement is biased where pixels inform each other: at large sigma the unknown part is conditioned on a
noisy copy of the known part, and at small sigma the steps are too short to correct it, so the filled pixels lean
toward their unconditional mean. RePaint's resampling (Lugmayr et al. 2022, Algorithm 1: re-noise back to an earlier
level and sample that stretch again) removes most of it; ``benchmarks/inpainting_bias.py`` measures both against the
closed-form conditional of a Gaussian for every sampler (predictor-corrector, 10 x 10 resampling: mean error 0.007,
covariance error 0.018, against 0.18 and 0.03 without).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..checks import check_integer
from ..image_processor import ImageInput, broadcast_batch, images_to_data, preprocess_images
from ..pipeline_ncsn import NCSNPipeline, NCSNPipelineOutput
from ..sampling import standard_normal
from ..scheduling_utils import can_restart_at_level_starts, restartable_samplers


class NCSNInpaintPipeline(NCSNPipeline):
    r"""Inpainting with a score model: keep the known pixels, sample the masked ones (NCSN / score-SDE replacement).

    With the known data ``y``, the mask ``m`` (1 = repaint, 0 = keep; diffusers' convention: white repaints) and the
    sampler's steps (any sampler of the package, through the sampler contract):

    1. Start from the prior ``x ~ N(0, sigma_max**2 I)``.
    2. After each step (whose result is at the noise level of the next model call, ``sigma'``; 0 after the last),
       replace the known part: ``x <- m * x + (1 - m) * (y + sigma' z)``, ``z ~ N(0, I)``.
    3. Optionally (``jump_n_sample > 1``, RePaint's resampling), split the levels into windows of ``jump_length``;
       after each run through a window, re-noise the sample back to the window's first level with the VE forward
       process, ``x <- x + sqrt(sigma_start**2 - sigma_reached**2) z``, and run the window again, ``jump_n_sample``
       times in all.
    The known pixels of the output equal the input exactly (the last replacement is at ``sigma' = 0``).

    Args: as `NCSNPipeline`.

    Example:
        >>> import torch
        >>> from ncsn_pipeline import NCSNScheduler
        >>> from ncsn_pipeline.pretrained import load_pretrained
        >>> digits = load_pretrained("ncsn-digits")
        >>> pipe = NCSNInpaintPipeline(digits.unet, digits.scheduler, data_range=(0, 1))
        >>> pipe.set_progress_bar_config(disable=True)
        >>> image = torch.zeros(1, 8, 8); mask = torch.zeros(1, 8, 8); mask[:, :, 4:] = 1  # repaint the right half
        >>> filled = pipe(image, mask, generator=torch.Generator().manual_seed(0), output_type="pt").images
        >>> filled.shape, bool((filled[..., :4] == 0).all())  # the known half is returned unchanged
        (torch.Size([1, 1, 8, 8]), True)
    """

    def _prepare(self, image: ImageInput, mask_image: ImageInput, batch_size: Optional[int]):
        """Known data (in the data space), the repaint mask and, for images, the known pixels in [0, 1]; each
        ``(batch, *sample_shape)`` float64."""
        shape = tuple(self.sample_shape)
        known, pixels = images_to_data(image, shape, self.config.data_range)  # pixels: the output's known values
        if pixels is None:  # raw (non-image) data
            if not isinstance(mask_image, torch.Tensor):
                raise ValueError("For non-image data (data_range=None), image and mask_image must be tensors.")
            mask = mask_image.detach().to(torch.float64).cpu()
            mask = mask.reshape(-1, *shape) if mask.numel() % int(np.prod(shape)) == 0 else mask
            if not torch.isfinite(mask).all():
                raise ValueError("mask_image must be finite.")
        else:
            channels = shape[0]
            mask = preprocess_images(mask_image, "mask_image", "L")  # masks are single-channel
            if not torch.isfinite(mask).all():
                raise ValueError("mask_image must be finite.")
            if mask.shape[1] not in (1, channels) or tuple(mask.shape[2:]) != shape[1:]:
                raise ValueError(
                    f"mask_image must be {shape[1]} x {shape[2]} (one channel or {channels}), got "
                    f"{tuple(mask.shape[1:])}."
                )
            mask = mask.expand(-1, channels, -1, -1)
        mask = (mask > 0.5).to(torch.float64)  # white / 1 = repaint
        count = max(len(known), len(mask)) if batch_size is None else self._checked_batch_size(batch_size)
        known, mask = broadcast_batch(known, "image", count), broadcast_batch(mask, "mask_image", count)
        return known, mask, (None if pixels is None else broadcast_batch(pixels, "image", count))

    @torch.no_grad()
    def __call__(
        self,
        image: ImageInput,
        mask_image: ImageInput,
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
        r"""Fill in the masked part of ``image``.

        Args:
            image (PIL image, numpy array, tensor or a list of them): The known data: PIL (0-255), numpy ``HW``,
                ``HWC`` or ``NHWC`` and tensors ``HW``, ``CHW`` or ``NCHW`` in [0, 1]; for non-image pipelines
                (``data_range=None``) a tensor of raw samples.
            mask_image (same forms): 1 / white = repaint, 0 / black = keep (thresholded at 0.5); one channel or
                one per image channel; one mask for the batch or one per image.
            batch_size (`int`, *optional*): Samples; defaults to the number of images (or masks).
            generator (`torch.Generator` or list, *optional*): For the prior, the sampler and the re-noising.
            num_inference_steps (`int`, *optional*): Noise levels (as in `NCSNPipeline`).
            jump_length (`int`, defaults to 1): Noise levels per resampling window (RePaint's jump length; only
                used with ``jump_n_sample > 1``).
            jump_n_sample (`int`, defaults to 1): How often each window is sampled (RePaint's resampling; 1 = plain
                replacement). Between runs of a window the sample is re-noised from the level it reached back to the
                window's first level, which lets the filled part settle on the known part: ``benchmarks/
                inpainting_bias.py`` measures the conditional mean and covariance against the closed form. Multiplies
                the model calls by ``jump_n_sample``; needs a sampler that can restart at its level starts (annealed
                Langevin, predictor-corrector, EDM, probability-flow Heun).
            output_type (`str`, defaults to ``"pil"``): ``"pil"``, ``"np"`` or ``"pt"``.
            return_dict (`bool`, defaults to `True`): Return an `NCSNPipelineOutput` instead of a tuple.
            class_labels, classifier, guidance_scale, guidance_model: Class conditioning, classifier guidance and
                autoguidance, as in `NCSNPipeline`.
            callback_on_step_end, callback_on_step_end_tensor_inputs: As in `NCSNPipeline` (called after each step's
                replacement; with resampling, step indices repeat for each run of a window).

        Returns:
            `NCSNPipelineOutput` or `tuple`: the filled images.
        """
        jump_length = check_integer("jump_length", jump_length)
        jump_n_sample = check_integer("jump_n_sample", jump_n_sample)
        known, mask, known_pixels = self._prepare(image, mask_image, batch_size)
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

        # 3. Images: the known pixels are the input's values exactly (no round trip through the data range).
        if self.config.data_range is None:
            output = self._postprocess(sample, output_type)
        else:
            pixels = self._postprocess(sample, "pt")
            known_pixels = known_pixels.to(pixels.device, pixels.dtype)
            pixels = torch.where(mask.to(pixels.device) > 0.5, pixels, known_pixels)
            output = pixels if output_type == "pt" else pixels.cpu().permute(0, 2, 3, 1).numpy()
            output = self.numpy_to_pil(output) if output_type == "pil" else output
        return self._finish(output, return_dict)

    def _sample_with_replacement(
        self,
        known,
        mask,
        generator,
        num_inference_steps,
        jump_length: int,
        jump_n_sample: int,
        conditioning,
        callback_on_step_end=None,
        callback_on_step_end_tensor_inputs=("sample",),
    ) -> torch.Tensor:
        """Steps 1-3 through the shared loop (`NCSNPipeline._run`), with the replacement after each step; shared with
        colorization, which replaces in another basis through `_replace`."""
        scheduler = self.scheduler

        # 1. Noise levels (checked against the model's own levels) and the prior.
        self._plan(num_inference_steps)
        windows = self._windows(jump_length, jump_n_sample)  # refuses resampling before any work
        dtype, device = self.unet.dtype, self.device
        known, mask = known.to(device=device, dtype=dtype), mask.to(device=device, dtype=dtype)
        sample = standard_normal(known.shape, generator, device, dtype) * scheduler.init_noise_sigma
        sample = self._replace(sample, known, mask, scheduler.init_noise_sigma, generator)

        # 2. The sampler's steps, each followed by the replacement at the level the sample has reached (the next
        #    call's: an adaptive sampler has just decided it); with resampling, each window of `jump_length` levels
        #    is run `jump_n_sample` times, jumping back between runs.
        def replace(sample: torch.Tensor, index: int) -> torch.Tensor:
            return self._replace(sample, known, mask, self._level_after(index), generator)

        progress = self.progress_bar(total=scheduler.max_model_calls * jump_n_sample)
        for start, end in windows:
            for repeat in range(jump_n_sample):
                if repeat > 0:
                    sample = self._jump_back(sample, known, mask, start, end, num_inference_steps, generator)
                sample = self._run(
                    sample,
                    conditioning,
                    generator,
                    begin=start,
                    end=end,
                    after_step=replace,
                    callback_on_step_end=callback_on_step_end,
                    callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
                    progress=progress,
                )
        progress.close()
        return sample

    def _level_after(self, index: int) -> float:
        """The noise level of the sample after call ``index``: the next call's, 0 after the last."""
        timesteps = self.scheduler.timesteps
        return float(timesteps[index + 1]) if index + 1 < len(timesteps) else 0.0

    def _windows(self, jump_length: int, jump_n_sample: int) -> List[Tuple[int, Optional[int]]]:
        """``(start, end)`` call indices of the resampling windows (``end=None``: to the end of the run)."""
        if jump_n_sample == 1:
            return [(0, None)]  # one pass over the whole run (adaptive samplers included)
        scheduler = self.scheduler
        starts = scheduler.level_start_indices[::jump_length]
        if not can_restart_at_level_starts(scheduler):
            raise ValueError(
                f"jump_n_sample={jump_n_sample} needs a sampler that can restart at its level starts, and "
                f"{type(scheduler).__name__} keeps state between calls; use jump_n_sample=1, or one of "
                f"{restartable_samplers()}."
            )
        return list(zip(starts, starts[1:] + [None]))

    def _jump_back(self, sample, known, mask, start: int, end: Optional[int], num_inference_steps, generator):
        """RePaint's jump: re-noise the sample from the level it reached (call ``end``) back to call ``start``'s, and
        restart the sampler there (the contract's ``set_begin_index``)."""
        scheduler = self.scheduler
        reached = 0.0 if end is None else float(scheduler.timesteps[end])
        target = float(scheduler.timesteps[start])
        noise = standard_normal(sample.shape, generator, sample.device, sample.dtype)
        sample = sample + math.sqrt(max(target**2 - reached**2, 0.0)) * noise  # the VE forward process
        sample = self._replace(sample, known, mask, target, generator)
        scheduler.set_timesteps(num_inference_steps, device=self.device)
        scheduler.set_begin_index(start)
        return sample

    def _replace(self, sample, known, mask, sigma: float, generator):
        """Step 2: the known part becomes the known data perturbed to ``sigma``."""
        noisy_known = (
            known if sigma == 0 else known + sigma * standard_normal(known.shape, generator, known.device, known.dtype)
        )
        return mask * sample + (1 - mask) * noisy_known
