"""`NCSNPipeline`: unconditional sampling from a noise-conditional score model."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from .checks import check_bool, check_choice, check_data_range, check_integer, check_sample_memory
from .guidance import prepare_conditioning
from .pipeline_publishing import PublishingMixin

OUTPUT_TYPES = ("pil", "np", "pt")


def check_score_scheduler(scheduler) -> None:
    """Refuse a scheduler that does not consume scores (say diffusers' DDIM, which expects predicted noise).

    Score samplers declare ``consumes_score = True`` (`ScoreSchedulerMixin`); the check is by that attribute
    rather than by class so that the self-contained copies in exported repositories pass it too.
    """
    if getattr(scheduler, "consumes_score", False) is not True:
        try:
            from ncsn_pipeline.scheduling_utils import score_schedulers

            accepted = f"one of {list(score_schedulers())}"
        except ImportError:  # the pipeline's exported, self-contained copy
            accepted = "a score sampler of ncsn-pipeline"
        raise ValueError(
            f"NCSNPipeline cannot sample with {type(scheduler).__name__}: it does not consume scores s(x, sigma) "
            f"(diffusers' own schedulers expect other model outputs, such as predicted noise). Use {accepted}, "
            "e.g. `NCSNScheduler.from_config(pipe.scheduler.config)`."
        )


@dataclass
class NCSNPipelineOutput(BaseOutput):
    """Output of `NCSNPipeline`.

    Args:
        images (`List[PIL.Image.Image]`, `np.ndarray` or `torch.Tensor`): The samples. For image data
            (the pipeline has a ``data_range``): PIL images, or arrays in ``[0, 1]`` (``np``: NHWC,
            ``pt``: NCHW). For other data (``data_range`` is ``None``): the raw samples, shape
            ``(batch, *sample_shape)``.
    """

    images: Union[List[PIL.Image.Image], np.ndarray, torch.Tensor]

    @property
    def samples(self) -> Union[List[PIL.Image.Image], np.ndarray, torch.Tensor]:
        """The same as ``images``; the natural name for non-image data such as 2-D points."""
        return self.images


class NCSNPipeline(PublishingMixin, DiffusionPipeline):
    r"""Sample a noise-conditional score model with a score-based sampler (annealed Langevin dynamics by default).

    Song & Ermon (2019), "Generative Modeling by Estimating Gradients of the Data Distribution"
    (https://arxiv.org/abs/1907.05600): start from ``N(0, sigma_max**2 I)`` and let the scheduler move
    the sample along the model's score ``s(x, sigma)`` through decreasing noise levels.

    Args:
        unet ([`ModelMixin`]): Score model called as ``unet(sample, sigma).sample`` (`NCSNScoreModel`,
            `ToyScoreModel`, `GaussianMixtureScore`, or a diffusers ``UNet2DModel`` with
            ``time_embedding_type="fourier"``).
        scheduler ([`SchedulerMixin`]): A sampler that consumes scores, e.g. `NCSNScheduler`.
        data_range (`Tuple[float, float]`, *optional*): The range of the training data, e.g. ``(0, 1)``
            as NCSN uses for images, or ``(-1, 1)``. When set, outputs are clipped to it and mapped to
            images; when ``None`` (non-image data such as 2-D points) raw samples are returned and
            ``output_type="pil"`` is refused. Saved in ``model_index.json``.

    Example:
        >>> import torch
        >>> from ncsn_pipeline import GaussianMixtureScore, NCSNPipeline, NCSNScheduler
        >>> pipe = NCSNPipeline(unet=GaussianMixtureScore.ncsn_toy(), scheduler=NCSNScheduler.from_preset("ncsn-toy"))
        >>> points = pipe(batch_size=500, generator=torch.Generator().manual_seed(0), output_type="np").images
        >>> points.shape
        (500, 2)
    """

    model_cpu_offload_seq = "unet"
    _callback_tensor_inputs = ["sample"]

    @staticmethod
    def published_class() -> type:
        """The class saved standalone folders and pushed repositories hold: this one, for every pipeline."""
        return NCSNPipeline

    def __init__(self, unet, scheduler, data_range: Optional[Sequence[float]] = None):
        super().__init__()
        if data_range is not None:
            data_range = check_data_range(data_range)
        if not isinstance(unet, torch.nn.Module):
            raise ValueError(
                f"unet must be a score model (a torch.nn.Module called as unet(x, sigma).sample, such as "
                f"NCSNScoreModel), got {type(unet).__name__}."
            )
        check_score_scheduler(scheduler)
        self.register_modules(unet=unet, scheduler=scheduler)
        self.register_to_config(data_range=data_range)

    @property
    def sample_shape(self) -> Tuple[int, ...]:
        """Shape of one sample, from the score model's config."""
        if hasattr(self.unet, "sample_shape"):
            return tuple(self.unet.sample_shape)
        size = self.unet.config.sample_size
        height, width = (size, size) if isinstance(size, int) else size
        return (self.unet.config.in_channels, height, width)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Union[str, os.PathLike], **kwargs) -> NCSNPipeline:
        """Load a pipeline from a local folder or a Hub repository; weights from safetensors (or, in a folder that has
        none, diffusers' ``.bin`` read as tensors only), checked finite.

        A repository id (``"user/name"``) is downloaded with ``huggingface_hub`` (or found in the cache
        when ``HF_HUB_OFFLINE=1``) and built from this package's classes: code files in the repository
        are never executed. Takes the arguments of [`DiffusionPipeline.from_pretrained`] for local
        folders (safetensors preferred; a ``.bin`` weight file is read only with ``torch.load(weights_only=True)``,
        which refuses anything but tensors, so no code from it runs: `check_bin_weights`) and
        ``revision``, ``token``, ``cache_dir`` for repositories.

        Raises:
            CorruptedWeightsError: (a `ValueError` and an `OSError`) if a weight file is truncated or
                corrupted, or a weight is NaN or infinite; the message names the file.
        """
        try:
            from ncsn_pipeline.pipeline_loading import load_pipeline_folder
        except ImportError:  # the pipeline's exported, self-contained copy: diffusers' own loader
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        return load_pipeline_folder(cls, pretrained_model_name_or_path, **kwargs)

    def log_likelihood(
        self,
        samples: torch.Tensor,
        batch_size: int = 64,
        num_levels: Optional[int] = None,
        sigma_min: Optional[float] = None,
        sigma_max: Optional[float] = None,
        divergence: str = "hutchinson",
        num_probes: int = 1,
        probe: str = "rademacher",
        rtol: float = 1e-5,
        atol: float = 1e-5,
        generator: Optional[torch.Generator] = None,
    ):
        """Log-density of data under the model, by the probability-flow ODE: `LogLikelihoodResult` per example
        (``log_likelihood``, ``bits_per_dim`` with ``num_levels``, ``num_model_calls``). The arguments, what the
        estimate means and an example: `ncsn_pipeline.likelihood.pipeline_log_likelihood`, which does the work."""
        try:
            from ncsn_pipeline.likelihood import pipeline_log_likelihood
        except ImportError as error:  # the pipeline's exported, self-contained copy
            raise ImportError("log_likelihood needs the ncsn-pipeline package: pip install ncsn-pipeline") from error
        options = dict(num_probes=num_probes, probe=probe, rtol=rtol, atol=atol, generator=generator)
        return pipeline_log_likelihood(
            self, samples, batch_size, num_levels, sigma_min, sigma_max, divergence, **options
        )

    def _postprocess(self, sample: torch.Tensor, output_type: str):
        data_range = self.config.data_range
        if data_range is None:
            if output_type == "pil":
                raise ValueError(
                    'output_type="pil" needs image data, but this pipeline has data_range=None (raw, non-image '
                    'samples); use output_type="np" or "pt", or build the pipeline with data_range=(0, 1).'
                )
            return sample.cpu().numpy() if output_type == "np" else sample
        low, high = data_range
        images = ((sample.clamp(low, high) - low) / (high - low)).float()
        if output_type == "pt":
            return images
        images = images.cpu().permute(0, 2, 3, 1).numpy()
        return images if output_type == "np" else self.numpy_to_pil(images)

    # ---------------------------------------------------------------------------- the shared sampling loop
    # Every pipeline of the package (this one, inpainting, colorization, and later ones) samples through these
    # methods, so that they share one set of checks, one loop, the callback and the ending.
    def _check_call(
        self,
        batch_size: int,
        generator,
        output_type: str,
        callback_on_step_end_tensor_inputs,
        callback_on_step_end: Optional[Callable] = None,
        return_dict: bool = True,
    ) -> None:
        """The checks of every call, before any work: the sampler, the batch (and the memory its samples need), the
        generators, the callback and the outputs."""
        check_score_scheduler(self.scheduler)  # it may have been swapped since __init__
        self._checked_batch_size(batch_size)
        check_bool("return_dict", return_dict)
        check_choice("output_type", output_type, OUTPUT_TYPES)
        if callback_on_step_end is not None and not callable(callback_on_step_end):
            raise ValueError(
                "callback_on_step_end must be a function called as callback(pipe, step_index, timestep, "
                f"callback_kwargs), or None; got {type(callback_on_step_end).__name__}."
            )
        generators = generator if isinstance(generator, list) else [generator]
        if not all(item is None or isinstance(item, torch.Generator) for item in generators) or None in generators[1:]:
            raise ValueError(
                f"generator must be a torch.Generator, a list of them (one per sample) or None, got {generator!r}."
            )
        if isinstance(generator, list) and len(generator) != batch_size:
            raise ValueError(f"Got {len(generator)} generators for batch_size={batch_size}; pass one per sample.")
        unknown_inputs = set(callback_on_step_end_tensor_inputs) - set(self._callback_tensor_inputs)
        if unknown_inputs:
            raise ValueError(
                f"callback_on_step_end_tensor_inputs may only name {self._callback_tensor_inputs}, "
                f"got {sorted(unknown_inputs)}."
            )
        if output_type == "pil" and self.config.data_range is None:
            self._postprocess(torch.empty(0), output_type)  # raises the explanatory error now, not after sampling

    def _checked_batch_size(self, batch_size: Any) -> int:
        """``batch_size`` if it is an integer >= 1 whose samples fit in the device's memory (`check_sample_memory`)."""
        batch_size = check_integer("batch_size", batch_size)
        check_sample_memory(batch_size, self.sample_shape, self.unet.dtype, self.device)
        return batch_size

    def _conditioning(self, batch_size: int, class_labels, classifier, guidance_scale, guidance_model=None):
        """Check the class and guidance arguments of a call (`ncsn_pipeline.guidance.prepare_conditioning`)."""
        return prepare_conditioning(
            self.unet, batch_size, self.device, class_labels, classifier, guidance_scale, guidance_model
        )

    def _plan(self, num_inference_steps: Optional[int]) -> None:
        """Set the sampler's levels for a run; a model that knows only its training levels (NCSN v1) checks them
        now, before any sampling, and names its own levels if the sampler asks for others."""
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        if callable(getattr(self.unet, "level_indices", None)):
            if self.scheduler.adaptive:
                raise ValueError(
                    f"{type(self.unet).__name__} knows only its {len(self.unet.noise_levels)} training noise levels, "
                    f"but {type(self.scheduler).__name__} decides its levels during the run; use a sampler on the "
                    "model's own levels, such as NCSNScheduler."
                )
            self.unet.level_indices(torch.unique(self.scheduler.timesteps))

    def _prior_sample(self, batch_size: int, generator) -> torch.Tensor:
        """A draw from the prior ``N(0, init_noise_sigma**2 I)``, in the model's dtype and on its device."""
        shape = (batch_size, *self.sample_shape)
        sample = randn_tensor(shape, generator=generator, device=self.device, dtype=self.unet.dtype)
        return sample * self.scheduler.init_noise_sigma

    def _run(
        self,
        sample: torch.Tensor,
        conditioning,
        generator,
        begin: int = 0,
        end: Optional[int] = None,
        after_step: Optional[Callable[[torch.Tensor, int], torch.Tensor]] = None,
        callback_on_step_end: Optional[Callable] = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("sample",),
        progress=None,
    ) -> torch.Tensor:
        """The sampling loop: follow the score through the sampler's calls ``begin`` to ``end`` (``None``: to the
        end of the run; an adaptive sampler decides each level after the step before, and begins at 0 only).

        For each call ``index`` at level ``sigma``:

        1. ``score = s(x, sigma)`` (with the class conditioning of the call, `ncsn_pipeline.guidance`);
        2. ``x <- scheduler.step(score, sigma, x)`` (which stops on a non-finite sample);
        3. ``x <- after_step(x, index)``: what a pipeline does between steps (inpainting's replacement);
        4. ``callback_on_step_end(pipe, index, sigma, {"sample": x})``, which may replace ``x``.

        ``progress`` is a progress bar to advance per call (default: one for this run).
        """
        scheduler = self.scheduler
        batch = sample.shape[0]
        own_progress = progress is None
        if own_progress:
            progress = self.progress_bar(total=scheduler.max_model_calls)
        for index, sigma in enumerate(scheduler.iter_timesteps()):
            if index < begin:
                continue
            if end is not None and index >= end:
                break
            model_input = scheduler.scale_model_input(sample, sigma)
            # A network may return another dtype than its input (diffusers' UNet2DModel divides by a float32
            # sigma): the sample keeps the dtype the user chose.
            score = conditioning.score(self.unet, model_input, sigma.expand(batch)).to(sample.dtype)
            # return_dict=False: the output dataclass costs more per call than the cheapest score models.
            sample = scheduler.step(score, sigma, sample, generator=generator, return_dict=False)[0]
            if after_step is not None:
                sample = after_step(sample, index)
            if callback_on_step_end is not None:
                callback_kwargs = {"sample": sample} if "sample" in callback_on_step_end_tensor_inputs else {}
                callback_outputs = callback_on_step_end(self, index, sigma, callback_kwargs)
                if callback_outputs is not None and not isinstance(callback_outputs, dict):
                    raise ValueError(
                        "callback_on_step_end must return a dict (such as {'sample': ...}) or None, got "
                        f"{type(callback_outputs).__name__}."
                    )
                sample = (callback_outputs or {}).get("sample", sample)
            progress.update()
        if own_progress:
            progress.close()
        return sample

    def _finish(self, output: Any, return_dict: bool) -> Union[NCSNPipelineOutput, Tuple]:
        """The ending of every call: release offloaded models and return the output as asked."""
        self.maybe_free_model_hooks()
        if not return_dict:
            return (output,)
        return NCSNPipelineOutput(images=output)

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        generator: Optional[Union[torch.Generator, List[torch.Generator]]] = None,
        num_inference_steps: Optional[int] = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Optional[Callable[[NCSNPipeline, int, torch.Tensor, Dict[str, Any]], Dict]] = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("sample",),
        class_labels: Optional[Union[int, Sequence[int], torch.Tensor]] = None,
        classifier: Optional[Any] = None,
        guidance_scale: Optional[float] = None,
        guidance_model: Optional[Any] = None,
    ) -> Union[NCSNPipelineOutput, Tuple]:
        r"""Generate samples.

        Args:
            batch_size (`int`, defaults to 1): Number of samples.
            generator (`torch.Generator` or list, *optional*): Makes sampling deterministic.
            num_inference_steps (`int`, *optional*): Number of noise levels to anneal through (defaults to
                the scheduler's ``num_noise_levels``). How many model calls each level takes is the sampler's
                own configuration (``pipe.scheduler.num_model_calls`` after the run; change it with, e.g.,
                ``pipe.scheduler = NCSNScheduler.from_config(pipe.scheduler.config, steps_per_level=3)``).
            output_type (`str`, defaults to ``"pil"``): ``"pil"``, ``"np"`` or ``"pt"``.
            return_dict (`bool`, defaults to `True`): Return an `NCSNPipelineOutput` instead of a tuple.
            callback_on_step_end (`Callable`, *optional*): Called after every step as
                ``callback_on_step_end(pipe, step_index, timestep, callback_kwargs)``; ``callback_kwargs``
                holds the tensors named in ``callback_on_step_end_tensor_inputs`` and the returned dict
                may replace them (e.g. ``{"sample": ...}``).
            callback_on_step_end_tensor_inputs (`Sequence[str]`, defaults to ``("sample",)``): Tensors passed
                to the callback.
            class_labels (`int`, sequence or tensor, *optional*): The class of each sample (one int for all):
                required by a class-conditional model (``unet.num_classes``), and the classes a ``classifier``
                guides toward.
            classifier (*optional*): A noise-conditional classifier (``classifier(x, sigma).logits``, such as
                `NoiseConditionalClassifier`) for classifier guidance: the score becomes ``s(x, sigma) +
                guidance_scale * grad_x log p_sigma(y | x)`` (`ncsn_pipeline.guidance`).
            guidance_scale (`float`, *optional*): Weight of the classifier's gradient (default 1 with a
                classifier: the exact conditional score; 0 to 1000); for a model with the "no class" label and no
                classifier, classifier-free guidance; with a ``guidance_model``, autoguidance's ``w``.
            guidance_model (*optional*): A weaker score model of the same data (an earlier checkpoint, a smaller
                network) for autoguidance (Karras et al. 2024): the score becomes ``s + (w - 1) (s - s_guide)``,
                two network calls per step (`ncsn_pipeline.guidance`).

        Returns:
            `NCSNPipelineOutput` or `tuple`: the samples (see `NCSNPipelineOutput`); a 1-tuple if
            ``return_dict`` is `False`.

        Example:
            >>> import torch
            >>> from ncsn_pipeline import NCSNPipeline, NCSNScheduler, NCSNScoreModel
            >>> scheduler = NCSNScheduler(sigma_max=5.0, num_noise_levels=10, steps_per_level=1, step_lr=1e-5)
            >>> pipe = NCSNPipeline(NCSNScoreModel(in_channels=1, sample_size=8, ngf=8), scheduler, data_range=(0, 1))
            >>> images = pipe(batch_size=2, num_inference_steps=3, output_type="pil").images
            >>> images[0].size
            (8, 8)
        """
        # 0. Validate the arguments before any work.
        self._check_call(
            batch_size, generator, output_type, callback_on_step_end_tensor_inputs, callback_on_step_end, return_dict
        )
        conditioning = self._conditioning(batch_size, class_labels, classifier, guidance_scale, guidance_model)

        # 1. Noise levels of this run (checked against the model's own levels).
        self._plan(num_inference_steps)

        # 2. Start from the prior N(0, sigma_max^2 I).
        sample = self._prior_sample(batch_size, generator)

        # 3. Follow the score through the noise levels.
        sample = self._run(
            sample,
            conditioning,
            generator,
            callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
        )

        # 4. Back to images (or raw samples).
        return self._finish(self._postprocess(sample, output_type), return_dict)
