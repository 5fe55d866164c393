"""`NCSNPipeline`: unconditional sampling from a noise-conditional score model."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from safetensors import SafetensorError

from .checks import check_bool, check_choice, check_data_range, check_integer
from .errors import CorruptedWeightsError
from .guidance import prepare_conditioning

OUTPUT_TYPES = ("pil", "np", "pt")


def _memory_bytes(device: torch.device) -> Optional[int]:
    """The memory of ``device``: the machine's physical memory for the CPU, the accelerator's own for CUDA; `None`
    where it cannot be read."""
    try:
        if device.type == "cuda":
            return int(torch.cuda.get_device_properties(device).total_memory)
        if device.type == "cpu":
            return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError, RuntimeError):  # no sysconf (Windows), no such device
        pass
    return None


def check_sample_memory(
    batch_size: int, sample_shape: Sequence[int], dtype: torch.dtype, device: torch.device, name: str = "batch_size"
):
    """Refuse a batch whose samples alone need more memory than ``device`` has (a sampling run holds several such
    tensors), before anything is allocated: a mistyped ``batch_size`` gets this message, not an allocator error.
    ``name`` says what set the batch (``"batch_size"``, or ``"2 images x num_images_per_prompt"``)."""
    available = _memory_bytes(device)
    needed = batch_size * math.prod(sample_shape) * torch.empty(0, dtype=dtype).element_size()
    if available is not None and needed > available:
        raise ValueError(
            f"{name}={batch_size} needs {needed / 2**30:.1f} GiB for its samples alone, more than the "
            f"{available / 2**30:.1f} GiB of memory of {device}; use a smaller batch (or several calls)."
        )


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


def _resolve_folder(name_or_path: Union[str, os.PathLike], kwargs: Dict[str, Any]) -> Path:
    """A local pipeline folder: ``name_or_path`` itself, or a Hub repository's files downloaded into the cache."""
    path = Path(name_or_path)
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ValueError(
                f"{os.fspath(name_or_path)!r} is a folder but not a saved pipeline: it has no model_index.json (a "
                "folder written by save_pretrained, ncsn-train or ncsn-convert has one)."
            )
        return path
    try:
        from ncsn_pipeline.folder_records import GUIDE_FOLDER
        from ncsn_pipeline.hub import download_pipeline
    except ImportError as error:
        raise ValueError(
            f"{name_or_path!r} is not a local folder, and loading from the Hub needs ncsn-pipeline."
        ) from error
    repo_id, subfolder = os.fspath(name_or_path), None
    if repo_id.count("/") == 2 and repo_id.endswith(f"/{GUIDE_FOLDER}"):  # a repository's guide for autoguidance
        repo_id, subfolder = repo_id.rsplit("/", 1)
    if path.exists() or repo_id.count("/") != 1:
        raise ValueError(
            f"{os.fspath(name_or_path)!r} is neither a pipeline folder nor a Hub repository id 'user/name' (or "
            f"'user/name/{GUIDE_FOLDER}', the repository's guide)."
        )
    folder = download_pipeline(
        repo_id,
        revision=kwargs.pop("revision", None),
        token=kwargs.pop("token", None),
        cache_dir=kwargs.pop("cache_dir", None),
    )
    if subfolder is not None and not (folder / subfolder / "model_index.json").is_file():
        raise ValueError(f"{repo_id} has no {subfolder}/ folder: it ships no guide for autoguidance.")
    return folder if subfolder is None else folder / subfolder


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
BIN_WEIGHTS = "diffusion_pytorch_model.bin"  # diffusers' name for pickle weights (older repositories have only these)


def check_bin_weights(path: Path) -> None:
    """Read diffusers' ``.bin`` weights with ``torch.load(weights_only=True)`` and require a dict of tensors.

    ``weights_only`` unpickles tensors and plain containers only: a file that names any other function or class (the
    way a pickle runs code) is refused before anything in it runs. diffusers then reads the file the same way.

    Raises:
        ValueError: if the file holds anything but tensors (no code from it has run).
        CorruptedWeightsError: if it is not a readable PyTorch file.
    """
    import pickle
    import zipfile

    with open(path, "rb") as handle:
        if not zipfile.is_zipfile(handle) and handle.read(1) != b"\x80":  # torch.save's zip, or a legacy pickle
            raise CorruptedWeightsError(f"{path} is not a readable PyTorch weight file (neither a zip nor a pickle).")
    if zipfile.is_zipfile(path):
        # torch.save stores entries uncompressed: entries far larger than the file are a zip bomb, which torch.load
        # would expand in memory before any check. The zip directory tells without reading them.
        with zipfile.ZipFile(path) as archive:
            expanded, size = sum(info.file_size for info in archive.infolist()), path.stat().st_size
        if expanded > 2 * size + 2**20:
            raise ValueError(
                f"{path} expands to {expanded:,} bytes from {size:,} (torch.save stores tensors uncompressed): a "
                "compressed archive, refused before loading."
            )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's message is long and general; the line naming what the file asked for says why.
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = next((line for line in lines if "error:" in line.lower()), lines[0] if lines else "")[:300]
        raise ValueError(
            f"{path} holds more than tensors ({reason}); it was not loaded: unpickling it could run code. Ask the "
            "publisher for safetensors weights."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CorruptedWeightsError(f"{path} is not a readable PyTorch weight file ({error}).") from error
    if not isinstance(state, dict) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()
    ):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a dict of named tensors (a model's weights).")


def _use_safetensors(folder: Path) -> bool:
    """How the score model of a pipeline folder is loaded: from safetensors (`True`, preferred), or from diffusers'
    ``.bin`` when it is the only weight file (`False`, after `check_bin_weights`); other pickle files are refused
    with what to do instead."""
    component = folder / "unet"
    files = sorted(path for path in component.glob("*") if path.is_file()) if component.is_dir() else []
    if not files or any(path.suffix == ".safetensors" for path in files):
        return True  # (a folder without weights gets diffusers' own message)
    if (component / BIN_WEIGHTS).is_file():
        check_bin_weights(component / BIN_WEIGHTS)
        return False
    pickles = [path.name for path in files if path.suffix in PICKLE_SUFFIXES]
    if pickles:
        raise ValueError(
            f"{component} holds only pickle weights ({', '.join(pickles)}); ncsn-pipeline reads pickle weights only "
            f"from diffusers' {BIN_WEIGHTS} (tensors only, with torch.load(weights_only=True)), since loading other "
            "pickle files can run arbitrary code. Convert them once, in an environment you trust, with "
            "`Model.from_pretrained(folder, subfolder='unet', use_safetensors=False).save_pretrained(...)` "
            "(safetensors is the default), or ask the publisher for safetensors weights."
        )
    return True


def _load_score_sde_ve_folder(cls, folder: Path, index: Dict[str, Any], torch_dtype=None, use_safetensors=True):
    """A folder in diffusers' ``ScoreSdeVePipeline`` layout (the ``google/ncsnpp-*`` repositories): a
    ``UNet2DModel`` with a Fourier sigma embedding, which returns the score, and a ``ScoreSdeVeScheduler``.

    The scheduler becomes `VEPredictorCorrectorScheduler` with every setting mapped (``num_train_timesteps``,
    ``snr``, ``correct_steps``, ``sigma_min``, ``sigma_max``): the same PC algorithm (Song et al. 2021,
    Algorithm 2) with the same random draws in the same order. The data range is ``(0, 1)``:
    ``ScoreSdeVePipeline`` clamps its samples to it.
    """
    try:
        from ncsn_pipeline.scheduling_ve_pc import VEPredictorCorrectorScheduler
    except ImportError as error:  # the pipeline's exported copy, without the package
        raise ValueError("Loading a ScoreSdeVePipeline folder needs the ncsn-pipeline package.") from error
    from diffusers import UNet2DModel

    unet_class = (index.get("unet") or [None, None])[1]
    if unet_class != "UNet2DModel":
        raise ValueError(f"{folder}: a ScoreSdeVePipeline folder with a {unet_class} model; expected UNet2DModel.")
    unet = UNet2DModel.from_pretrained(
        folder,
        subfolder="unet",
        use_safetensors=use_safetensors,
        **({"torch_dtype": torch_dtype} if torch_dtype else {}),
    )
    if unet.config.time_embedding_type != "fourier":
        raise ValueError(
            f"{folder}: the UNet2DModel has time_embedding_type={unet.config.time_embedding_type!r}; a score model of "
            "the score-SDE layout embeds sigma with Fourier features ('fourier') and returns the score."
        )
    scheduler_config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    return cls(unet=unet, scheduler=VEPredictorCorrectorScheduler.from_config(scheduler_config), data_range=(0.0, 1.0))


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


class NCSNPipeline(DiffusionPipeline):
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
        folder = _resolve_folder(pretrained_model_name_or_path, kwargs)
        if kwargs.get("use_safetensors", True) is not True:
            raise ValueError(
                "NCSNPipeline chooses the weight file itself: safetensors, or diffusers' .bin read with "
                "torch.load(weights_only=True) where a folder has no safetensors file; use_safetensors=False (pickle "
                "weights of any kind, which can run arbitrary code when loaded) is not supported."
            )
        kwargs["use_safetensors"] = _use_safetensors(folder)
        try:
            index = json.loads((folder / "model_index.json").read_text())
            if isinstance(index.get("_class_name"), list):  # Hub layout with code files: build from our classes
                from ncsn_pipeline.hub import load_exported_folder

                pipe = load_exported_folder(folder, cls, **kwargs)
            elif (index.get("scheduler") or [None, None])[1] == "ScoreSdeVeScheduler":
                pipe = _load_score_sde_ve_folder(
                    cls, folder, index, kwargs.get("torch_dtype"), kwargs["use_safetensors"]
                )
            else:
                pipe = super().from_pretrained(folder, **kwargs)
        except (SafetensorError, OSError) as error:
            # diffusers reports an unreadable weight file as "Unable to load weights from checkpoint file".
            if not isinstance(error, SafetensorError) and "Unable to load weights" not in str(error):
                raise
            raise CorruptedWeightsError(
                f"Could not read the weights of the pipeline in {os.fspath(pretrained_model_name_or_path)!r}: a "
                f"safetensors file is truncated or corrupted ({error}). Download or save the pipeline again."
            ) from error
        for name, tensor in pipe.unet.state_dict().items():
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise CorruptedWeightsError(
                    f"The weights loaded from {os.fspath(pretrained_model_name_or_path)!r} contain NaN or infinite "
                    f"values in {name!r}: the checkpoint is broken."
                )
        return pipe

    def save_pretrained(self, save_directory: Union[str, os.PathLike], standalone: bool = False, **kwargs) -> None:
        """Save the pipeline folder (``model_index.json``, ``unet/``, ``scheduler/``) with safetensors weights.

        Args:
            save_directory (`str` or `os.PathLike`): The folder to write.
            standalone (`bool`, defaults to `False`): Also write self-contained code files and a model card (the
                layout of pushed repositories), so that plain diffusers loads the folder with
                ``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`` without this package.
                The default layout loads with ``NCSNPipeline.from_pretrained`` only. ``save_directory`` must
                not exist yet.
            **kwargs: The arguments of [`DiffusionPipeline.save_pretrained`]; ``safe_serialization`` is always
                `True`. To publish, use `push_to_hub`.
        """
        if standalone:
            from ncsn_pipeline.hub import save_standalone

            save_standalone(self, save_directory, pipeline_class=NCSNPipeline)
            return
        if kwargs.get("safe_serialization", True) is not True:
            raise ValueError(
                "NCSNPipeline saves weights only as safetensors; safe_serialization=False is not supported."
            )
        if kwargs.get("push_to_hub"):
            raise ValueError("Use pipe.push_to_hub(repo_id, private=...) to publish; save_pretrained only saves.")
        kwargs["safe_serialization"] = True
        super().save_pretrained(save_directory, **kwargs)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool,
        token: Optional[str] = None,
        commit_message: Optional[str] = None,
    ) -> str:
        """Publish the pipeline to the Hugging Face Hub in one commit (weights, configs, model card, samples, code).

        The repository loads with ``NCSNPipeline.from_pretrained(repo_id)`` and, for users of plain
        diffusers, with ``DiffusionPipeline.from_pretrained(repo_id, trust_remote_code=True)``.

        Args:
            repo_id (`str`): ``"user/name"``; created if needed.
            private (`bool`): Visibility of a new repository (required: the Hub's default is public).
            token (`str`, *optional*): A write token; defaults to the logged-in one or ``HF_TOKEN``.
            commit_message (`str`, *optional*): The commit's message.

        Returns:
            `str`: The URL of the commit.
        """
        import tempfile

        try:
            from ncsn_pipeline.hub import push_folder_to_hub
        except ImportError as error:  # running from a repository's copied code without the package
            raise ImportError("push_to_hub needs the ncsn-pipeline package: pip install ncsn-pipeline") from error
        with tempfile.TemporaryDirectory(prefix="ncsn-save-") as folder:
            self.save_pretrained(folder)
            return push_folder_to_hub(
                folder,
                repo_id,
                private=private,
                pipeline_class=NCSNPipeline,
                token=token,
                commit_message=commit_message,
            )

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
        r"""Log-density of data under the model, by the probability-flow ODE (`ncsn_pipeline.likelihood`).

        The estimate is ``log p_sigma_min(x)``: the density of the data perturbed by ``N(0, sigma_min**2 I)``,
        with the prior ``N(0, sigma_max**2 I)`` standing in for ``p_sigma_max`` (see the module docstring for
        what both mean and how large the mismatch is).

        Args:
            samples (`torch.Tensor`): Data ``(N, *sample_shape)`` in the pipeline's data space (for images, the
                ``data_range``, e.g. dequantized pixels from `ncsn_pipeline.likelihood.uniform_dequantize`).
            batch_size (`int`, defaults to 64): Examples per ODE solve.
            num_levels (`int`, *optional*): Levels per dimension of the discrete data (256 for 8-bit images):
                adds ``bits_per_dim`` for data dequantized onto the pipeline's ``data_range``.
            sigma_min (`float`, *optional*), sigma_max (`float`, *optional*): The ends of the trajectory
                (default: the sampler's).
            divergence (`str`, defaults to ``"hutchinson"``): As in `ncsn_pipeline.likelihood.log_likelihood`, as
                are ``num_probes`` (`int`, defaults to 1), ``probe`` (`str`, defaults to ``"rademacher"``),
                ``rtol`` and ``atol`` (`float`) and ``generator`` (`torch.Generator`).

        Returns:
            `LogLikelihoodResult`: per example, float64; ``num_model_calls`` summed over the batches.

        Example:
            >>> import torch
            >>> from ncsn_pipeline import GaussianMixtureScore, NCSNPipeline, NCSNScheduler
            >>> pipe = NCSNPipeline(GaussianMixtureScore.ncsn_toy(), NCSNScheduler.from_preset("ncsn-toy"))
            >>> points = torch.tensor([[5.0, 5.0], [-5.0, -5.0]])
            >>> result = pipe.log_likelihood(points, sigma_max=200.0, divergence="exact")  # sampler's sigma_min: 1
            >>> [round(value, 2) for value in result.log_likelihood.tolist()]  # exact: -2.75, -4.14 (see below)
            [-2.76, -4.11]

            The exact values are ``log w_k - log(4 pi)`` (modes of variance 1 + 1 at sigma_min = 1); the
            differences are the prior mismatch at ``sigma_max = 200``, largest for the rarer mode, whose points the
            flow carries far out (to about (-178, -178)), where ``p_sigma_max`` is not quite ``N(0, 200**2 I)``.
        """
        try:
            from ncsn_pipeline.likelihood import DIVERGENCES, MAX_PROBES, PROBES, bits_per_dim, log_likelihood
        except ImportError as error:  # the pipeline's exported, self-contained copy
            raise ImportError("log_likelihood needs the ncsn-pipeline package: pip install ncsn-pipeline") from error
        from ncsn_pipeline.likelihood import LogLikelihoodResult

        batch_size = check_integer("batch_size", batch_size)
        # Every setting is checked before the first ODE solve (they were once checked after it).
        if num_levels is not None:
            num_levels = check_integer("num_levels", num_levels, low=2)
        num_probes = check_integer("num_probes", num_probes, high=MAX_PROBES)
        check_choice("divergence", divergence, list(DIVERGENCES))
        check_choice("probe", probe, list(PROBES))
        samples = torch.as_tensor(samples)
        if samples.ndim < 2 or tuple(samples.shape[1:]) != tuple(self.sample_shape):
            raise ValueError(
                f"samples must have shape (N, {', '.join(map(str, self.sample_shape))}) for this pipeline, got "
                f"{tuple(samples.shape)}."
            )
        if samples.shape[0] == 0 or not samples.is_floating_point() or not bool(torch.isfinite(samples).all()):
            raise ValueError(
                f"samples must be at least one finite floating-point example, got {samples.shape[0]} of dtype "
                f"{samples.dtype} (integer pixels: dequantize them first, ncsn_pipeline.likelihood.uniform_dequantize)."
            )
        if num_levels is not None and self.config.data_range is None:
            raise ValueError("num_levels (bits per dimension of discrete data) needs image data with a data_range.")
        config = self.scheduler.config
        sigma_min = float(config.sigma_min) if sigma_min is None else sigma_min
        sigma_max = float(config.sigma_max) if sigma_max is None else sigma_max

        def score_fn(x, sigma):
            return self.unet(x, sigma).sample

        parts = []
        for start in self.progress_bar(range(0, samples.shape[0], batch_size)):
            batch = samples[start : start + batch_size].to(device=self.device, dtype=self.unet.dtype)
            options = dict(num_probes=num_probes, probe=probe, rtol=rtol, atol=atol, generator=generator)
            parts.append(log_likelihood(score_fn, batch, sigma_min, sigma_max, divergence, **options))
        fields = ("log_likelihood", "prior_log_prob", "delta_log_prob", "latent")
        result = LogLikelihoodResult(
            *(torch.cat([getattr(part, name) for part in parts]) for name in fields),
            num_model_calls=sum(part.num_model_calls for part in parts),
        )
        if num_levels is not None:
            dims = math.prod(self.sample_shape)
            result.bits_per_dim = bits_per_dim(result.log_likelihood, dims, num_levels, tuple(self.config.data_range))
        return result

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
