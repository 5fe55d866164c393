"""The command line of ``ncsn-digits-eval``: its arguments, checked, then
`ncsn_pipeline.evaluation.digits_evaluation.run`."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Optional, Sequence

from ..arguments import (
    LOCAL_FOLDER_RULE,
    add_sampler_arguments,
    add_threads_argument,
    positive_int,
    run_command,
    strict_parser,
)
from ..evaluation.config import DigitsEvaluationConfig


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``ncsn-digits-eval``."""
    parser = strict_parser(
        prog="ncsn-digits-eval",
        description="Sample a saved digits pipeline and score the samples with a digit classifier (confident "
        "rate, class coverage, Fréchet distance to held-out digits), next to the floor of real digits.",
    )
    parser.add_argument(
        "--pipeline",
        required=True,
        help=f"a folder saved with NCSNPipeline.save_pretrained, a bundled model name (e.g. ncsn-digits) or a repo "
        f"id; {LOCAL_FOLDER_RULE}",
    )
    parser.add_argument("--num_samples", type=positive_int, default=500, help="samples to draw (default: 500)")
    parser.add_argument("--batch_size", type=positive_int, default=100, help="samples per call (default: 100)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling generator (default: 0)")
    parser.add_argument(
        "--classifier_seed", type=int, default=0, help="seed of the evaluation classifier (default: 0, the standard)"
    )
    parser.add_argument("--confidence", type=float, default=0.9, help="confident-prediction threshold (default 0.9)")
    add_sampler_arguments(parser)
    parser.add_argument("--device", default="cpu", help="device to sample on (default: cpu)")
    parser.add_argument("--output", default="metrics.json", help="JSON file to write (default: metrics.json)")
    parser.add_argument(
        "--record",
        action="store_true",
        help="also write the pipeline folder's evaluation.json, which its model card shows (default: do not)",
    )
    add_threads_argument(parser)
    parser.set_defaults(**dataclasses.asdict(DigitsEvaluationConfig()))  # the dataclass owns the defaults
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``ncsn-digits-eval``; errors exit with status 2 and a message."""

    def evaluate(args: argparse.Namespace):
        from ..evaluation.digits_evaluation import run  # here, not at the top: --help loads no PyTorch

        return run(args)

    return run_command(build_parser(), evaluate, argv)


if __name__ == "__main__":
    sys.exit(main())
