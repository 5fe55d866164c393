"""The training loop of ``ncsn-train`` (command line in `ncsn_pipeline.cli.train`).

Shaped like diffusers' ``examples/unconditional_image_generation/train_unconditional.py``:

    accelerate launch -m ncsn_pipeline.train --dataset_name digits --resolution 16 \\
        --auto_noise_schedule --output_dir ncsn-digits --max_train_steps 3000

Differences from that script, on purpose:

* the loss is denoising score matching with ``lambda(sigma) = sigma**2`` (or sliced score matching),
  with noise levels drawn from exactly the training levels the saved pipeline records (its sampler is the
  package's default, DPM-Solver++ 3M-SDE at 50 calls, and keeps the tuned annealed-Langevin settings in its
  config: ``NCSNScheduler.from_config(pipe.scheduler.config)`` restores them);
* checkpoints are written to a temporary folder and renamed only once complete, old ones are
  removed only after that, and ``--resume_from_checkpoint latest`` picks the newest *complete* one;
* resuming restores the model, optimizer, learning-rate schedule, EMA, data order and the training
  randomness, so the run continues exactly as if it had not stopped; an incompatible configuration
  is refused;
* the output folder is a complete pipeline (``model_index.json`` written last) with the training
  arguments and a sample grid, loadable with ``NCSNPipeline.from_pretrained``.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from ..checks import check_training_memory
from ..folder_records import GUIDE_FOLDER, write_training, write_tuned_steps
from ..noise_schedules import ncsnv2_noise_schedule
from .checkpoints import (
    TrainingRandomness,
    check_resume_compatible,
    load_checkpoint,
    recorded_args,
    remove_incomplete_checkpoints,
    resolve_checkpoint,
    save_checkpoint,
)
from .config import INVERSE_SQRT, SIGMA_DATA_RANGE, TrainingConfig, inverse_sqrt_decay
from .data import load_training_data
from .records import command_line, training_record, trim_loss_log
from .signals import StopRequest, TrainingInterrupted

# EDM's training distribution of log(sigma) for data with sigma_data = 0.5 (Karras et al. 2022, section 5).
EDM_SIGMA_DATA = 0.5
EDM_LOG_SIGMA_MEAN = -1.2


def to_model_input(
    batch: torch.Tensor,
    data,
    randomness: TrainingRandomness,
    *,
    random_flip: bool,
    dequantize: bool,
    data_range: List[float],
) -> torch.Tensor:
    """Map a batch of data-set items to the model's ``data_range``, with random flips and dequantisation."""
    if not data.is_image:
        return batch.float()
    # Random draws come from the CPU generator (reproducible on any device), then move to the batch.
    levels = batch.float()
    if random_flip:
        flip = (torch.rand(levels.shape[0], generator=randomness.generator) < 0.5).to(levels.device)
        levels = torch.where(flip[:, None, None, None], levels.flip(-1), levels)
    if dequantize:
        # Uniform dequantisation: grey level k of Q becomes uniform on [k/Q, (k+1)/Q).
        uniform = torch.rand(levels.shape, generator=randomness.generator).to(levels.device)
        unit = (levels + uniform) / data.num_levels
    else:
        unit = levels / (data.num_levels - 1)
    low, high = data_range
    return low + (high - low) * unit


def _stack_data(data, config, limit: int = 5000) -> torch.Tensor:
    """Up to ``limit`` examples as one tensor in the model's data range (for the noise-schedule techniques)."""
    count = min(len(data.dataset), limit)
    items = [data.dataset[index] for index in range(count)]
    if data.class_names is not None:
        items = [image for image, _ in items]  # the schedule techniques look at the images only
    items = torch.stack(items).float()
    if not data.is_image:
        return items
    low, high = config.data_range
    return low + (high - low) * items / (data.num_levels - 1)


def build_scheduler(config, data):
    """The NCSNScheduler the run trains for: its levels are the training levels; the saved pipeline samples with
    `default_sampler` built from it."""
    from ..scheduling_ncsn import NCSNScheduler

    if config.auto_noise_schedule:
        examples = _stack_data(data, config)
        schedule = ncsnv2_noise_schedule(examples, sigma_min=config.sigma_min, steps_per_level=config.steps_per_level)
        return NCSNScheduler(**schedule.to_dict(), final_denoise=config.final_denoise)
    return NCSNScheduler(
        sigma_max=config.sigma_max,
        sigma_min=config.sigma_min,
        num_noise_levels=config.num_noise_levels,
        steps_per_level=config.steps_per_level,
        step_lr=config.step_lr,
        final_denoise=config.final_denoise,
    )


def model_kind(config, data) -> str:
    """The network ``--model`` names (``auto``: the NCSNv2 RefineNet for images, the MLP for points)."""
    return config.model if config.model != "auto" else ("ncsnv2" if data.is_image else "mlp")


def resolve_objective(config, data) -> None:
    """Fill in what ``auto`` and unset flags of the objective mean for this run, on ``config`` (so that the recorded
    arguments, resume checks and the model card see the values actually used).

    ``edm-unet`` trains as EDM does (log-normal sigma, EDM's weight, ``sigma_data`` measured on the data); the other
    networks as NCSN does (sigma uniform over the noise levels, ``lambda(sigma) = sigma^2``).
    """
    edm = model_kind(config, data) == "edm-unet"
    if config.noise_sampling == "auto":
        config.noise_sampling = "log-normal" if edm and config.loss == "dsm" else "levels"
    if config.loss_weighting == "auto":
        config.loss_weighting = "edm" if edm and config.loss == "dsm" else "sigma2"
    needs_sigma_data = edm or config.loss_weighting == "edm" or config.noise_sampling == "log-normal"
    if needs_sigma_data and config.sigma_data is None:
        measured = float(_stack_data(data, config).float().std())
        if not measured >= SIGMA_DATA_RANGE[0]:
            raise ValueError(
                f"The training data's standard deviation is {measured:.3g} ({data.description}): are all its images "
                "the same? EDM's preconditioning needs data with spread; use varied images or pass --sigma_data."
            )
        config.sigma_data = round(measured, 4)
    if config.noise_sampling == "log-normal" and config.log_normal_mean is None:
        config.log_normal_mean = round(EDM_LOG_SIGMA_MEAN + math.log(config.sigma_data / EDM_SIGMA_DATA), 4)


def build_model(config, data):
    """The score network: NCSNv2 RefineNet or EDM-preconditioned U-Net for images, an MLP for 2-D points."""
    from ..modeling_edm import EDMScoreModel
    from ..modeling_ncsn import NCSNScoreModel
    from ..modeling_toy import ToyScoreModel

    kind = model_kind(config, data)
    if kind in ("ncsnv2", "edm-unet"):
        if not data.is_image:
            raise ValueError(f"--model {kind} needs image data, but {data.description} is not.")
        channels, height, _ = data.sample_shape
        num_classes = None if data.class_names is None else len(data.class_names)
        # With label dropout the network also learns the "no class" label (classifier-free guidance).
        unconditional_class = num_classes is not None and config.label_dropout > 0
        if kind == "ncsnv2":
            return NCSNScoreModel(
                in_channels=channels, sample_size=height, ngf=config.ngf, num_class_embeds=num_classes,
                unconditional_class=unconditional_class,
            )  # fmt: skip
        groups = math.gcd(8, *config.block_out_channels)
        return EDMScoreModel(
            in_channels=channels,
            sample_size=height,
            block_out_channels=config.block_out_channels,
            layers_per_block=config.layers_per_block,
            norm_num_groups=groups,
            num_class_embeds=num_classes,
            sigma_data=config.sigma_data,
            unconditional_class=unconditional_class,
        )
    if data.class_names is not None:
        raise ValueError("Class-conditional training needs an image model (--model ncsnv2, edm-unet or auto).")
    if len(data.sample_shape) != 1:
        raise ValueError(f"--model mlp needs vector data, but {data.description} has shape {data.sample_shape}.")
    return ToyScoreModel(data_dim=data.sample_shape[0], hidden_size=config.hidden_size, num_layers=config.num_layers)


@dataclass(frozen=True)
class Objective:
    """How training draws each example's sigma and weighs the dsm loss (the resolved arguments, `resolve_objective`).

    ``noise_sampling``: ``"levels"`` (uniform over the scheduler's levels, NCSN) or ``"log-normal"`` (``log sigma ~
    N(log_normal_mean, log_normal_std**2)``, EDM); ``loss_weighting``: ``"sigma2"`` (NCSN's ``lambda(sigma) =
    sigma^2``) or ``"edm"`` (`ncsn_pipeline.losses.edm_loss_weight` with ``sigma_data``).
    """

    noise_sampling: str = "levels"
    loss_weighting: str = "sigma2"
    sigma_data: Optional[float] = None
    log_normal_mean: Optional[float] = None
    log_normal_std: float = 1.2

    @classmethod
    def from_args(cls, config) -> Objective:
        return cls(
            config.noise_sampling, config.loss_weighting, config.sigma_data, config.log_normal_mean,
            config.log_normal_std,
        )  # fmt: skip


def compute_loss(
    model,
    clean: torch.Tensor,
    noise_levels: torch.Tensor,
    randomness,
    loss: str = "dsm",
    class_labels=None,
    objective: Objective = Objective(),
) -> torch.Tensor:
    """Draw one noise level per example as ``objective`` says and evaluate ``loss`` (dsm, ssm) with its weight; a
    class-conditional model gets each example's ``class_labels``."""
    from ..losses import (
        denoising_score_matching_loss,
        edm_loss_weight,
        log_normal_noise_levels,
        sliced_score_matching_loss,
    )

    if class_labels is not None:
        model = functools.partial(model, class_labels=class_labels)

    generator = randomness.generator
    if objective.noise_sampling == "log-normal":
        sigma = log_normal_noise_levels(clean.shape[0], objective.log_normal_mean, objective.log_normal_std, generator)
    else:
        sigma = noise_levels[torch.randint(len(noise_levels), (clean.shape[0],), generator=generator)]
    sigma = sigma.to(device=clean.device, dtype=clean.dtype)
    noise = torch.randn(clean.shape, generator=generator).to(device=clean.device, dtype=clean.dtype)
    if loss == "dsm":
        weight = edm_loss_weight(sigma, objective.sigma_data) if objective.loss_weighting == "edm" else None
        return denoising_score_matching_loss(model, clean, sigma, noise, weight)
    projections = torch.randn(clean.shape, generator=generator).to(device=clean.device, dtype=clean.dtype)
    return sliced_score_matching_loss(model, clean, sigma, noise, projections)


def drop_labels(labels: torch.Tensor, probability: float, unconditional_label: int, generator) -> torch.Tensor:
    """Classifier-free guidance's label dropout (Ho & Salimans 2022): each label becomes the "no class" label with
    ``probability``, drawn from the run's generator (so a resumed run drops the same ones)."""
    if probability <= 0:
        return labels
    dropped = torch.rand(labels.shape, generator=generator).to(labels.device) < probability
    return torch.where(dropped, torch.full_like(labels, unconditional_label), labels)


def save_sample_preview(pipeline, path: Path, num_samples: int, seed: int) -> None:
    """Write a grid of samples (images) or a scatter plot (2-D points) to ``path``, atomically."""
    from ..images import save_image_grid, save_scatter_plot

    pipeline.set_progress_bar_config(disable=True)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    num_classes = getattr(pipeline.unet, "num_classes", None)
    # A class-conditional model shows the classes in turn (row by row in a grid of num_classes columns).
    labels = None if num_classes is None else torch.arange(num_samples) % num_classes
    if pipeline.config.data_range is not None:
        images = pipeline(batch_size=num_samples, generator=generator, output_type="pil", class_labels=labels).images
        save_image_grid(images, path)
    else:
        points = pipeline(batch_size=max(num_samples, 1000), generator=generator, output_type="pt").images
        save_scatter_plot(path, [("samples", points)], title=path.stem)


def train(config: TrainingConfig) -> Path:
    """Run training as ``config`` says (checked first: `TrainingConfig.validate`); return the output folder.

    Example:
        >>> import tempfile
        >>> from ncsn_pipeline.training import TrainingConfig, train
        >>> config = TrainingConfig(dataset_name="digits", resolution=8, ngf=8, max_train_steps=2, train_batch_size=8,
        ...                         num_samples=4, report_to="none", output_dir=tempfile.mkdtemp() + "/digits")
        >>> (train(config) / "model_index.json").is_file()
        True
    """
    if not isinstance(config, TrainingConfig):  # an argparse namespace of ncsn-train's flags, as before
        config = TrainingConfig(**vars(config))
    config.validate()
    from accelerate import Accelerator
    from accelerate.logging import get_logger
    from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel
    from tqdm.auto import tqdm

    output_dir = Path(config.output_dir)
    resuming_or_overwriting = config.overwrite_output_dir or config.resume_from_checkpoint
    if (output_dir / "model_index.json").exists() and not resuming_or_overwriting:
        raise ValueError(
            f"--output_dir {output_dir} already holds a trained pipeline; pass --overwrite_output_dir, "
            "--resume_from_checkpoint latest, or another folder."
        )
    accelerator = Accelerator(
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        mixed_precision=config.mixed_precision,
        log_with=None if config.report_to == "none" else config.report_to,
        project_config=ProjectConfiguration(
            project_dir=str(output_dir), logging_dir=str(output_dir / config.logging_dir)
        ),
        # Seedable sampler: the shuffling of epoch e depends only on (seed, e), so a resumed run sees the same order.
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=config.seed),
    )
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    logger = get_logger("ncsn_pipeline.train", log_level="INFO")
    set_seed(config.seed)  # model initialisation
    randomness = TrainingRandomness(config.seed + accelerator.process_index)

    # 1. Data, noise schedule, model.
    data = load_training_data(
        dataset_name=config.dataset_name,
        dataset_config_name=config.dataset_config_name,
        train_data_dir=config.train_data_dir,
        image_column=config.image_column,
        cache_dir=config.cache_dir,
        resolution=config.resolution,
        channels=config.channels,
        center_crop=config.center_crop,
        max_train_samples=config.max_train_samples,
        num_toy_samples=config.num_toy_samples,
        seed=config.seed,
        class_conditional=config.class_conditional,
        label_column=config.label_column,
    )
    if len(data.dataset) < config.train_batch_size:
        raise ValueError(
            f"--train_batch_size {config.train_batch_size} is larger than the data set ({len(data.dataset)} examples): "
            f"pass --train_batch_size {min(len(data.dataset), 16)} or another value up to {len(data.dataset)} (a small "
            "folder trains with small batches; README, 'Train on your own data')."
        )
    resolve_objective(config, data)
    objective = Objective.from_args(config)
    scheduler = build_scheduler(config, data)
    noise_levels = scheduler.noise_levels.float()  # exactly the levels the saved scheduler uses
    with torch.device("meta"):  # its size first, without memory: a mistyped width gets a message, not an OOM
        probe = build_model(config, data)
    what = f"--model {model_kind(config, data)} ({type(probe).__name__})"
    check_training_memory(sum(parameter.numel() for parameter in probe.parameters()), accelerator.device, what)
    model = build_model(config, data)
    ema_model = (
        EMAModel(model.parameters(), decay=config.ema_decay, model_cls=type(model), model_config=model.config)
        if config.use_ema
        else None
    )

    # 2. Optimisation.
    optimizer = torch.optim.Adam(
        model.parameters(),
        lr=config.learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
        weight_decay=config.adam_weight_decay,
        eps=config.adam_epsilon,
    )
    dataloader = torch.utils.data.DataLoader(
        data.dataset,
        batch_size=config.train_batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=config.dataloader_num_workers,
    )
    if config.lr_scheduler == INVERSE_SQRT:  # EDM2's schedule (a step of the scheduler per process, as diffusers')
        decay = config.lr_decay_steps * accelerator.num_processes
        warmup = config.lr_warmup_steps * accelerator.num_processes
        factor = lambda step: inverse_sqrt_decay(step, decay, warmup)  # noqa: E731 (LambdaLR takes a function)
        lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    else:
        lr_scheduler = get_scheduler(
            config.lr_scheduler,
            optimizer=optimizer,
            num_warmup_steps=config.lr_warmup_steps * accelerator.num_processes,
            num_training_steps=config.max_train_steps * accelerator.num_processes,
        )
    model, optimizer, dataloader, lr_scheduler = accelerator.prepare(model, optimizer, dataloader, lr_scheduler)
    if ema_model is not None:
        ema_model.to(accelerator.device)
    posthoc_ema = None
    if config.posthoc_ema and accelerator.is_main_process:  # the weights agree on every process: one copy will do
        from .posthoc_ema import PowerFunctionEMA

        posthoc_ema = PowerFunctionEMA(accelerator.unwrap_model(model).named_parameters())

    # 3. Resume.
    global_step, earlier_seconds, segments = 0, 0.0, []
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        for leftover in remove_incomplete_checkpoints(output_dir):
            logger.warning(f"Removed {leftover.name}: an interrupted checkpoint save or deletion, never used.")
    accelerator.wait_for_everyone()
    if config.checkpointing_steps > config.max_train_steps:
        logger.warning(
            f"--checkpointing_steps {config.checkpointing_steps} exceeds --max_train_steps {config.max_train_steps}: "
            "this "
            "run writes no checkpoint, so an interruption loses all of it."
        )
    if config.resume_from_checkpoint:
        checkpoint = resolve_checkpoint(output_dir, config.resume_from_checkpoint, on_skip=logger.warning)
        if checkpoint is None:
            logger.warning(
                f"--resume_from_checkpoint latest: there is no complete checkpoint in {output_dir}, so training starts "
                "from step 0."
            )
        else:
            check_resume_compatible(checkpoint, config, accelerator.num_processes)
            global_step, earlier_seconds, segments = load_checkpoint(
                accelerator, checkpoint, randomness, ema_model, posthoc_ema
            )
            logger.info(f"Resumed from {checkpoint} at step {global_step}.")
    if posthoc_ema is not None:
        from .posthoc_ema import remove_snapshots_after, save_snapshot

        for stale in remove_snapshots_after(output_dir, global_step):
            logger.warning(f"Removed {stale.name}: written after the checkpoint this run resumes from.")

    if accelerator.is_main_process:
        run_config = {
            key: (json.dumps(value) if isinstance(value, list) else value)
            for key, value in recorded_args(config).items()
        }
        accelerator.init_trackers("ncsn-train", config={k: v for k, v in run_config.items() if v is not None})
        logger.info(
            f"Training on {data.description}: {len(data.dataset)} examples, {accelerator.num_processes} process(es), "
            f"batch {config.train_batch_size} x {config.gradient_accumulation_steps} accumulation, "
            f"{len(noise_levels)} noise levels {noise_levels[0]:.4g} -> {noise_levels[-1]:.4g}."
        )
    loss_log = output_dir / "logs" / "loss.jsonl"
    if accelerator.is_main_process:
        # Steps after the checkpoint we resume from (logged before an interruption) will be logged again.
        trim_loss_log(loss_log, last_step=global_step)

    # The command of this segment (steps first_step..); earlier segments come from the checkpoint.
    first_step = global_step + 1

    def segments_so_far() -> List[Dict[str, str]]:
        return [
            *segments,
            {"steps": f"{first_step}-{global_step}", "command": command_line(config) or "train() from Python"},
        ]

    # 4. The loop (Ctrl-C or SIGTERM: finish the step, save a checkpoint, stop).
    stop = StopRequest.install()
    progress = tqdm(
        range(config.max_train_steps), initial=global_step, disable=not accelerator.is_local_main_process, desc="steps"
    )
    started = time.perf_counter()
    time_limit = None if config.max_train_minutes is None else 60.0 * config.max_train_minutes

    def out_of_time() -> bool:
        return time_limit is not None and earlier_seconds + time.perf_counter() - started >= time_limit

    segment_first_step = global_step

    first_epoch = (global_step * config.gradient_accumulation_steps) // len(dataloader)
    batches_to_skip = (global_step * config.gradient_accumulation_steps) % len(dataloader)
    epoch = first_epoch
    time_up = False
    while global_step < config.max_train_steps:
        dataloader.set_epoch(epoch)
        batches = accelerator.skip_first_batches(dataloader, batches_to_skip) if batches_to_skip else dataloader
        batches_to_skip = 0
        model.train()
        for batch in batches:
            labels = None
            if data.class_names is not None:
                batch, labels = batch
                labels = labels.to(accelerator.device)
                dropout = config.label_dropout
                labels = drop_labels(labels, dropout, len(data.class_names), randomness.generator)
            clean = to_model_input(
                batch,
                data,
                randomness,
                random_flip=config.random_flip,
                dequantize=config.dequantize,
                data_range=config.data_range,
            ).to(accelerator.device)
            with accelerator.accumulate(model):
                loss = compute_loss(
                    model, clean, noise_levels, randomness, loss=config.loss, class_labels=labels, objective=objective
                )
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            if not accelerator.sync_gradients:
                continue
            if ema_model is not None:
                ema_model.step(model.parameters())
            global_step += 1
            if posthoc_ema is not None:
                posthoc_ema.update(accelerator.unwrap_model(model).named_parameters(), global_step)
                if global_step % config.posthoc_ema_interval == 0:
                    save_snapshot(output_dir, global_step, posthoc_ema)
            # One gather per step carries the loss and whether any process was asked to stop.
            # The time limit too: every process must agree on the last step.
            flags = torch.tensor([float(stop.requested), float(out_of_time())], device=loss.device)
            gathered = accelerator.gather(torch.cat([loss.detach()[None].float(), flags])).reshape(-1, 3)
            mean_loss, stop_now = gathered[:, 0].mean().item(), bool(gathered[:, 1].any())
            time_up = bool(gathered[:, 2].any())
            if not math.isfinite(mean_loss):
                raise FloatingPointError(
                    f"The loss became {mean_loss} at step {global_step}: lower --learning_rate (now "
                    f"{config.learning_rate}) or use --mixed_precision no/bf16."
                )
            logs = {"loss": mean_loss, "lr": lr_scheduler.get_last_lr()[0]}
            progress.update(1)
            if time_limit is not None:  # count to where the time cap is expected to stop it, not to max_train_steps
                elapsed = time.perf_counter() - started
                progress.total = steps_within_time(
                    global_step, config.max_train_steps, global_step - segment_first_step, elapsed,
                    time_limit - earlier_seconds - elapsed,
                )  # fmt: skip
            progress.set_postfix(**logs)
            accelerator.log(logs, step=global_step)
            if accelerator.is_main_process:
                with loss_log.open("a") as handle:
                    handle.write(json.dumps({"step": global_step, **logs}) + "\n")
                    handle.flush()
            if global_step % config.checkpointing_steps == 0 or stop_now or time_up:  # the time cap ends as a signal
                elapsed = earlier_seconds + time.perf_counter() - started
                save_checkpoint(
                    accelerator, output_dir, global_step, config, randomness, ema_model, elapsed, segments_so_far(),
                    posthoc_ema,
                )  # fmt: skip
            if stop_now:
                progress.close()
                accelerator.end_training()
                raise TrainingInterrupted(stop.signal_name, global_step, output_dir)
            if config.save_guide_at == global_step and accelerator.is_main_process:
                # Autoguidance's weak model: this model early in training (Karras et al. 2024 guide with one).
                elapsed = earlier_seconds + time.perf_counter() - started
                guide_record = training_record(config, data, global_step, elapsed, _hardware(accelerator),
                                               segments_so_far())  # fmt: skip
                guide_dir = output_dir / GUIDE_FOLDER
                guide_dir.mkdir(parents=True, exist_ok=True)
                guide = _pipeline(accelerator, model, ema_model, scheduler, data, config)
                save_pipeline_folder(guide, guide_dir, guide_record, config.num_samples)
                logger.info(f"Saved the guide (step {global_step}) to {guide_dir}.")
            preview_due = config.save_samples_steps and global_step % config.save_samples_steps == 0
            if preview_due and accelerator.is_main_process:
                preview = _pipeline(accelerator, model, ema_model, scheduler, data, config)
                save_sample_preview(
                    preview, output_dir / "samples" / f"step-{global_step:06d}.png", config.num_samples, 0
                )
            if global_step >= config.max_train_steps or time_up:
                break
        if time_up:
            break
        epoch += 1
    progress.close()
    stop.uninstall()
    train_seconds = earlier_seconds + time.perf_counter() - started

    # 5. The pipeline folder: components first, model_index.json last, so a half-written folder never loads.
    accelerator.wait_for_everyone()
    if posthoc_ema is not None and global_step % config.posthoc_ema_interval != 0:
        save_snapshot(output_dir, global_step, posthoc_ema)  # the last step too, whatever the interval
    if accelerator.is_main_process:
        pipeline = _pipeline(accelerator, model, ema_model, scheduler, data, config)
        record = training_record(config, data, global_step, train_seconds, _hardware(accelerator), segments_so_far())
        tuned = None
        if config.tune_steps:  # levels for N-call runs, measured on the trained model
            from ..step_tuning import tune_noise_levels, with_tuned_levels

            pipeline.set_progress_bar_config(disable=True)
            tuned = tune_noise_levels(pipeline, config.tune_steps, progress=logger.info)
            pipeline.scheduler = with_tuned_levels(pipeline.scheduler, tuned, make_default=True)
            tuned = {**tuned.to_dict(), "command": record.get("command")}
        save_pipeline_folder(pipeline, output_dir, record, config.num_samples, tuned)
        logger.info(f"Saved the pipeline to {output_dir} ({global_step} steps, {train_seconds:.0f} s).")
        if config.push_to_hub:
            from ..hub import push_folder_to_hub

            url = push_folder_to_hub(
                output_dir,
                config.hub_model_id,
                private=config.hub_private,
                pipeline_class=type(pipeline),
                token=config.hub_token,
            )
            logger.info(f"Pushed to {config.hub_model_id}: {url}")
            if config.push_demo:
                from ..hub import push_demo_to_hub

                space = f"{config.hub_model_id}-demo"
                url = push_demo_to_hub(space, config.hub_model_id, private=config.hub_private, token=config.hub_token)
                logger.info(f"Published the demo Space {space}: {url}")
    accelerator.end_training()
    return output_dir



def _hardware(accelerator) -> Dict[str, Any]:
    """What the run ran on, for the training record and the model card."""
    if accelerator.device.type == "cuda":
        device = torch.cuda.get_device_name(accelerator.device)
    else:
        device = f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads per process)"
    return {"num_processes": accelerator.num_processes, "device": device}


def _pipeline(accelerator, model, ema_model, scheduler, data, config):
    """An NCSNPipeline around a copy of the trained (EMA) weights, on the CPU."""
    from ..pipeline_ncsn import NCSNPipeline
    from ..scheduling_dpmpp import default_sampler

    unwrapped = accelerator.unwrap_model(model)
    copy = type(unwrapped).from_config(unwrapped.config)
    copy.load_state_dict(unwrapped.state_dict())
    if ema_model is not None:
        ema_model.copy_to(copy.parameters())
    copy = copy.to("cpu").eval()
    return NCSNPipeline(
        unet=copy,
        scheduler=default_sampler(scheduler.config),  # keeps the training levels and the tuned Langevin settings
        data_range=config.data_range if data.is_image else None,
    )


def save_pipeline_folder(
    pipeline, output_dir: Path, record: Dict[str, Any], num_samples: int, tuned: Optional[Dict[str, Any]] = None
) -> None:
    """Save ``pipeline``, its training record (and the record of its tuned levels) and ``sample_grid.png`` in
    ``output_dir``, ``model_index.json`` last."""
    staging = output_dir / ".pipeline.tmp"
    if staging.exists():
        shutil.rmtree(staging)
    pipeline.save_pretrained(staging)
    write_training(staging, record)
    if tuned is not None:
        write_tuned_steps(staging, tuned["num_calls"], tuned)
    save_sample_preview(pipeline, staging / "sample_grid.png", num_samples, seed=0)
    index = staging / "model_index.json"
    for item in staging.iterdir():
        if item != index:
            target = output_dir / item.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
    os.replace(index, output_dir / "model_index.json")
    shutil.rmtree(staging)


def steps_within_time(global_step: int, max_train_steps: int, steps_done: int, seconds_done: float,
                      seconds_left: float) -> int:  # fmt: skip
    """The step training is expected to end at, which the progress bar counts to: ``max_train_steps``, or sooner
    where the time left (``--max_train_minutes``) runs out first at this run's pace (``steps_done`` steps in
    ``seconds_done`` seconds).

    >>> steps_within_time(100, 10_000, steps_done=100, seconds_done=50.0, seconds_left=100.0)  # 2 steps / s, 100 s
    300
    >>> steps_within_time(100, 250, steps_done=100, seconds_done=50.0, seconds_left=100.0)
    250
    """
    if steps_done <= 0 or seconds_done <= 0:
        return max_train_steps
    return max(global_step, min(max_train_steps, global_step + int(max(seconds_left, 0.0) * steps_done / seconds_done)))
