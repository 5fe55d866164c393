"""The command line of ``ncsn-train`` (also ``python -m ncsn_pipeline.train`` and
``accelerate launch -m ncsn_pipeline.train``): every flag, checked, then `ncsn_pipeline.training.loop.train`.

Every flag's ``--help`` line says its default; the negative flags (``--no_ema``, ``--no_dequantize``,
``--no_final_denoise``) say what they turn off, and Hub visibility has no default.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Optional, Sequence

from ..arguments import (
    add_threads_argument,
    apply_threads,
    channel_list,
    data_range,
    integer_in,
    positive_float,
    positive_int,
    strict_parser,
    unit_float,
)
from ..data.names import BUILTIN_DATASETS, FASHION_MNIST
from ..errors import HubError
from ..training.config import MODELS, TrainingConfig


class _DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends "(default: X)" to a flag's help, except for switches (their help says what the default is) and
    flags that are unset by default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        switch = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
        unset = action.default is None or action.default is argparse.SUPPRESS
        if switch or unset or "default" in help_text or not action.option_strings:
            return help_text
        return f"{help_text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``ncsn-train``."""
    parser = strict_parser(
        prog="ncsn-train",
        description="Train a noise-conditional score network (NCSN) with accelerate and save an NCSNPipeline.",
        formatter_class=_DefaultsHelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset_name",
        help="a Hugging Face datasets name or local path, or a built-in offline data set: "
        + ", ".join(BUILTIN_DATASETS),
    )
    data.add_argument("--dataset_config_name", help="the datasets configuration name, if any")
    data.add_argument(
        "--train_data_dir",
        help=f"a folder of images (searched recursively); with --dataset_name {FASHION_MNIST}, the folder of its four "
        "IDX files (default there: Debian's dataset-fashion-mnist, else the Hub)",
    )
    data.add_argument("--image_column", help="the column holding images in a datasets data set")
    data.add_argument(
        "--class_conditional",
        action="store_true",
        help="train a class-conditional model s(x, sigma, y) on labelled data: the digits' labels, one subfolder "
        "per class under --train_data_dir, or --label_column of a datasets data set",
    )
    data.add_argument("--label_column", help="the class column of a datasets data set")
    data.add_argument(
        "--label_dropout",
        type=unit_float,
        help="with --class_conditional: the share of training examples whose class is replaced by a 'no class' "
        "label, so that the one network also learns the unconditional score and samples with classifier-free "
        "guidance (guidance_scale=w); 0.1 is usual (default: 0, no 'no class' label)",
    )
    data.add_argument("--cache_dir", help="where datasets caches downloads")
    data.add_argument("--resolution", type=positive_int, help="images are resized to this square size")
    data.add_argument("--channels", type=int, choices=(1, 3), help="1 (grey) or 3 (RGB); default: infer")
    data.add_argument(
        "--center_crop", action="store_true", help="resize the shorter side then centre-crop (else squash)"
    )
    data.add_argument("--random_flip", action="store_true", help="flip images horizontally at random")
    data.add_argument(
        "--no_dequantize",
        dest="dequantize",
        action="store_false",
        help="map grey level k of Q levels to k / (Q - 1) without noise (default: dequantise, k becomes "
        "(k + u) / Q with u uniform)",
    )
    data.add_argument(
        "--data_range", type=data_range, help="range images are mapped to: 'low,high'"
    )
    data.add_argument("--max_train_samples", type=positive_int, help="use only the first N examples")
    data.add_argument("--num_toy_samples", type=positive_int, help="size of a built-in 2-D toy data set")
    data.add_argument("--dataloader_num_workers", type=int, help="data-loading worker processes")

    model = parser.add_argument_group("model")
    model.add_argument(
        "--model",
        choices=MODELS,
        help="ncsnv2 (NCSNv2 RefineNet, images), edm-unet (diffusers' UNet2DModel with EDM preconditioning, images: "
        "the fastest to train, README 'Training recipe'), mlp (2-D points); auto: ncsnv2 for images, mlp for points",
    )
    model.add_argument("--ngf", type=positive_int, help="NCSNv2 RefineNet width (the paper uses 128)")
    model.add_argument(
        "--block_out_channels",
        type=channel_list,
        help="edm-unet: channels of each U-Net block, 'a,b,c' (each block but the last halves the resolution)",
    )
    model.add_argument("--layers_per_block", type=positive_int, help="edm-unet: residual layers per block")
    model.add_argument(
        "--sigma_data",
        type=positive_float,
        help="edm-unet: the data's standard deviation for EDM's preconditioning (default: measured on the training "
        "data)",
    )
    model.add_argument("--hidden_size", type=positive_int, help="MLP width (2-D data)")
    model.add_argument("--num_layers", type=positive_int, help="MLP hidden layers (2-D data)")

    noise = parser.add_argument_group(
        "noise schedule (the training levels and the annealed-Langevin settings saved in the scheduler config)"
    )
    noise.add_argument("--sigma_max", type=positive_float, help="largest noise level")
    noise.add_argument("--sigma_min", type=positive_float, help="smallest noise level")
    noise.add_argument("--num_noise_levels", type=positive_int, help="number of geometric noise levels L")
    noise.add_argument("--steps_per_level", type=positive_int, help="Langevin steps per level T (sampling)")
    noise.add_argument(
        "--step_lr", type=positive_float, help="Langevin step size at sigma_min (sampling)"
    )
    noise.add_argument(
        "--no_final_denoise",
        dest="final_denoise",
        action="store_false",
        help="save a sampler without NCSNv2's final denoising step (default: with it)",
    )
    noise.add_argument(
        "--auto_noise_schedule",
        action="store_true",
        help="compute sigma_max (largest pairwise distance), L and step_lr from the training data with NCSNv2's "
        "techniques (overrides --sigma_max, --num_noise_levels and --step_lr)",
    )

    training = parser.add_argument_group("training")
    training.add_argument("--output_dir", required=True, help="the pipeline and checkpoints are written here")
    training.add_argument(
        "--overwrite_output_dir", action="store_true", help="allow an output_dir that holds a pipeline"
    )
    training.add_argument("--seed", type=int, help="seed of everything random in training")
    training.add_argument("--loss", choices=("dsm", "ssm"), help="denoising or sliced score matching")
    training.add_argument(
        "--noise_sampling",
        choices=("auto", "levels", "log-normal"),
        help="how each example's training sigma is drawn: levels (uniform over the scheduler's noise levels, NCSN), "
        "log-normal (log sigma ~ N(--log_normal_mean, --log_normal_std**2), EDM); auto: log-normal for edm-unet, "
        "else levels",
    )
    training.add_argument(
        "--log_normal_mean",
        type=float,
        help="mean of log sigma (default: EDM's -1.2 for sigma_data 0.5, shifted by log(sigma_data / 0.5))",
    )
    training.add_argument("--log_normal_std", type=positive_float, help="std of log sigma (EDM's P_std)")
    training.add_argument(
        "--loss_weighting",
        choices=("auto", "sigma2", "edm"),
        help="dsm loss weight: sigma2 (NCSN's lambda(sigma) = sigma^2) or edm (EDM's, which gives its preconditioned "
        "network unit-variance targets); auto: edm for edm-unet, else sigma2",
    )
    training.add_argument("--train_batch_size", type=positive_int, help="batch size per process")
    training.add_argument("--max_train_steps", type=positive_int, help="optimizer updates in total")
    training.add_argument(
        "--max_train_minutes",
        type=positive_float,
        help="also stop after this many minutes of training (all segments of a resumed run together), then save the "
        "pipeline as at --max_train_steps; the record says how many steps ran",
    )
    training.add_argument("--gradient_accumulation_steps", type=positive_int, help="batches per update")
    training.add_argument("--learning_rate", type=positive_float, help="Adam learning rate")
    training.add_argument(
        "--lr_scheduler",
        help="a diffusers get_scheduler name, or inverse_sqrt (EDM2: lr / sqrt(max(step / --lr_decay_steps, 1)))",
    )
    training.add_argument("--lr_warmup_steps", type=int, help="learning-rate warm-up updates")
    training.add_argument(
        "--lr_decay_steps", type=positive_int, help="with --lr_scheduler inverse_sqrt: where the decay starts (1000)"
    )
    training.add_argument("--adam_beta1", type=float, help="Adam's first-moment decay")
    training.add_argument("--adam_beta2", type=float, help="Adam's second-moment decay")
    training.add_argument("--adam_weight_decay", type=float, help="Adam's L2 weight decay")
    training.add_argument("--adam_epsilon", type=float, help="Adam's denominator epsilon")
    training.add_argument("--max_grad_norm", type=positive_float, help="gradient clipping norm")
    training.add_argument(
        "--no_ema",
        dest="use_ema",
        action="store_false",
        help="save the raw weights, without an exponential moving average (default: keep and save the EMA)",
    )
    training.add_argument("--ema_decay", type=float, help="EMA decay (NCSNv2 uses 0.999)")
    training.add_argument(
        "--posthoc_ema",
        action="store_true",
        help="also keep EDM2's two power-function EMA profiles (sigma_rel 0.05 and 0.10) and save them every "
        "--posthoc_ema_interval steps into OUTPUT_DIR/posthoc_ema/, so that ncsn-reconstruct-ema can choose the EMA "
        "length after training (default: off)",
    )
    training.add_argument(
        "--posthoc_ema_interval", type=positive_int, help="steps between post-hoc EMA snapshots (default: 500)"
    )
    training.add_argument(
        "--mixed_precision", choices=("no", "fp16", "bf16"), help="autocast precision (loss stays fp32)"
    )

    add_threads_argument(training)
    output = parser.add_argument_group("checkpoints, logging and samples")
    output.add_argument(
        "--checkpointing_steps", type=positive_int, help="save a checkpoint every N updates"
    )
    output.add_argument("--checkpoints_total_limit", type=positive_int, help="keep at most N checkpoints")
    output.add_argument(
        "--resume_from_checkpoint", help="'latest' (newest complete checkpoint in output_dir) or a path"
    )
    output.add_argument(
        "--report_to",
        help="accelerate tracker: tensorboard, wandb, all, none; auto = tensorboard if installed",
    )
    output.add_argument("--logging_dir", help="tracker folder, relative to output_dir")
    output.add_argument(
        "--save_samples_steps", type=positive_int, help="write a sample grid every N updates"
    )
    output.add_argument("--num_samples", type=positive_int, help="images in a sample grid (points for 2-D)")
    output.add_argument(
        "--save_guide_at",
        type=positive_int,
        help="at this step, also save the (EMA) model as a pipeline in output_dir/guide: a weaker model of the same "
        "data for autoguidance (ncsn-sample --guidance_model OUTPUT_DIR/guide)",
    )
    output.add_argument(
        "--tune_steps",
        type=integer_in(2, 100),
        help="after training, choose the noise levels of N-call runs for the model (ncsn-tune-steps; a few minutes on "
        "a CPU) and make N the saved sampler's default",
    )
    hub = parser.add_argument_group("publishing (after training, one commit: weights, configs, card, samples)")
    hub.add_argument("--push_to_hub", action="store_true", help="publish the trained pipeline to the Hugging Face Hub")
    hub.add_argument("--hub_model_id", help="the repository, 'user/name' (required with --push_to_hub)")
    hub.add_argument(
        "--push_demo",
        action="store_true",
        help="with --push_to_hub, also publish a Gradio Space 'user/name-demo' that serves the demo on the model "
        "(same visibility; the cards link each other)",
    )
    hub.add_argument("--hub_token", help="a write token (default: the logged-in one or HF_TOKEN)")
    visibility = hub.add_mutually_exclusive_group()
    visibility.add_argument(
        "--hub_private",
        dest="hub_private",
        action="store_true",
        help="create the repository private (with --push_to_hub, one of --hub_private/--hub_public is required)",
    )
    visibility.add_argument(
        "--hub_public",
        dest="hub_private",
        action="store_false",
        help="create the repository public (no default: visibility is an explicit choice)",
    )
    parser.set_defaults(**TrainingConfig.defaults())  # the dataclass owns the defaults; --help shows them
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> TrainingConfig:
    """Parse the command line into a checked `TrainingConfig`; every problem is reported with the offending value."""
    parser = build_parser()
    try:
        return TrainingConfig(**vars(parser.parse_args(argv))).validate()
    except ValueError as error:
        parser.error(str(error))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``ncsn-train``."""
    config = parse_args(argv)
    from ..training.checkpoints import DiskFullError  # after parsing: --help loads no PyTorch
    from ..training.loop import TrainingInterrupted, train

    apply_threads(config)
    try:
        train(config)
    except TrainingInterrupted as stopped:
        print(f"ncsn-train: {stopped}", file=sys.stderr)
        return 128 + getattr(signal, stopped.signal_name, signal.SIGINT)
    except (ValueError, FloatingPointError, HubError, DiskFullError) as error:
        print(f"ncsn-train: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
