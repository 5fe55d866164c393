"""Model cards for saved pipelines, rendered from the Jinja templates in ``hub_cards/``.

The card is built from what the pipeline folder itself records, so it cannot drift from the
weights: ``model_index.json``, the model and scheduler configs, ``training_args.json`` (written by
``ncsn-train``) and, when present, ``evaluation.json`` (`ncsn_pipeline.folder_records`). The sampler is
described by the scheduler itself (``scheduler.description``), so the card works for every sampler.

Example:

>>> from ncsn_pipeline.hub import render_model_card
>>> card = render_model_card("path/to/pipeline", repo_id="user/ncsn-digits")  # doctest: +SKIP
>>> card.save("path/to/pipeline/README.md")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

from huggingface_hub import ModelCard, ModelCardData

from ..folder_records import guide_folder, read_conversion, read_evaluation, read_training, read_tuned_steps

TEMPLATE_NAME = "ncsn_pipeline.md"
TAGS = ["ncsn", "score-based-generative-modeling", "annealed-langevin-dynamics", "diffusers", "ncsn-pipeline"]


def template_path() -> Path:
    """The card template: ``hub_cards/`` of a source checkout, or the copy installed with the package."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package.parents[1] / "hub_cards" / TEMPLATE_NAME, package / "hub_cards" / TEMPLATE_NAME):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"The model-card template {TEMPLATE_NAME} is missing from hub_cards/.")


def _read_json(path: Path) -> Dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path} is missing: is {path.parent} a pipeline folder saved by NCSNPipeline?") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}).") from None


def card_text(value: Any) -> str:
    """A recorded value as card prose or a table cell: one line, ``&``, ``<`` (every HTML tag starts with it) and
    ``|`` escaped, and a leading ``#`` or ``>`` (a heading, a quote) neutralised, so that a config or checkpoint
    cannot add HTML, headings, table rows or metadata lines to a card that ``ncsn-push`` publishes (issue 21:
    ``data.dataset`` once went into the card verbatim)."""
    flat = " ".join(str(value).splitlines()).strip()
    text = flat.replace("&", "&amp;").replace("<", "&lt;").replace("|", "\\|")
    return "\\" + text if text.startswith(("#", ">")) else text


def card_code(value: Any) -> str:
    """A recorded value inside a code span (commands, file names): one line, no backtick to break out of the span,
    ``|`` escaped for tables; HTML is shown as text inside a code span, so it stays as it is."""
    return " ".join(str(value).splitlines()).replace("`", "'").replace("|", "\\|")


# Fields of conversion.json printed inside code spans; the others are prose.
CONVERSION_CODE_FIELDS = ("checkpoint", "checkpoint_sha256", "config", "command", "original_sampler")


def _format_number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _evaluation_markdown(evaluation: Optional[Dict[str, Any]]) -> str:
    if not evaluation:
        return "No evaluation was recorded for this model."
    reference_label = card_text(evaluation.get("reference_label", "reference"))
    lines = [f"| Metric | This model | {reference_label} |", "| --- | --- | --- |"]
    for metric in evaluation["metrics"]:
        reference = metric.get("reference")
        lines.append(
            f"| {card_text(metric['name'])} | {card_text(_format_number(metric['value']))} | "
            f"{'' if reference is None else card_text(_format_number(reference))} |"
        )
    parts = ["\n".join(lines)]
    if evaluation.get("notes"):
        parts.append(card_text(evaluation["notes"]))
    if evaluation.get("command"):
        parts.append(f"Measured with `{card_code(evaluation['command'])}`.")
    return "\n\n".join(parts)


def _network_description(unet_class: str, unet_config: Dict[str, Any]) -> Tuple[str, str]:
    """``(network, sample shape)`` as the card shows them, from the unet's class name and config."""
    if unet_class == "NCSNScoreModel":
        architecture = unet_config.get("architecture", "ncsnv2")
        network = f"NCSNv2 RefineNet (`NCSNScoreModel`, {architecture}, ngf={unet_config['ngf']})"
        sample_shape = f"{unet_config['in_channels']} x {unet_config['sample_size']} x {unet_config['sample_size']}"
    elif unet_class == "NCSNv1ScoreModel":
        network = (
            f"NCSN v1 conditional RefineNet (`NCSNv1ScoreModel`, ngf={unet_config['ngf']}, "
            f"{unet_config['num_noise_levels']} noise levels)"
        )
        sample_shape = f"{unet_config['in_channels']} x {unet_config['sample_size']} x {unet_config['sample_size']}"
    elif unet_class == "ToyScoreModel":
        network = f"MLP (`ToyScoreModel`, {unet_config['num_layers']} x {unet_config['hidden_size']} units)"
        sample_shape = f"{unet_config['data_dim']}-D points"
    elif unet_class == "NCSNppScoreModel":
        network = (
            f"NCSN++ (`NCSNppScoreModel`, nf={unet_config['nf']}, ch_mult={unet_config['ch_mult']}, progressive "
            f"{unet_config['progressive']} / input {unet_config['progressive_input']})"
        )
        size = unet_config["sample_size"]
        sample_shape = f"{unet_config['in_channels']} x {size} x {size}"
    elif unet_class == "EDMScoreModel":
        network = (
            f"diffusers' `UNet2DModel` with EDM preconditioning (`EDMScoreModel`, channels "
            f"{unet_config['block_out_channels']}, {unet_config['layers_per_block']} layer(s) per block, sigma_data "
            f"{unet_config['sigma_data']})"
        )
        size = unet_config["sample_size"]
        sample_shape = f"{unet_config['in_channels']} x {size} x {size}"
    elif unet_class == "UNet2DModel" and unet_config.get("time_embedding_type") == "fourier":
        network = (
            f"NCSN++ as diffusers' `UNet2DModel` (Skip blocks, Fourier sigma embedding, channels "
            f"{unet_config['block_out_channels']})"
        )
        size = unet_config["sample_size"]
        sample_shape = f"{unet_config['in_channels']} x {size} x {size}"
    else:
        network, sample_shape = f"`{unet_class}`", "see `unet/config.json`"
    return network, sample_shape


def render_model_card(
    folder: Union[str, os.PathLike], repo_id: Optional[str] = None, license: str = "apache-2.0"
) -> ModelCard:
    """Render the model card of the pipeline saved in ``folder``.

    Args:
        folder (`str` or `os.PathLike`): A folder written by ``NCSNPipeline.save_pretrained`` (and ``ncsn-train``).
        repo_id (`str`, *optional*): The Hub repository the card is for (used in the code examples);
            defaults to the folder's name.
        license (`str`, defaults to ``"apache-2.0"``): The licence in the card's metadata.

    Returns:
        `huggingface_hub.ModelCard`: The rendered card; ``card.save(path)`` writes it.
    """
    folder = Path(folder)
    index = _read_json(folder / "model_index.json")
    unet_config = _read_json(folder / "unet" / "config.json")
    scheduler = _load_scheduler(folder, index)
    # Every string from the records is printed escaped (`card_text`, `card_code`): a config can be hostile.
    training = read_training(folder) or {}
    evaluation = read_evaluation(folder)
    conversion = read_conversion(folder)
    if conversion is not None:
        conversion = {
            key: (card_code if key in CONVERSION_CODE_FIELDS else card_text)(value) if isinstance(value, str) else value
            for key, value in conversion.items()
        }
    if conversion is not None:
        conversion = {
            **conversion,
            "weights_text": "exponential moving average (EMA), as the paper sampled"
            if conversion["weights"] == "ema"
            else "raw training weights (no EMA)",
        }
    args = training.get("args", {})
    repo_id = repo_id or folder.name
    model_name = repo_id.split("/")[-1]

    is_image = index.get("data_range") is not None
    unet_class = index["unet"][1]
    network, sample_shape = _network_description(unet_class, unet_config)
    num_parameters = _count_parameters(folder / "unet" / "diffusion_pytorch_model.safetensors")

    dataset_name = args.get("dataset_name")
    datasets = [dataset_name] if dataset_name and "/" in dataset_name else None
    conditional = bool(unet_config.get("num_class_embeds"))
    card_data = ModelCardData(
        library_name="diffusers",
        pipeline_tag="unconditional-image-generation",
        license=conversion["license"] if conversion is not None else license,
        tags=TAGS + ([] if is_image else ["toy-2d"]) + (["class-conditional"] if conditional else []),
        datasets=datasets,
    )
    if conversion is not None:
        description = f"The published {conversion['family']} score model of {conversion['dataset']}, for diffusers."
    elif training:
        description = f"An NCSN score model of {card_text(training.get('data', 'its training data'))}."
    else:
        description = f"An NCSN score model ({network})."
    loss = {"dsm": "denoising score matching, lambda(sigma) = sigma^2", "ssm": "sliced score matching"}.get(
        args.get("loss"), "unknown"
    )
    if args.get("loss") == "dsm" and args.get("loss_weighting") == "edm":
        loss = f"denoising score matching with EDM's weight (sigma_data {args.get('sigma_data')})"
    if args.get("noise_sampling") == "log-normal":
        loss += f", log sigma ~ N({args.get('log_normal_mean')}, {args.get('log_normal_std')}^2)"
    elif args.get("loss"):
        loss += ", sigma uniform over the noise levels"
    ema = f", EMA {args['ema_decay']}" if args.get("use_ema") else ""
    decay = ""
    if args.get("lr_scheduler") == "inverse_sqrt":
        decay = f" decayed as 1 / sqrt(step / {args.get('lr_decay_steps')}) after step {args.get('lr_decay_steps')}"
    posthoc = training.get("posthoc_ema")
    if posthoc:  # ncsn-reconstruct-ema replaced the weights with a power-function EMA rebuilt from snapshots
        ema = (
            f", post-hoc EMA (Karras et al. 2024): the power-function profile sigma_rel {posthoc['sigma_rel']:g} at "
            f"step {posthoc['step']}, rebuilt from {posthoc['snapshots']} snapshots of the profiles "
            f"{', '.join(f'{value:g}' for value in posthoc['tracked_sigma_rels'])}"
        )
    optimisation = (
        f"Adam, lr {args.get('learning_rate')}{decay}, batch {args.get('train_batch_size')} x "
        f"{args.get('gradient_accumulation_steps')} accumulation x {training.get('num_processes')} process(es), "
        f"gradient clipping {args.get('max_grad_norm')}{ema}"
        if args
        else "unknown"
    )
    class_names = None
    if conditional:
        count, recorded = unet_config["num_class_embeds"], training.get("class_names")
        numbered = [str(index) for index in range(count)]
        class_names = (
            [card_text(name) for name in recorded]
            if isinstance(recorded, list) and len(recorded) == count
            else numbered
        )
    shown = ", ".join(f"{index} = {name}" for index, name in enumerate((class_names or [])[:20]))
    if class_names is not None and class_names == [str(index) for index in range(len(class_names))]:
        shown = f"0 to {len(class_names) - 1}"
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path()),
        class_names=class_names,
        class_names_text=shown + (", ..." if class_names and len(class_names) > 20 else ""),
        example_class_labels=(", class_labels=0" if class_names else ""),
        classifier_free=bool(class_names) and bool(unet_config.get("unconditional_class")),
        label_dropout=card_text(args["label_dropout"]) if args and args.get("label_dropout") else None,
        is_image=is_image,
        is_colour=is_image and unet_config.get("in_channels") == 3,
        edm=unet_class == "EDMScoreModel",
        model_name=model_name,
        repo_id=repo_id,
        description=description,
        example_batch_size=16 if is_image else 1000,
        example_output_type="pil" if is_image else "np",
        network=card_text(network),
        num_parameters=f"{num_parameters:,}",
        sample_shape=card_text(sample_shape),
        data_range=card_text(index.get("data_range")) if is_image else "raw (not images)",
        data=card_text(training.get("data", "unknown")),
        # A run resumed from a checkpoint lists its segments; running them in order reproduces it.
        command=card_code(
            " && ".join(seg["command"] for seg in training["segments"])
            if training.get("segments")
            else training.get("command") or "unknown"
        ),
        loss=loss,
        noise_schedule=(
            f"{len(scheduler.noise_levels)} geometric levels "
            f"{scheduler.config.sigma_max:.4g} -> {scheduler.config.sigma_min:.4g}"
            + (" (NCSNv2 techniques, computed from the data)" if args.get("auto_noise_schedule") else "")
        ),
        optimisation=optimisation,
        global_step=training.get("global_step", "unknown"),
        hardware=card_text(training.get("hardware", "unknown")),
        train_time=f"{training['train_seconds']:.0f} s" if "train_seconds" in training else "unknown",
        sampling=f"`{type(scheduler).__name__}`: {scheduler.description}",
        langevin_sampling=_langevin_settings(scheduler) if conversion is None else None,
        tuned_levels=_tuned_levels(scheduler, read_tuned_steps(folder) or {}),
        guide=_guide(folder),
        evaluation=_evaluation_markdown(evaluation),
        conversion=conversion,
    )


def _guide(folder: Path) -> Optional[Dict[str, str]]:
    """What the card says of the guide a folder ships for autoguidance (``guide/``): its network, size and training
    (from its own records); `None` without one."""
    guide = guide_folder(folder)
    if guide is None:
        return None
    index = _read_json(guide / "model_index.json")
    network, _ = _network_description(index["unet"][1], _read_json(guide / "unet" / "config.json"))
    training = read_training(guide) or {}
    seconds = training.get("train_seconds")
    return {
        "network": card_text(network),
        "num_parameters": f"{_count_parameters(guide / 'unet' / 'diffusion_pytorch_model.safetensors'):,}",
        "training": card_text(
            f"{training.get('global_step', 'unknown')} steps"
            + (f", {float(seconds) / 60:.0f} min" if isinstance(seconds, (int, float)) else "")
        ),
        "command": card_code(training.get("command") or "unknown"),
    }


def _tuned_levels(scheduler, records: Dict[str, Any]) -> list:
    """One card line per tuned call count: the levels from the sampler's config (what sampling uses) and, where
    ``ncsn-tune-steps`` left its record, how they were chosen."""
    lines = []
    for count, levels in sorted((scheduler.config.get("tuned_noise_levels") or {}).items(), key=lambda i: int(i[0])):
        line = f"{int(count)} calls: " + ", ".join(f"{float(level):.4g}" for level in levels)
        record = records.get(str(count))
        if isinstance(record, dict) and {"sigma_min", "rho", "distance", "karras_distance"} <= set(record):
            line += " " + card_text(
                f"(Karras levels with sigma_min {float(record['sigma_min']):.4g}, rho {float(record['rho']):g}; "
                f"distance of the samples' power spectra to {record.get('reference', 'a long run')}: "
                f"{float(record['distance']):.4g}, {float(record['karras_distance']):.4g} with the config's levels)"
            )
            if record.get("command"):
                line += f" `{card_code(record['command'])}`"
        lines.append(line)
    return lines


def _langevin_settings(scheduler) -> Optional[str]:
    """The annealed Langevin run a saved sampler's config keeps (``step_lr`` and ``steps_per_level`` carried over from
    the training schedule), or `None` where it keeps none or is annealed Langevin itself."""
    from ..scheduling_ncsn import NCSNScheduler

    if isinstance(scheduler, NCSNScheduler) or not {"step_lr", "steps_per_level"} <= set(scheduler.config):
        return None
    return NCSNScheduler.from_config(scheduler.config).description


def _load_scheduler(folder: Path, index: Dict[str, Any]):
    """The folder's scheduler, built from its config by the package's class of that name."""
    from ..scheduling_utils import score_schedulers

    class_name = index["scheduler"][1]
    samplers = score_schedulers()
    if class_name not in samplers:
        raise ValueError(f"{folder}: the scheduler {class_name} is not a sampler of ncsn-pipeline ({list(samplers)}).")
    return samplers[class_name].from_pretrained(folder, subfolder="scheduler")


def _count_parameters(weights: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as handle:
        return sum(_numel(handle.get_slice(name).get_shape()) for name in handle.keys())


def _numel(shape) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


def write_model_card(folder: Union[str, os.PathLike], repo_id: Optional[str] = None) -> Path:
    """Render the card of ``folder`` and save it as ``folder/README.md``; return the path."""
    path = Path(folder) / "README.md"
    render_model_card(folder, repo_id=repo_id).save(str(path))
    return path
