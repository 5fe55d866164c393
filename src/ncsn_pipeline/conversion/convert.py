"""``convert_checkpoint``: a published research checkpoint -> a complete `NCSNPipeline` folder.

The folder holds safetensors weights, the model and scheduler configs, ``model_index.json`` with the data range,
``conversion.json`` (where the weights came from: its only writer) and a model card rendered from ``hub_cards/``.
It is written into a temporary sibling folder and renamed at the end, so a failed conversion leaves nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import threading
from pathlib import Path
from typing import Any, Dict, Optional, Union

from ..folder_records import write_conversion
from ..pipeline_ncsn import NCSNPipeline
from ..scheduling_dpmpp import default_sampler
from . import ermongroup, score_sde
from .originals import ConversionError, dataset_name, load_original_checkpoint, load_original_config

# The converter's table: one entry per family of published checkpoints (the first that matches a config converts it).
CHECKPOINT_FAMILIES = (ermongroup.FAMILY, score_sde.FAMILY)

# Where the originals are published and under which licence (the repositories' LICENSE files).
SOURCES = {
    "ncsn-v1": {
        "paper": "Song & Ermon, Generative Modeling by Estimating Gradients of the Data Distribution (NeurIPS 2019)",
        "code": "https://github.com/ermongroup/ncsn",
        "license": "gpl-3.0",
        "original_class": "CondRefineNetDilated",
    },
    "score-sde": {
        "paper": "Song et al., Score-Based Generative Modeling through Stochastic Differential Equations (ICLR 2021)",
        "code": "https://github.com/yang-song/score_sde_pytorch",
        "license": "apache-2.0",
        "original_class": "NCSNpp",
    },
    "ncsnv2": {
        "paper": "Song & Ermon, Improved Techniques for Training Score-Based Generative Models (NeurIPS 2020)",
        "code": "https://github.com/ermongroup/ncsnv2",
        "license": "mit",
        "original_class": "NCSNv2 / NCSNv2Deeper / NCSNv2Deepest (by data set)",
    },
}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def convert_checkpoint(
    checkpoint: Union[str, os.PathLike],
    config: Union[str, os.PathLike, Dict[str, Any]],
    output_dir: Union[str, os.PathLike],
    weights: Optional[str] = None,
    architecture: Optional[str] = None,
) -> Path:
    """Convert a published NCSN, NCSNv2 or score-SDE NCSN++ checkpoint into an `NCSNPipeline` folder.

    NCSN++ goes to diffusers' ``UNet2DModel`` where that class represents the config (the ``output_skip`` /
    ``input_skip`` configs at >= 128 channels, as in the ``google/ncsnpp-*`` repositories) and to the package's
    `NCSNppScoreModel` otherwise (the CIFAR-10 configs, with ``progressive_input: residual``); the card says which.

    Args:
        checkpoint: The original ``checkpoint.pth`` (read with ``weights_only=True`` only).
        config: Its training config: an ermongroup YAML file, a score_sde config dumped as JSON or YAML, or the
            name of a published configuration (`ncsn_pipeline.conversion.PUBLISHED_CONFIGS`).
        output_dir: The folder to write; it must not exist.
        weights: ``"ema"`` (the exponential moving average, what the papers sample), ``"raw"``, or `None` for
            EMA where the checkpoint has it and raw otherwise (NCSN v1 kept none).
        architecture: For NCSNv2 checkpoints: ``"ncsnv2"``, ``"ncsnv2-deeper"`` or ``"ncsnv2-deepest"``; `None`
            (the default) takes the reference's choice for the config's dataset, else the checkpoint's own keys.

    Returns:
        `Path`: ``output_dir``, loadable with ``NCSNPipeline.from_pretrained``.

    Raises:
        ConversionError: naming the file, key or setting that prevents the conversion; nothing is written.

    Example:
        >>> from ncsn_pipeline.conversion import convert_checkpoint
        >>> convert_checkpoint("checkpoint.pth", "ncsnv2-cifar10", "ncsnv2-cifar10")  # doctest: +SKIP
    """
    output_dir = Path(output_dir)
    if output_dir.exists():
        raise ConversionError(f"{output_dir} already exists; choose a new output folder.")
    if weights not in (None, "ema", "raw"):
        raise ConversionError(f"weights must be 'ema' or 'raw', got {weights!r}.")
    original = load_original_config(config)
    family = next((entry for entry in CHECKPOINT_FAMILIES if entry.matches(original)), None)
    if family is None:
        raise ConversionError(
            "The config is none of the checkpoint families ncsn-convert reads: "
            + "; ".join(entry.description for entry in CHECKPOINT_FAMILIES)
            + "."
        )
    converted = family.build(original, load_original_checkpoint(checkpoint), weights, architecture)
    family, model, data_range, chosen = converted.family, converted.model, converted.data_range, converted.weights
    scheduler = original_sampler = converted.scheduler
    if not callable(getattr(model, "level_indices", None)):  # NCSN v1 samples on its training levels only
        scheduler = default_sampler(original_sampler.config)  # keeps the original's settings in its config
    pipeline = NCSNPipeline(unet=model.eval(), scheduler=scheduler, data_range=data_range)

    record = {
        "family": family,
        **SOURCES[family],
        "checkpoint": Path(checkpoint).name,
        "checkpoint_sha256": _sha256(Path(checkpoint)),
        # File names only: a local path says nothing to the card's readers and may name the user's folders.
        "config": Path(config).name if not isinstance(config, dict) else "(given as a dict)",
        "dataset": dataset_name(original),
        "weights": chosen,
        # The sampler of the original code (the saved one, or restored by `<class>.from_config(pipe.scheduler.config)`).
        "original_sampler": type(original_sampler).__name__,
        "original_sampling": original_sampler.description,
    }
    record["command"] = (
        f"ncsn-convert {record['checkpoint']} --config {record['config']} --output_dir {output_dir.name} "
        f"--weights {chosen}" + (f" --architecture {architecture}" if architecture else "")
    )
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(output_dir)
    staging = output_dir.parent / f"{_staging_prefix(output_dir)}{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    with _signals_interrupt():  # SIGTERM / SIGHUP end the write like Ctrl-C does: through the cleanup below
        try:
            pipeline.save_pretrained(staging)
            write_conversion(staging, record)
            from ..hub.model_card import write_model_card

            write_model_card(staging, repo_id=output_dir.name)
            staging.rename(output_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return output_dir


class ConversionInterrupted(Exception):
    """A signal (SIGTERM, SIGHUP) stopped the conversion; nothing was left behind."""

    def __init__(self, signal_name: str):
        self.signal_name = signal_name
        super().__init__(f"{signal_name} received: the conversion stopped and left nothing behind.")


INTERRUPTING_SIGNALS = ("SIGTERM", "SIGHUP")


@contextlib.contextmanager
def _signals_interrupt():
    """While writing, turn SIGTERM and SIGHUP into `ConversionInterrupted` (their default ends the process at once,
    skipping the cleanup); main thread only, where Python delivers signals."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(number, frame):
        raise ConversionInterrupted(signal.Signals(number).name)

    # A signal the process ignores stays ignored (``nohup`` ignores SIGHUP: the user asked to keep running).
    names = [
        name
        for name in INTERRUPTING_SIGNALS
        if hasattr(signal, name) and signal.getsignal(getattr(signal, name)) is not signal.SIG_IGN
    ]
    previous = {name: signal.signal(getattr(signal, name), interrupt) for name in names}
    try:
        yield
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)


def _staging_prefix(output_dir: Path) -> str:
    return f".{output_dir.name}.converting-"


def remove_stale_staging(output_dir: Path) -> None:
    """Remove the staging folders of ``output_dir`` that conversions killed outright (SIGKILL, power loss) left:
    those whose process no longer runs."""
    prefix = _staging_prefix(output_dir)
    for path in output_dir.parent.glob(f"{prefix}*"):
        pid = path.name[len(prefix) :]
        if pid.isdigit() and int(pid) != os.getpid() and not _process_exists(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True
