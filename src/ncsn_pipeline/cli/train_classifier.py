"""The command line of ``ncsn-train-classifier``: its arguments, checked, then
`ncsn_pipeline.training.classifier.train_classifier`."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Optional, Sequence

from ..arguments import (
    data_range,
    positive_float,
    positive_int,
    run_command,
    strict_parser,
)
from ..data.names import BUILTIN_DATASETS
from ..training.config import ClassifierTrainingConfig


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``ncsn-train-classifier``."""
    parser = strict_parser(
        prog="ncsn-train-classifier",
        description="Train a noise-conditional classifier p_sigma(y | x) for classifier guidance (guidance_scale=).",
    )
    data = parser.add_argument_group("data (labelled images, as ncsn-train --class_conditional reads them)")
    data.add_argument("--dataset_name", help=f"built-in ({BUILTIN_DATASETS[0]}), a datasets name or path")
    data.add_argument("--train_data_dir", help="a folder with one subfolder of images per class")
    data.add_argument("--image_column", help="the image column of a datasets data set")
    data.add_argument("--label_column", help="the class column of a datasets data set")
    data.add_argument("--cache_dir", help="where datasets caches downloads")
    data.add_argument("--resolution", type=positive_int, help="image size (default: the pipeline's)")
    data.add_argument("--channels", type=int, choices=(1, 3), help="1 or 3 (default: infer)")
    data.add_argument("--center_crop", action="store_true", help="centre-crop instead of squashing")
    data.add_argument("--max_train_samples", type=positive_int, help="use only the first N images")
    noise = parser.add_argument_group("noise levels (from --pipeline, or given)")
    noise.add_argument("--pipeline", help="a score pipeline folder: its noise range, data range, size")
    noise.add_argument("--sigma_max", type=positive_float, help="largest noise level")
    noise.add_argument("--sigma_min", type=positive_float, help="smallest noise level")
    noise.add_argument("--data_range", type=data_range, help="'low,high' (default: the pipeline's, 0,1)")
    model = parser.add_argument_group("model and optimisation")
    model.add_argument(
        "--block_out_channels", type=positive_int, nargs="+", help="channels of each stage"
    )
    model.add_argument("--max_train_steps", type=positive_int, help="optimisation steps")
    model.add_argument("--train_batch_size", type=positive_int, help="images per step")
    model.add_argument("--learning_rate", type=positive_float, help="Adam learning rate")
    model.add_argument("--seed", type=int, help="seed of the noise and the initialisation")
    model.add_argument("--mixed_precision", choices=("no", "fp16", "bf16"), help="accelerate's setting")
    out = parser.add_argument_group("output")
    out.add_argument("--output_dir", required=True, help="where to save the classifier (save_pretrained layout)")
    out.add_argument("--overwrite_output_dir", action="store_true", help="replace an existing classifier there")
    parser.set_defaults(**dataclasses.asdict(ClassifierTrainingConfig()))  # the dataclass owns the defaults
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``ncsn-train-classifier``."""

    def train(args: argparse.Namespace):
        from ..training.classifier import train_classifier  # here, not at the top: --help loads no PyTorch

        return train_classifier(ClassifierTrainingConfig(**vars(args)))

    return run_command(build_parser(), train, argv)


if __name__ == "__main__":
    sys.exit(main())
