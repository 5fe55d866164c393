"""Publish pipeline folders to the Hugging Face Hub and download them back, with clear errors.

A push is one commit of the self-contained layout (`ncsn_pipeline.hub.export`): weights, configs, the model
card, the sample grid and the code files; never checkpoints, optimizer states or logs.
"""

from __future__ import annotations

import fnmatch
import os
import re
import tempfile
from pathlib import Path
from typing import Optional, Union

from ..errors import HubError
from ..folder_records import GUIDE_FOLDER
from .export import export_for_hub

# The files of one pipeline folder that a pushed repository holds (relative paths).
_PIPELINE_FILES = [
    "model_index.json",
    "README.md",
    "sample_grid.png",
    "*.py",
    "unet/*.py",
    "unet/config.json",
    "unet/*.safetensors",
    "scheduler/*.py",
    "scheduler/scheduler_config.json",
]
UPLOAD_PATTERNS = _PIPELINE_FILES + [f"{GUIDE_FOLDER}/{pattern}" for pattern in _PIPELINE_FILES]
"""The files (``fnmatch`` patterns of paths inside the folder) a push uploads and a download fetches: the pipeline's
and those of its guide for autoguidance (``guide/``), a pipeline of its own; checkpoints, optimizer states, logs
and the card-only records never leave the machine."""


def _hub_call(action: str, function, *args, **kwargs):
    """Run a huggingface_hub call, turning its failures into one clear `HubError`."""
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    try:
        return function(*args, **kwargs)
    except OfflineModeIsEnabled as error:
        raise HubError(f"Cannot {action}: HF_HUB_OFFLINE is set. Unset it to reach the Hub.") from error
    except LocalEntryNotFoundError as error:  # offline (or unreachable) and not in the cache
        raise HubError(
            f"Cannot {action}: it is not in the Hugging Face cache and the Hub at {constants.ENDPOINT} cannot be "
            f"reached{' (HF_HUB_OFFLINE is set)' if constants.HF_HUB_OFFLINE else ''}. Download it once with network "
            "access, or pass a local folder."
        ) from error
    except HfHubHTTPError as error:
        status = getattr(error.response, "status_code", None)
        if status in (401, 403):
            raise HubError(
                f"Cannot {action}: the Hub refused the token (HTTP {status}). Log in with `hf auth login` or set "
                "HF_TOKEN: publishing needs a token with write access, a private repository one that can read it."
            ) from error
        raise HubError(f"Cannot {action}: the Hub answered HTTP {status} ({error}).") from error
    except OSError as error:  # connection refused, DNS, timeouts (httpx errors are OSError subclasses or wrapped)
        raise HubError(f"Cannot {action}: the Hub at {constants.ENDPOINT} is unreachable ({error}).") from error
    except Exception as error:
        if type(error).__module__.startswith(("httpx", "httpcore")):
            raise HubError(f"Cannot {action}: the Hub at {constants.ENDPOINT} is unreachable ({error}).") from error
        raise


def push_folder_to_hub(
    pipeline_folder: Union[str, os.PathLike],
    repo_id: str,
    *,
    private: bool,
    pipeline_class: type,
    token: Optional[str] = None,
    commit_message: Optional[str] = None,
) -> str:
    """Publish a saved pipeline folder to ``repo_id`` in one commit; return the commit's URL.

    Args:
        pipeline_folder (`str` or `os.PathLike`): A folder written by ``NCSNPipeline.save_pretrained``
            (or ``ncsn-train``); its checkpoints, logs and optimizer states are never uploaded.
        repo_id (`str`): ``"user/name"``; created if needed.
        private (`bool`): Visibility of a newly created repository. Required: repositories are public by
            default on the Hub, so the choice must be explicit.
        pipeline_class (`type`): The pipeline class whose code the repository carries (`NCSNPipeline`; see
            `ncsn_pipeline.hub.export.export_for_hub`).
        token (`str`, *optional*): A write token; defaults to the logged-in one or ``HF_TOKEN``.
        commit_message (`str`, *optional*): The commit's message.

    Returns:
        `str`: The URL of the commit.

    Raises:
        HubError: No token, an unreachable Hub, a refused token, or an invalid folder. Nothing is
            uploaded unless the whole commit succeeds.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, get_token

    if not isinstance(private, bool):
        raise ValueError(f"private must be True or False (the repository's visibility), got {private!r}.")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id or ""):
        raise ValueError(f"repo_id must look like 'user/name', got {repo_id!r}.")
    folder = Path(pipeline_folder)
    if not (folder / "model_index.json").is_file():
        raise ValueError(f"{folder} is not a saved pipeline folder (no model_index.json).")
    token = token or get_token()
    if not token:
        raise HubError("No Hugging Face token: run `hf auth login` or set HF_TOKEN (a token with write access).")
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="ncsn-push-") as staging:
        export = export_for_hub(folder, Path(staging) / "repo", repo_id=repo_id, pipeline_class=pipeline_class)
        _hub_call(f"create {repo_id}", api.create_repo, repo_id, private=private, exist_ok=True)
        # One explicit commit (upload_folder may split a folder into several commits and retry on its own).
        operations = [
            CommitOperationAdd(path_in_repo=path.relative_to(export).as_posix(), path_or_fileobj=str(path))
            for path in sorted(export.rglob("*"))
            if path.is_file() and any(fnmatch.fnmatch(path.relative_to(export).as_posix(), p) for p in UPLOAD_PATTERNS)
        ]
        # Files of an earlier push that this one no longer has (say, another model class's code file) go too.
        uploaded = {operation.path_in_repo for operation in operations}
        existing = _hub_call(f"list the files of {repo_id}", api.list_repo_files, repo_id)
        operations += [
            CommitOperationDelete(path_in_repo=path)
            for path in existing
            if path not in uploaded and any(fnmatch.fnmatch(path, pattern) for pattern in UPLOAD_PATTERNS)
        ]
        commit = _hub_call(
            f"upload to {repo_id}",
            api.create_commit,
            repo_id=repo_id,
            operations=operations,
            commit_message=commit_message or "Upload NCSN pipeline with ncsn-pipeline",
        )
    return str(getattr(commit, "commit_url", commit))


def download_pipeline(
    repo_id: str, revision: Optional[str] = None, token: Optional[str] = None, cache_dir: Optional[str] = None
) -> Path:
    """Download (or find in the cache, offline) the files of a pipeline repository; return the local folder.

    Safetensors weights are fetched; diffusers' ``unet/diffusion_pytorch_model.bin`` only for a repository without
    them (older ones, such as ``google/ncsnpp-*``), and then read as tensors only (`check_bin_weights`).
    """
    from huggingface_hub import constants, snapshot_download

    def download(patterns):
        return Path(
            _hub_call(
                f"download {repo_id}",
                snapshot_download,
                repo_id,
                revision=revision,
                token=token,
                cache_dir=cache_dir,
                allow_patterns=patterns,
                local_files_only=constants.HF_HUB_OFFLINE,
            )
        )

    folder = download([pattern for pattern in UPLOAD_PATTERNS if not pattern.endswith(".py")])
    if not any((folder / "unet").glob("*.safetensors")):
        folder = download(["unet/diffusion_pytorch_model.bin"])
    return folder
