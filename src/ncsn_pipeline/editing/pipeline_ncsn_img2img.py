"""`NCSNImg2ImgPipeline`: SDEdit image-to-image with any score model and any sampler of the package.

Meng, He, Song, Song, Wu, Zhu & Ermon (2022), "SDEdit: Guided Image Synthesis and Editing with Stochastic
Differential Equations" (https://arxiv.org/abs/2108.01073), Algorithm 1 for the VE SDE: perturb the input to an
intermediate noise level ``sigma(t0)`` and solve the reverse SDE from there. The larger ``t0`` (``strength``), the
more of the input is forgotten: at 1 it is plain generation, at 0 the input itself.

With exact scores a reverse-SDE sampler returns a draw from the posterior of the clean data given the perturbed
input, ``p(x_0 | x_0' + sigma z)``, and a probability-flow (ODE) sampler the transport of ``p_sigma`` onto the data
at the perturbed input; ``tests/test_img2img.py`` checks both closed forms on a Gaussian and a two-mode mixture.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch

from ..checks import check_integer, check_number, check_sample_memory
from ..image_processor import ImageInput, images_to_data
from ..pipeline_ncsn import NCSNPipeline, NCSNPipelineOutput
from ..sampling import standard_normal


def strength_to_sigma(strength: float, sigma_min: float, sigma_max: float) -> float:
    """The noise level SDEdit perturbs to: ``sigma(t0) = sigma_min (sigma_max / sigma_min)**t0`` with ``t0 =
    strength``, the VE SDE's noise at time ``t0`` (SDEdit section 3; on geometric levels, such as NCSN's, the share
    of the levels a run goes through is ``strength``, as in diffusers' img2img pipelines).

    >>> round(strength_to_sigma(0.5, 0.01, 100.0), 6)
    1.0
    """
    return sigma_min * (sigma_max / sigma_min) ** strength


class NCSNImg2ImgPipeline(NCSNPipeline):
    r"""Image-to-image with a score model (SDEdit): noise the input part-way, then sample from there.

    With the input ``x_0'`` (in the data space), ``strength`` in [0, 1] and the sampler's planned levels:

    1. ``sigma = strength_to_sigma(strength, sigma_min, sigma_max)`` of the sampler's config; the run begins at the
       sampler's level start nearest it (``scheduler.set_begin_sigma``, which returns that level, ``sigma'``; the
       adaptive sampler begins at ``sigma`` itself).
    2. Perturb: ``x = x_0' + sigma' z``, ``z ~ N(0, I)`` (the VE SDE's transition kernel, SDEdit eq. 4).
    3. Follow the score through the rest of the run (the shared loop, `NCSNPipeline._run`).

    ``strength = 1`` begins at ``sigma_max`` (plain generation whenever ``sigma_max`` dwarfs the data, NCSNv2's
    technique 1); ``strength = 0`` returns the input without a model call. Multistep samplers begin with lower-order
    steps, so every sampler can begin anywhere.

    Args: as `NCSNPipeline`.

    Example:
        >>> import torch
        >>> from ncsn_pipeline.pretrained import load_pretrained
        >>> digits = load_pretrained("ncsn-digits")
        >>> pipe = NCSNImg2ImgPipeline(digits.unet, digits.scheduler, data_range=(0, 1))
        >>> pipe.set_progress_bar_config(disable=True)
        >>> image = torch.zeros(1, 8, 8); image[:, 1:7, 3:5] = 1.0  # a rough "1"
        >>> edited = pipe(image, strength=0.5, num_images_per_prompt=3, generator=torch.Generator().manual_seed(0),
        ...               output_type="pt").images
        >>> edited.shape
        torch.Size([3, 1, 8, 8])
    """

    def _prepare(self, image: ImageInput, num_images_per_prompt: int) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The input data and, for images, pixels in [0, 1], each image repeated ``num_images_per_prompt`` times in a
        row (``(batch, *sample_shape)`` float64)."""
        data, pixels = images_to_data(image, self.sample_shape, self.config.data_range)
        # The batch's memory is checked before the repeats are made.
        batch = len(data) * num_images_per_prompt
        name = f"{len(data)} image(s) x num_images_per_prompt"
        check_sample_memory(batch, self.sample_shape, self.unet.dtype, self.device, name)
        repeat = lambda tensor: tensor.repeat_interleave(num_images_per_prompt, dim=0)  # noqa: E731
        return repeat(data), (None if pixels is None else repeat(pixels))

    @torch.no_grad()
    def __call__(
        self,
        image: ImageInput,
        strength: float = 0.5,
        num_images_per_prompt: int = 1,
        generator: Optional[Union[torch.Generator, List[torch.Generator]]] = None,
        num_inference_steps: Optional[int] = None,
        output_type: str = "pil",
        return_dict: bool = True,
        class_labels: Optional[Union[int, Sequence[int], torch.Tensor]] = None,
        classifier: Optional[Any] = None,
        guidance_scale: Optional[float] = None,
        guidance_model: Optional[Any] = None,
        callback_on_step_end: Optional[Callable[[NCSNPipeline, int, torch.Tensor, Dict[str, Any]], Dict]] = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("sample",),
    ) -> Union[NCSNPipelineOutput, Tuple]:
        r"""Edit ``image``: noise it to the level ``strength`` sets and sample back to the data.

        Args:
            image (PIL image, numpy array, tensor or a list of them): The input: PIL (0-255), numpy ``HW``, ``HWC`` or
                ``NHWC`` and tensors ``HW``, ``CHW`` or ``NCHW`` in [0, 1] (grey images become RGB for a 3-channel
                model); for non-image pipelines (``data_range=None``) a tensor of raw samples.
            strength (`float`, defaults to 0.5): SDEdit's ``t0`` in [0, 1]: how much of the input is noised away (0:
                the input is returned, 1: plain generation). See `strength_to_sigma`.
            num_images_per_prompt (`int`, defaults to 1): Outputs per input image (each image's repeats in a row).
            generator (`torch.Generator` or list, *optional*): For the perturbation and the sampler.
            num_inference_steps (`int`, *optional*): The sampler's noise levels for a whole run (as in
                `NCSNPipeline`); the edit runs those below the starting level.
            output_type (`str`, defaults to ``"pil"``): ``"pil"``, ``"np"`` or ``"pt"``.
            return_dict (`bool`, defaults to `True`): Return an `NCSNPipelineOutput` instead of a tuple.
            class_labels, classifier, guidance_scale, guidance_model: Class conditioning, classifier guidance and
                autoguidance, as in `NCSNPipeline` (one label per output, or one for all).
            callback_on_step_end, callback_on_step_end_tensor_inputs: As in `NCSNPipeline`.

        Returns:
            `NCSNPipelineOutput` or `tuple`: the edited images, ``len(image) * num_images_per_prompt`` of them.
        """
        # 0. Validate the arguments before any work.
        strength = check_number("strength", strength, 0.0, 1.0)
        num_images_per_prompt = check_integer("num_images_per_prompt", num_images_per_prompt, low=1)
        data, pixels = self._prepare(image, num_images_per_prompt)
        batch = data.shape[0]
        self._check_call(
            batch, generator, output_type, callback_on_step_end_tensor_inputs, callback_on_step_end, return_dict
        )
        conditioning = self._conditioning(batch, class_labels, classifier, guidance_scale, guidance_model)

        if strength == 0.0:  # nothing is noised away: the input itself, in the asked-for form
            return self._finish(self._output(data, pixels, output_type), return_dict)

        # 1. The sampler's levels and the one the edit begins at.
        self._plan(num_inference_steps)
        scheduler = self.scheduler
        target = strength_to_sigma(strength, float(scheduler.config.sigma_min), float(scheduler.config.sigma_max))
        sigma = scheduler.set_begin_sigma(target)
        begin = scheduler.begin_index or 0

        # 2. Perturb the input to that level (VE SDE: x_0' + sigma z).
        dtype, device = self.unet.dtype, self.device
        sample = data.to(device=device, dtype=dtype)
        sample = sample + sigma * standard_normal(sample.shape, generator, device, dtype)

        # 3. The rest of the run, through the shared loop.
        progress = self.progress_bar(total=max(scheduler.max_model_calls - begin, 0))
        sample = self._run(
            sample,
            conditioning,
            generator,
            begin=begin,
            callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
            progress=progress,
        )
        progress.close()
        return self._finish(self._postprocess(sample, output_type), return_dict)

    def _output(self, data: torch.Tensor, pixels: Optional[torch.Tensor], output_type: str):
        """The input returned as it came (``strength=0``): its pixels exactly, with no round trip through the data
        range; raw data as samples."""
        if pixels is None:
            return self._postprocess(data.to(dtype=self.unet.dtype), output_type)
        pixels = pixels.to(dtype=torch.float32)
        if output_type == "pt":
            return pixels.to(self.device)
        array = pixels.permute(0, 2, 3, 1).numpy()
        return self.numpy_to_pil(array) if output_type == "pil" else array
