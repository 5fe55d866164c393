"""``ncsn-tune-steps MODEL --num_inference_steps N``: choose the noise levels of an N-call run for a model.

The search is `ncsn_pipeline.step_tuning.tune_noise_levels` (its docstring says how and why). The levels go into
the sampler's config (``tuned_noise_levels``), so a saved, pushed or exported pipeline carries them and
``pipe(num_inference_steps=N)`` uses them; other call counts keep Karras et al.'s levels. ``--in_place`` updates a
local folder (or a bundled model), ``--output_dir`` writes a new folder; without either the levels are printed.

    ncsn-tune-steps ncsn-fashion --num_inference_steps 10 --output_dir fashion-10 --threads 2
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from ..arguments import (
    add_sampler_arguments,
    add_threads_argument,
    apply_sampler_arguments,
    integer_in,
    mask_secret_arguments,
    run_command,
    strict_parser,
)
from ..bounds import MIN_TUNING_SAMPLES
from ..folder_records import write_tuned_steps


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``ncsn-tune-steps``."""
    parser = strict_parser(
        prog="ncsn-tune-steps",
        description="Choose the noise levels of an N-call run for a model: the Karras-family levels whose samples come "
        "closest to a long run's (power spectra for images), stored in the sampler's config.",
    )
    parser.add_argument("pipeline", help="a pipeline folder, a bundled model name (e.g. ncsn-fashion) or a repo id")
    add_sampler_arguments(parser)
    parser.add_argument("--num_samples", type=integer_in(MIN_TUNING_SAMPLES, 100_000), default=500,
                        help=f"samples per candidate and the reference (default 500, at least {MIN_TUNING_SAMPLES})")
    parser.add_argument("--reference_steps", type=integer_in(3, 10_000), default=None,
                        help="calls of the reference run (default: max(50, 5 N))")
    parser.add_argument("--seed", type=int, default=0, help="seed of the candidates' samples (default 0)")
    parser.add_argument("--batch_size", type=integer_in(1, 10_000), default=100, help="samples per call (default 100)")
    parser.add_argument("--make_default", action="store_true",
                        help="also make N the pipeline's default number of calls")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--in_place", action="store_true", help="update the pipeline folder (or bundled model)")
    where.add_argument("--output_dir", default=None, help="write the tuned pipeline to this new folder")
    add_threads_argument(parser)
    return parser


def run(args: argparse.Namespace, argv: Sequence[str] = ()) -> None:
    from ..pretrained import resolve_pipeline  # here, not at the top: --help loads no PyTorch
    from ..step_tuning import check_tunable, tune_noise_levels, with_tuned_levels

    if args.num_inference_steps is None:
        raise ValueError("--num_inference_steps N is required: the number of calls whose levels are tuned.")
    if args.output_dir is not None and Path(args.output_dir).exists():
        raise ValueError(f"--output_dir {args.output_dir} already exists; choose a new folder.")
    pipe, folder = resolve_pipeline(args.pipeline)
    if args.in_place and folder is None:
        raise ValueError(f"--in_place updates a local folder; {args.pipeline!r} has none: use --output_dir.")
    apply_sampler_arguments(pipe, args)
    check_tunable(pipe.scheduler)  # before any sampling
    pipe.set_progress_bar_config(disable=True)
    result = tune_noise_levels(
        pipe, args.num_inference_steps, num_samples=args.num_samples, reference_calls=args.reference_steps,
        seed=args.seed, batch_size=args.batch_size, progress=lambda line: print(line, file=sys.stderr, flush=True),
    )  # fmt: skip
    levels = ", ".join(f"{level:.4g}" for level in result.levels)
    print(
        f"{args.num_inference_steps} calls: sigma_min {result.sigma_min:.4g}, rho {result.rho:g} -> [{levels}]; "
        f"distance to the reference {result.distance:.4g} (the config's Karras levels: {result.karras_distance:.4g})"
    )
    if not (args.in_place or args.output_dir):
        print("Nothing written (use --in_place or --output_dir to store the levels in the sampler's config).")
        return
    tuned = with_tuned_levels(pipe.scheduler, result, make_default=args.make_default)
    command = mask_secret_arguments(" ".join(["ncsn-tune-steps", *argv]), argv)
    record = {**result.to_dict(), "command": command}
    if args.in_place:
        target = Path(folder)
    else:
        target = Path(args.output_dir)
        staging = Path(tempfile.mkdtemp(prefix=".tuning-", dir=target.resolve().parent))
        try:  # a whole new folder or nothing: staged next to the target, then renamed
            written = staging / "pipeline"
            if folder is not None:
                shutil.copytree(folder, written)
            else:
                pipe.save_pretrained(written)
            tuned.save_pretrained(written / "scheduler")
            _write_index_scheduler(written, tuned)
            write_tuned_steps(written, result.num_calls, record)
            written.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        print(f"Wrote {target}.")
        return
    with tempfile.TemporaryDirectory(dir=target / "scheduler") as staging:  # the config is replaced atomically
        tuned.save_pretrained(staging)
        Path(staging, "scheduler_config.json").replace(target / "scheduler" / "scheduler_config.json")
    _write_index_scheduler(target, tuned)
    write_tuned_steps(target, result.num_calls, record)
    print(f"Updated {target / 'scheduler' / 'scheduler_config.json'} and {target / 'tuned_steps.json'}.")


def _write_index_scheduler(folder: Path, scheduler) -> None:
    """Point ``model_index.json`` at the tuned sampler's class (``--sampler`` may have changed it)."""
    import json

    from ..files import write_text_atomically

    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text())
    entry = [type(scheduler).__module__, type(scheduler).__name__]
    if index.get("scheduler") != entry:
        index["scheduler"] = entry
        write_text_atomically(index_path, json.dumps(index, indent=2, sort_keys=True) + "\n")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``ncsn-tune-steps``; errors exit with status 2 and a message."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_command(build_parser(), lambda args: run(args, argv), argv)


if __name__ == "__main__":
    sys.exit(main())
