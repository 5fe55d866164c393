"""Reading the published checkpoints and configs safely: weights only, configs as data.

A research checkpoint is a pickle; ``torch.load`` without ``weights_only=True`` runs whatever code the file
names. Everything here reads the pickles opcode by opcode first (`ncsn_pipeline.pickle_check`), loads with
``weights_only=True`` and turns refusals and unreadable files into one
`ConversionError` that names the file and what to do.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, Union

import torch

from ..pickle_check import UnreadableTorchFile, check_torch_save_file
from .published import PUBLISHED_CONFIGS


class ConversionError(ValueError):
    """A checkpoint or config that cannot be converted; the message names the file or key and what to do."""


@dataclass
class ConvertedModel:
    """What a checkpoint family's ``build`` returns: the loaded score model, the original sampler with the paper's
    settings, the data range the model was trained on, and the weights taken (``"ema"`` or ``"raw"``)."""

    family: str
    model: torch.nn.Module
    scheduler: Any
    data_range: Tuple[float, float]
    weights: str


@dataclass(frozen=True)
class CheckpointFamily:
    """One entry of the converter's table (`ncsn_pipeline.conversion.convert.CHECKPOINT_FAMILIES`).

    Args:
        description: How to recognise its configs, for the error when no family matches.
        matches: ``matches(config) -> bool`` for a loaded original config.
        build: ``build(config, checkpoint, weights, architecture) -> ConvertedModel``; ``weights`` is ``"ema"``,
            ``"raw"`` or `None` (EMA where the checkpoint has it); ``architecture`` is ``--architecture`` or `None`.
    """

    description: str
    matches: Callable[[Dict[str, Any]], bool]
    build: Callable[[Dict[str, Any], Any, Optional[str], Optional[str]], ConvertedModel]


def load_converted_weights(model: torch.nn.Module, weights: Dict[str, torch.Tensor]) -> None:
    """Load ``weights`` into ``model`` exactly, or raise `ConversionError` naming every key that does not fit."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong_shape = sorted(
        f"{key}: checkpoint {tuple(weights[key].shape)} vs config {tuple(expected[key].shape)}"
        for key in set(expected) & set(weights)
        if tuple(weights[key].shape) != tuple(expected[key].shape)
    )
    problems = [
        f"{label} ({len(keys)}): {keys[:8]}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", wrong_shape))
        if keys
    ]
    if problems:
        raise ConversionError(
            "The checkpoint does not match the model its config describes; keys " + "; ".join(problems) + ". Pass "
            "the config the checkpoint was trained with."
        )
    model.load_state_dict({key: value.to(expected[key].dtype) for key, value in weights.items()})
    if not all(torch.isfinite(value).all() for value in model.state_dict().values() if value.is_floating_point()):
        raise ConversionError("The checkpoint holds NaN or infinite weights.")


def load_original_checkpoint(path: Union[str, os.PathLike]) -> Any:
    """Load a research checkpoint with ``torch.load(..., weights_only=True)`` on the CPU.

    Raises:
        ConversionError: when the file is missing, unreadable, or holds objects other than tensors and plain
            containers (such a file is never unpickled: that would run code).
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"Checkpoint {str(path)!r} does not exist or is not a file.")
    try:
        check_torch_save_file(path)  # opcode by opcode, before anything is unpickled: allowed calls can be costly
    except UnreadableTorchFile as error:
        raise ConversionError(f"{str(error).replace('PyTorch file', 'PyTorch checkpoint')} Is it complete?") from None
    except ValueError as error:
        raise ConversionError(
            f"{error} ncsn-convert reads tensors, numbers and plain containers only. If you trust the file, load it "
            "yourself and save its state dicts alone with torch.save."
        ) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise ConversionError(
            f"{path} holds Python objects other than tensors, numbers and plain containers, so it was refused "
            f"without running it ({reason}). ncsn-convert reads checkpoints with torch.load(weights_only=True) "
            "only. If you trust the file, load it yourself and save its state dicts alone with torch.save."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise ConversionError(
            f"{path} is not a readable PyTorch checkpoint ({type(error).__name__}: {error}); is it complete?"
        ) from None


def load_original_config(config: Union[str, os.PathLike, Dict[str, Any]]) -> Dict[str, Any]:
    """The original training config as a nested dict.

    Args:
        config: A path to an ermongroup YAML file (``.yml``/``.yaml``) or to a score_sde ``ml_collections``
            config dumped as JSON or YAML; the name of a published configuration (`PUBLISHED_CONFIGS`); or a
            dict already.

    Raises:
        ConversionError: for a missing or malformed file, or an unknown name (listing the known ones).
    """
    if isinstance(config, dict):
        return config
    path = Path(config)
    if not path.exists():
        name = os.fspath(config)
        if name in PUBLISHED_CONFIGS:
            return json.loads(json.dumps(PUBLISHED_CONFIGS[name]))  # a copy the caller may change
        raise ConversionError(
            f"Unknown config {name!r}: it is neither a file nor a published configuration. "
            f"Known configurations: {sorted(PUBLISHED_CONFIGS)}."
        )
    try:
        text = _read_config_text(path)
        if path.suffix == ".json":
            loaded = json.loads(text)
        else:
            loaded = _load_yaml_without_aliases(text)
    except ConversionError:
        raise
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        raise ConversionError(f"Cannot read config {path}: {error}") from None
    except Exception as error:  # yaml.YAMLError and friends
        raise ConversionError(f"Cannot parse config {path}: {error}") from None
    if (
        not isinstance(loaded, dict)
        or not isinstance(loaded.get("model"), dict)
        or not isinstance(loaded.get("data"), dict)
    ):
        raise ConversionError(
            f"{path} is not a training config of ermongroup/ncsn, ermongroup/ncsnv2 or score_sde_pytorch: it needs "
            "'data' and 'model' sections."
        )
    return loaded


MAX_CONFIG_BYTES = 1024 * 1024  # the published configs are 1-3 KB
MAX_DATASET_NAME = 64
DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.+-]*")


def _read_config_text(path: Path) -> str:
    """A config file's text: only a regular file (a FIFO would block forever, ``/dev/zero`` never ends) of at most
    `MAX_CONFIG_BYTES`."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise ConversionError(f"The config {path} is not a regular file; pass the .yml / .json file itself.")
    with open(path, "rb") as handle:
        data = handle.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConversionError(f"The config {path} is over {MAX_CONFIG_BYTES:,} bytes; a training config is a few KB.")
    return data.decode("utf-8")


def _load_yaml_without_aliases(text: str) -> Any:
    """``yaml.safe_load`` that refuses aliases (``*name``): a few hundred bytes of nested aliases ("billion laughs")
    expand to gigabytes, and no training config needs them."""
    import yaml

    class _NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise ConversionError(
                    f"The config uses a YAML alias (*{str(event.anchor)[:40]}, line {event.start_mark.line + 1}); "
                    "ncsn-convert refuses aliases (they can expand without bound): write the value out."
                )
            return super().compose_node(parent, index)

    return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass


def dataset_name(config: Dict[str, Any]) -> str:
    """The config's ``data.dataset``: a short plain name (letters, digits, `` _.+-``), else `ConversionError` with a
    bounded excerpt; it goes into ``conversion.json`` and the model card."""
    value = config.get("data", {}).get("dataset", "unknown")
    if not isinstance(value, str) or len(value) > MAX_DATASET_NAME or DATASET_NAME.fullmatch(value) is None:
        shown = repr(value)[:60] + ("..." if len(repr(value)) > 60 else "")
        raise ConversionError(
            f"data.dataset must be a plain name of at most {MAX_DATASET_NAME} letters, digits, spaces or _.+- "
            f"(such as CIFAR10), got {shown}."
        )
    return value


def config_value(config: Dict[str, Any], section: str, key: str, default: Any = KeyError) -> Any:
    """``config[section][key]``, or ``default``; a missing required key raises `ConversionError` naming it."""
    value = config.get(section, {}).get(key, default)
    if value is KeyError:
        raise ConversionError(f"The config has no {section}.{key}, which the conversion needs.")
    return value
