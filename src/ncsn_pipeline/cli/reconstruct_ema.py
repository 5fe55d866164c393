"""``ncsn-reconstruct-ema FOLDER --sigma_rel S``: choose the EMA length of a model after training (post-hoc EMA).

A run of ``ncsn-train --posthoc_ema`` saved EDM2's two power-function EMA profiles every few steps
(``FOLDER/posthoc_ema/``); this command rebuilds the profile of any other width ``sigma_rel`` at any saved step from
them (`ncsn_pipeline.training.posthoc_ema`, Karras et al. 2024) and writes it as a pipeline folder, with the EMA it
holds in its training record and card. With ``--evaluate`` and several widths it is a sweep: each reconstruction is
judged as ``ncsn-eval`` judges it, the figures are printed side by side and written to ``--report``, so the width is
chosen by measurement.

    ncsn-reconstruct-ema my-run --sigma_rel 0.04 0.06 0.08 0.10 0.13 --evaluate --num_samples 500 --threads 2
    ncsn-reconstruct-ema my-run --sigma_rel 0.08 --output_dir my-run-ema-0.08
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from ..arguments import add_threads_argument, integer_in, positive_float, positive_int, run_command, strict_parser


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``ncsn-reconstruct-ema``."""
    parser = strict_parser(
        prog="ncsn-reconstruct-ema",
        description="Rebuild the EMA of any width from the post-hoc EMA snapshots of an ncsn-train --posthoc_ema run "
        "(EDM2's power-function profiles), and write it as a pipeline or judge several widths side by side.",
    )
    parser.add_argument("folder", help="the output folder of ncsn-train --posthoc_ema (it holds posthoc_ema/)")
    parser.add_argument(
        "--sigma_rel",
        type=positive_float,
        nargs="+",
        required=True,
        help="EMA width(s) relative to the training length (EDM2's sigma_rel; 0.05 to 0.10 is typical, the tracked "
        "profiles are 0.05 and 0.10); several with --evaluate",
    )
    parser.add_argument(
        "--at_step", type=positive_int, default=None, help="the training step to rebuild at (default: the last one)"
    )
    parser.add_argument("--output_dir", default=None, help="a new folder for the pipeline of the one --sigma_rel")
    parser.add_argument(
        "--evaluate",
        action="store_true",
        help="judge each width as ncsn-eval does (its judge for the model's data) and print the figures side by side",
    )
    parser.add_argument(
        "--num_samples", type=integer_in(2, 100_000), default=500, help="samples per width with --evaluate (500)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the samples with --evaluate (default 0)")
    parser.add_argument(
        "--report", default=None, help="JSON file for --evaluate's figures (default: FOLDER/posthoc_ema/sweep.json)"
    )
    add_threads_argument(parser)
    return parser


def _pipeline_with(pipe, weights):
    """A copy of ``pipe`` whose network has the reconstructed ``weights`` (its parameters; buffers stay)."""
    import copy

    rebuilt = copy.deepcopy(pipe)
    names = {name for name, _ in rebuilt.unet.named_parameters()}
    if set(weights) != names:
        differ = sorted(set(weights) ^ names)[:5]
        raise ValueError(f"The snapshots hold the parameters of another network (differ: {differ}).")
    rebuilt.unet.load_state_dict(weights, strict=False)
    return rebuilt


def run(args: argparse.Namespace) -> List[Dict[str, Any]]:
    """Reconstruct (and judge) as ``args`` say; return one row per width."""
    from ..folder_records import read_training
    from ..pretrained import load_pipeline  # here, not at the top: --help loads no PyTorch
    from ..training.loop import save_pipeline_folder
    from ..training.posthoc_ema import SNAPSHOT_FOLDER, reconstruct, reconstruction_plan

    folder = Path(args.folder)
    if not (folder / "model_index.json").is_file():
        raise ValueError(f"{args.folder!r} is not a trained pipeline folder (no model_index.json).")
    if len(args.sigma_rel) > 1 and not args.evaluate:
        raise ValueError("Several --sigma_rel values are a sweep: add --evaluate (or give one with --output_dir).")
    if args.output_dir is not None and len(args.sigma_rel) > 1:
        raise ValueError("--output_dir takes the pipeline of one --sigma_rel; sweep first, then write the best one.")
    if args.output_dir is None and not args.evaluate:
        raise ValueError("Nothing to do: give --output_dir for the pipeline, or --evaluate to judge the widths.")
    if args.output_dir is not None and Path(args.output_dir).exists():
        raise ValueError(f"--output_dir {args.output_dir} already exists; choose a new folder.")
    for sigma_rel in args.sigma_rel:  # every width checked before the first (slow) reconstruction or evaluation
        reconstruction_plan(folder, sigma_rel, args.at_step)
    pipe = load_pipeline(str(folder))
    pipe.set_progress_bar_config(disable=True)
    training = read_training(folder) or {}

    def progress(text: str) -> None:
        print(f"reconstructing: {text}", file=sys.stderr, flush=True)

    rows = []
    for sigma_rel in args.sigma_rel:
        weights, record = reconstruct(folder, sigma_rel, args.at_step, progress=progress)
        rebuilt = _pipeline_with(pipe, weights)
        row: Dict[str, Any] = {"posthoc_ema": record}
        if args.evaluate:
            row["figures"] = _judge(rebuilt, {**training, "posthoc_ema": record}, args)
            shown = ", ".join(f"{name}: {value:.4g}" for name, value in row["figures"].items())
            print(f"sigma_rel {sigma_rel:g} (step {record['step']}): {shown}", flush=True)
        if args.output_dir is not None:
            try:
                save_pipeline_folder(rebuilt, Path(args.output_dir), {**training, "posthoc_ema": record}, 16)
            except BaseException:
                shutil.rmtree(args.output_dir, ignore_errors=True)  # it did not exist before: no half-written folder
                raise
            print(f"Wrote the EMA of sigma_rel {sigma_rel:g} at step {record['step']} to {args.output_dir}.")
        rows.append(row)
    if args.evaluate:
        from ..files import write_text_atomically

        report = Path(args.report) if args.report else folder / SNAPSHOT_FOLDER / "sweep.json"
        write_text_atomically(report, json.dumps(rows, indent=2) + "\n")
        print(f"Wrote {report}.")
    return rows


def _judge(pipe, record: Dict[str, Any], args: argparse.Namespace) -> Dict[str, float]:
    """``ncsn-eval``'s figures of ``pipe`` (saved to a temporary folder with its training record, so that the judge
    is chosen as for the trained model)."""
    from ..evaluation.config import EvaluationConfig
    from ..evaluation.evaluate import run as evaluate
    from ..training.loop import save_pipeline_folder

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "pipeline"
        save_pipeline_folder(pipe, folder, record, 4)
        config = EvaluationConfig(
            pipeline=str(folder), num_samples=args.num_samples, seed=args.seed, output=str(Path(scratch) / "r.json"),
            threads=args.threads,
        )  # fmt: skip
        report = evaluate(config)
    return {row["name"]: row["value"] for row in report["card"]["metrics"] if "seconds per sample" not in row["name"]}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``ncsn-reconstruct-ema`` console script."""
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
