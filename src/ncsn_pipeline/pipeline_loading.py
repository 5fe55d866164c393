"""How `NCSNPipeline.from_pretrained` finds and reads a pipeline folder: a local folder or a Hub repository's
download, the weight file chosen safely (safetensors; diffusers' ``.bin`` read as tensors only; other pickles refused),
the folder layouts (the package's own, the Hub's self-contained one, diffusers' ``ScoreSdeVePipeline``), and weights
checked finite.

The pipeline imports this module lazily (`ncsn_pipeline.pipeline_ncsn` holds the sampling loop only), so the
self-contained copy of the pipeline in an exported repository does not carry it: plain diffusers loads such a
repository with its own loader.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any, Dict, Union

import torch
from diffusers import DiffusionPipeline
from safetensors import SafetensorError

from .errors import CorruptedWeightsError


def load_pipeline_folder(cls, pretrained_model_name_or_path: Union[str, os.PathLike], **kwargs):
    """`NCSNPipeline.from_pretrained`'s work for the pipeline class ``cls`` (see its docstring)."""
    folder = resolve_folder(pretrained_model_name_or_path, kwargs)
    if kwargs.get("use_safetensors", True) is not True:
        raise ValueError(
            "NCSNPipeline chooses the weight file itself: safetensors, or diffusers' .bin read with "
            "torch.load(weights_only=True) where a folder has no safetensors file; use_safetensors=False (pickle "
            "weights of any kind, which can run arbitrary code when loaded) is not supported."
        )
    kwargs["use_safetensors"] = use_safetensors_for(folder)
    try:
        index = json.loads((folder / "model_index.json").read_text())
        if isinstance(index.get("_class_name"), list):  # Hub layout with code files: build from our classes
            from .hub import load_exported_folder

            pipe = load_exported_folder(folder, cls, **kwargs)
        elif (index.get("scheduler") or [None, None])[1] == "ScoreSdeVeScheduler":
            pipe = load_score_sde_ve_folder(
                cls, folder, index, kwargs.get("torch_dtype"), kwargs["use_safetensors"]
            )
        else:
            # diffusers loads a component only from a module already imported; the package imports its modules
            # lazily, so import those the folder names (the package's own modules only: no code from the folder).
            for library, _ in (value for value in index.values() if isinstance(value, list) and len(value) == 2):
                if isinstance(library, str) and library.startswith("ncsn_pipeline."):
                    try:
                        importlib.import_module(library)
                    except ImportError:  # no such module of the package: diffusers' own message says so
                        pass
            pipe = DiffusionPipeline.from_pretrained.__func__(cls, folder, **kwargs)
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


def resolve_folder(name_or_path: Union[str, os.PathLike], kwargs: Dict[str, Any]) -> Path:
    """A local pipeline folder: ``name_or_path`` itself, or a Hub repository's files downloaded into the cache."""
    path = Path(name_or_path)
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ValueError(
                f"{os.fspath(name_or_path)!r} is a folder but not a saved pipeline: it has no model_index.json (a "
                "folder written by save_pretrained, ncsn-train or ncsn-convert has one)."
            )
        return path
    from .folder_records import GUIDE_FOLDER
    from .hub import download_pipeline

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

    from .pickle_check import UnreadableTorchFile, check_torch_save_file

    try:
        check_torch_save_file(path)  # before anything unpickles it: even the allowed calls can be costly
    except UnreadableTorchFile as error:
        raise CorruptedWeightsError(str(error).replace("PyTorch file", "PyTorch weight file")) from None
    except ValueError as error:
        raise ValueError(f"{error} Ask the publisher for safetensors weights.") from None
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


def use_safetensors_for(folder: Path) -> bool:
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


def load_score_sde_ve_folder(cls, folder: Path, index: Dict[str, Any], torch_dtype=None, use_safetensors=True):
    """A folder in diffusers' ``ScoreSdeVePipeline`` layout (the ``google/ncsnpp-*`` repositories): a
    ``UNet2DModel`` with a Fourier sigma embedding, which returns the score, and a ``ScoreSdeVeScheduler``.

    The scheduler becomes `VEPredictorCorrectorScheduler` with every setting mapped (``num_train_timesteps``,
    ``snr``, ``correct_steps``, ``sigma_min``, ``sigma_max``): the same PC algorithm (Song et al. 2021,
    Algorithm 2) with the same random draws in the same order. The data range is ``(0, 1)``:
    ``ScoreSdeVePipeline`` clamps its samples to it.
    """
    from diffusers import UNet2DModel

    from .scheduling_ve_pc import VEPredictorCorrectorScheduler

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
